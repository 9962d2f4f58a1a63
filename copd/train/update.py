"""Optimizer steps over loss terms: PPO epochs x mini-batches, and the signal balance.

res = optimize(world, branch, [TermSpec(1.0, native), TermSpec(w, cross, "rev", scores)])
res.stats[i], res.grad_norm, res.signal      # per-term statistics, grad norm, balance
term, grad_norm = grpo_update(world, branch, batch)          # GRPO alone
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from copd.common import names as N
from copd.math.losses import normaliser
from copd.policy.rollout import RolloutBatch
from copd.train.terms import LossTerm, _logp_and_entropy, grpo_term, opd_term

if TYPE_CHECKING:
    from copd.policy.models import Branch
    from copd.train.world import World


@dataclass
class TermSpec:
    """One loss term of an update: GRPO on a native batch (`teacher` None), or OPD on a
    cross batch with the teacher's scores (`World.score_opd`)."""

    weight: float
    batch: RolloutBatch
    teacher: str | None = None
    scores: torch.Tensor | dict[str, torch.Tensor] | None = None

    @property
    def label(self) -> str:
        return self.teacher or "grpo"


@dataclass
class Updated:
    """What `optimize` reports: each term's statistics (averaged over its optimizer steps),
    the grad norm of the last step, and the signal balance of the first step (if asked)."""

    stats: list[dict[str, float]]
    grad_norm: float
    signal: dict[str, float] = field(default_factory=dict)
    steps: int = 1


def update(
    world: World,
    branch: Branch,
    terms: list[tuple[float, LossTerm]],
    labels: list[str] | None = None,
    signal: dict[str, float] | None = None,
) -> float:
    """One optimizer step on the weighted sum of loss terms; returns the grad norm.

    With `signal` (a dict to fill) and `labels` (one per term, "grpo" or a teacher name),
    each term is backpropagated on its own (the terms come from separate forwards, so the
    sum of their gradients is the combined gradient) and the signal balance is recorded:
    the norm of each weighted term's gradient and, per OPD term, its cosine with the GRPO
    term's gradient (`names.signal_key`).

    A loss with no graph (every group of every term had zero advantage and was skipped)
    still makes the step, on zero gradients, as a full pass would: Adam's moments decay,
    weight decay applies and the step count advances."""
    with world.timer("update"):
        branch.optimizer.zero_grad(set_to_none=True)
        if world.cfg.grpo.clip_per_term and len(terms) > 1:
            gn = _clipped_per_term(world, branch, terms, labels, signal)
            branch.optimizer.step()
            return gn
        if signal is not None and labels is not None:
            _backward_per_term(branch, terms, labels, signal)
        else:
            loss = sum(w * t.loss for w, t in terms)
            if isinstance(loss, torch.Tensor) and loss.requires_grad:
                loss.backward()
        if all(p.grad is None for p in branch.params):  # no term had a graph
            for p in branch.params:
                p.grad = torch.zeros_like(p)
        gn = torch.nn.utils.clip_grad_norm_(branch.params, world.cfg.grpo.grad_clip)
        branch.optimizer.step()
    return float(gn)


def _clipped_per_term(
    world: World,
    branch: Branch,
    terms: list[tuple[float, LossTerm]],
    labels: list[str] | None,
    signal: dict[str, float] | None,
) -> float:
    """`grpo.clip_per_term`: each weighted term's gradient is clipped to `grpo.grad_clip`
    on its own and the clipped gradients are summed (no clip of the sum), so a large OPD
    gradient no longer shrinks the GRPO term's share of a phase-II step. The signal
    balance, when asked, measures the terms before clipping. Returns the sum's norm."""
    params, clip = branch.params, world.cfg.grpo.grad_clip
    total: list[torch.Tensor] | None = None
    raw: dict[str, torch.Tensor] = {}
    for i, (w, term) in enumerate(terms):
        branch.optimizer.zero_grad(set_to_none=True)
        if isinstance(term.loss, torch.Tensor) and term.loss.requires_grad:
            (w * term.loss).backward()
        if signal is not None:
            raw[labels[i] if labels else str(i)] = _flat_grad(params)
        torch.nn.utils.clip_grad_norm_(params, clip)  # this term alone
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        total = grads if total is None else [a + b for a, b in zip(total, grads, strict=True)]
    for p, g in zip(params, total or [], strict=True):
        p.grad = g
    if signal is not None and labels is not None:
        _signal_from_grads(raw, signal)
    return float(_flat_grad(params).norm())


