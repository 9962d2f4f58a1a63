"""Co-Evolving Policy Distillation: Algorithm 1 of arXiv 2604.27083, top to bottom.

K branches start from one base, each with its own domain. For N cycles:
  phase I  (S_RL steps):  every branch runs GRPO on its own domain;
  phase II (S_OPD steps): every branch k makes ONE update from (a) its native GRPO batch
           and (b) a cross-branch batch: its own samples on each teacher j's prompts, every
           sampled token scored by j, token advantage beta * (log p_j - log p_k), stop-grad.
Then the branches are merged by parameter averaging.

Choices where the paper is silent (all config fields):
1. Teachers are the peers' live weights at the current step (`opd.teacher="live"`); every
   teacher scores before any branch updates, so branch order does not matter. A frozen
   snapshot per phase is `opd.teacher="snapshot"`.
2. The combined update is loss = native GRPO term + cross_weight * mean over teachers of
   the OPD term (`opd.teacher_weighting="per_teacher"`: cross_weight per teacher, the sum
   as Algorithm 1 reads), each aggregated with `grpo.loss_agg`, both through the same
   clipped surrogate (`opd.advantage`: or a direct full-vocabulary / top-k reverse KL). The
   cross batch size is `opd.cross_prompts_per_step x opd.cross_group_size`; a batch is one
   optimizer step unless `grpo.minibatches` / `grpo.updates_per_batch` say otherwise. At
   the diagnostics cadence each update also records its signal balance (every term's
   gradient norm and the OPD terms' cosines with the GRPO term).
3. Beyond two branches: `topology.kind` (hub-and-spoke as in the paper, or all pairs).
4. Diagnostics (top-k overlap, symmetric KL) are measured on a fixed probe set of
   prompts from every domain, on each student's own rollouts, every `diag_every` steps and
   at every phase end; and against the base model.
5. Checkpoints at every cycle end (and every `checkpoint_every` steps, and on SIGTERM).

The loop is a driver over branch workers (copd/workers): it draws every prompt, then asks
the workers to sample, score and update. The same loop runs the branches in this process
(`backend.kind="local"`) or as Ray actors (`"ray"`, phase-I steps in parallel); each
branch samples tokens from its own generator, so both back ends give the same numbers.
"""

from __future__ import annotations

from pathlib import Path

from copd.common import names as N
from copd.math.schedule import position, teachers_of
from copd.policy.batch import RolloutBatch, TeacherScores
from copd.train import samples
from copd.train.algorithms.loop import (
    after_scheduled_step,
    announce,
    begin,
    finish,
    via_workers,
)
from copd.train.update import signal_due
from copd.train.workers import Call, CrossBatch, Ops, WorkerGroup, make_group
from copd.train.workers.local import LocalGroup
from copd.train.world import World, log_step


def phase1_step(world: World, group: WorkerGroup | None = None) -> dict[str, float]:
    """Every branch: one GRPO update on its own domain (in parallel on Ray)."""
    group = group or LocalGroup(world)
    g = world.batches
    tasks = world.branch_tasks
    signal = signal_due(world)
    work = {
        n: (world.prompts(tasks[n], g.prompts_per_step, n), g.group_size, signal)
        for n in group.names
    }
    metrics: dict[str, float] = {}
    for n, stats in group.rl_steps(work).items():
        stats[N.reward_on(tasks[n].name)] = stats[N.REWARD_MEAN]
        metrics.update({N.branch(n, k): v for k, v in stats.items()})
    return metrics


