"""Finish a run: merge the branches, export the merged model, print the results table.

    view = merged_view(world)                 # a frozen model holding the merged weights
    export_merged(world, out_dir / "merged")  # a directory AutoModelForCausalLM loads
    write_results(scores, out_dir)            # results.json (its path returned)

The results table has one row per model (each branch, then "merged") and one column per
benchmark, then Overall (mean over all benchmarks, as in the paper's tables).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from copd.common import names as N
from copd.math import merge as M
from copd.policy.hf_cache import hf_model
from copd.policy.models import PolicyView, base_state_dict
from copd.train.settings import MergeSettings


def merged_state(
    mc: MergeSettings, base: PolicyView, states: list[dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """The branches' trainable `states` merged into the `base` by `mc` (LoRA branches
    exactly, in weight-delta space)."""
    weights = list(mc.weights) or None
    base_sd = base_state_dict(base)
    if mc.lora_scaling is not None:
        return M.merge_lora(
            base_sd,
            states,
            mc.lora_scaling,
            weights=weights,
            method=mc.method,
            scale=mc.scale,
            density=mc.density,
        )
    return M.merge(
        mc.method, base_sd, states, weights=tuple(weights or ()), scale=mc.scale, density=mc.density
    )


def merged_model(world, states: list | None = None) -> torch.nn.Module:
    """A fresh plain (non-peft) model with the world's branches merged (`world.merge`).
    `states`: the branches' trainable states when they live in workers (copd/workers)."""
    if states is None:
        states = [b.trainable_state() for b in world.branches]
    base = hf_model(world.base.module)
    full = world.merge.lora_scaling is None  # full-weight branches
    with torch.no_grad():
        model = copy.deepcopy(base) if full else _fresh_like(base)
        model.load_state_dict(merged_state(world.merge, world.base, states))
    model.eval().requires_grad_(False)
    return model


def _fresh_like(peft_base) -> torch.nn.Module:
    """A plain model of the same architecture as a peft-wrapped base (LoRA layers removed)."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    vlm = getattr(peft_base.config, "vision_config", None) is not None
    auto = AutoModelForImageTextToText if vlm else AutoModelForCausalLM
    model = auto.from_config(peft_base.config)
    return model.to(next(peft_base.parameters()).device, next(peft_base.parameters()).dtype)


def merged_view(world) -> PolicyView:
    return PolicyView(merged_model(world))


def export_merged(world, out_dir: str | Path, model: torch.nn.Module | None = None) -> Path:
    """Save the merged model + tokenizer as a Hugging Face directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (model or merged_model(world)).save_pretrained(out)
    world.tokenizer.save_pretrained(out)
    return out


def results_table(scores: dict[str, dict[str, float]]) -> str:
    """Plain-text table: rows = models, columns = test benchmarks + overall, then the
    validation split's (`<task>@val`, `overall@val`) when the final evaluation has them."""
    models = list(scores)
    first = next(iter(scores.values()))
    test = [b for b in first if "@" not in b and b != "overall"]
    other = [b for b in first if "@" in b and not b.startswith("overall")]
    cols = [*test, "overall", *other]
    if N.val_bench("overall") in first:
        cols.append(N.val_bench("overall"))
    width = max(8, *(len(m) for m in models))
    head = f"{'model':<{width}} " + " ".join(f"{c:>9}" for c in cols)
    lines = [head, "-" * len(head)]
    for m in models:
        lines.append(
            f"{m:<{width}} " + " ".join(f"{scores[m].get(c, float('nan')):>9.3f}" for c in cols)
        )
    return "\n".join(lines)


def write_results(
    scores: dict[str, dict[str, float]], out_dir: str | Path, extra: dict | None = None
) -> Path:
    """`results.json` in `out_dir`: the scores and `extra` (method, steps, budget, ...)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"scores": scores, **(extra or {})}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    return out / "results.json"
