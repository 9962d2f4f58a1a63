"""Sequential GRPO: one policy trained on each domain in turn (sequential fine-tuning, the
continual-learning baseline; not one of the paper's, arXiv 2604.27083, whose mixed GRPO
interleaves the domains instead).

    copd train sequential        # add for T updates, then rev for T
    copd train sequential-3      # add, rev, sort

One policy named "sequential" starts from the base and runs GRPO on the first branch's
domain for T = schedule.total_steps() updates, then on the second branch's domain for T,
and so on in the config's branch order: K x T updates in all, mixed GRPO's budget, each of
`grpo.prompts_per_step` prompts of the stage's domain with `grpo.group_size` samples, from
the policy's own prompt RNG. No teachers, no merge: the reported model is the one policy,
judged on every domain after its last stage, so the table shows what training on the
later domains kept of the earlier ones, beside mixed GRPO (the same updates on interleaved
prompts) and CoPD (one branch per domain, distilled into each other). Logged like a
branch: `branch/sequential/reward/mean` and `branch/sequential/reward_on/<task>` of the
stage's domain; an event when a stage starts; diagnostics (against the base) and
evaluations at CoPD's cadence, so each stage end that is an evaluated cycle end gives the
scores on every domain at that point.

Departures from the textbook sequence: none beyond the engine's own (each stage keeps the
optimizer's state from the one before, as one run of fine-tuning would; no replay of
earlier domains, no regulariser: those are the methods this baseline is the floor of).
"""

from __future__ import annotations

from pathlib import Path

from copd.common import names as N
from copd.train.algorithms.loop import after_scheduled_step, finish, start_one_policy
from copd.train.update import grpo_update
from copd.train.world import World, log_step

POLICY = "sequential"


def train(world: World, out_dir: str | Path) -> dict[str, dict[str, float]]:
    """T GRPO updates of one policy on each domain in turn; evaluate it everywhere."""
    g = world.batches
    budget = world.budget  # one stage per domain, named after its branch
    policy, views, acts = start_one_policy(world, out_dir, POLICY)
    while world.state.step < budget.total:
        pos = world.cadence.position(world.state.step)
        stage = budget.stage_at(world.state.step)
        task = world.branch_tasks[stage]
        if world.state.step == budget.start_of(stage):
            world.logger.log_event(
                f"sequential: GRPO on {task.name} for {dict(budget.stages)[stage]} updates",
                step=world.state.step,
            )
        examples = world.prompts(task, g.prompts_per_step, POLICY)
        batch = world.rollout(policy.view, examples, g.group_size)
        term, grad_norm = grpo_update(world, policy, batch)
        stats = {**term.stats, N.GRAD_NORM: grad_norm}
        stats[N.reward_on(task.name)] = term.stats[N.REWARD_MEAN]
        world.state.step += 1
        log_step(
            world, {N.branch(POLICY, k): v for k, v in stats.items()}, pos.cycle, "rl", budget.total
        )
        after_scheduled_step(world, acts, budget.total, pos, "rl")
    return finish(world, out_dir, views, extra={"budget": budget.to_dict()})
