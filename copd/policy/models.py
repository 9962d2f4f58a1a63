"""Policies and branches: load a base model, make K branches of it, view any of them.

    base, tok = load_policy("path/to/hf_dir")   # "demo": copd.builders.demo_base.resolve_model_path
    branches, base_view = make_branches(base, cfg, tasks, devices)
    with branches[0].view.use() as m:  logits = m(...)   # the branch's live policy

Two kinds of branch:
- `full`: every branch is a full-weight copy of the base on its own device, with its own
  AdamW state. The base itself is kept frozen for the vs-base diagnostics and the merge.
- `lora`: one frozen base in memory with one peft LoRA adapter per branch; a branch is the
  base plus its adapter (`set_adapter`), the base alone is `disable_adapter()`. All LoRA
  branches live on one device (they share the base's weights).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from copd.policy.hf_cache import hf_model
from copd.spec import ConfigError, ModelConfig, RunConfig
from copd.tasks import Task

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_policy(path: str, dtype: str = "float32", gguf_file: str | None = None, device="cpu"):
    """Load a causal LM and its tokenizer from a local directory (or a hub name where the
    machine has network). The tokenizer pads on the left; a missing pad token is the eos.
    A vision-language model directory gives (model, processor) instead (copd/policy/vlm.py)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if not p.exists() and (path.startswith((".", "/", "~")) or p.suffix):
        raise ConfigError(f"model.path: {path} does not exist; give a model directory or 'demo'")
    if not gguf_file:
        from copd.policy.vlm import is_vlm_dir, load_vlm

        if is_vlm_dir(path):  # a vision-language model: (model, processor), see copd/policy/vlm.py
            return load_vlm(path, DTYPES[dtype], device)
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    tok = AutoTokenizer.from_pretrained(path, **kw)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype], **kw)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model.config.pad_token_id = tok.pad_token_id
    model.to(device)
    return model, tok


@dataclass
class PolicyView:
    """How to run one policy: a module, plus which LoRA adapter to activate (or none).

    `base_only` runs a LoRA model with its adapters disabled (the frozen base)."""

    module: nn.Module
    adapter: str | None = None
    base_only: bool = False

    @contextmanager
    def use(self) -> Iterator[nn.Module]:
        if self.base_only:
            with self.module.disable_adapter():
                yield self.module
        else:
            if self.adapter is not None:
                self.module.set_adapter(self.adapter)
            yield self.module

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device


@dataclass
class Branch:
    """One branch: name, task, live policy view, trainable parameters, optimizer, device."""

    name: str
    task: Task
    view: PolicyView
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    kind: str  # "full" | "lora"

    @property
    def device(self) -> torch.device:
        return self.view.device

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Full weights (full branch) or the adapter's weights (LoRA), detached copies."""
        if self.kind == "full":
            return {k: v.detach().clone() for k, v in self.view.module.state_dict().items()}
        from peft import get_peft_model_state_dict

        return {
            k: v.detach().clone()
            for k, v in get_peft_model_state_dict(
                self.view.module, adapter_name=self.view.adapter
            ).items()
        }

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        if self.kind == "full":
            self.view.module.load_state_dict(state)
        else:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.view.module, state, adapter_name=self.view.adapter)

    def snapshot(self) -> PolicyView:
        """A frozen copy of this branch's current policy (teacher snapshots)."""
        if self.kind == "full":
            frozen = copy.deepcopy(self.view.module).eval()
            frozen.requires_grad_(False)
            return PolicyView(frozen)
        name = f"{self.name}__snapshot"
        peft_model = self.view.module
        if name not in peft_model.peft_config:
            peft_model.add_adapter(name, copy.deepcopy(peft_model.peft_config[self.view.adapter]))
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(peft_model, self.trainable_state(), adapter_name=name)
        for n, p in peft_model.named_parameters():
            if f".{name}." in n:
                p.requires_grad_(False)
        return PolicyView(peft_model, adapter=name)


def pick_devices(specs: Sequence[str]) -> list[torch.device]:
    """Resolve `auto` to one CUDA device per branch round-robin, or CPU without CUDA."""
    n_gpu = torch.cuda.device_count()
    out = []
    for i, s in enumerate(specs):
        if s == "auto":
            out.append(torch.device(f"cuda:{i % n_gpu}") if n_gpu else torch.device("cpu"))
        else:
            if s.startswith("cuda") and not torch.cuda.is_available():
                raise ConfigError(
                    f"branches device {s!r}: no CUDA device here; use 'auto' or 'cpu'"
                )
            out.append(torch.device(s))
    return out


# "auto" picks eager attention on the CPU only for models whose context is this short:
# eager materialises the [B, heads, q, k] attention weights, which a long context (a real
# model's) would make huge, while at short contexts it is the faster kernel on the CPU.
EAGER_MAX_CONTEXT = 512


