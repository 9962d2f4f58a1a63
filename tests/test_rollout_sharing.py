"""Rollout speed-ups: a group's prompt runs once and its KV cache is repeated; finished
rows leave the decode batch.

The shared path must give the same tokens, logits and gradients as one pass over every
row (to float rounding), and fall back when a batch's groups do not share their prompt.
"""

from __future__ import annotations

import random

import pytest
import torch

import copd.policy.rollout as R
import copd.policy.sampler as S
from copd.builders.tiny import load
from copd.math.losses import completion_mask
from copd.policy.decoding import Decoding
from copd.policy.hf_cache import dense_mask_dtype, step_mask
from copd.tasks import get_task


@pytest.fixture(scope="module")
def model_tok(tiny_model_dir):
    model, tok = load(tiny_model_dir)
    return model, tok


@pytest.fixture
def one_pass(monkeypatch):
    """Run a callable with prompt sharing off (the reference computation)."""

    def run(fn):
        monkeypatch.setattr(S, "SHARE_PROMPT_PREFIX", False)
        try:
            return fn()
        finally:
            monkeypatch.setattr(S, "SHARE_PROMPT_PREFIX", True)

    return run


def _batch(model, tok, seed=0):
    examples = get_task("add", difficulty=1).sample(random.Random(seed), 4)
    gen = torch.Generator().manual_seed(seed)
    return R.sample_rollouts(
        model, tok, examples, Decoding(max_new_tokens=5), group_size=4, generator=gen
    )


def test_groups_share_prompts_detects_groups():
    ids = torch.tensor([[0, 5, 6], [0, 5, 6], [7, 8, 9], [7, 8, 9]])
    mask = (ids != 0).long()
    assert S.groups_share_prompts(ids, mask, 2)
    assert not S.groups_share_prompts(ids, mask, 1)
    assert not S.groups_share_prompts(ids, mask, 4)  # two different prompts in one "group"
    assert not S.groups_share_prompts(ids[:3], mask[:3], 2)  # rows not a multiple of G


def test_shared_sampling_draws_the_same_tokens(model_tok, one_pass):
    model, tok = model_tok
    shared = _batch(model, tok)
    reference = one_pass(lambda: _batch(model, tok))
    assert torch.equal(shared.prompt_ids_B_P, reference.prompt_ids_B_P)
    assert torch.equal(shared.completion_ids_B_T, reference.completion_ids_B_T)
    assert shared.texts == reference.texts


@pytest.mark.parametrize("end_at", [2, 0])
def test_shared_logits_and_gradients_match_one_pass(model_tok, one_pass, end_at):
    model, tok = model_tok
    # a batch whose longest completion has room for an early eos (the first seed from 1 on)
    batch = next(b for b in (_batch(model, tok, seed=s) for s in range(1, 50))
                 if b.completion_ids_B_T.shape[1] >= 4)  # fmt: skip
    # End some rows early so the completion mask has holes after eos (and the log-prob
    # pass splits by length: at 0, the short rows never enter the completion pass).
    batch.completion_ids_B_T[:, -1] = 5  # at least one row runs to the end
    batch.completion_ids_B_T[::3, end_at] = tok.eos_token_id
    if end_at == 0:
        batch.completion_ids_B_T[1::3, end_at] = tok.eos_token_id
    batch.completion_mask_B_T = completion_mask(batch.completion_ids_B_T, tok.eos_token_id).float()

    def logits_and_grads():
        model.zero_grad(set_to_none=True)
        logits = R.completion_logits(model, batch)
        lp = R.logprobs_from_logits(logits, batch.completion_ids_B_T, 1.0)
        (lp * batch.completion_mask_B_T).sum().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    model.requires_grad_(True)
    logits_s, grads_s = logits_and_grads()
    logits_r, grads_r = one_pass(logits_and_grads)
    assert logits_s.shape == logits_r.shape == (*batch.completion_ids_B_T.shape, len(tok))
    # Rows that ended stop at the length split: equal wherever a completion token is.
    need = batch.completion_mask_B_T.sum(1).long() - 1
    assert R.length_split(need, batch.completion_ids_B_T.shape[1] - 1) is not None
    valid = batch.completion_mask_B_T.bool()
    torch.testing.assert_close(logits_s[valid], logits_r[valid], atol=1e-5, rtol=1e-5)
    for gs, gr in zip(grads_s, grads_r, strict=True):
        torch.testing.assert_close(gs, gr, atol=1e-5, rtol=1e-4)
    model.zero_grad(set_to_none=True)


