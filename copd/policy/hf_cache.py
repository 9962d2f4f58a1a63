"""Hugging Face forward helpers shared by the sampler and the scoring passes.

    kw = cache_kw(model)                          # "cache" or "past_key_values"
    out = model(input_ids=..., use_cache=True, **{kw: cache})
    cache = out_cache(out)
    mask = step_mask(mask_B_L, dense_mask_dtype(model))   # a decode step's attention mask

A leaf module: it imports only torch (and reads a model's forward signature), so the
sampler, the vision-language path and the scoring passes can all use it.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn


def hf_model(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def cache_kw(model) -> str:
    """transformers 5.2x renamed the forward keyword `past_key_values` to `cache`; pick the
    one this model's forward accepts (looking through a peft wrapper)."""
    target = hf_model(model)
    cached = getattr(target, "_copd_cache_kw", None)
    if cached:
        return cached
    params = inspect.signature(target.forward).parameters
    kw = "cache" if "cache" in params else "past_key_values"
    target._copd_cache_kw = kw
    return kw


def out_cache(out):
    """The KV cache of a forward's outputs (under either keyword's name)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def dense_mask_dtype(model) -> torch.dtype | None:
    """The dtype of a ready-made additive mask this model's attention takes as is (eager
    and SDPA do; flash kernels want the 2-D mask): the model's dtype, or None."""
    target = hf_model(model)
    impl = getattr(getattr(target, "config", None), "_attn_implementation", None)
    dtype = getattr(target, "dtype", None)
    return dtype if impl in ("eager", "sdpa") and dtype is not None else None


def step_mask(mask_B_L: Tensor, dtype: torch.dtype | None) -> Tensor:
    """The attention mask of a one-token decode step. With a `dtype`: the additive
    [B, 1, 1, L] mask that eager and SDPA attention take as is (0 where a key is visible,
    the dtype's minimum at padding), which skips the model's generic mask builder, a
    fixed cost per call that is a sizeable part of a small model's decode step."""
    if dtype is None:
        return mask_B_L
    hidden = mask_B_L[:, None, None, :] == 0
    return torch.zeros(hidden.shape, dtype=dtype, device=hidden.device).masked_fill_(
        hidden, torch.finfo(dtype).min
    )