def set_attention(model: nn.Module, impl: str, device) -> str:
    """Switch `model`'s attention kernel (through a peft wrapper) and return it. `"auto"`:
    eager on the CPU for short-context models (the demo's; the CPU SDPA kernel's fixed cost
    per call dominates at their shapes), SDPA otherwise (GPUs, real models)."""
    target = hf_model(model)
    if impl == "auto":
        cfg = getattr(target, "config", None)
        text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        context = getattr(text, "max_position_embeddings", None) or 10**9
        cpu = torch.device(device).type == "cpu"
        impl = "eager" if cpu and context <= EAGER_MAX_CONTEXT else "sdpa"
    if hasattr(target, "set_attn_implementation"):
        target.set_attn_implementation(impl)
    return impl


def _adamw(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # The fused kernel (CPU and CUDA) updates every tensor in one call per step: the
    # same update as the per-parameter loop to float rounding, 3-5 ms less per step
    # on the demo model (docs/PERFORMANCE.md).
    params = list(params)
    fused = bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params
    )
    return torch.optim.AdamW(
        params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999), fused=fused or None
    )


def make_branches(
    base: nn.Module, cfg: RunConfig, tasks: dict[str, Task], names: Sequence[str] | None = None
) -> tuple[list[Branch], PolicyView]:
    """K branches from one base (all identical at start) and a view of the frozen base."""
    names = list(names or cfg.branch_names)
    specs = {b.name: b for b in cfg.branches}
    # A policy that is not one of cfg.branches (the mixed-GRPO or MOPD student) learns every
    # domain: it sits on the first branch's device and nominally carries its task.
    specs.update({n: replace(cfg.branches[0], name=n) for n in names if n not in specs})
    devices = pick_devices([specs[n].device for n in names])
    base.requires_grad_(False)
    base.eval()  # no dropout in rollouts or updates (tiny models have none; real ones may)
    if cfg.model.branch_kind == "full":
        branches = []
        for name, dev in zip(names, devices, strict=True):
            m = copy.deepcopy(base).to(dev)
            set_attention(m, cfg.model.attn_implementation, dev)
            m.requires_grad_(True)
            params = [p for p in m.parameters() if p.requires_grad]
            opt = _adamw(params, cfg.grpo.lr, cfg.grpo.weight_decay)
            branches.append(
                Branch(name, tasks[specs[name].task], PolicyView(m), params, opt, "full")
            )
        base = base.to(devices[0])
        set_attention(base, cfg.model.attn_implementation, devices[0])
        return branches, PolicyView(base)
    # LoRA: one shared base with an adapter per branch.
    if len(set(devices)) > 1:
        raise ConfigError("branches.device: LoRA branches share one base; put them on one device")
    from peft import LoraConfig, get_peft_model

    from copd.policy.vlm import lora_targets

    lc = cfg.model.lora
    lora_cfg = LoraConfig(
        r=lc.r,
        lora_alpha=lc.alpha,
        lora_dropout=lc.dropout,
        target_modules=lora_targets(base, lc.target_modules),  # a VLM: language model only
        task_type="CAUSAL_LM",
    )
    base = base.to(devices[0])
    set_attention(base, cfg.model.attn_implementation, devices[0])
    peft_model = get_peft_model(base, lora_cfg, adapter_name=names[0])
    for name in names[1:]:
        peft_model.add_adapter(name, copy.deepcopy(lora_cfg))
    # peft initialises each adapter's A randomly: give every branch the same start.
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    first = get_peft_model_state_dict(peft_model, adapter_name=names[0])
    for name in names[1:]:
        set_peft_model_state_dict(peft_model, first, adapter_name=name)
    branches = []
    for name in names:
        params = [p for n, p in peft_model.named_parameters() if f".{name}." in n and "lora_" in n]
        for p in params:
            p.requires_grad_(True)
        opt = _adamw(params, cfg.grpo.lr, cfg.grpo.weight_decay)
        view = PolicyView(peft_model, adapter=name)
        branches.append(Branch(name, tasks[specs[name].task], view, params, opt, "lora"))
    return branches, PolicyView(peft_model, base_only=True)


def lora_scaling(cfg: ModelConfig) -> float:
    return cfg.lora.alpha / cfg.lora.r


def base_state_dict(base_view: PolicyView) -> dict[str, torch.Tensor]:
    """The frozen base's weights keyed like a plain (non-peft) model."""
    m = base_view.module
    if hasattr(m, "get_base_model"):
        sd = m.get_base_model().state_dict()
        # peft wraps targeted Linear layers: `...q_proj.base_layer.weight` -> `...q_proj.weight`
        return {
            k.replace(".base_layer.", "."): v.detach().clone()
            for k, v in sd.items()
            if "lora_" not in k
        }
    return {k: v.detach().clone() for k, v in m.state_dict().items()}