def test_length_split_picks_the_cheapest_point():
    # 8 rows need 1 token, 2 rows need 6: split after 1 -> 8*1 + 2*5 = 18 of 60 tokens.
    need = torch.tensor([1] * 8 + [6] * 2)
    assert R.length_split(need, 6) == 1
    assert R.length_split(torch.full((10,), 6), 6) is None  # nobody stops early
    # Saving below the threshold: one pass.
    assert R.length_split(torch.tensor([5] * 9 + [6]), 6) is None
    assert R.length_split(torch.tensor([0] * 9 + [6]), 6) == 0  # only one row continues


def test_ungrouped_batch_takes_the_one_pass_path(model_tok):
    model, tok = model_tok
    batch = _batch(model, tok, seed=2)
    batch.prompt_ids_B_P = batch.prompt_ids_B_P.roll(1, 0)  # groups no longer share a prompt
    batch.prompt_mask_B_P = batch.prompt_mask_B_P.roll(1, 0)
    assert not S.groups_share_prompts(batch.prompt_ids_B_P, batch.prompt_mask_B_P, 4)
    with torch.no_grad():
        logits = R.completion_logits(model, batch)
    assert logits.shape[:2] == batch.completion_ids_B_T.shape


def test_pruning_finished_rows_keeps_the_draws(model_tok, monkeypatch):
    model, tok = model_tok
    pruned = _batch(model, tok, seed=3)
    # The warmed-up test model answers in a few tokens: over a quarter of the rows finish
    # before the last step, so the decode batch is pruned at least once.
    lens = pruned.completion_mask_B_T.sum(1)
    assert (lens < pruned.completion_ids_B_T.shape[1]).float().mean() >= 0.25
    monkeypatch.setattr(S, "PRUNE_FINISHED_ROWS", False)
    full = _batch(model, tok, seed=3)
    assert torch.equal(pruned.completion_ids_B_T, full.completion_ids_B_T)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_ready_decode_mask_draws_the_same_tokens(model_tok, monkeypatch, attn):
    model, tok = model_tok
    model.set_attn_implementation(attn)
    try:
        assert dense_mask_dtype(model) == torch.float32
        dense = _batch(model, tok, seed=4)
        monkeypatch.setattr(S, "DENSE_DECODE_MASK", False)
        generic = _batch(model, tok, seed=4)
    finally:
        model.set_attn_implementation("sdpa")
    assert torch.equal(dense.completion_ids_B_T, generic.completion_ids_B_T)
    step = step_mask(torch.tensor([[0, 1, 1]]), torch.float32)
    assert step.shape == (1, 1, 1, 3) and step[0, 0, 0, 0] < -1e30 and step[0, 0, 0, 1:].eq(0).all()


