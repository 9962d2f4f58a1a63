"""The branch-worker interface and the in-process back end (fast; no Ray needed).

The Ray back end runs the base-class paths of `WorkerGroup` (states-based checkpoint and
merge, diagnostics from worker logits, evaluation per worker); `_RemoteLike` runs exactly
those paths in-process, so they are checked here against the direct in-process ones.
"""

from __future__ import annotations

import pytest
import torch

from copd.policy.rollout import completion_logprobs
from copd.train import checkpoint
from copd.train.algorithms.copd import _train
from copd.train.logger import NullLogger
from copd.train.workers import Call, CrossBatch, LocalGroup, Ops, make_group
from copd.train.workers.base import measure_overlap_via_workers
from copd.train.world import World
from tests.test_engine import Recorder


class _RemoteLike(LocalGroup):
    """In-process workers driven through the paths the Ray group uses."""

    is_local = False
    save = LocalGroup.__mro__[1].save
    measure_overlap = LocalGroup.__mro__[1].measure_overlap
    evaluate = LocalGroup.__mro__[1].evaluate


def _examples(world, name, n=2):
    b = world.branch(name)
    return world.prompts(b.task, n, name)


def test_worker_contract_rollout_score_train_state(tiny_cfg):
    world = World.build(tiny_cfg("demo"), NullLogger())
    group = make_group(world)
    assert isinstance(group, LocalGroup) and group.names == ["add", "rev"]
    add = group.workers["add"]
    batch = add.rollout(_examples(world, "add"), 4)
    B, T = batch.completion_ids_B_T.shape
    assert B == 8 and batch.rewards_B.shape == (B,) and len(batch.texts) == B
    # A teacher's score is its log-prob of the student's tokens.
    lp = group.workers["rev"].score(batch).logp
    with torch.no_grad():
        ref = completion_logprobs(world.branch("rev").view.module, batch, 1.0)
    assert lp.shape == (B, T) and torch.allclose(lp, ref)
    saved = add.state()
    before = [p.detach().clone() for p in world.branch("add").params]
    # Both branches still hold the base's weights, so the peer's scores equal the student's
    # and the OPD advantage would be 0: let the teacher rate every token e^0.5 times higher.
    lp = lp + 0.5
    stats = add.train_step(batch, [CrossBatch("rev", batch, lp)])
    assert {"grad_norm", "reward/mean", "opd/adv_mean/rev"} <= set(stats)
    assert any(
        not torch.equal(a, p) for a, p in zip(before, world.branch("add").params, strict=True)
    )
    ex = _examples(world, "add")
    next_tokens = add.rollout(ex, 4).completion_ids_B_T
    # load_state restores weights, optimizer and the token generator: same draws again.
    add.load_state(saved)
    assert all(torch.equal(a, p) for a, p in zip(before, world.branch("add").params, strict=True))
    add.train_step(batch, [CrossBatch("rev", batch, lp)])
    assert torch.equal(add.rollout(ex, 4).completion_ids_B_T, next_tokens)


def test_branch_generators_are_independent(tiny_cfg):
    """A branch's draws do not depend on what other branches sampled in between: the
    property that lets one Ray actor per branch reproduce the in-process run."""
    cfg = tiny_cfg("demo")
    w1, w2 = World.build(cfg, NullLogger()), World.build(cfg, NullLogger())
    g1, g2 = LocalGroup(w1), LocalGroup(w2)
    ex = _examples(w1, "add", 4)
    g2.workers["rev"].rollout(ex, 4)  # only world 2 samples from the other branch first
    a = g1.workers["add"].rollout(ex, 4).completion_ids_B_T
    b = g2.workers["add"].rollout(ex, 4).completion_ids_B_T
    assert torch.equal(a, b)


def test_worker_diagnostics_equal_in_process_ones(tiny_cfg):
    from copd.train.evaluate import measure_overlap

    world = World.build(tiny_cfg("demo"), NullLogger())
    group = LocalGroup(world)
    with torch.no_grad():  # make the branches differ
        for p in world.branch("rev").params:
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    direct = measure_overlap(world, cycle=0, phase="rl")
    via = measure_overlap_via_workers(world, group, cycle=0, phase="rl")
    keys = [k for k in direct if not k.startswith("system/")]
    assert direct["pair/add~rev/sym_kl"] > 0  # the branches differ now
    assert {k: direct[k] for k in keys} == {k: via[k] for k in keys}


def test_remote_paths_give_the_in_process_run_and_resume_exactly(tiny_cfg, tmp_path):
    cfg = tiny_cfg("demo", "opd.teacher=snapshot")
    rec_a, rec_b = Recorder(), Recorder()
    wa, wb = World.build(cfg, rec_a), World.build(cfg, rec_b)
    sa = _train(wa, LocalGroup(wa), tmp_path / "a")
    sb = _train(wb, _RemoteLike(wb), tmp_path / "b")
    assert sa == sb and rec_a.evals == rec_b.evals
    strip = [
        {k: v for k, v in m.items() if not k.startswith(("time/", "system/"))}
        for *_, m in rec_a.metrics
    ]
    assert strip == [
        {k: v for k, v in m.items() if not k.startswith(("time/", "system/"))}
        for *_, m in rec_b.metrics
    ]
    # A checkpoint written from worker states restores into workers: same final weights.
    part = World.build(cfg, NullLogger())
    pg = _RemoteLike(part)
    pg.rl_steps({n: (_examples(part, n, 4), 4, False) for n in pg.names})
    part.state.step = 1
    path = pg.save(part, tmp_path / "c")
    resumed = World.build(cfg, NullLogger())
    checkpoint.restore(resumed, path)
    rg = _RemoteLike(resumed)
    rg.load_checkpoint(resumed.state.restored_from)
    for n in rg.names:
        a, b = pg.workers[n].state(), rg.workers[n].state()
        assert all(torch.equal(a.trainable[k], b.trainable[k]) for k in a.trainable)
        assert torch.equal(a.gen, b.gen)
    times = rg.call([Call("add", Ops.pop_times)])[0]
    assert isinstance(times, dict)


@pytest.mark.gpu
def test_local_branches_go_to_gpus_round_robin(tiny_cfg):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs at least 2 CUDA GPUs to check branch placement")
    world = World.build(tiny_cfg("copd-3", "topology.kind=hub"), NullLogger())
    n = torch.cuda.device_count()
    assert [str(b.device) for b in world.branches] == [f"cuda:{i % n}" for i in range(3)]
    group = LocalGroup(world)
    stats = group.rl_steps({x: (_examples(world, x, 2), 2, False) for x in group.names})
    assert all("grad_norm" in s for s in stats.values())