def _flat_grad(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [
            (p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().flatten()
            for p in params
        ]
    )


def _backward_per_term(
    branch: Branch, terms: list[tuple[float, LossTerm]], labels: list[str], out: dict
) -> None:
    grads: dict[str, torch.Tensor] = {}
    before = None
    for (w, term), label in zip(terms, labels, strict=True):
        if isinstance(term.loss, torch.Tensor) and term.loss.requires_grad:
            (w * term.loss).backward()
        now = _flat_grad(branch.params)
        grads[label] = now if before is None else now - before
        before = now
    _signal_from_grads(grads, out)


def _signal_from_grads(grads: dict[str, torch.Tensor], out: dict) -> None:
    """Each term's gradient norm and the OPD terms' cosines with the GRPO term's."""
    for label, g in grads.items():
        out[N.signal_key("grad_norm", None if label == "grpo" else label)] = float(g.norm())
    native = grads.get("grpo")
    for label, g in grads.items():
        if label != "grpo" and native is not None:
            denom = float(native.norm() * g.norm())
            out[N.signal_key("cos", label)] = float(native @ g) / denom if denom > 0 else 0.0


def optimize(
    world: World, branch: Branch, specs: list[TermSpec], measure_signal: bool = False
) -> Updated:
    """The optimizer steps of one set of rollout batches: `grpo.updates_per_batch` epochs of
    `grpo.minibatches` mini-batches (whole prompt groups of every batch), one step each.

    The PPO ratio is taken against the sampling policy's log-probs: with one mini-batch
    the first pass records them at no extra cost; with several, one no-grad forward
    records them for every row first (verl's old_log_prob), so the clipped ratio acts from
    the second mini-batch on. `measure_signal` records the signal balance of the first step."""
    g = world.cfg.grpo
    M = g.minibatches
    if M > 1:
        for spec in specs:
            _record_old_logp(world, branch, spec)
    parts = [_split(spec, M) for spec in specs]
    sums: list[dict[str, float]] = [{} for _ in specs]
    counts = [0 for _ in specs]
    signal: dict[str, float] = {}
    grad_norm, steps = 0.0, 0
    for epoch in range(g.updates_per_batch):
        for m in range(M):
            live = [(i, p[m]) for i, p in enumerate(parts) if p[m] is not None]
            first = measure_signal and epoch == 0 and m == 0
            if g.micro_batch_rows:
                grad_norm, term_stats = accumulate(
                    world, branch, [s for _, s in live], signal if first else None
                )
            else:
                terms = [(s.weight, _term(world, branch, s)) for _, s in live]
                grad_norm = update(
                    world,
                    branch,
                    terms,
                    labels=[s.label for _, s in live] if first else None,
                    signal=signal if first else None,
                )
                term_stats = [t.stats for _, t in terms]
            steps += 1
            for (i, _), st in zip(live, term_stats, strict=True):
                counts[i] += 1
                for k, v in st.items():
                    sums[i][k] = sums[i].get(k, 0.0) + v
    stats = [{k: v / max(1, n) for k, v in d.items()} for d, n in zip(sums, counts, strict=True)]
    return Updated(stats, grad_norm, signal, steps)


def _term(world: World, branch: Branch, spec: TermSpec, norm: float | None = None) -> LossTerm:
    if spec.teacher is None:
        return grpo_term(world, branch, spec.batch, norm)
    return opd_term(world, branch, spec.batch, spec.scores, norm)


# Statistics that add up over micro-batches (each is the slice's share of the batch loss);
# the others are averaged, weighted by rows.
_SUMMED = (N.PG_LOSS, N.OPD_LOSS)


def accumulate(
    world: World, branch: Branch, specs: list[TermSpec], signal: dict[str, float] | None = None
) -> tuple[float, list[dict[str, float]]]:
    """One optimizer step by gradient accumulation: each term's rows go through the model
    `grpo.micro_batch_rows` at a time (whole prompt groups), each slice's loss normalised
    by the whole term's denominator (`losses.normaliser`) and backpropagated before the
    next slice's forward, so activations are held for one slice only and the gradient is
    the one pass's (to float rounding). Returns the grad norm and each term's statistics
    (losses summed over slices, the rest row-weighted means). With `signal`, each term's
    accumulated gradient is measured as in `update`."""
    g = world.cfg.grpo
    max_len = world.cfg.sampling.max_new_tokens
    branch.optimizer.zero_grad(set_to_none=True)
    grads: dict[str, torch.Tensor] = {}
    before = None
    out: list[dict[str, float]] = []
    for spec in specs:
        norm = normaliser(spec.batch.completion_mask_B_T, g.loss_agg, max_len)
        G = spec.batch.group_size
        per_slice = max(1, g.micro_batch_rows // G)
        P = spec.batch.size // G
        acc: dict[str, float] = {}
        rows = 0
        for part in _split(spec, -(-P // per_slice)):
            if part is None:
                continue
            term = _term(world, branch, part, norm)
            with world.timer("update"):
                if isinstance(term.loss, torch.Tensor) and term.loss.requires_grad:
                    (spec.weight * term.loss).backward()
            n = part.batch.size
            for k, v in term.stats.items():
                acc[k] = acc.get(k, 0.0) + (v if k in _SUMMED else v * n)
            rows += n
        out.append({k: v if k in _SUMMED else v / max(1, rows) for k, v in acc.items()})
        if signal is not None:
            now = _flat_grad(branch.params)
            grads[spec.label] = now if before is None else now - before
            before = now
    if signal is not None:
        _signal_from_grads(grads, signal)
    with world.timer("update"):
        if all(p.grad is None for p in branch.params):  # no slice had a graph
            for p in branch.params:
                p.grad = torch.zeros_like(p)
        gn = torch.nn.utils.clip_grad_norm_(branch.params, g.grad_clip)
        branch.optimizer.step()
    return float(gn), out


def _record_old_logp(world: World, branch: Branch, spec: TermSpec) -> None:
    """The sampling policy's log-probs of every row, before any mini-batch step."""
    if spec.teacher is not None and world.cfg.opd.advantage != "sampled":
        return  # the direct KL losses take no ratio
    if "old_logp_B_T" not in spec.batch.extras:
        rows = world.cfg.grpo.micro_batch_rows
        G = spec.batch.group_size
        n = -(-(spec.batch.size // G) // max(1, rows // G)) if rows else 1
        with torch.no_grad():
            parts = [p for p in _split(spec, n) if p is not None]
            spec.batch.extras["old_logp_B_T"] = torch.cat(
                [_pad_T(_logp_and_entropy(world, branch, p.batch)[0], spec.batch) for p in parts]
            )


def _pad_T(logp_b_T: torch.Tensor, batch: RolloutBatch) -> torch.Tensor:
    """A slice's log-probs widened to the whole batch's completion length (zeros after)."""
    T = batch.completion_ids_B_T.shape[1]
    if logp_b_T.shape[1] == T:
        return logp_b_T
    return torch.nn.functional.pad(logp_b_T, (0, T - logp_b_T.shape[1]))


def _split(spec: TermSpec, M: int) -> list[TermSpec | None]:
    """`M` mini-batch terms of whole prompt groups (near-equal; None where a part is empty)."""
    if M == 1:
        return [spec]
    G = spec.batch.group_size
    P = spec.batch.size // G
    bounds = [round(i * P / M) for i in range(M + 1)]
    out: list[TermSpec | None] = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        if hi <= lo:
            out.append(None)
            continue
        rows = list(range(lo * G, hi * G))
        scores = spec.scores
        if scores is not None:
            idx = torch.tensor(rows, dtype=torch.long)
            if isinstance(scores, dict):
                scores = {k: v[idx.to(v.device)] for k, v in scores.items()}
            else:
                scores = scores[idx.to(scores.device)]
        out.append(TermSpec(spec.weight, spec.batch.subset(rows), spec.teacher, scores))
    return out


def grpo_update(world: World, branch: Branch, batch: RolloutBatch) -> tuple[LossTerm, float]:
    """GRPO alone on one batch (`optimize` with a single term): the term (its statistics
    averaged over the optimizer steps) and the last grad norm."""
    res = optimize(world, branch, [TermSpec(1.0, batch)], measure_signal=signal_due(world))
    stats = {**res.stats[0], **res.signal}
    return LossTerm(torch.tensor(stats.get(N.PG_LOSS, 0.0)), stats), res.grad_norm


def signal_due(world: World) -> bool:
    """Whether the update that makes step `world.step + 1` records the signal balance: at
    the diagnostics cadence (`schedule.diag_every`), when `diagnostics.signal_balance`."""
    every = world.cfg.schedule.diag_every
    return bool(world.cfg.diagnostics.signal_balance and every and (world.step + 1) % every == 0)


def opd_weights(world: World, n_teachers: int) -> float:
    """The weight of each OPD term in a combined update: `opd.cross_weight` per teacher, or
    divided by the number of teachers (`opd.teacher_weighting="mean"`)."""
    o = world.cfg.opd
    return (
        o.cross_weight
        if o.teacher_weighting == "per_teacher"
        else o.cross_weight / max(1, n_teachers)
    )
