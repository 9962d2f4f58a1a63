"""The signal balance of an update (`diagnostics.signal_every`): each loss term's own
gradient, its norm and its cosine with the GRPO term's, how far the step moved the weights
along each term's descent direction, and the references that make those readable
(copd/common/names.py `signal_key`). copd/train/update.py measures them during a step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from copd.common import names as N

if TYPE_CHECKING:
    from copd.policy.models import Branch


def flat_grad(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [
            (p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().flatten()
            for p in params
        ]
    )


def signal_from_grads(grads: dict[str, torch.Tensor], out: dict, empty: set[str]) -> None:
    """Each term's gradient norm and the OPD terms' cosines with the GRPO term's. A term
    with no learning signal (`empty`: every group zero-advantage) has no gradient to
    measure: its norm is NaN, not 0, and so is a cosine with it, as is a cosine with a
    zero gradient (undefined), so averages over updates leave them out instead of
    counting them as orthogonal."""
    nan = float("nan")
    for label, g in grads.items():
        key = N.signal_key("grad_norm", None if label == "grpo" else label)
        out[key] = nan if label in empty else float(g.norm())
    native = grads.get("grpo")
    for label, g in grads.items():
        if label != "grpo" and native is not None:
            denom = float(native.norm() * g.norm())
            ok = denom > 0 and not {label, "grpo"} & empty
            out[N.signal_key("cos", label)] = float(native @ g) / denom if ok else nan


def flat_params(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in params])


def movement(grads: dict[str, torch.Tensor], delta: torch.Tensor, out: dict, empty) -> None:
    """How far the step moved the weights along each term's descent direction,
    -delta . g / |g| (the step after the clip and the optimizer's normalisation, so what
    the weights did, not what the gradients asked for), and the step's length `move/all`.
    NaN for a term with no gradient."""
    out[N.SIGNAL_PREFIX + "move/all"] = float(delta.norm())
    for label, g in grads.items():
        n = float(g.norm())
        ok = n > 0 and label not in empty
        key = N.signal_key("move", None if label == "grpo" else label)
        out[key] = float(-(delta @ g)) / n if ok else float("nan")


def reference_signal(
    backward: Callable[[Any], dict[str, float]],
    branch: Branch,
    specs: list,
    out: dict,
    grads: dict[str, torch.Tensor],
    empty: set[str],
) -> None:
    """References for reading a combined step's signal balance, measured on the side (the
    step's gradients are restored): `grad_norm_matched/grpo`, the GRPO term's gradient
    norm over as many native rows as the first cross term has (whole groups, normalised
    on their own), so the OPD/GRPO ratio can be read at equal rows; `cos_halves/grpo`, the
    cosine between the GRPO gradients of the native batch's two halves (two batches of
    one domain): what sampling noise alone leaves of a cosine; `cos_peer/grpo`, the cosine
    between the step's GRPO gradient (own domain) and a GRPO gradient on the first cross
    batch (the peer's prompts, the branch's own samples, the peer's verifier rewards): what
    two domains' outcome gradients share, the reference for an OPD-GRPO cosine near 0;
    `cos_peer_rl/<teacher>`, per cross term, the cosine of its OPD gradient with that GRPO
    gradient on its own cross batch (the teacher's prompts and rewards): whether
    distillation points where the peer's own RL would. NaN where a part has no learning
    signal. `backward(spec)`: one term's forward and backward into the branch's gradients
    (copd/train/update.py), returning its statistics."""
    native = next(s for s in specs if s.teacher is None)
    cross = next(s for s in specs if s.teacher is not None)
    params = branch.params
    saved = [None if p.grad is None else p.grad.clone() for p in params]
    G = native.batch.group_size
    P = native.batch.size // G

    def grad_of(lo: int, hi: int) -> torch.Tensor | None:
        branch.optimizer.zero_grad(set_to_none=True)
        part = replace(native, batch=native.batch.subset(list(range(lo * G, hi * G))))
        live = backward(part).get(N.SIGNAL_FRAC, 0.0) > 0
        return flat_grad(params) if live else None

    nan = float("nan")
    k = max(1, min(P, cross.batch.size // G))
    g = grad_of(0, k)
    out[N.signal_key("grad_norm_matched")] = nan if g is None else float(g.norm())
    if P >= 2:
        a, b = grad_of(0, P // 2), grad_of(P // 2, P)
        out[N.signal_key("cos_halves")] = cosine(a, b)
    for spec in specs:
        if spec.teacher is None:
            continue
        branch.optimizer.zero_grad(set_to_none=True)
        peer = backward(replace(native, batch=spec.batch))  # GRPO on the cross batch
        g_peer = flat_grad(params) if peer.get(N.SIGNAL_FRAC, 0.0) > 0 else None
        if spec is cross:
            out[N.signal_key("cos_peer")] = cosine(grads["grpo"], g_peer)
        g_opd = None if spec.label in empty else grads.get(spec.label)
        out[N.signal_key("cos_peer_rl", spec.teacher)] = cosine(g_opd, g_peer)
    for p, gr in zip(params, saved, strict=True):
        p.grad = gr


def cosine(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    denom = 0.0 if a is None or b is None else float(a.norm() * b.norm())
    return float(a @ b) / denom if denom > 0 else float("nan")


def solo_move(branch: Branch, g: torch.Tensor, clip: float) -> float:
    """How far a step on the GRPO term alone (its gradient `g`, clipped alone) would move
    the weights along its descent direction from this very state: the counterfactual of a
    combined phase-II step, so move/grpo over move_solo/grpo is what adding the OPD terms
    did to the GRPO term's progress. The step is taken and undone: weights, gradients and
    the optimizer's state are restored."""
    params = branch.params
    saved = [p.detach().clone() for p in params]
    grads = [None if p.grad is None else p.grad.clone() for p in params]
    state = copy.deepcopy(branch.optimizer.state_dict())
    offset = 0
    for p in params:
        p.grad = g[offset : offset + p.numel()].view_as(p).to(p.dtype).clone()
        offset += p.numel()
    torch.nn.utils.clip_grad_norm_(params, clip)
    branch.optimizer.step()
    delta = flat_params(params) - torch.cat([x.float().flatten() for x in saved])
    with torch.no_grad():
        for p, x, gr in zip(params, saved, grads, strict=True):
            p.copy_(x)
            p.grad = gr
    branch.optimizer.load_state_dict(state)
    n = float(g.norm())
    return float(-(delta @ g)) / n if n > 0 else float("nan")
