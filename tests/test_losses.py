"""copd.math.losses: advantages, clipped surrogate, aggregation, OPD advantage, masks, log-probs."""

from __future__ import annotations

import math

import pytest
import torch

from copd.math.losses import (
    AGG_MODES,
    aggregate,
    completion_mask,
    group_advantages,
    kl_penalty,
    opd_advantage,
    policy_loss,
    sequence_logprobs,
)
from copd.spec import LOSS_AGGS

# ---------------------------------------------------------------- group advantages


def test_group_advantages_zero_mean_per_group():
    torch.manual_seed(0)
    rewards_P_G = torch.rand(5, 8)
    for std_normalize in (True, False):
        adv_P_G = group_advantages(rewards_P_G, std_normalize=std_normalize)
        assert adv_P_G.shape == (5, 8)
        torch.testing.assert_close(adv_P_G.mean(dim=-1), torch.zeros(5), atol=1e-6, rtol=0)


def test_group_advantages_hand_values():
    rewards_P_G = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    std = math.sqrt(0.1875)  # population std of (1, 0, 0, 0)
    expected = torch.tensor([[0.75, -0.25, -0.25, -0.25]]) / (std + 1e-6)
    torch.testing.assert_close(group_advantages(rewards_P_G), expected)
    torch.testing.assert_close(
        group_advantages(rewards_P_G, std_normalize=False),
        torch.tensor([[0.75, -0.25, -0.25, -0.25]]),
    )


def test_group_advantages_equal_group_is_exactly_zero():
    # 0.1 is not representable, so mean(0.1, 0.1, 0.1) - 0.1 could leave a residue.
    rewards_P_G = torch.tensor([[0.1, 0.1, 0.1], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    for std_normalize in (True, False):
        adv_P_G = group_advantages(rewards_P_G, std_normalize=std_normalize)
        assert torch.equal(adv_P_G[:2], torch.zeros(2, 3))
        assert adv_P_G[2, 1] > 0 > adv_P_G[2, 0]


def test_group_advantages_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\[P, G\]"):
        group_advantages(torch.zeros(8))


# ---------------------------------------------------------------- policy loss

CASES = [
    # (ratio, advantage, expected loss, clipped)
    (1.1, 2.0, -2.2, False),  # inside the range
    (1.1, -2.0, 2.2, False),
    # Exactly at an edge both branches are equal, so the loss is exact either way; which
    # branch is flagged depends on the last bit of exp(log(r)), so the flag is not asserted.
    (1.28, 1.0, -1.28, None),
    (0.8, -1.0, 0.8, None),
    (1.5, 1.0, -1.28, True),  # beyond the upper edge, A > 0: clipped at 1 + 0.28
    (0.5, -1.0, 0.8, True),  # beyond the lower edge, A < 0: clipped at 1 - 0.2
    (0.5, 1.0, -0.5, False),  # below the range, A > 0: min keeps the unclipped 0.5
    (1.5, -1.0, 1.5, False),  # above the range, A < 0: min keeps the unclipped -1.5
    (3.0, 0.0, 0.0, False),  # zero advantage: no loss, no clip
]


def _run_cases(cases):
    ratio = torch.tensor([[c[0] for c in cases]], dtype=torch.float64)
    adv_B_T = torch.tensor([[c[1] for c in cases]], dtype=torch.float64)
    logp_B_T = ratio.log().requires_grad_(True)
    old_logp_B_T = torch.zeros_like(ratio)
    mask_B_T = torch.ones_like(ratio)
    loss_B_T, clipped_B_T = policy_loss(logp_B_T, old_logp_B_T, adv_B_T, mask_B_T, 0.2, 0.28)
    return logp_B_T, adv_B_T, loss_B_T, clipped_B_T


def test_policy_loss_hand_values():
    _, _, loss_B_T, clipped_B_T = _run_cases(CASES)
    expected = torch.tensor([[c[2] for c in CASES]], dtype=torch.float64)
    torch.testing.assert_close(loss_B_T, expected)
    assert clipped_B_T.dtype == torch.bool
    for flag, case in zip(clipped_B_T[0].tolist(), CASES, strict=True):
        if case[3] is not None:
            assert flag == case[3], case


def test_policy_loss_gradient_zero_exactly_on_clipped_tokens():
    # Keep away from the edges, where float rounding decides which branch is taken.
    cases = [c for c in CASES if c[3] is not None]
    cases += [(1.28 - 1e-3, 1.0, None, False), (1.28 + 1e-3, 1.0, None, True)]
    cases += [(0.8 + 1e-3, -1.0, None, False), (0.8 - 1e-3, -1.0, None, True)]
    logp_B_T, adv_B_T, loss_B_T, clipped_B_T = _run_cases(cases)
    loss_B_T.sum().backward()
    grad = logp_B_T.grad
    assert clipped_B_T.tolist() == [[c[3] for c in cases]]
    assert torch.all(grad[clipped_B_T] == 0)
    # Unclipped: d(-ratio * A)/d logp = -ratio * A, non-zero wherever A != 0.
    ratio = logp_B_T.detach().exp()
    keep = ~clipped_B_T
    torch.testing.assert_close(grad[keep], (-ratio * adv_B_T)[keep])
    assert torch.all(grad[keep & (adv_B_T != 0)] != 0)


def test_policy_loss_mask_and_broadcast_sequence_advantage():
    logp_B_T = torch.log(torch.tensor([[1.5, 1.0, 0.5], [1.0, 1.0, 1.0]])).requires_grad_(True)
    old_logp_B_T = torch.zeros(2, 3)
    mask_B_T = torch.tensor([[1, 1, 0], [1, 0, 0]])
    adv_B = torch.tensor([1.0, -1.0])
    loss_B_T, clipped_B_T = policy_loss(logp_B_T, old_logp_B_T, adv_B, mask_B_T)
    loss_col, _ = policy_loss(logp_B_T, old_logp_B_T, adv_B[:, None], mask_B_T)
    torch.testing.assert_close(loss_B_T, loss_col)
    expected = torch.tensor([[-1.28, -1.0, 0.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(loss_B_T, expected)
    assert clipped_B_T.tolist() == [[True, False, False], [False, False, False]]
    loss_B_T.sum().backward()
    assert torch.all(logp_B_T.grad[mask_B_T == 0] == 0)


def test_policy_loss_survives_extreme_log_ratio():
    logp_B_T = torch.tensor([[0.0, 0.0]], requires_grad=True)
    old_logp_B_T = torch.tensor([[-500.0, 500.0]])
    loss_B_T, _ = policy_loss(logp_B_T, old_logp_B_T, torch.tensor([[-1.0, 1.0]]), torch.ones(1, 2))
    loss_B_T.sum().backward()
    assert torch.isfinite(loss_B_T).all() and torch.isfinite(logp_B_T.grad).all()


# ---------------------------------------------------------------- aggregate

# Padding positions hold 99 so that any leak of the mask shows up in the result.
LOSS_B_T = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 99.0, 99.0, 99.0], [99.0] * 4])
MASK_B_T = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])


