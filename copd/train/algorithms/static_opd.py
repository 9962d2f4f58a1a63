"""Static one-way OPD (the paper's "OPD V->T / T->V"): experts first, then one distils.

    copd train static_opd        # add expert teaches the rev expert (static_direction add->rev)
    copd train static_opd-rev    # rev teaches add

Stage 1 ("experts"): every branch trains as an independent expert for T GRPO updates,
exactly as `copd train expert`. Stage 2 ("distill"): the teacher expert is frozen (it is
never updated again, so its live weights are the frozen teacher) and the student expert
makes S = cycles x opd_steps updates (CoPD's phase-II updates per branch). Each update is
the paper's pure one-way OPD (presets static_opd, static_opd-rev: `opd.native_rl=false`):
the student's own samples of the teacher's prompts, every sampled token scored by the
teacher, token advantage beta * (log p_teacher - log p_student), weighted by
`opd.cross_weight`. With `opd.native_rl` (preset static_opd+rl) each update also keeps the
student's native GRPO batch, CoPD's phase-II form, so that variant differs from CoPD only
in being static/one-way instead of co-evolving/mutual.
The results table reports the student, then the teacher.
"""

from __future__ import annotations

from pathlib import Path

from copd.common import names as N
from copd.policy.models import Branch
from copd.train import samples
from copd.train.algorithms.expert import distill_stage, expert_stage
from copd.train.algorithms.loop import announce, finish, in_process
from copd.train.evaluate import evaluate, probe_logits
from copd.train.update import TermSpec, optimize, signal_due
from copd.train.world import World


def train(world: World, out_dir: str | Path) -> dict[str, dict[str, float]]:
    """Experts, then one-way OPD from the frozen teacher into the student."""
    budget = world.budget
    announce(world, budget=budget)
    teacher_name, student_name = world.batches.static_pair
    teacher, student = world.branch(teacher_name), world.branch(student_name)
    acts = in_process(world, out_dir, {b.name: b.view for b in world.branches}, budget)

    expert_stage(world, acts, budget, world.branches)

    distill_stage(
        world,
        acts,
        budget,
        f"static OPD: {teacher_name} frozen, teaching {student_name} for "
        f"{budget.total - budget.start_of('distill')} updates",
        lambda offset: distill_step(world, student, teacher),
        lambda step: evaluate(world, {student_name: student.view}, step=step),
    )
    views = {student_name: student.view, teacher_name: teacher.view}
    extra = {
        "budget": budget.to_dict(),
        "roles": {"teacher": teacher_name, "student": student_name},
    }
    return finish(world, out_dir, views, extra=extra)


def distill_step(world: World, student: Branch, teacher: Branch) -> dict[str, float]:
    """One combined update of the student: native GRPO batch + OPD on the teacher's prompts,
    scored by the (frozen) teacher. Same order and names as CoPD's phase2_step."""
    g = world.batches
    native = None
    if g.native_rl:
        native = world.rollout(
            student.view,
            world.prompts(student.task, g.prompts_per_step, student.name),
            g.group_size,
        )
    peer_prompts = world.prompts(teacher.task, g.cross_prompts_per_step, student.name)
    cross = world.rollout(student.view, peer_prompts, g.cross_group_size)
    scores = world.score_opd(teacher.view, cross)
    samples.log_opd_batch(
        world, student.name, lambda b: probe_logits(student.view, b), teacher.name, cross, scores
    )
    specs = [] if native is None else [TermSpec(1.0, native)]
    specs.append(TermSpec(world.loss.cross_weight, cross, teacher.name, scores))
    res = optimize(world, student, specs, measure_signal=signal_due(world))
    stats = {}
    if native is not None:
        stats.update(res.stats[0])
        stats[N.reward_on(student.task.name)] = res.stats[0][N.REWARD_MEAN]
    for k, v in res.stats[-1].items():
        stats[f"{k}/{teacher.name}"] = v
    stats.update(res.signal)
    stats[N.reward_on(teacher.task.name)] = float(cross.rewards_B.mean())
    stats[N.GRAD_NORM] = res.grad_norm
    return {N.branch(student.name, k): v for k, v in stats.items()}
