"""The update step: zero-advantage groups skipped exactly, zero-gradient steps, and several
optimizer steps per rollout batch (grpo.updates_per_batch)."""

import pytest
import torch

from copd.common import names as N
from copd.policy.decoding import Decoding
from copd.policy.rollout import completion_logprobs, sample_rollouts
from copd.train.logger import NullLogger
from copd.train.settings import zero_advantage_skippable
from copd.train.terms import grpo_term
from copd.train.update import grpo_update
from copd.train.world import World


def skips_zero_advantage(world) -> bool:
    """Whether the world's GRPO terms skip flat prompt groups, decided afresh for its config,
    tokenizer and base model (World.build decides it once, into `world.loss`)."""
    return zero_advantage_skippable(world.cfg, world.tokenizer, world.base.module)


def _batch(world, prompts=4, group=4, seed=0):
    b = world.branches[0]
    batch = sample_rollouts(
        b.view.module,
        world.tokenizer,
        world.prompts(b.task, prompts, b.name),
        Decoding(temperature=1.0, max_new_tokens=6),
        group_size=group,
        generator=torch.Generator().manual_seed(seed),
    )
    return batch


def _pair(tiny_cfg, *extra):
    """Two worlds on one base, identical but for zero-advantage skipping."""
    on = World.build(tiny_cfg("demo", "grpo.lr=1e-3", *extra), NullLogger())
    off = World.build(
        tiny_cfg("demo", "grpo.lr=1e-3", "grpo.skip_zero_advantage=false", *extra), NullLogger()
    )
    assert skips_zero_advantage(on) and not skips_zero_advantage(off)
    return on, off


def _params(world):
    return [p.detach().clone() for p in world.branches[0].params]


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean", "dr_grpo"])
def test_skipping_flat_groups_gives_the_full_update(tiny_cfg, agg):
    on, off = _pair(tiny_cfg, f"grpo.loss_agg={agg}")
    batch = _batch(on)
    # groups 0 and 2 carry a signal, 1 and 3 are flat (all right / all wrong)
    batch.rewards_B = torch.tensor([1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0.0])
    grads, losses = [], []
    for w in (on, off):
        b = w.branches[0]
        t = grpo_term(b, batch, w.loss, w.timer)
        b.optimizer.zero_grad(set_to_none=True)
        t.loss.backward()
        grads.append([p.grad.clone() for p in b.params])
        losses.append(t.loss.item())
        assert t.stats[N.SIGNAL_FRAC] == 0.5
    assert losses[0] == pytest.approx(losses[1], rel=1e-5, abs=1e-8)
    scale = max(g.abs().max().item() for g in grads[1])
    assert scale > 0
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_a_batch_without_signal_runs_no_forward_but_still_steps_adam(tiny_cfg):
    on, off = _pair(tiny_cfg)
    signal, flat = _batch(on, seed=1), _batch(on, seed=2)
    signal.rewards_B = torch.tensor([1.0, 0, 0, 0] * 4)
    flat.rewards_B = torch.ones(16)
    for w in (on, off):
        grpo_update(w, w.branches[0], signal)  # Adam now has momentum
        w.timer.pop()
        term, grad_norm = grpo_update(w, w.branches[0], flat)
        assert grad_norm == 0.0 and term.loss.item() == 0.0
        parts = w.timer.pop()
        assert ("forward" in parts) == (w is off)  # skipped: no forward pass at all
        assert (N.ENTROPY in term.stats) == (w is off)
        assert term.stats[N.SIGNAL_FRAC] == 0.0
    # the zero-gradient step moved the weights by Adam's momentum, identically
    for a, b in zip(_params(on), _params(off), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    state = on.branches[0].optimizer.state
    assert all(int(s["step"]) == 2 for s in state.values())


def test_skipping_is_off_with_a_kl_penalty_or_a_mixture_of_experts(tiny_cfg):
    world = World.build(tiny_cfg("demo", "grpo.kl_coef=0.1"), NullLogger())
    assert not skips_zero_advantage(world)
    world = World.build(tiny_cfg("demo"), NullLogger())
    assert skips_zero_advantage(world)
    world.base.module.config.num_experts = 8  # as a Qwen-MoE config says
    assert not skips_zero_advantage(world)


def test_updates_per_batch_reuses_the_batch_with_the_sampling_log_probs(tiny_cfg):
    world = World.build(tiny_cfg("demo", "grpo.lr=1e-3", "grpo.updates_per_batch=3"), NullLogger())
    b = world.branches[0]
    batch = _batch(world)
    batch.rewards_B = torch.tensor([1.0, 0, 0, 0] * 4)
    with torch.no_grad():
        sampled = completion_logprobs(b.view.module, batch, 1.0)
    term, _ = grpo_update(world, b, batch)
    # the ratio of every pass is taken against the policy that sampled the batch
    torch.testing.assert_close(batch.old_logp_B_T, sampled, rtol=1e-5, atol=1e-6)
    assert all(int(s["step"]) == 3 for s in b.optimizer.state.values())
    with torch.no_grad():
        now = completion_logprobs(b.view.module, batch, 1.0)
    assert not torch.allclose(now, sampled)  # three steps moved the policy off it


def test_micro_batches_keep_the_sampling_log_probs_across_epochs(tiny_cfg):
    """grpo.micro_batch_rows with several PPO epochs and one mini-batch: every epoch's ratio
    is taken against the policy that sampled the batch, so the steps equal one pass's (the
    slices used to keep the first epoch's log-probs on throwaway sub-batches, so epoch 2 on
    took the ratio against the moved policy: ratio 1, no clip)."""
    extra = ("grpo.lr=5e-2", "grpo.updates_per_batch=3", "grpo.grad_clip=1e9")
    worlds = {
        rows: World.build(tiny_cfg("demo", *extra, f"grpo.micro_batch_rows={rows}"), NullLogger())
        for rows in (0, 4)
    }
    clip, params = {}, {}
    for rows, w in worlds.items():
        batch = _batch(w)
        batch.rewards_B = torch.tensor([1.0, 0, 0, 0] * 4)
        term, _ = grpo_update(w, w.branches[0], batch)
        clip[rows], params[rows] = term.stats[N.CLIP_FRAC], _params(w)
    assert clip[0] > 0  # the large steps move the ratio out of the clip range
    # the same tokens clipped (the slices' fractions are averaged by rows, not tokens)
    assert clip[4] == pytest.approx(clip[0], abs=0.01)
    # Adam turns float-rounding noise in near-zero gradients into up to a few % of a step
    for a, b in zip(params[0], params[4], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0.05 * 5e-2)