def test_aggregate_token_mean():
    assert aggregate(LOSS_B_T, MASK_B_T, "token_mean").item() == pytest.approx(10 / 4)


def test_aggregate_seq_mean_token_mean_ignores_empty_sequences():
    # sequence means 2 and 4; the third row has no valid token and is left out
    assert aggregate(LOSS_B_T, MASK_B_T, "seq_mean_token_mean").item() == pytest.approx(3.0)


def test_aggregate_dr_grpo_constant_normaliser():
    assert aggregate(LOSS_B_T, MASK_B_T, "dr_grpo").item() == pytest.approx(10 / (3 * 4))
    assert aggregate(LOSS_B_T, MASK_B_T, "dr_grpo", max_len=10).item() == pytest.approx(1 / 3)


def test_aggregate_empty_batch_is_zero_and_differentiable():
    loss_B_T = torch.ones(2, 3, requires_grad=True)
    for mode in AGG_MODES:
        out = aggregate(loss_B_T, torch.zeros(2, 3), mode)
        assert out.item() == 0.0
        out.backward()


def test_aggregate_unknown_mode_names_allowed():
    with pytest.raises(ValueError, match="token_mean.*seq_mean_token_mean.*dr_grpo"):
        aggregate(LOSS_B_T, MASK_B_T, "sum")


def test_agg_modes_match_config():
    assert tuple(AGG_MODES) == tuple(LOSS_AGGS)


# ---------------------------------------------------------------- OPD advantage, KL


def test_opd_advantage_hand_values_mask_and_no_grad():
    teacher = torch.tensor([[-1.0, -2.0, -0.5]])
    student = torch.tensor([[-1.5, -1.0, -3.0]], requires_grad=True)
    adv_B_T = opd_advantage(teacher, student, beta=2.0, mask_B_T=torch.tensor([[1, 1, 0]]))
    torch.testing.assert_close(adv_B_T, torch.tensor([[1.0, -2.0, 0.0]]))
    assert not adv_B_T.requires_grad and adv_B_T.grad_fn is None


