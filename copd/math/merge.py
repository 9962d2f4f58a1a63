"""Parameter merging of branches, pure over state dicts (dict[str, Tensor]).

CoPD ends by merging its K branches into one model ("simple parameter merging", paper
§2.6); the method and weights are not given, so uniform averaging is the default and the
alternatives are here for ablations and the weight-average baseline:

    merged = merge("average", None, [sd_a, sd_b])                   # uniform mean
    merged = merge("weighted", None, [sd_a, sd_b], weights=(3, 1))   # normalised weights
                                                  # ("average" with weights: the same)
    merged = merge("task_arithmetic", base, [sd_a, sd_b], scale=1.0) # base + scale * mean delta
    merged = merge("ties", base, [sd_a, sd_b], density=0.2)          # TIES-merging

Branches trained as LoRA adapters are merged in weight-delta space, by the same methods:

    merged = merge_lora(base, [peft_state_a, peft_state_b], scaling=lora_alpha / r)
    merged = merge_lora(base, [peft_a, peft_b], scaling, method="ties", density=0.2)

Floating tensors are combined in float64 and cast back to their own dtype (so the mean of
identical weights is bit-exact); integer and bool buffers are copied from the first state
dict (or the base). Every input must have exactly the same keys and shapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from copd.spec.choices import MERGE_METHODS

StateDict = dict[str, Tensor]

_ACC = torch.float64  # accumulation dtype


def _check_compatible(ref: StateDict, other: StateDict, ref_name: str, other_name: str) -> None:
    """Same key set and the same shape per key, or a ValueError naming the first mismatch."""
    missing = [k for k in ref if k not in other]
    if missing:
        raise ValueError(f"{other_name} is missing key {missing[0]!r} present in {ref_name}")
    extra = [k for k in other if k not in ref]
    if extra:
        raise ValueError(f"{other_name} has extra key {extra[0]!r} absent from {ref_name}")
    for k, t in ref.items():
        if other[k].shape != t.shape:
            raise ValueError(
                f"shape mismatch for {k!r}: {ref_name} has {tuple(t.shape)}, "
                f"{other_name} has {tuple(other[k].shape)}"
            )


def _weights(weights: Sequence[float] | None, k: int, normalise: bool) -> list[float]:
    if weights is None or len(weights) == 0:
        return [1.0 / k] * k
    if len(weights) != k:
        raise ValueError(f"got {len(weights)} weights for {k} state dicts; give one per model")
    w = [float(x) for x in weights]
    if not normalise:
        return w
    if any(x < 0 or not math.isfinite(x) for x in w) or sum(w) <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all zero, got {w}")
    return [x / sum(w) for x in w]


def _as_list(state_dicts: Sequence[StateDict]) -> list[StateDict]:
    sds = list(state_dicts)
    if not sds:
        raise ValueError("need at least one state dict to merge")
    return sds


def average(state_dicts: Sequence[StateDict], weights: Sequence[float] | None = None) -> StateDict:
    """Element-wise sum_i w_i theta_i with w normalised to sum 1 (uniform when None)."""
    sds = _as_list(state_dicts)
    first = sds[0]
    for i, sd in enumerate(sds[1:], start=1):
        _check_compatible(first, sd, "state_dicts[0]", f"state_dicts[{i}]")
    w = _weights(weights, len(sds), normalise=True)
    out: StateDict = {}
    for key, ref in first.items():
        if not ref.is_floating_point():
            out[key] = ref.clone()
            continue
        acc = torch.zeros(ref.shape, dtype=_ACC, device=ref.device)
        for w_i, sd in zip(w, sds, strict=True):
            acc += w_i * sd[key].to(device=ref.device, dtype=_ACC)
        out[key] = acc.to(ref.dtype)
    return out


def task_arithmetic(
    base: StateDict,
    state_dicts: Sequence[StateDict],
    scale: float = 1.0,
    weights: Sequence[float] | None = None,
) -> StateDict:
    """base + scale * sum_i w_i (theta_i - base).

    w defaults to 1/K, so scale=1 with uniform weights equals `average`. Weights given
    explicitly are per-task coefficients used as they are (not normalised).
    """
    sds = _as_list(state_dicts)
    for i, sd in enumerate(sds):
        _check_compatible(base, sd, "base", f"state_dicts[{i}]")
    w = _weights(weights, len(sds), normalise=False)
    out: StateDict = {}
    for key, ref in base.items():
        if not ref.is_floating_point():
            out[key] = ref.clone()
            continue
        b = ref.to(_ACC)
        delta = torch.zeros_like(b)
        for w_i, sd in zip(w, sds, strict=True):
            delta += w_i * (sd[key].to(device=ref.device, dtype=_ACC) - b)
        out[key] = (b + scale * delta).to(ref.dtype)
    return out


def _ties_delta(deltas_K_M: Tensor, density: float) -> Tensor:
    """TIES on K flattened deltas [K, M]: trim, elect sign, disjoint mean -> [M]."""
    m = deltas_K_M.shape[1]
    n_keep = min(m, max(1, math.ceil(density * m)))
    keep_idx = deltas_K_M.abs().topk(n_keep, dim=1).indices  # ties: topk's choice
    keep = torch.zeros_like(deltas_K_M, dtype=torch.bool).scatter_(1, keep_idx, True)
    trimmed = deltas_K_M * keep
    elected_M = torch.sign(trimmed.sum(dim=0))
    agree = (torch.sign(trimmed) == elected_M) & (trimmed != 0)
    count_M = agree.sum(dim=0).clamp(min=1)
    return (trimmed * agree).sum(dim=0) / count_M


def ties(
    base: StateDict,
    state_dicts: Sequence[StateDict],
    density: float = 0.2,
    scale: float = 1.0,
) -> StateDict:
    """TIES-merging (Yadav et al., 2023) of the deltas theta_i - base, per tensor.

    1. Trim: keep the ceil(density * numel) largest-magnitude entries of each delta, zero
       the rest (at least one entry per tensor).
    2. Elect: the sign of each element is the sign of the sum of the trimmed deltas.
    3. Disjoint mean: average only the non-zero entries that agree with the elected sign
       (0 where none agree).
    Result: base + scale * merged delta.
    """
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    sds = _as_list(state_dicts)
    for i, sd in enumerate(sds):
        _check_compatible(base, sd, "base", f"state_dicts[{i}]")
    out: StateDict = {}
    for key, ref in base.items():
        if not ref.is_floating_point():
            out[key] = ref.clone()
            continue
        b = ref.to(_ACC)
        deltas_K_M = torch.stack(
            [(sd[key].to(device=ref.device, dtype=_ACC) - b).reshape(-1) for sd in sds]
        )
        if deltas_K_M.shape[1] == 0:
            out[key] = ref.clone()
            continue
        merged = _ties_delta(deltas_K_M, density).reshape(ref.shape)
        out[key] = (b + scale * merged).to(ref.dtype)
    return out


def merge(
    method: str,
    base: StateDict | None,
    state_dicts: Sequence[StateDict],
    weights: Sequence[float] = (),
    scale: float = 1.0,
    density: float = 0.2,
) -> StateDict:
    """Dispatch on `method` (the run config's merge.method).

    "average" and "weighted": mean with normalised weights (empty = uniform).
    "task_arithmetic": needs base; uses weights and scale. "ties": needs base; uses
    density and scale (weights unused; the run config refuses them).
    """
    if method in ("average", "weighted"):
        return average(state_dicts, weights or None)
    if method in ("task_arithmetic", "ties"):
        if base is None:
            raise ValueError(f"merge method {method!r} needs the base model's state dict")
        if method == "task_arithmetic":
            return task_arithmetic(base, state_dicts, scale=scale, weights=weights or None)
        return ties(base, state_dicts, density=density, scale=scale)
    raise ValueError(f"unknown merge method {method!r}; use one of {MERGE_METHODS}")


# ---------------------------------------------------------------- LoRA adapters

_PEFT_PREFIX = "base_model.model."
_LORA_KINDS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B")


def _split_lora_key(key: str) -> tuple[str, str]:
    """'base_model.model.X.q_proj.lora_A.weight' -> ('X.q_proj', 'lora_A')."""
    parts = key.split(".")
    for i, part in enumerate(parts):
        if part in _LORA_KINDS and parts[i + 1 :] in ([], ["weight"]):
            module = ".".join(parts[:i])
            if module.startswith(_PEFT_PREFIX):
                module = module[len(_PEFT_PREFIX) :]
            return module, part
    if "lora_magnitude_vector" in parts:
        raise ValueError(f"{key!r} belongs to a DoRA adapter; only plain LoRA can be merged")
    raise ValueError(
        f"{key!r} is not a LoRA factor. Pass peft.get_peft_model_state_dict(model) (not "
        "model.state_dict()), with save_embedding_layers=False and without modules_to_save "
        "or trained biases, which store full tensors rather than low-rank deltas"
    )


def lora_deltas(lora_state: StateDict, scaling: float) -> StateDict:
    """Full-weight deltas (B @ A) * scaling of a peft LoRA adapter, float32.

    lora_state is what peft.get_peft_model_state_dict(model) returns, e.g.
    'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' [r, in] and
    '...lora_B.weight' [out, r]; the result is keyed by the base model's parameter name,
    'model.layers.0.self_attn.q_proj.weight' [out, in]. Embedding adapters
    ('...embed_tokens.lora_embedding_A' [r, vocab], no '.weight') give (B @ A).T [vocab, dim].
    scaling is peft's lora_alpha / r (lora_alpha / sqrt(r) with use_rslora). Layers stored
    transposed (fan_in_fan_out, GPT-2 Conv1D) are not handled; merge_lora's shape check
    catches them unless square.
    """
    factors: dict[str, dict[str, Tensor]] = {}
    for key, tensor in lora_state.items():
        module, kind = _split_lora_key(key)
        factors.setdefault(module, {})[kind] = tensor
    out: StateDict = {}
    for module, f in factors.items():
        if "lora_A" in f or "lora_B" in f:
            a, b, transpose = f.get("lora_A"), f.get("lora_B"), False
        else:
            a, b, transpose = f.get("lora_embedding_A"), f.get("lora_embedding_B"), True
        if a is None or b is None or len(f) != 2:
            raise ValueError(
                f"LoRA module {module!r} needs exactly one A and one B, got {sorted(f)}"
            )
        delta = (b.float() @ a.float()) * scaling
        out[f"{module}.weight"] = delta.T.contiguous() if transpose else delta
    return out


def _combine_deltas(
    method: str, deltas_K: list[Tensor], w: list[float], scale: float, density: float
) -> Tensor:
    """One tensor's K deltas combined as `merge` combines full weights around a base."""
    if method == "ties":
        flat_K_M = torch.stack([d.reshape(-1) for d in deltas_K])
        if flat_K_M.shape[1] == 0:
            return torch.zeros_like(deltas_K[0])
        return scale * _ties_delta(flat_K_M, density).reshape(deltas_K[0].shape)
    total = torch.zeros_like(deltas_K[0])
    for w_i, d in zip(w, deltas_K, strict=True):
        total += w_i * d
    return scale * total if method == "task_arithmetic" else total


def merge_lora(
    base: StateDict,
    lora_states: Sequence[StateDict],
    scaling: float,
    weights: Sequence[float] | None = None,
    method: str = "average",
    scale: float = 1.0,
    density: float = 0.2,
) -> StateDict:
    """base + the adapters' full-weight deltas d_i = (B_i @ A_i) * scaling, combined by
    `method` with the same rules as `merge` on full weights:

    "average" / "weighted": sum_i w_i d_i, w normalised (uniform when None).
    "task_arithmetic": scale * sum_i w_i d_i, w as given (1/K when None).
    "ties": scale * TIES(d_1..d_K) with `density` (weights unused).

    Merging happens in full-weight delta space. Averaging the A and B factors separately
    would be wrong: mean(B) @ mean(A) != mean(B @ A), the product of means is not the mean
    of products. An adapter that does not touch a weight contributes a zero delta to it.
    Weights no adapter touches are the base's own tensors (not copied).
    """
    if method not in MERGE_METHODS:
        raise ValueError(f"unknown merge method {method!r}; use one of {MERGE_METHODS}")
    if method == "ties" and not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    states = _as_list(lora_states)
    w = _weights(weights, len(states), normalise=method != "task_arithmetic")
    deltas = [lora_deltas(s, scaling) for s in states]
    out: StateDict = dict(base)
    for key in dict.fromkeys(k for d in deltas for k in d):  # union, first-seen order
        if key not in base:
            raise ValueError(f"LoRA adapters change {key!r}, which is not in the base state dict")
        ref = base[key]
        deltas_K: list[Tensor] = []
        for d in deltas:
            if key not in d:
                deltas_K.append(torch.zeros(ref.shape, dtype=_ACC, device=ref.device))
                continue
            if d[key].shape != ref.shape:
                raise ValueError(
                    f"LoRA delta for {key!r} has shape {tuple(d[key].shape)}, "
                    f"base has {tuple(ref.shape)}"
                )
            deltas_K.append(d[key].to(device=ref.device, dtype=_ACC))
        merged = _combine_deltas(method, deltas_K, w, scale, density)
        out[key] = (ref.to(_ACC) + merged).to(ref.dtype)
    return out
