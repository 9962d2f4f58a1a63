"""Single-domain experts (and their weight average): the paper's Image/Text/Video-Expert.

    copd train expert             # K experts, GRPO on their own domain only
    copd train weight_average     # the same, then the experts' parameters averaged

Every expert starts from the base and runs GRPO on its own domain for T =
schedule.total_steps() updates (CoPD's updates per branch); the experts step in lockstep,
one update each per global step. No distillation, no merge (weight_average: the final merge
of `cfg.merge`, uniform averaging by default). Phases are logged as "rl"; cycles are still
counted per (rl_steps + opd_steps) block and diagnostics (pair and vs-base overlap) are
measured at the same points as CoPD, so the drift of independent experts (paper Fig. 2c/d,
4a/b) overlays CoPD's curves.

The expert stage (`expert_stage`) is also the first stage of static OPD and MOPD, and
`distill_stage` their second; both, and the GRPO step on a subset of branches (`rl_step`),
are the stage pieces the baselines share. Announcement, cadence, checkpoints, stop
requests and the finish are every loop's (loop.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from copd.common import names as N
from copd.policy.models import Branch
from copd.train.algorithms.baselines import Budget
from copd.train.algorithms.loop import (
    Actions,
    after_scheduled_step,
    after_step,
    announce,
    begin,
    finish,
    in_process,
)
from copd.train.update import grpo_update
from copd.train.world import World, log_step


def train(world: World, out_dir: str | Path) -> dict[str, dict[str, float]]:
    """Train every branch as an independent expert; evaluate each (and the average)."""
    budget = world.budget
    views = {b.name: b.view for b in world.branches}
    acts = in_process(world, out_dir, views, budget)
    announce(world, budget=budget)
    expert_stage(world, acts, budget, world.branches)
    return finish(world, out_dir, views, extra={"budget": budget.to_dict()})


def expert_stage(world: World, acts: Actions, budget: Budget, experts: Sequence[Branch]) -> None:
    """Stage "experts": global steps [0, T); each expert one GRPO update per step. `acts`
    measure, evaluate (the experts) and checkpoint at CoPD's points."""
    end = budget.start_of("experts") + dict(budget.stages)["experts"]
    begin(world, acts)
    while world.state.step < end:
        pos = world.cadence.position(world.state.step)
        metrics = rl_step(world, experts)
        world.state.step += 1
        log_step(world, metrics, pos.cycle, "rl", total=budget.total)
        after_scheduled_step(world, acts, budget.total, pos, "rl")


def distill_stage(
    world: World,
    acts: Actions,
    budget: Budget,
    message: str,
    step: Callable[[int], dict[str, float]],
    evaluate: Callable[[int], object] | None = None,
) -> None:
    """Stage "distill" (static OPD, MOPD): after the experts, `step(offset)` makes one
    student update per global step (offset counts from the stage's start). Diagnostics and
    checkpoints at CoPD's phase-II ends and at the end; `evaluate(step)` (the student's
    held-out scores) at every `eval_every_cycles`-th phase-II end, so the student's curve
    is drawn as the experts' is; `message` is logged once when the stage starts."""
    sc = world.cadence.schedule
    start = budget.start_of("distill")
    if world.state.step == start:
        world.logger.log_event(message, step=world.state.step)
    while world.state.step < budget.total:
        pos = world.cadence.position(world.state.step)
        metrics = step(world.state.step - start)
        world.state.step += 1
        log_step(world, metrics, pos.cycle, "opd", total=budget.total)
        last = world.state.step == budget.total
        done = world.state.step - start
        block_end = done % max(sc.opd_steps, 1) == 0  # CoPD's phase-II end
        every = sc.eval_every_cycles
        after_step(
            world,
            acts if evaluate is None else replace(acts, evaluate=evaluate),
            budget.total,
            pos.cycle,
            "opd",
            measure_due=block_end or last,
            eval_due=bool(evaluate and block_end and every)
            and (done // max(sc.opd_steps, 1)) % every == 0,
            save_due=block_end or last,
        )


def rl_step(world: World, branches: Sequence[Branch]) -> dict[str, float]:
    """Each of `branches`: one GRPO update on its own domain (CoPD's phase I, on a subset)."""
    g = world.batches
    metrics: dict[str, float] = {}
    for b in branches:
        batch = world.rollout(
            b.view, world.prompts(b.task, g.prompts_per_step, b.name), g.group_size
        )
        term, grad_norm = grpo_update(world, b, batch)
        stats = {
            **term.stats,
            N.GRAD_NORM: grad_norm,
            N.reward_on(b.task.name): term.stats[N.REWARD_MEAN],
        }
        metrics.update({N.branch(b.name, k): v for k, v in stats.items()})
    return metrics
