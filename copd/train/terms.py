"""The loss terms of an update: GRPO on a native batch, OPD on a cross batch.

    term = grpo_term(branch, batch, world.loss, world.timer)              # loss + stats
    term = opd_term(branch, cross, world.score_opd(teacher_view, cross), world.loss)

Each term runs its own forward of the branch (with the graph) and returns a `LossTerm`:
the scalar loss and detached statistics to log. A term reads only its arguments: the
branch, the batch, the run's `LossSettings` (copd/train/settings.py), a timer and, for a
KL penalty to the base model, a function that scores a batch under the base. The
optimizer step over terms is copd/train/update.py.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from copd.common import names as N
from copd.math.losses import (
    aggregate,
    group_advantages,
    kl_penalty,
    opd_advantage,
    policy_loss,
    topk_reverse_kl,
)
from copd.policy.batch import TeacherScores
from copd.policy.rollout import RolloutBatch, completion_logits, logprobs_from_logits
from copd.train.settings import LossSettings

if TYPE_CHECKING:
    from copd.policy.models import Branch

# A timer: `with timer("forward"):` accumulates the seconds of a part (World.timer).
TimerFn = Callable[[str], AbstractContextManager]
# Log-probs [B, T] of a batch's sampled tokens under the base model (World.score on base).
ScoreFn = Callable[[RolloutBatch], torch.Tensor]


def no_timer(_part: str) -> AbstractContextManager:
    """A timer that measures nothing."""
    return nullcontext()


@dataclass
class LossTerm:
    """A differentiable loss for one batch plus detached statistics to log."""

    loss: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


def logp_and_entropy(
    branch: Branch,
    batch: RolloutBatch,
    temperature: float,
    timer: TimerFn = no_timer,
    keep_logits: bool = False,
):
    """Log-probs [B, T] of the batch's tokens under the branch (with the graph) and the mean
    entropy; with `keep_logits` also the logits [B, T, V] (the direct OPD losses need them)."""
    with timer("forward"), branch.view.use() as model:
        logits = completion_logits(model, batch)
    logp = logprobs_from_logits(logits, batch.completion_ids_B_T, temperature)
    with torch.no_grad():
        lp = torch.log_softmax(logits.detach().float(), -1)
        ent_B_T = -(lp.exp() * lp).sum(-1)
        m = batch.completion_mask_B_T
        entropy = float((ent_B_T * m).sum() / m.sum().clamp(min=1))
    if keep_logits:
        return logp, entropy, logits
    return logp, entropy


def _old_logp(loss: LossSettings, batch: RolloutBatch, logp_B_T: torch.Tensor) -> torch.Tensor:
    """The sampling policy's log-probs for the ratio. A batch used once was sampled by the
    current weights, so they are `logp` itself (no extra pass). With several updates per
    batch (`grpo.updates_per_batch`), the first pass's values are kept in the batch for
    the later ones."""
    old = batch.old_logp_B_T
    if old is None:
        old = logp_B_T.detach()
        if loss.updates_per_batch > 1:
            batch.old_logp_B_T = old
    return old


def _trained_logp(
    branch: Branch, batch: RolloutBatch, live_P: torch.Tensor, loss: LossSettings, timer: TimerFn
):
    """Log-probs [B, T] of the batch's tokens and the entropy of the rows that are trained.

    With zero-advantage skipping only the groups in `live_P` run through the model (whole
    groups, so the prompt is still shared); the other rows get log-prob 0, which the
    surrogate multiplies by their zero advantage, so they contribute a zero loss and a zero
    gradient as in a full pass, and they still count in the loss's normaliser. The
    returned entropy covers the rows that ran (None when none did)."""
    if bool(live_P.all()) or not loss.skip_zero_advantage:
        return logp_and_entropy(branch, batch, loss.temperature, timer)
    G = batch.group_size
    rows = [p * G + j for p in live_P.nonzero().flatten().tolist() for j in range(G)]
    full = torch.zeros_like(batch.completion_mask_B_T, dtype=torch.float32)
    if not rows:
        return full, None
    logp, entropy = logp_and_entropy(branch, batch.subset(rows), loss.temperature, timer)
    idx = torch.tensor(rows, dtype=torch.long, device=full.device)
    return full.index_copy(0, idx, logp), entropy


def grpo_term(
    branch: Branch,
    batch: RolloutBatch,
    loss: LossSettings,
    timer: TimerFn = no_timer,
    score_base: ScoreFn | None = None,
    norm: float | None = None,
) -> LossTerm:
    """Clipped-surrogate GRPO loss on a native batch (one pass: ratio 1 unless the batch
    carries `old_logp_B_T` from an earlier pass). Groups whose rewards are all equal have
    zero advantage and, when `loss.skip_zero_advantage`, skip the forward and backward.
    `score_base`: the base model's log-probs of a batch, for `loss.kl_coef` > 0. `norm`:
    the loss's denominator when `batch` is a slice of a larger one (`losses.normaliser`)."""
    P = batch.size // batch.group_size
    adv_P_G = group_advantages(batch.rewards_B.view(P, batch.group_size), loss.std_normalize)
    live_P = (adv_P_G != 0).any(-1)
    logp, entropy = _trained_logp(branch, batch, live_P, loss, timer)
    old = _old_logp(loss, batch, logp)
    adv_B_T = adv_P_G.reshape(-1, 1).expand_as(logp).to(logp.device)
    mask = batch.completion_mask_B_T
    loss_B_T, clipped_B_T = policy_loss(logp, old, adv_B_T, mask, loss.clip_low, loss.clip_high)
    if loss.kl_coef > 0:
        if score_base is None:
            raise ValueError("grpo.kl_coef > 0 needs the base model's scores (score_base)")
        ref = score_base(batch)
        loss_B_T = loss_B_T + loss.kl_coef * kl_penalty(logp, ref) * mask
    total = aggregate(loss_B_T, mask, loss.loss_agg, loss.max_new_tokens, norm)
    n_tok = mask.sum().clamp(min=1)
    stats = {
        N.PG_LOSS: float(total.detach()),
        N.REWARD_MEAN: float(batch.rewards_B.mean()),
        N.CLIP_FRAC: float((clipped_B_T.float() * mask).sum() / n_tok),
        N.RESPONSE_LEN: float(mask.sum(1).mean()),
        N.SIGNAL_FRAC: float(live_P.float().mean()),
        N.SIGNAL_ADV_GRPO: float((adv_B_T.abs() * mask).sum() / n_tok),
    }
    if entropy is not None:
        stats[N.ENTROPY] = entropy
    return LossTerm(total, stats)


