"""Measure branches: held-out benchmark scores and behavioural-overlap diagnostics.

    scores = evaluate(world, {"add": view_a, "merged": merged_view}, step)   # {model: {bench: acc}}
    measure_overlap(world, cycle, phase)   # pair/<s>~<t>/overlap_top10, sym_kl, base/<b>/...

Scores: greedy decoding (or pass@k sampling) on each domain's fixed held-out split; the
overall score is the mean over all benchmarks (the paper's "Overall Avg.").

Diagnostics follow the paper: top-k overlap O_k and symmetric KL measured on the student's
own rollouts. Probe prompts come from every domain of the run; the probe's sampling
generator is re-seeded from (seed, step), so every measurement uses the same prompts and
the same random stream, and a resumed run measures exactly what an uninterrupted one would.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable

import psutil
import torch

from copd.common import names as N
from copd.math.diagnostics import pair_diagnostics
from copd.policy.models import PolicyView
from copd.policy.rollout import RolloutBatch, accuracy, completion_logits, sample_rollouts
from copd.train import samples
from copd.train.benchmarks import benchmark_counts, benchmark_scores, distinct
from copd.train.settings import EvalSettings


@torch.inference_mode()
def evaluate(
    world, views: dict[str, PolicyView], step: int, log: bool = True, final: bool = False
) -> dict[str, dict[str, float]]:
    """Accuracy of each view on every domain's held-out test split (+ "overall"); at the
    `final` evaluation with `eval.validation` also on the validation split (`<task>@val`,
    `overall@val`), the scores settings are chosen on. `eval.during="validation"` scores
    the evaluations before the final one on the validation split too (learning curves
    that choose a setting, as the calibration's)."""
    ev = world.evaluation
    both = ev.validation and (final or ev.during == "validation")
    splits = ["test", "validation"] if both else ["test"]
    out: dict[str, dict[str, float]] = {}
    counts = eval_counts(world) if log else {}
    with world.timer("eval"):
        for model_name, view in views.items():
            scores = {}
            for split in splits:
                scores.update(_split_scores(world, view, split, step))
            out[model_name] = scores
            if log:
                for bench, s in scores.items():
                    # pass@k is over the test prompts; 0 for the overall means
                    n = counts.get(bench, counts.get(bench.split("@pass")[0], 0))
                    world.logger.log_eval(model_name, bench, s, n, step=step)
    return out


def eval_examples(ev: EvalSettings, task, split: str) -> list:
    """The distinct examples of `split` that a score is taken over (up to eval.n_prompts)."""
    n = ev.n_prompts
    draw = ev.test_draw  # "fresh*" checked by World.build
    if split == "test" and draw == "fresh":
        return distinct(task.fresh_examples(n))
    if split == "test" and draw == "fresh_or_whole":
        return distinct(task.fresh_or_whole_examples(n))
    return distinct(task.split_examples(split, n))


def eval_counts(world) -> dict[str, int]:
    """benchmark -> the number of distinct prompts its score is over (`<task>` for the
    test split, `<task>@val` for validation): the n of every reported accuracy."""
    out = {}
    for task in world.tasks.values():
        for split, key in (("test", task.name), ("validation", N.val_bench(task.name))):
            try:
                out[key] = len(eval_examples(world.evaluation, task, split))
            except NotImplementedError:  # a task without a validation split
                continue
    return {**out, **benchmark_counts(world.benchmarks)}


def _split_scores(world, view: PolicyView, split: str, step: int) -> dict[str, float]:
    ev = world.evaluation
    name = (lambda b: b) if split == "test" else N.val_bench
    scores = {}
    for task in world.tasks.values():
        examples = eval_examples(ev, task, split)
        scores[name(task.name)] = _accuracy(world, view, examples)
        if ev.pass_k and split == "test":
            scores[f"{task.name}@pass{ev.pass_k}"] = _pass_at_k(
                world, view, examples, ev.pass_k, step
            )
    benches = [scores[name(t.name)] for t in world.tasks.values()]
    scores[name("overall")] = sum(benches) / len(benches)
    if split == "test":  # the configured benchmarks, apart from the domains and Overall
        scores.update(benchmark_scores(world, view, step))
    return scores


def _accuracy(world, view: PolicyView, examples) -> float:
    with view.use() as model:
        return accuracy(
            model,
            world.tokenizer,
            world.task_of(examples[0]),
            examples,
            world.evaluation.scoring,
            generator=torch.Generator().manual_seed(world.evaluation.seed),
            device=view.device,
        )


def _pass_at_k(world, view: PolicyView, examples, k: int, step: int) -> float:
    ev = world.evaluation
    gen = torch.Generator().manual_seed(ev.seed * 1_000_003 + step)
    with view.use() as model:
        batch = sample_rollouts(
            model,
            world.tokenizer,
            examples,
            ev.sampled,
            group_size=k,
            generator=gen,
            device=view.device,
        )
    task = world.task_of(examples[0])
    r = [task.reward(ex, t) for ex, t in zip(batch.examples, batch.texts, strict=True)]
    solved = [max(r[i * k : (i + 1) * k]) for i in range(len(examples))]
    return sum(solved) / len(solved)


def probe_examples(world):
    """A fixed probe set: `diagnostics.n_prompts` training-distribution prompts per domain."""
    rng = random.Random(f"probe:{world.evaluation.seed}")
    out = []
    for task in world.tasks.values():
        out += task.sample(rng, world.evaluation.probe_prompts)
    return out


def own_logits(batch: RolloutBatch) -> torch.Tensor | None:
    """The sampler's logits of its own tokens [B, T, V] (float32, on the batch's device),
    taken off the batch; None when it has none (image prompts)."""
    logits = batch.extras.pop("logits_B_T_V", None)
    return None if logits is None else logits.float().to(batch.completion_ids_B_T.device)


@torch.inference_mode()
def probe_logits(view: PolicyView, batch: RolloutBatch) -> torch.Tensor:
    """Float32 logits [N, V] under `view` at `batch`'s N completion tokens (on the batch's
    device): what a policy's diagnostics compare."""
    valid = batch.completion_mask_B_T.bool()
    with view.use() as model:
        b = batch.to(view.device)
        return completion_logits(model, b).float().to(batch.completion_ids_B_T.device)[valid]


def probe_rollout(world, view: PolicyView, examples, step: int) -> RolloutBatch:
    """One policy's diagnostics probe: samples seeded from (seed, step), so every student
    (and either back end) draws from the same stream; the sampler keeps its own logits."""
    ev = world.evaluation
    gen = torch.Generator().manual_seed(ev.seed * 7919 + step)
    with view.use() as model:
        return sample_rollouts(
            model,
            world.tokenizer,
            examples,
            ev.sampled,
            group_size=ev.probe_samples,
            generator=gen,
            device=view.device,
            keep_logits=True,
        )


BASE = "__base__"  # the frozen base model, as a teacher name in the diagnostics


def pair_metrics(student: str, teacher: str, diag: dict[str, float]) -> dict[str, float]:
    """`pair_diagnostics` output under its metric names (`teacher` BASE: vs the base)."""
    return {
        (N.vs_base(student, k) if teacher == BASE else N.pair(student, teacher, k)): v
        for k, v in diag.items()
    }


_PROC: psutil.Process | None = None


def process_metrics() -> dict[str, float]:
    """This process's resident memory and CPU use (percent of one core since the previous
    call: psutil measures between two calls on the same Process object, so one is kept),
    logged with the diagnostics."""
    global _PROC
    first = _PROC is None or _PROC.pid != os.getpid()  # a forked worker measures itself
    if first:
        _PROC = psutil.Process()
    proc = _PROC
    out = {N.SYSTEM_RSS_MB: proc.memory_info().rss / 2**20}
    cpu = proc.cpu_percent(interval=None)
    if not first:  # the first call only starts the interval: its 0.0 is no reading
        out[N.SYSTEM_CPU_PERCENT] = cpu
    return out


def overlap_diagnostics(
    world,
    names: list[str],
    probes: Callable[[list, int], Iterable[tuple[str, RolloutBatch]]],
    logits_at: Callable[[str, RolloutBatch, list[str]], Iterable[torch.Tensor]],
    step: int,
    samples_out: list[dict] | None = None,
) -> dict[str, float]:
    """The overlap-diagnostics loop, wherever the policies run (in this process, or in
    branch workers): top-k overlap, symmetric KL, overlap mass and entropy gap for every
    ordered pair of the branches `names` (on the student's probe rollouts) and each branch
    against the base, with this process's memory and CPU use.

    `probes(examples, step)`: each student's probe batch (`probe_rollout`), as (name,
    batch) in branch order; may be lazy, so one student's batch is alive at a time.
    `logits_at(student, batch, teachers)`: float32 logits [N, V] at the batch's N
    completion tokens under each of `teachers` in order (a peer, the student itself when
    its sampler kept no logits, or BASE).
    `samples_out`: when given, each student's recorded samples (copd/train/samples.py) are
    appended to it, scored by the same logits."""
    d = world.evaluation
    ks = sorted({d.top_k, *d.extra_k})
    temp = d.sampled.temperature  # the probes' sampling temperature
    metrics: dict[str, float] = {}
    for student, batch in probes(probe_examples(world), step):
        peers = [t for t in names if t != student] + ([BASE] if d.vs_base else [])
        s_logits = own_logits(batch)  # the sampler's logits of its own tokens, when kept
        if s_logits is not None:
            s_logits = s_logits[batch.completion_mask_B_T.bool()]
        teachers = peers if s_logits is not None else [student, *peers]
        rec = None if samples_out is None else samples.ProbeRecorder(world, student, batch)
        for teacher, logits in zip(teachers, logits_at(student, batch, teachers), strict=True):
            if teacher == student:
                s_logits = logits
                continue
            diag = pair_diagnostics(s_logits, logits, ks, temperature=temp)
            metrics.update(pair_metrics(student, teacher, diag))
            if rec is not None:
                rec.peer(samples.BASE_PEER if teacher == BASE else teacher, s_logits, logits)
        if rec is not None:
            samples_out += rec.rows(s_logits)
    metrics.update(process_metrics())
    return metrics


@torch.inference_mode()
def measure_overlap(world, cycle: int, phase: str, step: int | None = None) -> dict[str, float]:
    """`overlap_diagnostics` for the branches of this process's world; logged and returned."""
    step = world.state.step if step is None else step
    views = {b.name: b.view for b in world.branches}

    def probes(examples, step):
        for name, view in views.items():
            yield name, probe_rollout(world, view, examples, step)

    def logits_at(student, batch, teachers):
        return (probe_logits(world.base if t == BASE else views[t], batch) for t in teachers)

    rows = [] if world.recording.due(step) else None
    with world.timer("diagnostics"):
        metrics = overlap_diagnostics(world, list(views), probes, logits_at, step, rows)
        if torch.cuda.is_available():
            metrics[N.SYSTEM_GPU_MEM_MB] = torch.cuda.max_memory_allocated() / 2**20
    world.logger.log_metrics(metrics, step=step, cycle=cycle, phase=phase)
    if rows:
        world.logger.log_samples(rows, step=step, cycle=cycle, phase=phase)
    return metrics