def test_opd_advantage_zero_for_identical_policies():
    torch.manual_seed(0)
    logits_B_T_V = torch.randn(2, 5, 7, requires_grad=True)
    tokens_B_T = torch.randint(0, 7, (2, 5))
    student = sequence_logprobs(logits_B_T_V, tokens_B_T)
    teacher = sequence_logprobs(logits_B_T_V.detach().clone(), tokens_B_T)
    adv_B_T = opd_advantage(teacher, student, beta=0.7)
    assert torch.equal(adv_B_T, torch.zeros(2, 5))
    assert not adv_B_T.requires_grad


def test_kl_penalty_k3():
    logp = torch.tensor([[0.0, math.log(2.0), -1.0]])
    ref = torch.tensor([[0.0, 0.0, -3.0]])
    d = ref - logp
    expected = d.exp() - d - 1
    out = kl_penalty(logp, ref)
    torch.testing.assert_close(out, expected)
    assert out[0, 0] == 0 and torch.all(out >= 0)
    assert out[0, 1].item() == pytest.approx(0.5 + math.log(2.0) - 1)


# ---------------------------------------------------------------- log-probs, masks


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sequence_logprobs_matches_log_softmax(temperature):
    torch.manual_seed(1)
    logits_B_T_V = torch.randn(3, 4, 11) * 5
    tokens_B_T = torch.randint(0, 11, (3, 4))
    ref = torch.log_softmax(logits_B_T_V / temperature, dim=-1)
    ref = ref.gather(-1, tokens_B_T[..., None]).squeeze(-1)
    torch.testing.assert_close(sequence_logprobs(logits_B_T_V, tokens_B_T, temperature), ref)


def test_sequence_logprobs_bf16_upcasts_and_backprops():
    torch.manual_seed(2)
    logits_B_T_V = (torch.randn(2, 3, 9) * 4).to(torch.bfloat16).requires_grad_(True)
    tokens_B_T = torch.randint(0, 9, (2, 3))
    out = sequence_logprobs(logits_B_T_V, tokens_B_T)
    assert out.dtype == torch.float32
    ref = torch.log_softmax(logits_B_T_V.detach().float(), -1).gather(-1, tokens_B_T[..., None])
    torch.testing.assert_close(out.detach(), ref.squeeze(-1))
    out.sum().backward()
    assert logits_B_T_V.grad is not None and logits_B_T_V.grad.abs().sum() > 0


def test_sequence_logprobs_rejects_bad_shapes():
    with pytest.raises(ValueError, match="disagree"):
        sequence_logprobs(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def test_completion_mask_cases():
    eos, pad = 2, 0
    ids_B_T = torch.tensor(
        [
            [5, 6, eos, pad, pad],  # padding after eos is not completion
            [eos, pad, pad, pad, pad],  # eos first: only the eos counts
            [5, 6, 7, 8, 9],  # no eos: cut at the limit, all ones
            [5, pad, 6, eos, eos],  # a sampled pad before eos counts; a second eos does not
        ]
    )
    mask_B_T = completion_mask(ids_B_T, eos)
    assert mask_B_T.dtype == torch.long
    assert mask_B_T.tolist() == [
        [1, 1, 1, 0, 0],
        [1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0],
    ]


def test_topk_reverse_kl_minimised_on_free_logits_reaches_the_teacher():
    """V=32, k=16: the minimiser puts the student's top-k mass where the teacher's is (the
    top-k terms without a tail bucket ended at 0.354 of 0.962, every ratio 1/e)."""
    from copd.math.losses import topk_reverse_kl

    g = torch.Generator().manual_seed(0)
    t_logp = torch.log_softmax(2.0 * torch.randn(1, 1, 32, generator=g), -1)
    t_vals, t_idx = t_logp.topk(16, dim=-1)
    logits = torch.zeros(1, 1, 32, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(1500):
        opt.zero_grad()
        topk_reverse_kl(torch.log_softmax(logits, -1), t_idx, t_vals).sum().backward()
        opt.step()
    s_p = torch.softmax(logits.detach(), -1)
    assert torch.allclose(s_p.gather(-1, t_idx), t_vals.exp(), atol=2e-3)
    assert abs(float(s_p.gather(-1, t_idx).sum()) - float(t_vals.exp().sum())) < 2e-3
    assert float(topk_reverse_kl(torch.log_softmax(logits.detach(), -1), t_idx, t_vals)) < 1e-4
    # and the loss is a KL: zero at the teacher itself, positive elsewhere
    assert abs(float(topk_reverse_kl(t_logp, t_idx, t_vals))) < 1e-6
    assert float(topk_reverse_kl(torch.log_softmax(torch.zeros(1, 1, 32), -1), t_idx, t_vals)) > 0
