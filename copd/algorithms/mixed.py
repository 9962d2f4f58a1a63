"""Mixed GRPO (the paper's Mixed RLVR): one policy trained on all domains' prompts.

    copd train mixed

One policy named "mixed" starts from the base and runs GRPO on the union of the branches'
domains. Each step draws `grpo.prompts_per_step` prompts spread evenly over the domains
(round-robin per prompt, continuing across steps, from the RNG `world.rngs["mixed"]`), with
the same group size as the experts. Budget: the experts' budgets combined, K x T updates
(paper: "the combined step budget of both single-domain experts"). Logged like a branch:
`branch/mixed/reward/mean` (all domains) and `branch/mixed/reward_on/<task>` per domain;
diagnostics (against the base) at CoPD's cadence; evaluated on every domain.
"""

from __future__ import annotations

from pathlib import Path

from copd import names as N
from copd.algorithms.baselines import budget_for, check_policy_name
from copd.algorithms.copd import finish
from copd.algorithms.expert import after_step, announce, cadence
from copd.engine import World, grpo_update, log_step
from copd.evaluate import evaluate, measure_overlap
from copd.rollout import RolloutBatch
from copd.tasks import Example

POLICY = "mixed"


def train(world: World, out_dir: str | Path) -> dict[str, dict[str, float]]:
    """K x T GRPO updates of one policy on mixed-domain prompts; evaluate it everywhere."""
    cfg = world.cfg
    sc, g = cfg.schedule, cfg.grpo
    check_policy_name(cfg, POLICY)
    budget = budget_for(cfg)
    announce(world, budget)
    policy = world.branch(POLICY)
    views = {POLICY: policy.view}
    if world.step == 0:
        measure_overlap(world, cycle=0, phase="rl")
        if cfg.eval.at_start:
            evaluate(world, views, step=0)
    while world.step < budget.total:
        pos = cadence(world.step, cfg)
        examples = mixed_prompts(world, g.prompts_per_step, POLICY, world.step * g.prompts_per_step)
        batch = world.rollout(policy.view, examples, g.group_size)
        term, grad_norm = grpo_update(world, policy, batch)
        stats = {**term.stats, N.GRAD_NORM: grad_norm}
        stats.update(reward_by_domain(batch))
        world.step += 1
        log_step(
            world, {N.branch(POLICY, k): v for k, v in stats.items()}, pos.cycle, "rl", budget.total
        )
        if pos.phase_end or (sc.diag_every and world.step % sc.diag_every == 0):
            measure_overlap(world, pos.cycle, "rl")
        if pos.cycle_end and sc.eval_every_cycles and (pos.cycle + 1) % sc.eval_every_cycles == 0:
            evaluate(world, views, step=world.step)
        after_step(world, out_dir, budget, due=pos.cycle_end)
    return finish(world, out_dir, views, extra={"budget": budget.to_dict()})


def mixed_prompts(world: World, n: int, rng_key: str, offset: int) -> list[Example]:
    """`n` prompts spread evenly over every domain: prompt i comes from domain
    (offset + i) mod K (round-robin that continues across steps), drawn with `rng_key`."""
    tasks = list(world.tasks.values())
    rng = world.rngs[rng_key]
    return [tasks[(offset + i) % len(tasks)].sample(rng, 1)[0] for i in range(n)]


def reward_by_domain(batch: RolloutBatch) -> dict[str, float]:
    """Mean reward per domain of a mixed batch: {"reward_on/<task>": mean}."""
    sums: dict[str, list[float]] = {}
    for ex, r in zip(batch.examples, batch.rewards_B.tolist(), strict=True):
        sums.setdefault(ex.domain, []).append(r)
    return {f"reward_on/{d}": sum(v) / len(v) for d, v in sums.items()}
