"""Pure tensor math for the policy-gradient update: advantages, clipped surrogate, aggregation.

GRPO (phase I) and on-policy distillation (phase II) share one loss. Only the advantage
differs: GRPO broadcasts a group-normalised sequence reward to every token, OPD gives each
token beta * (log p_teacher - log p_student) of the token the student sampled.

    adv_P_G = group_advantages(rewards_P_G)                       # GRPO
    adv_B_T = opd_advantage(teacher_logp_B_T, logp_B_T, beta, mask_B_T)   # OPD
    loss_B_T, clipped_B_T = policy_loss(logp_B_T, old_logp_B_T, adv_B_T, mask_B_T)
    loss = aggregate(loss_B_T, mask_B_T, "token_mean")

Shapes are suffixes: P prompts, G samples per prompt, B sequences, T completion tokens,
V vocabulary. Masks may be bool, int or float; a position counts when mask != 0.
No model, file or database is touched here.
"""

from __future__ import annotations

import torch
from torch import Tensor

AGG_MODES = ("token_mean", "seq_mean_token_mean", "dr_grpo")

# exp() of a log-ratio beyond this overflows float32 long before it means anything; PPO-style
# codebases clamp it for the same reason. The gradient is zero past the clamp.
_MAX_LOG_RATIO = 20.0


def group_advantages(rewards_P_G: Tensor, std_normalize: bool = True, eps: float = 1e-6) -> Tensor:
    """GRPO advantages, one per sample: (r - mean_g) / (std_g + eps), or r - mean_g.

    rewards_P_G: [P, G] rewards of G samples for each of P prompts.
    Returns [P, G] float. std is the population std (unbiased=False). A group whose rewards
    are all equal carries no learning signal and gets exactly 0 (not a rounding residue:
    the float mean of equal values need not equal them bit for bit).
    """
    if rewards_P_G.dim() != 2:
        raise ValueError(f"rewards_P_G must be [P, G], got shape {tuple(rewards_P_G.shape)}")
    r = rewards_P_G.float()
    adv = r - r.mean(dim=-1, keepdim=True)
    if std_normalize:
        adv = adv / (r.std(dim=-1, unbiased=False, keepdim=True) + eps)
    flat = r.amax(dim=-1, keepdim=True) == r.amin(dim=-1, keepdim=True)
    return torch.where(flat, torch.zeros_like(adv), adv)


def policy_loss(
    logp_B_T: Tensor,
    old_logp_B_T: Tensor,
    adv_B_T: Tensor,
    mask_B_T: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
) -> tuple[Tensor, Tensor]:
    """Per-token PPO clipped surrogate with asymmetric ("clip-higher") bounds.

    loss_B_T = -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A),
    ratio = exp(logp - old_logp). The clipped branch is the smaller one exactly when
    A > 0 and ratio > 1 + clip_high, or A < 0 and ratio < 1 - clip_low; there the loss is a
    constant and the token's gradient is zero. clipped_B_T (bool) flags those tokens.
    At a clip edge both branches are equal and the token still has a gradient (not clipped).

    logp_B_T: [B, T] current log-probs (carries the gradient); old_logp_B_T: [B, T] from the
    sampling policy (detached here); adv_B_T: [B, T] per-token advantages (OPD), or one
    advantage per sequence, [B] or [B, 1], broadcast over tokens (GRPO); mask_B_T: [B, T].
    Both outputs are 0 / False where mask is 0.
    """
    valid = mask_B_T != 0
    adv = adv_B_T.detach().to(logp_B_T.dtype)
    if adv.dim() == 1:  # one advantage per sequence
        adv = adv.unsqueeze(-1)
    adv = adv.expand_as(logp_B_T)
    log_ratio = (logp_B_T - old_logp_B_T.detach()).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)
    clipped = ((adv > 0) & (ratio > 1 + clip_high)) | ((adv < 0) & (ratio < 1 - clip_low))
    clipped = clipped & valid
    # The clamp is flat outside the range, so the clipped branch has zero gradient by itself.
    surrogate = torch.where(clipped, ratio.clamp(1 - clip_low, 1 + clip_high) * adv, ratio * adv)
    loss = torch.where(valid, -surrogate, torch.zeros_like(surrogate))
    return loss, clipped


def aggregate(
    loss_B_T: Tensor,
    mask_B_T: Tensor,
    mode: str,
    max_len: int | None = None,
    norm: float | None = None,
) -> Tensor:
    """Reduce per-token losses to a scalar.

    "token_mean": sum over valid tokens / number of valid tokens (long answers weigh more).
    "seq_mean_token_mean": mean over sequences of each sequence's token mean (the paper's
        written 1/G sum_i 1/|y_i| sum_t); sequences with no valid token are left out.
    "dr_grpo": sum / (B * max_len), max_len defaulting to T: a constant normaliser, so a
        token's weight does not depend on its sequence's length (Dr. GRPO).
    A batch with no valid token gives 0 (still attached to the graph).

    `norm`: the denominator of a larger batch this one is a slice of (`normaliser` of the
    whole), so that the slices' losses add up to the whole batch's loss: gradient
    accumulation over micro-batches gives the same gradient as one pass.
    """
    m = (mask_B_T != 0).to(loss_B_T.dtype)
    masked = loss_B_T * m
    if mode == "token_mean":  # the denominators stay tensors: no host sync on the hot path
        return masked.sum() / (norm or m.sum().clamp(min=1.0))
    if mode == "seq_mean_token_mean":
        lens_B = m.sum(dim=-1)
        has_tokens = lens_B > 0
        seq_means_B = masked.sum(dim=-1) / lens_B.clamp(min=1.0)
        return (seq_means_B * has_tokens).sum() / (norm or has_tokens.sum().clamp(min=1))
    if mode == "dr_grpo":
        return masked.sum() / (norm or normaliser(mask_B_T, mode, max_len))
    raise ValueError(f"unknown loss aggregation mode {mode!r}; use one of {AGG_MODES}")


