"""Mixed GRPO (the paper's Mixed RLVR): one policy trained on all domains' prompts.

    copd train mixed

One policy named "mixed" starts from the base and runs GRPO on the union of the branches'
domains. Each step draws `grpo.prompts_per_step` prompts spread evenly over the domains
(round-robin per prompt, continuing across steps, from the policy's prompt RNG), with
the same group size as the experts. Budget: the experts' budgets combined, K x T updates
(paper: "the combined step budget of both single-domain experts"); the control
`mixed_steps="per_branch"` makes T updates of K x `prompts_per_step` prompts instead (the
same rollouts, one CoPD branch's optimizer steps). Logged like a branch:
`branch/mixed/reward/mean` (all domains) and `branch/mixed/reward_on/<task>` per domain;
diagnostics (against the base) at CoPD's cadence; evaluated on every domain.
"""

from __future__ import annotations

import random
from pathlib import Path

from copd.common import names as N
from copd.policy.rollout import RolloutBatch
from copd.tasks import Example, Task
from copd.train.algorithms.loop import after_scheduled_step, finish, start_one_policy
from copd.train.update import grpo_update
from copd.train.world import World, log_step

POLICY = "mixed"


def train(world: World, out_dir: str | Path) -> dict[str, dict[str, float]]:
    """K x T GRPO updates of one policy on mixed-domain prompts; evaluate it everywhere."""
    g, budget = world.batches, world.budget
    tasks = list(world.tasks.values())
    policy, views, acts = start_one_policy(world, out_dir, POLICY)
    while world.state.step < budget.total:
        pos = world.cadence.position(world.state.step)
        n = g.prompts_per_step * (len(tasks) if g.per_branch_mixed else 1)
        examples = mixed_prompts(tasks, world.rngs[POLICY], n, world.state.step * n)
        batch = world.rollout(policy.view, examples, g.group_size)
        term, grad_norm = grpo_update(world, policy, batch)
        stats = {**term.stats, N.GRAD_NORM: grad_norm}
        stats.update(reward_by_domain(batch))
        world.state.step += 1
        log_step(
            world, {N.branch(POLICY, k): v for k, v in stats.items()}, pos.cycle, "rl", budget.total
        )
        after_scheduled_step(world, acts, budget.total, pos, "rl")
    return finish(world, out_dir, views, extra={"budget": budget.to_dict()})


def mixed_prompts(tasks: list[Task], rng: random.Random, n: int, offset: int) -> list[Example]:
    """`n` prompts spread evenly over the domains `tasks`: prompt i comes from domain
    (offset + i) mod K (round-robin that continues across steps), drawn with `rng`."""
    return [tasks[(offset + i) % len(tasks)].sample(rng, 1)[0] for i in range(n)]


def reward_by_domain(batch: RolloutBatch) -> dict[str, float]:
    """Mean reward per domain of a mixed batch: {"reward_on/<task>": mean}."""
    sums: dict[str, list[float]] = {}
    for ex, r in zip(batch.examples, batch.rewards_B.tolist(), strict=True):
        sums.setdefault(ex.domain, []).append(r)
    return {N.reward_on(d): sum(v) / len(v) for d, v in sums.items()}
