"""copd.math.diagnostics: top-k overlap, symmetric KL, overlap mass, entropy, pair summary."""

from __future__ import annotations

import math

import pytest
import torch

from copd.math.diagnostics import (
    entropy,
    overlap_mass,
    pair_diagnostics,
    symmetric_kl,
    topk_overlap,
)


def _random_pair(n: int = 16, v: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, generator=g) * 3, torch.randn(n, v, generator=g) * 3


def test_overlap_with_itself_is_exactly_one():
    s, _ = _random_pair()
    for k in (1, 5, 10):
        assert torch.equal(topk_overlap(s, s, k), torch.ones(16))


def test_overlap_disjoint_topk_is_zero():
    s = torch.tensor([[9.0, 8.0, 0.0, 0.0, 1.0, 1.0]])
    t = torch.tensor([[0.0, 0.0, 1.0, 1.0, 9.0, 8.0]])
    assert topk_overlap(s, t, 2).tolist() == [0.0]


def test_overlap_hand_example_k2_and_k3():
    s = torch.tensor([[5.0, 4.0, 3.0, 0.0, -1.0]])  # top2 {0, 1}, top3 {0, 1, 2}
    t = torch.tensor([[5.0, 0.0, 4.0, 3.0, -1.0]])  # top2 {0, 2}, top3 {0, 2, 3}
    assert topk_overlap(s, t, 2).item() == pytest.approx(1 / 2)
    assert topk_overlap(s, t, 3).item() == pytest.approx(2 / 3)


def test_overlap_symmetric_and_matches_set_intersection():
    s, t = _random_pair(seed=3)
    for k in (1, 4, 10):
        o = topk_overlap(s, t, k)
        assert torch.equal(o, topk_overlap(t, s, k))
        for n in range(s.shape[0]):
            a = set(s[n].topk(k).indices.tolist())
            b = set(t[n].topk(k).indices.tolist())
            assert o[n].item() == pytest.approx(len(a & b) / k)


def test_k_larger_than_vocab_is_clamped():
    s, t = _random_pair(n=4, v=3)
    assert torch.equal(topk_overlap(s, t, 10), torch.ones(4))
    torch.testing.assert_close(overlap_mass(s, t, 10), torch.ones(4))


def test_bad_inputs_raise():
    s, t = _random_pair()
    with pytest.raises(ValueError, match="same shape"):
        topk_overlap(s, t[:, :10], 2)
    with pytest.raises(ValueError, match="k=0"):
        topk_overlap(s, t, 0)
    with pytest.raises(ValueError, match="ks"):
        pair_diagnostics(s, t, ks=())


def test_symmetric_kl_of_identical_is_zero_and_nonnegative():
    s, t = _random_pair()
    torch.testing.assert_close(symmetric_kl(s, s), torch.zeros(16), atol=1e-6, rtol=0)
    assert torch.all(symmetric_kl(s, t) >= 0)
    torch.testing.assert_close(symmetric_kl(s, t), symmetric_kl(t, s))


def test_symmetric_kl_hand_value_three_tokens():
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.3, 0.5])
    kl_pq = (p * (p / q).log()).sum()
    kl_qp = (q * (q / p).log()).sum()
    expected = 0.6 * math.log(2.5)  # (0.3)(ln 2.5) + 0 + (-0.3)(ln 0.4)
    assert (kl_pq + kl_qp).item() == pytest.approx(expected, rel=1e-6)
    # logits are log-probs up to a constant: the shift must not matter
    out = symmetric_kl(p.log()[None] + 7.0, q.log()[None])
    assert out.item() == pytest.approx(expected, rel=1e-5)


def test_symmetric_kl_no_nan_for_zero_probability_tokens():
    ninf = float("-inf")
    s = torch.tensor([[2.0, 1.0, ninf, -1e4], [0.0, 0.0, 0.0, ninf]])
    t = torch.tensor([[1.0, 2.0, ninf, -2e4], [0.0, 0.0, 0.0, ninf]])
    out = symmetric_kl(s, t)
    assert torch.isfinite(out).all()
    expected = symmetric_kl(s[:1, :2], t[:1, :2])  # the underflowed token adds ~0
    torch.testing.assert_close(out[:1], expected)
    assert out[1].item() == 0.0


