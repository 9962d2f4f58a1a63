"""Behavioural-overlap diagnostics between a student and a teacher policy.

CoPD's central quantity (arXiv 2604.27083, Eq. "eq:overlap") is the top-k token overlap

    O_k(pi_theta, pi_T) = E_{states ~ student} [ |Top_k(p) ∩ Top_k(q)| / k ],   k = 10 in the paper,

with p the student's and q the teacher's next-token distribution at the same prefix, and the
expectation over the states the *student* visits (its own rollouts). The paper also plots a
"symmetric KL" between branches but never writes it down; we assume the usual
KL(p||q) + KL(q||p) per position over the full vocabulary. Overlap mass and the entropy gap
|H(q) - H(p)| follow Rethinking-OPD (arXiv 2604.13016).

Every function takes logits already gathered at the SAME valid positions of the student's
rollouts and flattened to N positions ([N, V]); it returns one value per position, [N].
`pair_diagnostics` bundles them into position means for logging:

    stats = pair_diagnostics(student_logits_N_V, teacher_logits_N_V, ks=(1, 5, 10))
    stats["overlap_top10"], stats["sym_kl"], stats["entropy_gap"], ...

Ties inside a top-k set are broken by torch.topk's choice (implementation defined). Top-k sets
are taken from logits, not probabilities, so tokens whose probabilities underflow to the same
value keep their order. k larger than the vocabulary is clamped to V.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from copd.common import names as N


def _check_pair(student_logits_N_V: Tensor, teacher_logits_N_V: Tensor) -> None:
    if student_logits_N_V.dim() != 2 or student_logits_N_V.shape != teacher_logits_N_V.shape:
        raise ValueError(
            "student and teacher logits must both be [N, V] with the same shape, got "
            f"{tuple(student_logits_N_V.shape)} and {tuple(teacher_logits_N_V.shape)}"
        )


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"top-k size must be >= 1, got k={k}")


def _in_other_N_K(top_a_N_K: Tensor, top_b_N_K: Tensor) -> Tensor:
    """[N, K] bool: is each of a's top-k token ids also among b's? O(N k^2), no [N, V] mask."""
    return (top_a_N_K.unsqueeze(-1) == top_b_N_K.unsqueeze(-2)).any(dim=-1)


def topk_overlap(student_logits_N_V: Tensor, teacher_logits_N_V: Tensor, k: int) -> Tensor:
    """|Top_k(p) ∩ Top_k(q)| / k per position, [N] float32 in [0, 1]. k > V is clamped to V."""
    _check_pair(student_logits_N_V, teacher_logits_N_V)
    _check_k(k)
    k = min(k, student_logits_N_V.shape[-1])
    top_p = student_logits_N_V.topk(k, dim=-1).indices
    top_q = teacher_logits_N_V.topk(k, dim=-1).indices
    return _in_other_N_K(top_p, top_q).sum(dim=-1).float() / k


def symmetric_kl(student_logits_N_V: Tensor, teacher_logits_N_V: Tensor) -> Tensor:
    """KL(p||q) + KL(q||p) per position over the full vocabulary, [N] float32, >= 0.

    Uses the identity KL(p||q) + KL(q||p) = sum_v (p_v - q_v)(log p_v - log q_v), from
    log_softmax in float32. A token with zero probability under both (e.g. -inf logits)
    contributes 0, not NaN; zero under only one is a genuinely infinite divergence.
    """
    _check_pair(student_logits_N_V, teacher_logits_N_V)
    logp = torch.log_softmax(student_logits_N_V.float(), dim=-1)
    logq = torch.log_softmax(teacher_logits_N_V.float(), dim=-1)
    return _sym_kl_from_logp(logp, logq)


def _sym_kl_from_logp(logp_N_V: Tensor, logq_N_V: Tensor) -> Tensor:
    p, q = logp_N_V.exp(), logq_N_V.exp()
    term = (p - q) * (logp_N_V - logq_N_V)
    both_zero = (p == 0) & (q == 0)
    return torch.where(both_zero, torch.zeros_like(term), term).sum(dim=-1).clamp(min=0.0)


def overlap_mass(student_logits_N_V: Tensor, teacher_logits_N_V: Tensor, k: int) -> Tensor:
    """Student probability mass on Top_k(p) ∩ Top_k(q) per position, [N] float32 in [0, 1]."""
    _check_pair(student_logits_N_V, teacher_logits_N_V)
    _check_k(k)
    k = min(k, student_logits_N_V.shape[-1])
    p = torch.softmax(student_logits_N_V.float(), dim=-1)
    top_p = student_logits_N_V.topk(k, dim=-1).indices
    top_q = teacher_logits_N_V.topk(k, dim=-1).indices
    return (p.gather(-1, top_p) * _in_other_N_K(top_p, top_q)).sum(dim=-1)


def entropy(logits_N_V: Tensor) -> Tensor:
    """Shannon entropy (nats) of softmax(logits) per position, [N] float32; 0 log 0 = 0."""
    return _entropy_from_logp(torch.log_softmax(logits_N_V.float(), dim=-1))


def _entropy_from_logp(logp_N_V: Tensor) -> Tensor:
    p = logp_N_V.exp()
    plogp = torch.where(p > 0, p * logp_N_V, torch.zeros_like(p))
    return -plogp.sum(dim=-1)


@torch.no_grad()
def pair_diagnostics(
    student_logits_N_V: Tensor,
    teacher_logits_N_V: Tensor,
    ks: Sequence[int],
    temperature: float = 1.0,
) -> dict[str, float]:
    """Position means of every diagnostic for one (student, teacher) pair.

    Keys: "overlap_top{k}" for each k in ks (as requested, even if clamped to V),
    "sym_kl", "overlap_mass" (at max(ks)), "entropy_gap" (mean |H(q) - H(p)|),
    "entropy_student", "entropy_teacher". Logits are divided by temperature first and
    computed in float32 whatever their dtype. One topk at max(ks) per side; smaller k are
    prefixes of it because topk returns sorted values. N = 0 gives NaN means.
    """
    _check_pair(student_logits_N_V, teacher_logits_N_V)
    if not ks:
        raise ValueError("ks must name at least one top-k size, e.g. ks=(10,)")
    for k in ks:
        _check_k(k)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    V = student_logits_N_V.shape[-1]
    s = student_logits_N_V.float() / temperature
    t = teacher_logits_N_V.float() / temperature

    k_max = min(max(ks), V)
    # Top-k sets from logits, as in topk_overlap; one sorted topk per side serves every k.
    top_p_idx = s.topk(k_max, dim=-1, sorted=True).indices
    top_q_idx = t.topk(k_max, dim=-1, sorted=True).indices
    logp = torch.log_softmax(s, dim=-1)
    logq = torch.log_softmax(t, dim=-1)

    out: dict[str, float] = {}
    for k in ks:
        kk = min(k, V)
        shared = _in_other_N_K(top_p_idx[:, :kk], top_q_idx[:, :kk])
        out[N.overlap_key(k)] = (shared.sum(dim=-1).float() / kk).mean().item()
    shared_max = _in_other_N_K(top_p_idx, top_q_idx)
    mass_N = (logp.gather(-1, top_p_idx).exp() * shared_max).sum(dim=-1)
    out[N.SYM_KL] = _sym_kl_from_logp(logp, logq).mean().item()
    out[N.OVERLAP_MASS] = mass_N.mean().item()
    h_p, h_q = _entropy_from_logp(logp), _entropy_from_logp(logq)
    out[N.ENTROPY_GAP] = (h_q - h_p).abs().mean().item()
    out[N.ENTROPY_STUDENT] = h_p.mean().item()
    out[N.ENTROPY_TEACHER] = h_q.mean().item()
    return out


@torch.no_grad()
def token_agreement(
    student_logits_N_V: Tensor,
    teacher_logits_N_V: Tensor,
    token_ids_N: Tensor,
    k: int,
    temperature: float = 1.0,
) -> dict[str, Tensor]:
    """Per sampled token, how a teacher (a peer) judges the student's choice, [N] each:

        "logp_student"  log p_student(token) (logits / temperature, float32)
        "logp_teacher"  log p_teacher(token)
        "in_topk"       whether the token is among the teacher's top-k (bool)
        "overlap"       |Top_k(p) ∩ Top_k(q)| / k at that position

    The log-ratio `logp_teacher - logp_student` is the sampled OPD advantage per unit beta;
    the samples view (copd/train/samples.py) colours each token by it."""
    _check_pair(student_logits_N_V, teacher_logits_N_V)
    _check_k(k)
    if token_ids_N.shape != student_logits_N_V.shape[:1]:
        raise ValueError(
            f"token_ids_N must be [N] = [{student_logits_N_V.shape[0]}], "
            f"got {tuple(token_ids_N.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    kk = min(k, student_logits_N_V.shape[-1])
    s = student_logits_N_V.float() / temperature
    t = teacher_logits_N_V.float() / temperature
    ids = token_ids_N.long().unsqueeze(-1)
    top_t = t.topk(kk, dim=-1).indices
    return {
        "logp_student": torch.log_softmax(s, -1).gather(-1, ids).squeeze(-1),
        "logp_teacher": torch.log_softmax(t, -1).gather(-1, ids).squeeze(-1),
        "in_topk": (top_t == ids).any(dim=-1),
        "overlap": _in_other_N_K(s.topk(kk, dim=-1).indices, top_t).sum(-1).float() / kk,
    }
