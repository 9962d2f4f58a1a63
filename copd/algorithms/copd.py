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
   the OPD term, each aggregated with `grpo.loss_agg`, both through the same clipped
   surrogate. The cross batch size is `opd.cross_prompts_per_step x opd.cross_group_size`.
3. Beyond two branches: `topology.kind` (hub-and-spoke as in the paper, or all pairs).
4. Diagnostics (top-k overlap, symmetric KL) are measured on a fixed probe set of
   prompts from every domain, on each student's own rollouts, every `diag_every` steps and
   at every phase end; and against the base model.
5. Checkpoints at every cycle end (and every `checkpoint_every` steps, and on SIGTERM).
"""

from __future__ import annotations

from pathlib import Path

from copd import checkpoint
from copd import names as N
from copd.engine import TrainingCancelled, World, grpo_term, log_step, opd_term, update
from copd.evaluate import evaluate, measure_overlap
from copd.models import PolicyView
from copd.results import export_merged, merged_model, write_results
from copd.schedule import position, teachers_of


def phase1_step(world: World) -> dict[str, float]:
    """Every branch: one GRPO update on its own domain."""
    g = world.cfg.grpo
    metrics: dict[str, float] = {}
    for b in world.branches:
        batch = world.rollout(
            b.view, world.prompts(b.task, g.prompts_per_step, b.name), g.group_size
        )
        term = grpo_term(world, b, batch)
        grad_norm = update(world, b, [(1.0, term)])
        stats = {
            **term.stats,
            N.GRAD_NORM: grad_norm,
            f"reward_on/{b.task.name}": term.stats[N.REWARD_MEAN],
        }
        metrics.update({N.branch(b.name, k): v for k, v in stats.items()})
    return metrics


def phase2_step(world: World) -> dict[str, float]:
    """Every branch: one update from its native GRPO batch plus cross-branch OPD batches."""
    cfg = world.cfg
    g, o = cfg.grpo, cfg.opd
    names = cfg.branch_names
    # 1. Every branch samples its native batch and its cross batches (peer prompts).
    native, cross = {}, {}
    for b in world.branches:
        if o.native_rl:
            native[b.name] = world.rollout(
                b.view, world.prompts(b.task, g.prompts_per_step, b.name), g.group_size
            )
        for t in teachers_of(b.name, names, cfg.topology.kind, cfg.hub, o.one_way):
            peer_prompts = world.prompts(world.branch(t).task, o.cross_prompts_per_step, b.name)
            cross[b.name, t] = world.rollout(b.view, peer_prompts, o.cross_group_size)
    # 2. Every teacher scores every sampled token before anyone updates.
    teacher_logp = {
        (s, t): world.score(world.teacher_view(t), batch) for (s, t), batch in cross.items()
    }
    # 3. One combined update per branch.
    metrics: dict[str, float] = {}
    for b in world.branches:
        terms, stats = [], {}
        if b.name in native:
            term = grpo_term(world, b, native[b.name])
            terms.append((1.0, term))
            stats.update(term.stats)
            stats[f"reward_on/{b.task.name}"] = term.stats[N.REWARD_MEAN]
        mine = [(t, batch) for (s, t), batch in cross.items() if s == b.name]
        for t, batch in mine:
            term = opd_term(world, b, batch, teacher_logp[b.name, t])
            terms.append((o.cross_weight / len(mine), term))
            for k, v in term.stats.items():
                stats[f"{k}/{t}"] = v
            stats[f"reward_on/{world.branch(t).task.name}"] = float(batch.rewards_B.mean())
        if terms:
            stats[N.GRAD_NORM] = update(world, b, terms)
        metrics.update({N.branch(b.name, k): v for k, v in stats.items()})
    return metrics


def train(world: World, out_dir: str | Path) -> dict[str, dict[str, float]]:
    """Run (or continue, from `world.step`) the CoPD schedule; returns the final scores."""
    cfg = world.cfg
    sc = cfg.schedule
    total = sc.total_steps()
    views = {b.name: b.view for b in world.branches}
    world.logger.log_event(
        f"CoPD: {len(world.branches)} branches, {sc.cycles} cycles x ({sc.rl_steps} RL + "
        f"{sc.opd_steps} OPD) = {total} updates per branch; topology {cfg.topology.kind}",
        step=world.step,
    )
    if world.step == 0:
        measure_overlap(world, cycle=0, phase="rl")
        if cfg.eval.at_start:
            evaluate(world, views, step=0)
    while world.step < total:
        pos = position(world.step, sc)
        if pos.phase == "opd" and pos.phase_start and cfg.opd.teacher == "snapshot":
            world.snapshot_teachers()
        metrics = phase1_step(world) if pos.phase == "rl" else phase2_step(world)
        world.step += 1
        log_step(world, metrics, pos.cycle, pos.phase)
        if pos.phase_end or (sc.diag_every and world.step % sc.diag_every == 0):
            measure_overlap(world, pos.cycle, pos.phase)
        if pos.cycle_end and sc.eval_every_cycles and (pos.cycle + 1) % sc.eval_every_cycles == 0:
            evaluate(world, views, step=world.step)
        if pos.phase_end and pos.phase == "opd":
            world.teachers = {}  # snapshots live for one phase
        if pos.cycle_end or (cfg.checkpoint_every and world.step % cfg.checkpoint_every == 0):
            checkpoint.save(world, out_dir)
        if world.stop_requested and world.step < total:
            checkpoint.save(world, out_dir)
            world.logger.log_event("stop requested: checkpointed", level="warning", step=world.step)
            raise TrainingCancelled(f"stopped at step {world.step} of {total}")
    return finish(world, out_dir, views)


def finish(
    world: World, out_dir: str | Path, views: dict[str, PolicyView], extra: dict | None = None
) -> dict[str, dict[str, float]]:
    """Final evaluation of each branch and (when merging) the merged model; export; table.
    `extra` goes into results.json (baselines record their step budget there)."""
    views = dict(views)
    if world.cfg.merge.enabled and len(world.branches) > 1:
        model = merged_model(world)
        export_merged(world, Path(out_dir) / "merged", model)
        views["merged"] = PolicyView(model)
    scores = evaluate(world, views, step=world.step)
    table = write_results(
        scores, out_dir, extra={"method": world.cfg.method, "steps": world.step, **(extra or {})}
    )
    world.logger.log_event("final results\n" + table, step=world.step)
    return scores