def normaliser(mask_B_T: Tensor, mode: str, max_len: int | None = None) -> float:
    """The denominator `aggregate` divides a batch's loss by (see there)."""
    m = mask_B_T != 0
    if mode == "token_mean":
        return max(1.0, float(m.sum()))
    if mode == "seq_mean_token_mean":
        return max(1.0, float(m.any(dim=-1).sum()))
    if mode == "dr_grpo":
        B, T = mask_B_T.shape
        norm = B * (T if max_len is None else max_len)
        if norm <= 0:
            raise ValueError(f"dr_grpo needs max_len >= 1, got max_len={max_len}")
        return float(norm)
    raise ValueError(f"unknown loss aggregation mode {mode!r}; use one of {AGG_MODES}")


def opd_advantage(
    teacher_logp_B_T: Tensor,
    student_logp_B_T: Tensor,
    beta: float,
    mask_B_T: Tensor | None = None,
) -> Tensor:
    """Sampled-token OPD advantage beta * (log p_teacher(y_t) - log p_student(y_t)).

    Stop-gradient: computed under no_grad, so the result never carries a graph and the
    student learns only through the surrogate's ratio. This is the single-sample estimate of
    the reverse KL KL(student || teacher) (paper Eq. delta, A = beta_k * delta). [B, T];
    0 where mask is 0.
    """
    with torch.no_grad():
        adv = beta * (teacher_logp_B_T.float() - student_logp_B_T.float())
        if mask_B_T is not None:
            adv = torch.where(mask_B_T != 0, adv, torch.zeros_like(adv))
    return adv


def kl_penalty(logp_B_T: Tensor, ref_logp_B_T: Tensor) -> Tensor:
    """k3 estimator of KL(policy || ref) per token: exp(d) - d - 1 with d = ref - logp.

    Always >= 0, unbiased, low variance (Schulman's "approximating KL" note). d is clamped
    to +-20 so exp() cannot overflow. [B, T].
    """
    d = (ref_logp_B_T - logp_B_T).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    return torch.exp(d) - d - 1


def sequence_logprobs(logits_B_T_V: Tensor, tokens_B_T: Tensor, temperature: float = 1.0) -> Tensor:
    """log softmax(logits / temperature) at the given tokens, [B, T] float32.

    logits_B_T_V[:, t] must be the logits that predict tokens_B_T[:, t] (shift beforehand).
    Computed as gathered logit - logsumexp, never materialising a full log_softmax copy.
    Half-precision logits are upcast one sequence at a time, so precision is float32 while
    the extra memory stays one [T, V] row.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if logits_B_T_V.shape[:-1] != tokens_B_T.shape:
        raise ValueError(
            f"logits {tuple(logits_B_T_V.shape)} and tokens {tuple(tokens_B_T.shape)} "
            "disagree on [B, T]"
        )

    def _rows(logits_T_V: Tensor, tok_T: Tensor) -> Tensor:
        x = logits_T_V.float()
        if temperature != 1.0:
            x = x / temperature
        picked = x.gather(-1, tok_T.long().unsqueeze(-1)).squeeze(-1)
        return picked - torch.logsumexp(x, dim=-1)

    if logits_B_T_V.dtype in (torch.float32, torch.float64):
        return _rows(logits_B_T_V, tokens_B_T)
    return torch.stack([_rows(lg, tk) for lg, tk in zip(logits_B_T_V, tokens_B_T, strict=True)])


def completion_mask(completion_ids_B_T: Tensor, eos_id: int) -> Tensor:
    """1 up to and including the first eos of each row, 0 after it. [B, T] int64.

    Everything after the first eos is padding (whatever its id). A row with no eos was cut
    at the length limit and is all ones. Pad-id tokens sampled before the eos are part of
    the completion and count. int64 to match Hugging Face attention masks.
    """
    is_eos = (completion_ids_B_T == eos_id).long()
    eos_before = is_eos.cumsum(dim=-1) - is_eos  # eos tokens strictly before t
    return (eos_before == 0).long()


def topk_reverse_kl(s_logp_B_T_V: Tensor, topk_idx: Tensor, t_topk_logp: Tensor) -> Tensor:
    """KL(student || teacher) [B, T] over the teacher's top-k tokens plus one tail bucket
    holding the rest of each distribution's mass: a proper KL between two (k+1)-way
    distributions, so minimising it puts the student's top-k probabilities on the
    teacher's (and its remaining mass in the tail). The top-k terms alone (no tail, no
    renormalisation) are each smallest at p = q/e and drive the student's mass off the
    teacher's top-k. `s_logp_B_T_V`: the student's log-softmax; `topk_idx`, `t_topk_logp`
    [B, T, k]: the teacher's top-k token ids and log-probs."""
    s_at = s_logp_B_T_V.gather(-1, topk_idx)
    tiny = torch.finfo(s_at.dtype).tiny
    s_tail = (1 - s_at.exp().sum(-1)).clamp(min=tiny)
    t_tail = (1 - t_topk_logp.exp().sum(-1)).clamp(min=tiny)
    head = (s_at.exp() * (s_at - t_topk_logp)).sum(-1)
    return head + s_tail * (s_tail.log() - t_tail.log())
