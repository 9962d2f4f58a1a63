"""Optimizer steps over loss terms: PPO epochs x mini-batches, and the signal balance.

res = optimize(world, branch, [TermSpec(1.0, native), TermSpec(w, cross, "rev", scores)])
res.stats[i], res.grad_norm, res.signal      # per-term statistics, grad norm, balance
term, grad_norm = grpo_update(world, branch, batch)          # GRPO alone

Every optimizer step is `step`: for each term, for each slice of its rows (the whole
batch unless `grpo.micro_batch_rows`), forward and backward; the term's gradient is
measured when the signal balance asks for it (and clipped on its own with
`grpo.clip_per_term`); then one tail: zero gradients when no term had a graph, the clip,
the optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from copd.common import names as N
from copd.math.losses import normaliser
from copd.policy.batch import TeacherScores
from copd.policy.rollout import RolloutBatch
from copd.train.signal import (
    flat_grad,
    flat_params,
    movement,
    reference_signal,
    signal_from_grads,
    solo_move,
)
from copd.train.terms import LossTerm, grpo_term, logp_and_entropy, opd_term

if TYPE_CHECKING:
    from copd.policy.models import Branch
    from copd.train.settings import LossSettings
    from copd.train.world import World


@dataclass
class TermSpec:
    """One loss term of an update: GRPO on a native batch (`teacher` None), or OPD on a
    cross batch with the teacher's scores (`World.score_opd`)."""

    weight: float
    batch: RolloutBatch
    teacher: str | None = None
    scores: TeacherScores | None = None

    def __post_init__(self) -> None:  # a bare tensor: the teacher's log-probs
        if self.scores is not None:
            self.scores = TeacherScores.of(self.scores)

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


def optimize(
    world: World, branch: Branch, specs: list[TermSpec], measure_signal: bool = False
) -> Updated:
    """The optimizer steps of one set of rollout batches: `grpo.updates_per_batch` epochs of
    `grpo.minibatches` mini-batches (whole prompt groups of every batch), one step each.

    The PPO ratio is taken against the sampling policy's log-probs: with one mini-batch
    the first pass records them at no extra cost; with several, or with micro-batch
    slices over several epochs (a slice is a new sub-batch each step, so it cannot carry
    them to the next epoch), one no-grad forward records them for every row first (verl's
    old_log_prob), so the clipped ratio acts from the second step on. `measure_signal`
    records the signal balance of the first step."""
    loss = world.loss
    M = loss.minibatches
    if M > 1 or (loss.micro_batch_rows and loss.updates_per_batch > 1):
        for spec in specs:
            _record_old_logp(world, branch, spec)
    parts = [_split(spec, M) for spec in specs]
    sums: list[dict[str, float]] = [{} for _ in specs]
    counts = [0 for _ in specs]
    signal: dict[str, float] = {}
    grad_norm, steps = 0.0, 0
    for epoch in range(loss.updates_per_batch):
        for m in range(M):
            live = [(i, p[m]) for i, p in enumerate(parts) if p[m] is not None]
            first = measure_signal and epoch == 0 and m == 0
            grad_norm, term_stats = step(
                world, branch, [s for _, s in live], signal if first else None
            )
            steps += 1
            for (i, _), st in zip(live, term_stats, strict=True):
                counts[i] += 1
                for k, v in st.items():
                    sums[i][k] = sums[i].get(k, 0.0) + v
    stats = [{k: v / max(1, n) for k, v in d.items()} for d, n in zip(sums, counts, strict=True)]
    return Updated(stats, grad_norm, signal, steps)


def step(
    world: World, branch: Branch, specs: list[TermSpec], signal: dict[str, float] | None = None
) -> tuple[float, list[dict[str, float]]]:
    """One optimizer step on the weighted sum of the terms; returns the grad norm and each
    term's statistics.

    Each term goes through the model slice by slice (`slices`), each slice's loss
    backpropagated before the next slice's forward, so activations are held for one slice
    only; the terms come from separate forwards, so the sum of their gradients is the
    combined gradient. With `signal` (a dict to fill) each term's weighted gradient is
    measured: its norm and, per OPD term, its cosine with the GRPO term's
    (`names.signal_key`). With `grpo.clip_per_term` (and more than one term) each term's
    gradient is clipped to `grpo.grad_clip` on its own and the clipped gradients are
    summed (no clip of the sum), so a large OPD gradient no longer shrinks the GRPO term's
    share of a phase-II step; the signal balance measures the terms before clipping.

    A step where no term had a graph (every group had zero advantage and was skipped)
    still steps, on zero gradients, as a full pass would: Adam's moments decay, weight
    decay applies and the step count advances."""
    loss = world.loss
    params = branch.params
    per_term = loss.clip_per_term and len(specs) > 1
    branch.optimizer.zero_grad(set_to_none=True)
    grads: dict[str, torch.Tensor] = {}  # each term's own gradient, before any clip
    clipped: list[torch.Tensor] | None = None  # per-term clipping: the sum of the clips
    before: torch.Tensor | None = None  # the gradient accumulated by the earlier terms
    stats: list[dict[str, float]] = []
    empty: set[str] = set()  # terms with no learning signal (every group zero-advantage)
    for spec in specs:
        if per_term:
            branch.optimizer.zero_grad(set_to_none=True)
        stats.append(_backward(world, branch, spec))
        if signal is not None:
            now = flat_grad(params)
            grads[spec.label] = now if before is None else now - before
            before = None if per_term else now
            if stats[-1].get(N.SIGNAL_FRAC) == 0.0:
                empty.add(spec.label)
        if per_term:
            with world.timer("update"):
                torch.nn.utils.clip_grad_norm_(params, loss.grad_clip)  # this term alone
                term_grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
                clipped = (
                    term_grads
                    if clipped is None
                    else [a + b for a, b in zip(clipped, term_grads, strict=True)]
                )
    if signal is not None:
        signal_from_grads(grads, signal, empty)
        if len(grads) > 1 and "grpo" in grads and "grpo" not in empty:
            signal[N.signal_key("move_solo")] = solo_move(branch, grads["grpo"], loss.grad_clip)
            backward = lambda spec: _backward(world, branch, spec)  # noqa: E731
            reference_signal(backward, branch, specs, signal, grads, empty)
        before = flat_params(params)
    with world.timer("update"):
        if clipped is not None:
            for p, g in zip(params, clipped, strict=True):
                p.grad = g
            grad_norm = float(flat_grad(params).norm())
        else:
            if all(p.grad is None for p in params):  # no term had a graph
                for p in params:
                    p.grad = torch.zeros_like(p)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, loss.grad_clip))
        branch.optimizer.step()
    if signal is not None:
        movement(grads, flat_params(params) - before, signal, empty)
    return grad_norm, stats


