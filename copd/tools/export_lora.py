"""The merged model of a LoRA run as one peft adapter, exactly.

A linear merge of K LoRA branches (average, weighted, task arithmetic) is the weight delta
sum_i c_i * s * B_i @ A_i (s = alpha / r, c_i the merge coefficients). That is itself a
LoRA of rank K*r: stack the A_i (rows) and the c_i * B_i (columns), and keep the scaling
with alpha' = K * alpha, r' = K * r. So the export is an adapter that peft loads on the base
model and that gives the merged model's weights, without a full copy of them.

    write_adapter(run_dir, out, config)    # adapter_config.json + adapter_model.safetensors

The branches' adapters are read from the run's last checkpoint (the loop saves one at every
phase end, the last at the final step). TIES is not linear: `adapter_problem` says so and
the export writes the full merged model instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LINEAR = ("average", "weighted", "task_arithmetic")


def adapter_problem(run_dir: Path, config: dict[str, Any], steps: int | None) -> str | None:
    """Why this run's merge cannot be one adapter (None: it can)."""
    from copd.train import checkpoint

    merge = config.get("merge", {})
    if config.get("model", {}).get("path") == "demo":
        return "the built-in demo model is no model another machine can load an adapter on"
    if merge.get("method") not in LINEAR:
        return f"merge.method {merge.get('method')!r} is not linear (one adapter needs {LINEAR})"
    ck = checkpoint.latest(run_dir)
    if ck is None:
        return f"{run_dir} has no checkpoint holding the branches' adapters"
    if steps is not None and checkpoint.step_of(ck) != steps:
        return f"the last checkpoint ({ck.name}) is not the final step {steps}"
    return None


def coefficients(merge: dict[str, Any], k: int) -> list[float]:
    """The c_i of merge.method (the rules of copd.math.merge.merge_lora)."""
    w = [float(x) for x in merge.get("weights") or [1.0] * k]
    if merge.get("method") == "task_arithmetic":
        base = w if merge.get("weights") else [1.0 / k] * k
        return [float(merge.get("scale", 1.0)) * c for c in base]
    total = sum(w)
    return [c / total for c in w]


def stacked_adapter(states: list[dict], coeffs: list[float]) -> dict:
    """One adapter state dict of rank K*r from K adapters' (peft keys `...lora_A.weight`,
    `...lora_B.weight`)."""
    import torch

    out = {}
    for key in states[0]:
        if ".lora_A." in key:
            out[key] = torch.cat([s[key] for s in states], dim=0).contiguous()
        elif ".lora_B." in key:
            out[key] = torch.cat([c * s[key] for s, c in zip(states, coeffs, strict=True)], dim=1)
            out[key] = out[key].contiguous()
        else:  # e.g. a bias peft trains: not stackable
            raise ValueError(f"adapter key {key!r} is neither lora_A nor lora_B")
    return out


def write_adapter(run_dir: Path, out: Path, config: dict[str, Any]) -> None:
    """adapter_config.json + adapter_model.safetensors for the run's merged model."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    from copd.train import checkpoint

    names = [b["name"] for b in config["branches"]]
    branch = checkpoint.read_branch_states(checkpoint.latest(run_dir), names)
    states = [branch[n].trainable for n in names]
    lora = config["model"]["lora"]
    k = len(names)
    save_file(
        stacked_adapter(states, coefficients(config.get("merge", {}), k)),
        str(out / "adapter_model.safetensors"),
        metadata={"format": "pt"},
    )
    LoraConfig(
        r=k * int(lora["r"]), lora_alpha=k * int(lora["alpha"]), lora_dropout=0.0,
        target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM",
        base_model_name_or_path=str(config["model"]["path"]),
    ).save_pretrained(str(out))  # fmt: skip
    (out / "copd_adapter.json").write_text(
        json.dumps({"branches": names, "rank_per_branch": lora["r"]}, indent=2) + "\n"
    )