def phase2_step(world: World, group: WorkerGroup | None = None) -> dict[str, float]:
    """Every branch: one update from its native GRPO batch plus cross-branch OPD batches."""
    group = group or LocalGroup(world)
    g = world.batches
    names = group.names
    tasks = world.branch_tasks
    # 1. Every branch samples its native batch and its cross batches (peer prompts), in one
    #    call and one decode loop. The driver draws the prompts from each branch's prompt
    #    RNG, in a fixed order.
    requests_of, keys = {}, []
    for n in names:
        requests, mine = [], []
        if g.native_rl:
            requests.append((world.prompts(tasks[n], g.prompts_per_step, n), g.group_size))
            mine.append((n, None))
        for t in teachers_of(n, names, g.topology, g.hub, g.one_way):
            peer_prompts = world.prompts(tasks[t], g.cross_prompts_per_step, n)
            requests.append((peer_prompts, g.cross_group_size))
            mine.append((n, t))
        requests_of[n] = requests
        keys.append(mine)
    sampled_of = group.rollouts(requests_of)
    batches = {
        key: batch
        for mine, n in zip(keys, names, strict=True)
        for key, batch in zip(mine, sampled_of[n], strict=True)
    }
    cross = {k: b for k, b in batches.items() if k[1] is not None}
    # 2. Every teacher scores every sampled token before anyone updates.
    scored = group.scores([(t, batch) for (s, t), batch in cross.items()])
    teacher_logp = dict(zip(cross, scored, strict=True))
    if world.recording.due(world.state.step + 1):  # what the OPD terms see, for the samples view
        log_cross_samples(world, group, cross, teacher_logp)
    # 3. One combined update per branch.
    work = {
        n: (
            batches.get((n, None)),
            [CrossBatch(t, b, teacher_logp[s, t]) for (s, t), b in cross.items() if s == n],
            signal_due(world),
        )
        for n in names
    }
    metrics: dict[str, float] = {}
    for n, stats in group.train_steps(work).items():
        if (n, None) in batches:
            stats[N.reward_on(tasks[n].name)] = stats[N.REWARD_MEAN]
        for (s, t), b in cross.items():
            if s == n:
                stats[N.reward_on(tasks[t].name)] = float(b.rewards_B.mean())
        metrics.update({N.branch(n, k): v for k, v in stats.items()})
    return metrics


def log_cross_samples(
    world: World,
    group: WorkerGroup,
    cross: dict[tuple[str, str], RolloutBatch],
    teacher_logp: dict[tuple[str, str], TeacherScores],
) -> None:
    """Record the first prompts of every cross batch (copd/train/samples.py): each student's
    tokens with its own log-prob (its logits, before the update) and the teacher's, as the
    OPD term scored them. Logged at the step this update makes."""
    G = {k: b.group_size for k, b in cross.items()}
    n = world.recording.prompts
    subs = {k: b.subset(list(range(min(n * G[k], b.size)))) for k, b in cross.items()}
    logits = group.call([Call(s, Ops.probe_logits, (sub,)) for (s, _), sub in subs.items()])
    rows = []
    for ((s, t), sub), s_logits in zip(subs.items(), logits, strict=True):
        lp = teacher_logp[s, t].logp
        rows += samples.cross_samples(world, s, t, sub, s_logits, lp[: sub.size])
    step = world.state.step + 1
    pos = position(world.state.step, world.cadence.schedule)
    world.logger.log_samples(rows, step=step, cycle=pos.cycle, phase=pos.phase)


def train(world: World, out_dir: str | Path) -> dict[str, dict[str, float]]:
    """Run (or continue, from `world.state.step`) the CoPD schedule; returns the final scores.
    The branches run in the workers of `world.backend` (in-process by default, or Ray)."""
    group = make_group(world)
    try:
        return _train(world, group, out_dir)
    finally:
        group.close()


def _train(world: World, group: WorkerGroup, out_dir: str | Path) -> dict[str, dict[str, float]]:
    sc = world.cadence.schedule
    total = sc.total_steps()
    acts = via_workers(world, group, out_dir)
    announce(
        world,
        f"CoPD: {len(group.names)} branches, {sc.cycles} cycles x ({sc.rl_steps} RL + "
        f"{sc.opd_steps} OPD) = {total} updates per branch; topology {world.batches.topology}; "
        f"backend {world.backend.kind}",
    )
    begin(world, acts)
    while world.state.step < total:
        pos = position(world.state.step, sc)
        if pos.phase == "opd" and pos.phase_start and world.batches.teacher == "snapshot":
            group.snapshot_teachers()
        step = phase1_step if pos.phase == "rl" else phase2_step
        metrics = step(world, group)
        world.state.step += 1
        world.timer.add(group.pop_times())  # worker-side timings (Ray)
        log_step(world, metrics, pos.cycle, pos.phase)
        if pos.phase_end and pos.phase == "opd":
            group.drop_teachers()  # snapshots live for one phase (and stay out of checkpoints)
        after_scheduled_step(world, acts, total, pos)
    return finish(world, out_dir, {b.name: b.view for b in world.branches}, group=group)
