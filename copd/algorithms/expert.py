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
`distill_stage` their second; this module holds the loop pieces the baselines share (budget announcement, checkpoint/stop,
cadence, the GRPO step on a subset of branches).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from copd import checkpoint
from copd import names as N
from copd.algorithms.baselines import Budget, budget_for
from copd.algorithms.copd import finish
from copd.config import ConfigError, RunConfig
from copd.engine import TrainingCancelled, World, grpo_update, log_step
from copd.evaluate import evaluate, measure_overlap
from copd.models import Branch
from copd.schedule import Position, position


def train(world: World, out_dir: str | Path) -> dict[str, dict[str, float]]:
    """Train every branch as an independent expert; evaluate each (and the average)."""
    budget = budget_for(world.cfg)
    announce(world, budget)
    expert_stage(world, out_dir, budget, world.branches)
    views = {b.name: b.view for b in world.branches}
    return finish(world, out_dir, views, extra={"budget": budget.to_dict()})


def expert_stage(world: World, out_dir, budget: Budget, experts: Sequence[Branch]) -> None:
    """Stage "experts": global steps [0, T); each expert one GRPO update per step."""
    cfg = world.cfg
    sc = cfg.schedule
    end = budget.start_of("experts") + dict(budget.stages)["experts"]
    views = {b.name: b.view for b in experts}
    if world.step == 0:
        measure_overlap(world, cycle=0, phase="rl")
        if cfg.eval.at_start:
            evaluate(world, views, step=0)
    while world.step < end:
        pos = cadence(world.step, cfg)
        metrics = rl_step(world, experts)
        world.step += 1
        log_step(world, metrics, pos.cycle, "rl", total=budget.total)
        if pos.phase_end or (sc.diag_every and world.step % sc.diag_every == 0):
            measure_overlap(world, pos.cycle, "rl")
        if pos.cycle_end and sc.eval_every_cycles and (pos.cycle + 1) % sc.eval_every_cycles == 0:
            evaluate(world, views, step=world.step)
        after_step(world, out_dir, budget, due=pos.cycle_end)


def distill_stage(
    world: World, out_dir, budget: Budget, message: str, step: Callable[[int], dict[str, float]]
) -> None:
    """Stage "distill" (static OPD, MOPD): after the experts, `step(offset)` makes one
    student update per global step (offset counts from the stage's start). Diagnostics at
    CoPD's phase-II ends, every `diag_every` steps and at the end; `message` is logged once
    when the stage starts."""
    sc = world.cfg.schedule
    start = budget.start_of("distill")
    if world.step == start:
        world.logger.log_event(message, step=world.step)
    while world.step < budget.total:
        pos = cadence(world.step, world.cfg)
        metrics = step(world.step - start)
        world.step += 1
        log_step(world, metrics, pos.cycle, "opd", total=budget.total)
        last = world.step == budget.total
        block_end = (world.step - start) % max(sc.opd_steps, 1) == 0  # CoPD's phase-II end
        if block_end or last or (sc.diag_every and world.step % sc.diag_every == 0):
            measure_overlap(world, pos.cycle, "opd")
        after_step(world, out_dir, budget, due=block_end or last)


# ---------------------------------------------------------------------- shared pieces
def announce(world: World, budget: Budget) -> None:
    """Log the budget at start; refuse to resume a checkpoint written under another budget."""
    per = ", ".join(f"{k}={v}" for k, v in budget.updates_per_policy.items())
    world.logger.log_event(
        f"budget: {per} updates per policy, rule: {budget.rule}", step=world.step
    )
    saved = world.resume_extra
    if saved.get("budget") and saved["budget"] != budget.to_dict():
        raise ConfigError(
            "schedule: the checkpoint was written under another step budget "
            f"({saved['budget']['rule']}); resume with the run's own config.json"
        )
    if saved.get("stage") and saved["stage"] != budget.stage_at(world.step):
        raise ConfigError(
            f"checkpoint: stage {saved['stage']!r} does not match step {world.step} "
            f"({budget.stage_at(world.step)!r}); the checkpoint is from another schedule"
        )


def after_step(world: World, out_dir, budget: Budget, due: bool) -> None:
    """Checkpoint when due (block end, `checkpoint_every`) and stop cleanly on request."""
    cfg = world.cfg
    extra = {"stage": budget.stage_at(world.step), "budget": budget.to_dict()}
    saved = False
    if due or (cfg.checkpoint_every and world.step % cfg.checkpoint_every == 0):
        checkpoint.save(world, out_dir, extra=extra)
        saved = True
    if world.stop_requested and world.step < budget.total:
        if not saved:
            checkpoint.save(world, out_dir, extra=extra)
        world.logger.log_event("stop requested: checkpointed", level="warning", step=world.step)
        raise TrainingCancelled(f"stopped at step {world.step} of {budget.total}")


def cadence(step: int, cfg: RunConfig) -> Position:
    """CoPD's schedule position of `step`, continued past the schedule for longer loops, so
    baselines measure and evaluate at the same points and count cycles the same way (one
    cycle per rl_steps + opd_steps block)."""
    sc = cfg.schedule
    p = position(step % sc.total_steps(), sc)
    return replace(p, step=step, cycle=step // (sc.rl_steps + sc.opd_steps))


def rl_step(world: World, branches: Sequence[Branch]) -> dict[str, float]:
    """Each of `branches`: one GRPO update on its own domain (CoPD's phase I, on a subset)."""
    g = world.cfg.grpo
    metrics: dict[str, float] = {}
    for b in branches:
        batch = world.rollout(
            b.view, world.prompts(b.task, g.prompts_per_step, b.name), g.group_size
        )
        term, grad_norm = grpo_update(world, b, batch)
        stats = {
            **term.stats,
            N.GRAD_NORM: grad_norm,
            f"reward_on/{b.task.name}": term.stats[N.REWARD_MEAN],
        }
        metrics.update({N.branch(b.name, k): v for k, v in stats.items()})
    return metrics