def opd_term(
    branch: Branch,
    batch: RolloutBatch,
    teacher_scores: TeacherScores | torch.Tensor,
    loss: LossSettings,
    timer: TimerFn = no_timer,
    norm: float | None = None,
) -> LossTerm:
    """On-policy distillation on the student's own samples of a peer's prompts.

    `opd.advantage="sampled"` (the paper): token advantage beta * (log p_teacher - log
    p_student) of the sampled token, stop-gradient, fed to the same clipped surrogate (the
    sampled-token estimator of the reverse KL to the teacher). The direct variants
    differentiate beta * KL(student || teacher) per token instead, over the full
    vocabulary ("full_kl", exact; cheap at small vocabularies) or over the teacher's top-k
    tokens ("topk"). With `opd_samples="teacher"` the batch holds the teacher's greedy
    answers and the loss is the student's cross-entropy on them (supervised distillation;
    `beta` and the clip play no part). `teacher_scores`: the teacher's log-probs [B, T] of the sampled tokens,
    as `World.score_opd` gives them (`TeacherScores`; a bare tensor is the log-probs).

    Statistics (suffixed with the teacher's name by the callers): the loss, the mean
    advantage, the reverse-KL estimate, and the signal balance: mean |advantage|, the share
    of tokens the teacher rates above the student, the mean log-ratio log p_T - log p_S
    (an estimate of -KL(student || teacher)) and the clip fraction."""
    scores = TeacherScores.of(teacher_scores)
    teacher_logp_B_T = scores.logp
    mask = batch.completion_mask_B_T
    n_tok = mask.sum().clamp(min=1)
    direct = loss.direct_opd
    out = logp_and_entropy(branch, batch, loss.temperature, timer, keep_logits=direct)
    logp = out[0]
    adv_B_T = opd_advantage(teacher_logp_B_T, logp, loss.beta, mask)
    if loss.opd_samples == "teacher":  # the teacher's answers: cross-entropy, no advantage
        loss_B_T = -logp * mask
        clipped_B_T = torch.zeros_like(mask, dtype=torch.bool)
        adv_abs = 1.0
    elif direct:
        kl_B_T = _reverse_kl(out[2], scores, loss.temperature, loss.opd_advantage)
        loss_B_T = loss.beta * kl_B_T * mask
        clipped_B_T = torch.zeros_like(mask, dtype=torch.bool)
        adv_abs = float((loss.beta * kl_B_T.detach() * mask).sum() / n_tok)
    else:
        old = _old_logp(loss, batch, logp)
        loss_B_T, clipped_B_T = policy_loss(logp, old, adv_B_T, mask, loss.clip_low, loss.clip_high)
        adv_abs = float((adv_B_T.abs() * mask).sum() / n_tok)
    total = aggregate(loss_B_T, mask, loss.loss_agg, loss.max_new_tokens, norm)
    log_ratio_B_T = (teacher_logp_B_T - logp.detach()) * mask
    stats = {
        N.OPD_LOSS: float(total.detach()),
        N.OPD_ADV_MEAN: float((adv_B_T * mask).sum() / n_tok),
        N.OPD_REVERSE_KL: float(-log_ratio_B_T.sum() / n_tok),
        N.CLIP_FRAC: float((clipped_B_T.float() * mask).sum() / n_tok),
        N.SIGNAL_PREFIX + "adv_abs": adv_abs,
        N.SIGNAL_PREFIX + "pos_frac": float(((log_ratio_B_T > 0) & (mask != 0)).sum() / n_tok),
        N.SIGNAL_PREFIX + "log_ratio": float(log_ratio_B_T.sum() / n_tok),
    }
    return LossTerm(total, stats)


def _reverse_kl(
    logits_B_T_V: torch.Tensor, scores: TeacherScores, temperature: float, kind: str
) -> torch.Tensor:
    """Per-token KL(student || teacher) [B, T] (differentiable in the student): over the
    full vocabulary, or over the teacher's top-k tokens plus one bucket for the rest of the
    mass (`losses.topk_reverse_kl`)."""
    s_lsm = torch.log_softmax(logits_B_T_V.float() / temperature, -1)
    if kind == "full_kl":
        t_lsm = scores.full.to(s_lsm.device, s_lsm.dtype)
        return (s_lsm.exp() * (s_lsm - t_lsm)).sum(-1)
    idx = scores.topk_idx.to(s_lsm.device).long()
    return topk_reverse_kl(s_lsm, idx, scores.topk_vals.to(s_lsm.device, s_lsm.dtype))
