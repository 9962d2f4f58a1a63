"""Multi-teacher on-policy distillation (MOPD, MiMo-V2-Flash style; the paper's MOPD row).

    copd train mopd        # 2 domains (add, rev)
    copd train mopd-3      # 3 domains (add, rev, sort)

Stage 1 ("experts"): one expert per domain, T GRPO updates each (as `copd train expert`).
Stage 2 ("distill"): ONE student, named "mopd", starts from the base and samples its own
completions of mixed-domain prompts (`grpo.prompts_per_step` prompts per step, round-robin
over the domains, `grpo.group_size` samples each). Every sample is scored by exactly the
expert of its prompt's domain (routed, never averaged), and the token advantage is
beta * (log p_teacher - log p_student) with stop-gradient, through the same clipped
surrogate as CoPD's OPD term. The experts are frozen in stage 2.

Budget: K x S updates of the student, S = cycles x opd_steps (CoPD's phase-II updates of
all K branches together). Optional outcome-reward term (MiMo's A = A_MOPD + alpha A_ORM):
`opd.native_rl=true` adds the GRPO term on the same batch (weight 1, OPD weight
`opd.cross_weight`); the preset leaves it off. The student appears in the diagnostics from
the start (it equals the base during stage 1).

Domains may carry images or videos (on a vision-language base): routing cuts each
teacher's prompt groups out of the batch together with their vision inputs
(`RolloutBatch.subset`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from copd.common import names as N
from copd.policy.batch import TeacherScores
from copd.policy.models import Branch
from copd.policy.rollout import RolloutBatch
from copd.train import samples
from copd.train.algorithms.expert import distill_stage, expert_stage
from copd.train.algorithms.loop import announce, finish, in_process
from copd.train.algorithms.mixed import mixed_prompts, reward_by_domain
from copd.train.evaluate import evaluate, probe_logits
from copd.train.update import TermSpec, optimize, signal_due
from copd.train.world import World

POLICY = "mopd"


def train(world: World, out_dir: str | Path) -> dict[str, dict[str, float]]:
    """Domain experts, then one student distilled from all of them, routed by domain."""
    budget = world.budget
    announce(world, budget=budget)
    student = world.branch(POLICY)
    experts = [b for b in world.branches if b.name != POLICY]
    teacher_of = {b.task.name: b.name for b in experts}  # domain -> its expert
    acts = in_process(world, out_dir, {b.name: b.view for b in experts}, budget)

    expert_stage(world, acts, budget, experts)

    distill_stage(
        world,
        acts,
        budget,
        f"MOPD: experts frozen; student {POLICY!r} distils {teacher_of} for "
        f"{budget.total - budget.start_of('distill')} updates",
        lambda offset: mopd_step(world, student, teacher_of, offset=offset),
        lambda step: evaluate(world, {POLICY: student.view}, step=step),
    )
    views = {POLICY: student.view, **{b.name: b.view for b in experts}}
    extra = {"budget": budget.to_dict(), "teachers": teacher_of}
    return finish(world, out_dir, views, extra=extra)


def mopd_step(
    world: World, student: Branch, teacher_of: Mapping[str, str], offset: int
) -> dict[str, float]:
    """One student update on mixed-domain samples, each scored by its domain's expert."""
    g, loss = world.batches, world.loss
    n = g.prompts_per_step
    tasks = list(world.tasks.values())
    examples = mixed_prompts(tasks, world.rngs[student.name], n, offset * n)
    if loss.opd_samples == "teacher":
        return supervised_step(world, student, teacher_of, examples)
    batch = world.rollout(student.view, examples, g.group_size)
    scores = routed_logp(
        batch, teacher_of, lambda t, sub: world.score_opd(world.branch(t).view, sub)
    )
    samples.log_opd_batch(
        world, student.name, lambda b: probe_logits(student.view, b), teacher_of, batch, scores
    )
    specs = [TermSpec(loss.cross_weight, batch, "experts", scores)]
    if g.native_rl:  # optional outcome-reward term on the same samples
        specs.append(TermSpec(1.0, batch))
    res = optimize(world, student, specs, measure_signal=signal_due(world))
    stats = {N.REWARD_MEAN: float(batch.rewards_B.mean())}
    for term_stats in res.stats:
        stats.update(term_stats)
    stats.update(reward_by_domain(batch))
    stats.update(res.signal)
    stats[N.GRAD_NORM] = res.grad_norm
    return {N.branch(student.name, k): v for k, v in stats.items()}


def supervised_step(
    world: World, student: Branch, teacher_of: Mapping[str, str], examples: list
) -> dict[str, float]:
    """`opd.samples="teacher"`: one student update by cross-entropy on each prompt's
    greedy answer from the expert of its domain (supervised distillation, the ceiling
    the on-policy channel is measured against; one answer per prompt, as greedy answers
    repeat). One term per teacher, each weighted `opd.cross_weight` / teachers."""
    weight = world.loss.cross_weight
    by_teacher: dict[str, list] = {}
    for ex in examples:
        by_teacher.setdefault(teacher_of[ex.domain], []).append(ex)
    specs, rewards = [], {}
    for teacher, exs in by_teacher.items():
        view = world.branch(teacher).view
        batch = world.rollout(view, exs, 1, greedy=True)
        specs.append(TermSpec(weight / len(by_teacher), batch, teacher, world.score(view, batch)))
        rewards[N.reward_on(exs[0].domain)] = float(batch.rewards_B.mean())
    res = optimize(world, student, specs, measure_signal=signal_due(world))
    stats: dict[str, float] = {}
    for spec, term_stats in zip(specs, res.stats, strict=True):
        stats.update({f"{k}/{spec.teacher}": v for k, v in term_stats.items()})
    stats.update(rewards)  # the teachers' answers' rewards: what the student is shown
    stats.update(res.signal)
    stats[N.GRAD_NORM] = res.grad_norm
    return {N.branch(student.name, k): v for k, v in stats.items()}


def route(domains: Sequence[str], teacher_of: Mapping[str, str]) -> dict[str, list[int]]:
    """Row indices per teacher: row i goes to the expert of its prompt's domain."""
    rows: dict[str, list[int]] = {}
    for i, d in enumerate(domains):
        if d not in teacher_of:
            raise KeyError(f"no expert for domain {d!r}; the experts cover {sorted(teacher_of)}")
        rows.setdefault(teacher_of[d], []).append(i)
    return rows


def routed_logp(
    batch: RolloutBatch,
    teacher_of: Mapping[str, str],
    score: Callable[[str, RolloutBatch], TeacherScores | torch.Tensor],
) -> TeacherScores:
    """Teacher scores of the batch's sampled tokens, each row scored by exactly the expert of
    its domain: `score(teacher_name, sub_batch)` is called once per teacher on that
    teacher's rows only and returns its `TeacherScores` (or bare log-probs [b, T]),
    assembled here into [B, ...] in the batch's row order."""
    B = batch.size
    out: dict[str, torch.Tensor] = {}
    for teacher, rows in route([ex.domain for ex in batch.examples], teacher_of).items():
        got = TeacherScores.of(score(teacher, batch.subset(rows)))
        for k, v in got.parts().items():
            if k not in out:
                dtype = torch.float32 if v.is_floating_point() else v.dtype
                out[k] = torch.zeros((B, *v.shape[1:]), dtype=dtype, device=v.device)
            out[k][torch.tensor(rows, dtype=torch.long, device=v.device)] = v.to(out[k].dtype)
    return TeacherScores(**out)