def test_overlap_mass_hand_example():
    p = torch.tensor([[0.5, 0.3, 0.2]])
    q = torch.tensor([[0.2, 0.3, 0.5]])
    # top2(p) = {0, 1}, top2(q) = {2, 1}: shared {1}, student mass 0.3
    assert overlap_mass(p.log(), q.log(), 2).item() == pytest.approx(0.3, rel=1e-6)
    assert overlap_mass(p.log(), p.log(), 2).item() == pytest.approx(0.8, rel=1e-6)


def test_entropy_uniform_and_one_hot():
    uniform = torch.zeros(2, 8)
    torch.testing.assert_close(entropy(uniform), torch.full((2,), math.log(8)))
    one_hot = torch.tensor([[0.0, float("-inf"), float("-inf")]])
    assert entropy(one_hot).tolist() == [0.0]


def test_pair_diagnostics_identical_policies():
    s, _ = _random_pair()
    d = pair_diagnostics(s, s.clone(), ks=(1, 5, 10))
    assert set(d) == {
        "overlap_top1",
        "overlap_top5",
        "overlap_top10",
        "sym_kl",
        "overlap_mass",
        "entropy_gap",
        "entropy_student",
        "entropy_teacher",
    }
    assert d["overlap_top1"] == d["overlap_top5"] == d["overlap_top10"] == 1.0
    assert d["sym_kl"] == pytest.approx(0.0, abs=1e-6)
    assert d["entropy_gap"] == 0.0
    assert d["entropy_student"] == d["entropy_teacher"] > 0


def test_pair_diagnostics_matches_individual_functions():
    s, t = _random_pair(seed=5)
    temp = 0.7
    d = pair_diagnostics(s, t, ks=(10, 1, 4), temperature=temp)
    st, tt = s / temp, t / temp
    for k in (1, 4, 10):  # sliced from one topk at max k == a fresh topk at each k
        assert d[f"overlap_top{k}"] == pytest.approx(topk_overlap(st, tt, k).mean().item())
    assert d["overlap_mass"] == pytest.approx(overlap_mass(st, tt, 10).mean().item(), rel=1e-6)
    assert d["sym_kl"] == pytest.approx(symmetric_kl(st, tt).mean().item(), rel=1e-6)
    h_s, h_t = entropy(st), entropy(tt)
    assert d["entropy_gap"] == pytest.approx((h_t - h_s).abs().mean().item(), rel=1e-6)
    assert d["entropy_student"] == pytest.approx(h_s.mean().item(), rel=1e-6)
    assert d["entropy_teacher"] == pytest.approx(h_t.mean().item(), rel=1e-6)
    # temperature really is applied: sharper distributions have lower entropy
    assert d["entropy_student"] < pair_diagnostics(s, t, ks=(1,))["entropy_student"]


def test_pair_diagnostics_bf16_inputs_computed_in_float32():
    s, t = _random_pair(seed=7)
    s16, t16 = s.to(torch.bfloat16), t.to(torch.bfloat16)
    d16 = pair_diagnostics(s16, t16, ks=(5,))
    d32 = pair_diagnostics(s16.float(), t16.float(), ks=(5,))
    assert d16 == d32
    assert all(isinstance(v, float) and math.isfinite(v) for v in d16.values())


def test_process_cpu_percent_measures_between_calls():
    """One psutil.Process is kept, so the second reading covers the work in between (a new
    object per call always read 0.0)."""
    import time

    from copd.common import names as N
    from copd.train.evaluate import process_metrics

    process_metrics()
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:
        sum(i * i for i in range(1000))
    assert process_metrics()[N.SYSTEM_CPU_PERCENT] > 10.0
