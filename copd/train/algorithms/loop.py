"""What every training loop shares: the start, the after-step cadence and the finish.

    acts = in_process(world, out_dir, views, budget)   # or via_workers(world, group, out_dir)
    announce(world, "...", budget)                      # at start (+ resume checks)
    begin(world, acts)                                  # step 0: diagnostics, eval.at_start
    # (one policy, e.g. mixed GRPO: policy, views, acts = start_one_policy(world, out_dir, name))
    while world.state.step < total:
        metrics = ...one update...
        world.state.step += 1
        log_step(world, metrics, cycle, phase, total)
        after_step(world, acts, total, cycle, phase, measure_due=..., eval_due=..., save_due=...)
    return finish(world, out_dir, views)

The cadence, the same for CoPD and every baseline, so their curves line up:
  - diagnostics at the loop's own points (phase ends) and every `schedule.diag_every` steps;
  - evaluation at the loop's points (every `eval_every_cycles`-th cycle end), except at the
    final step: `finish` evaluates every model there, and each (model, benchmark, step)
    is recorded once;
  - every part's seconds of a step (its update and that after-step work) logged at the
    step (`log_step_times`) before its checkpoint, so a checkpoint covers every row of it;
  - a checkpoint at the loop's points (cycle ends) and every `checkpoint_every` steps;
  - a stop request (SIGTERM) checkpoints, once even where a checkpoint was due anyway, and
    raises TrainingCancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from copd.common import names as N
from copd.math.schedule import Position
from copd.policy.models import PolicyView
from copd.spec import ConfigError, ScheduleConfig
from copd.train import checkpoint
from copd.train.algorithms.baselines import Budget
from copd.train.evaluate import eval_counts, evaluate, measure_overlap
from copd.train.guard import check_finite
from copd.train.pause import maybe_pause
from copd.train.results import export_merged, merged_model, write_results
from copd.train.workers import WorkerGroup
from copd.train.world import TrainingCancelled, World


@dataclass(frozen=True)
class Actions:
    """How a loop measures, evaluates and checkpoints: in this process (the baselines) or
    through its branch workers (CoPD)."""

    measure: Callable[[int, str], object]  # (cycle, phase): overlap diagnostics, logged
    evaluate: Callable[[int], object]  # (step): held-out scores, logged
    save: Callable[[], object]  # checkpoint the world at world.state.step
    pop_times: Callable[[], dict[str, float]] = dict  # seconds spent off this process (Ray)


def in_process(
    world: World, out_dir: str | Path, views: dict[str, PolicyView], budget: Budget
) -> Actions:
    """Diagnostics and evaluation of `views` on the world; checkpoints record the stage of
    the next step and the budget (a resumed run checks both)."""
    return Actions(
        measure=lambda cycle, phase: measure_overlap(world, cycle, phase),
        evaluate=lambda step: evaluate(world, views, step=step),
        save=lambda: checkpoint.save(
            world,
            out_dir,
            extra={"stage": budget.stage_at(world.state.step), "budget": budget.to_dict()},
        ),
    )


def via_workers(world: World, group: WorkerGroup, out_dir: str | Path) -> Actions:
    """Every branch measured, evaluated and checkpointed through its worker."""
    return Actions(
        measure=lambda cycle, phase: group.measure_overlap(world, cycle, phase),
        evaluate=lambda step: group.evaluate(world, step=step),
        save=lambda: group.save(world, out_dir),
        pop_times=group.pop_times,
    )


def announce(world: World, message: str | None = None, budget: Budget | None = None) -> None:
    """Log `message` and the step budget at start. With a budget, refuse to resume a
    checkpoint written under another budget or at another stage."""
    if message:
        world.logger.log_event(message, step=world.state.step)
    if budget is None:
        return
    per = ", ".join(f"{k}={v}" for k, v in budget.updates_per_policy.items())
    world.logger.log_event(
        f"budget: {per} updates per policy, rule: {budget.rule}", step=world.state.step
    )
    saved = world.state.resume_extra
    if saved.get("budget") and saved["budget"] != budget.to_dict():
        raise ConfigError(
            "schedule: the checkpoint was written under another step budget "
            f"({saved['budget']['rule']}); resume with the run's own config.json"
        )
    if saved.get("stage") and saved["stage"] != budget.stage_at(world.state.step):
        raise ConfigError(
            f"checkpoint: stage {saved['stage']!r} does not match step {world.state.step} "
            f"({budget.stage_at(world.state.step)!r}); the checkpoint is from another schedule"
        )


def begin(world: World, acts: Actions) -> None:
    """Before the first step of a fresh run: diagnostics (branches = base), flushed to every
    logger at once (the Live view's first chart draws from them), then the starting scores
    when `eval.at_start`, flushed too."""
    if world.state.step == 0:
        acts.measure(0, "rl")
        world.logger.flush()
        if world.evaluation.at_start:
            acts.evaluate(0)
        log_step_times(world, acts, 0, "rl")
        world.logger.flush()  # the step-0 rows reach the store now: the first chart draws


def start_one_policy(world: World, out_dir: str | Path, name: str) -> tuple:
    """The start of a loop that trains one policy `name` (mixed and sequential GRPO): its
    branch, the views evaluation scores (that policy), the in-process actions under the
    world's budget; the budget announced and step 0 done. Returns (policy, views, acts)."""
    policy = world.branch(name)
    views = {name: policy.view}
    acts = in_process(world, out_dir, views, world.budget)
    announce(world, budget=world.budget)
    begin(world, acts)
    return policy, views, acts


def log_step_times(world: World, acts: Actions, cycle: int, phase: str) -> None:
    """Every part's seconds of a step (`time/*`: its update, then its diagnostics,
    evaluation and logging), once per part, logged at that step before its checkpoint: the
    checkpoint covers them, and a resumed run's first step carries its own seconds only, as
    in a run that was never stopped. (Before: the after-step parts went out with the next
    step's rows, so a resume lost them.) This call's own logging is not counted. At step 0:
    the seconds of `begin`."""
    world.timer.add(acts.pop_times())
    times = world.timer.pop()
    if times:
        world.logger.log_metrics(
            {N.time_key(part): secs for part, secs in times.items()},
            step=world.state.step,
            cycle=cycle,
            phase=phase,
        )


def evaluated_cycle_end(pos: Position, sc: ScheduleConfig) -> bool:
    """Whether the step at `pos` ends a cycle that is evaluated (every `eval_every_cycles`)."""
    every = sc.eval_every_cycles
    return bool(pos.cycle_end and every and (pos.cycle + 1) % every == 0)


def after_step(
    world: World,
    acts: Actions,
    total: int,
    cycle: int,
    phase: str,
    *,
    measure_due: bool,
    eval_due: bool = False,
    save_due: bool,
) -> None:
    """After `world.state.step += 1` and `log_step`: diagnostics, evaluation, checkpoint and stop
    request, by the cadence in the module docstring. `measure_due`, `eval_due`, `save_due`:
    whether the loop's own points fall on this step."""
    sc, every = world.cadence.schedule, world.cadence.checkpoint_every
    check_finite(world)  # diverged weights: fail here, naming the step and the fix
    if measure_due or (sc.diag_every and world.state.step % sc.diag_every == 0):
        acts.measure(cycle, phase)
    if eval_due and world.state.step < total:  # the final step's evaluation is finish's
        acts.evaluate(world.state.step)
    log_step_times(world, acts, cycle, phase)
    saved = save_due or bool(every and world.state.step % every == 0)
    if saved:
        acts.save()
    maybe_pause(str(world.state.step), world.logger.flush)  # $COPD_PAUSE_AT: tests act here
    if world.state.stop_requested and world.state.step < total:
        if not saved:
            acts.save()
        world.logger.log_event(
            "stop requested: checkpointed", level="warning", step=world.state.step
        )
        raise TrainingCancelled(f"stopped at step {world.state.step} of {total}")


def after_scheduled_step(
    world: World, acts: Actions, total: int, pos: Position, phase: str | None = None
) -> None:
    """`after_step` at the points of the schedule position `pos` (of the step just made):
    diagnostics at phase ends, evaluation at evaluated cycle ends, a checkpoint at cycle
    ends. `phase` overrides the logged phase (baselines log every step as "rl")."""
    after_step(
        world,
        acts,
        total,
        pos.cycle,
        phase or pos.phase,
        measure_due=pos.phase_end,
        eval_due=evaluated_cycle_end(pos, world.cadence.schedule),
        save_due=pos.cycle_end,
    )


def finish(
    world: World,
    out_dir: str | Path,
    views: dict[str, PolicyView],
    extra: dict | None = None,
    group: WorkerGroup | None = None,
) -> dict[str, dict[str, float]]:
    """Final evaluation of each branch and (when merging) the merged model; export; table.
    `extra` goes into results.json (baselines record their step budget there). With a
    worker `group` off this process, the branches are evaluated in their workers and
    merged from their states."""
    remote = group is not None and not group.is_local
    views = {} if remote else dict(views)
    scores = group.evaluate(world, step=world.state.step, final=True) if remote else {}
    n_branches = len(group.names) if remote else len(world.branches)
    if world.merge.enabled and n_branches > 1:
        states = [s.trainable for s in group.states().values()] if remote else None
        model = merged_model(world, states)
        export_merged(world, Path(out_dir) / "merged", model)
        views["merged"] = PolicyView(model)
    scores.update(evaluate(world, views, step=world.state.step, final=True))
    write_results(
        scores,
        out_dir,
        extra={
            "method": world.method.name,
            "steps": world.state.step,
            "eval_n": eval_counts(world),  # distinct prompts per benchmark
            **(extra or {}),
        },
    )
    benches = {b for per in scores.values() for b in per}
    world.logger.log_event(  # the table itself: `copd train` prints it, results.json holds it
        f"final results: {len(scores)} models x {len(benches)} scores in "
        f"{Path(out_dir) / 'results.json'}",
        step=world.state.step,
    )
    return scores