# Statistics that add up over slices (each is the slice's share of the batch loss); the
# others are averaged, weighted by rows.
_SUMMED = (N.PG_LOSS, N.OPD_LOSS)


def _backward(world: World, branch: Branch, spec: TermSpec) -> dict[str, float]:
    """Forward and backward of one weighted term; its statistics. With micro-batches each
    slice's loss is normalised by the whole term's denominator (`losses.normaliser`), so
    the slices' gradients add up to the one pass's (to float rounding), and the statistics
    are combined: losses summed over slices, the rest row-weighted means."""
    loss = world.loss
    if not loss.micro_batch_rows:
        return _backward_slice(world, branch, spec, None).stats
    norm = normaliser(spec.batch.completion_mask_B_T, loss.loss_agg, loss.max_new_tokens)
    acc: dict[str, float] = {}
    rows = 0
    for part in slices(spec, loss.micro_batch_rows):
        stats = _backward_slice(world, branch, part, norm).stats
        n = part.batch.size
        for k, v in stats.items():
            acc[k] = acc.get(k, 0.0) + (v if k in _SUMMED else v * n)
        rows += n
    return {k: v if k in _SUMMED else v / max(1, rows) for k, v in acc.items()}


def _backward_slice(world: World, branch: Branch, spec: TermSpec, norm: float | None) -> LossTerm:
    term = term_of(world, branch, spec, norm)
    with world.timer("update"):
        if isinstance(term.loss, torch.Tensor) and term.loss.requires_grad:
            (spec.weight * term.loss).backward()
    return term


def slices(spec: TermSpec, rows: int) -> list[TermSpec]:
    """The term's rows as the model sees them in one pass: `rows` at a time
    (`grpo.micro_batch_rows`, whole prompt groups), or the whole term (0)."""
    if not rows:
        return [spec]
    G = spec.batch.group_size
    n = -(-(spec.batch.size // G) // max(1, rows // G))
    return [p for p in _split(spec, n) if p is not None]


def term_of(world: World, branch: Branch, spec: TermSpec, norm: float | None = None) -> LossTerm:
    """The loss term `spec` names, with the world's settings, timer and base model."""
    if spec.teacher is None:
        return grpo_term(
            branch,
            spec.batch,
            world.loss,
            world.timer,
            score_base=lambda b: world.score(world.base, b),
            norm=norm,
        )
    return opd_term(branch, spec.batch, spec.scores, world.loss, world.timer, norm)


def _record_old_logp(world: World, branch: Branch, spec: TermSpec) -> None:
    """The sampling policy's log-probs of every row, before any mini-batch step."""
    if spec.teacher is not None and world.loss.direct_opd:
        return  # the direct KL losses take no ratio
    if spec.batch.old_logp_B_T is None:
        with torch.no_grad():
            spec.batch.old_logp_B_T = torch.cat(
                [
                    _pad_T(
                        logp_and_entropy(branch, p.batch, world.loss.temperature, world.timer)[0],
                        spec.batch,
                    )
                    for p in slices(spec, world.loss.micro_batch_rows)
                ]
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
            scores = scores.rows(torch.tensor(rows, dtype=torch.long))
        out.append(TermSpec(spec.weight, spec.batch.subset(rows), spec.teacher, scores))
    return out


def grpo_update(world: World, branch: Branch, batch: RolloutBatch) -> tuple[LossTerm, float]:
    """GRPO alone on one batch (`optimize` with a single term): the term (its statistics
    averaged over the optimizer steps) and the last grad norm."""
    res = optimize(world, branch, [TermSpec(1.0, batch)], measure_signal=signal_due(world))
    stats = {**res.stats[0], **res.signal}
    return LossTerm(torch.tensor(stats.get(N.PG_LOSS, 0.0)), stats), res.grad_norm


def signal_due(world: World) -> bool:
    """Whether the update that makes step `world.state.step + 1` records the signal balance: at
    the diagnostics cadence (`schedule.diag_every`), when `diagnostics.signal_balance`."""
    every = world.cadence.schedule.diag_every
    return bool(world.cadence.signal_balance and every and (world.state.step + 1) % every == 0)


def opd_weights(loss: LossSettings, n_teachers: int) -> float:
    """The weight of each OPD term in a combined update: `opd.cross_weight` per teacher, or
    divided by the number of teachers (`opd.teacher_weighting="mean"`)."""
    return (
        loss.cross_weight
        if loss.teacher_weighting == "per_teacher"
        else loss.cross_weight / max(1, n_teachers)
    )
