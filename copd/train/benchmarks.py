"""Benchmarks apart from the training domains (the config's `benchmarks`): built once with
the world, scored at every evaluation for every model evaluated, stored as `<name>@bench`.

    benches = build_benchmarks(cfg)                      # World.build: name -> Benchmark
    scores = benchmark_scores(world, view, step)         # {"sort-cap@bench": 0.41, ...}

A benchmark's examples are its task's held-out test split (for a data file with no
`eval_path` of its own, the whole file), distinct prompts once each, up to its size cap;
greedy accuracy (or pass@k with the spec's k) through the run's one scoring path,
`copd.policy.rollout.accuracy`, with its own verifier.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from copd.common import names as N
from copd.policy.models import PolicyView
from copd.policy.rollout import accuracy, sample_rollouts
from copd.spec import RunConfig
from copd.spec.runtime import BenchmarkSpec
from copd.tasks import Example, Task, get_task


@dataclass(frozen=True)
class Benchmark:
    spec: BenchmarkSpec
    task: Task
    examples: tuple[Example, ...]  # what its score is over, fixed at build time


def is_data_file(task: str) -> bool:
    return task.split("#", 1)[0] in ("dataset", "copd.tasks.datasets:from_file")


def build_benchmarks(cfg: RunConfig) -> dict[str, Benchmark]:
    """name -> Benchmark of every configured benchmark, its examples drawn once."""
    out = {}
    for spec in cfg.benchmarks:
        options = dict(cfg.task_options.get(spec.task, {}))
        if is_data_file(spec.task) and "path" in options:
            options.setdefault("eval_path", options["path"])  # the whole file is the benchmark
        task = get_task(spec.task, trust_task_code=cfg.trust_task_code, **options)
        n = spec.n_prompts or cfg.eval.n_prompts
        examples = distinct(task.eval_examples(n))
        if spec.system_prompt:
            examples = [replace(ex, system=spec.system_prompt) for ex in examples]
        out[spec.name] = Benchmark(spec, task, tuple(examples))
    return out


def distinct(examples) -> list[Example]:
    """Each (prompt, answer) once, in first-seen order (a repeat would count twice)."""
    seen, out = set(), []
    for ex in examples:
        if (ex.prompt, ex.answer) not in seen:
            seen.add((ex.prompt, ex.answer))
            out.append(ex)
    return out


def benchmark_scores(world, view: PolicyView, step: int) -> dict[str, float]:
    """`<name>@bench` -> the view's score on each of the world's benchmarks."""
    ev = world.evaluation
    out = {}
    for name, bench in world.benchmarks.items():
        examples = list(bench.examples)
        k = bench.spec.pass_k
        with view.use() as model:
            if not k:
                score = accuracy(
                    model, world.tokenizer, bench.task, examples, ev.scoring,
                    generator=torch.Generator().manual_seed(ev.seed), device=view.device,
                )  # fmt: skip
            else:
                score = pass_at_k(world, model, view, bench.task, examples, k, step)
        out[N.bench_key(name)] = score
    return out


def pass_at_k(world, model, view: PolicyView, task: Task, examples, k: int, step: int) -> float:
    """The share of examples with at least one of k samples right (sampling temperature)."""
    ev = world.evaluation
    batch = sample_rollouts(
        model, world.tokenizer, examples, ev.sampled, group_size=k,
        generator=torch.Generator().manual_seed(ev.seed * 1_000_003 + step), device=view.device,
    )  # fmt: skip
    r = [task.reward(ex, t) for ex, t in zip(batch.examples, batch.texts, strict=True)]
    return sum(max(r[i * k : (i + 1) * k]) for i in range(len(examples))) / len(examples)


def benchmark_counts(benchmarks: dict[str, Benchmark]) -> dict[str, int]:
    """`<name>@bench` -> the number of distinct prompts its score is over."""
    return {N.bench_key(n): len(b.examples) for n, b in benchmarks.items()}