def test_kept_sampling_logits_equal_a_fresh_pass(model_tok):
    model, tok = model_tok
    examples = get_task("add", difficulty=1).sample(random.Random(5), 4)
    dec = Decoding(temperature=1.0, max_new_tokens=5)
    batch = R.sample_rollouts(
        model, tok, examples, dec, group_size=4, generator=torch.Generator().manual_seed(5),
        keep_logits=True,
    )  # fmt: skip
    plain = R.sample_rollouts(
        model, tok, examples, dec, group_size=4, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(batch.completion_ids_B_T, plain.completion_ids_B_T)  # same draws
    assert "logits_B_T_V" not in plain.extras
    kept = batch.extras["logits_B_T_V"]
    assert kept.shape == (*batch.completion_ids_B_T.shape, len(tok))
    with torch.no_grad():
        fresh = R.completion_logits(model, batch)
    valid = batch.completion_mask_B_T.bool()
    torch.testing.assert_close(kept[valid], fresh[valid], atol=1e-4, rtol=1e-4)


def test_inverse_cdf_draw_follows_the_weights_and_never_draws_a_zero():
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 2.0]])
    picks = torch.stack([S.draw(w, g) for _ in range(20000)])  # [N, 2]
    freq = torch.bincount(picks[:, 0], minlength=6).float() / len(picks)
    torch.testing.assert_close(freq, w[0] / w[0].sum(), atol=0.015, rtol=0)
    assert (picks[:, 1] == 5).all()  # all mass on the last index, unnormalised weights
    # u x total at its very top still lands on the last positive weight, never past it
    top = torch.tensor([[0.25, 0.75, 0.0, 0.0]])
    cdf = top.cumsum(-1)
    u = torch.nextafter(cdf[:, -1:], torch.zeros(1, 1))
    assert int(torch.searchsorted(cdf, u, right=True)) == 1


def test_top_p_draws_only_from_the_nucleus():
    g = torch.Generator().manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)
    picks = S._pick(logits, Decoding(temperature=1.0, top_p=0.7), g)
    assert set(picks.tolist()) == {0, 1}  # 0.5 + 0.3 covers 0.7; the tail is cut
    assert abs((picks == 0).float().mean().item() - 0.5 / 0.8) < 0.03


def test_rollout_sets_decode_together_as_each_alone(model_tok):
    """Several batches of one policy in one decode loop: each comes back as sampling it
    alone gives it (greedy, so the draws cannot differ): prompt padding, completion length,
    tokens, texts and kept logits."""
    model, tok = model_tok
    rng = random.Random(3)
    native = get_task("add").sample(rng, 3)
    cross = get_task("rev").sample(rng, 2)  # other prompt lengths, other group size
    greedy = Decoding(max_new_tokens=6, greedy=True)
    together = R.sample_rollout_sets(
        model, tok, [(native, 4), (cross, 2)], greedy, keep_logits=True
    )
    for (exs, g), got in zip([(native, 4), (cross, 2)], together, strict=True):
        alone = R.sample_rollouts(model, tok, exs, greedy, group_size=g, keep_logits=True)
        assert got.group_size == g and got.examples == alone.examples
        assert torch.equal(got.prompt_ids_B_P, alone.prompt_ids_B_P)
        assert torch.equal(got.prompt_mask_B_P, alone.prompt_mask_B_P)
        assert torch.equal(got.completion_ids_B_T, alone.completion_ids_B_T)
        assert torch.equal(got.completion_mask_B_T, alone.completion_mask_B_T)
        assert got.texts == alone.texts
        torch.testing.assert_close(
            got.extras["logits_B_T_V"], alone.extras["logits_B_T_V"], rtol=1e-4, atol=1e-4
        )


def test_prompt_groups_of_varied_sizes():
    ids = torch.tensor([[1, 2], [1, 2], [1, 2], [3, 4], [3, 4], [5, 6]])
    mask = torch.ones_like(ids)
    assert S.prompt_groups(ids, mask, [3, 2, 1]).tolist() == [0, 0, 0, 1, 1, 2]
    assert S.prompt_groups(ids, mask, [2, 3, 1]) is None  # a group mixes two prompts
    assert S.prompt_groups(ids, mask, [3, 2]) is None  # sizes do not cover the rows
    assert S.prompt_groups(ids[[0, 3, 5]], mask[:3], [1, 1, 1]) is None  # nothing shared
