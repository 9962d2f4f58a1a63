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

import random

import psutil
import torch

from copd import names as N
from copd.diagnostics import pair_diagnostics
from copd.models import PolicyView
from copd.rollout import RolloutBatch, completion_logits, sample_rollouts


@torch.inference_mode()
def evaluate(
    world, views: dict[str, PolicyView], step: int, log: bool = True
) -> dict[str, dict[str, float]]:
    """Accuracy of each view on every domain's held-out split (+ "overall")."""
    cfg = world.cfg
    ev = cfg.eval
    out: dict[str, dict[str, float]] = {}
    with world.timer("eval"):
        for model_name, view in views.items():
            scores = {}
            for task in world.tasks.values():
                examples = task.eval_examples(ev.n_prompts)
                scores[task.name] = _accuracy(world, view, examples)
                if ev.pass_k:
                    scores[f"{task.name}@pass{ev.pass_k}"] = _pass_at_k(
                        world, view, examples, ev.pass_k, step
                    )
            benches = [v for k, v in scores.items() if "@pass" not in k]
            scores["overall"] = sum(benches) / len(benches)
            out[model_name] = scores
            if log:
                for bench, s in scores.items():
                    n = 0 if bench == "overall" else ev.n_prompts
                    world.logger.log_eval(model_name, bench, s, n, step=step)
    return out


def _accuracy(world, view: PolicyView, examples) -> float:
    with view.use() as model:
        batch = sample_rollouts(
            model,
            world.tokenizer,
            examples,
            group_size=1,
            temperature=1.0,
            max_new_tokens=world.cfg.sampling.max_new_tokens,
            greedy=world.cfg.eval.greedy,
            generator=torch.Generator().manual_seed(world.cfg.seed),
            device=view.device,
        )
    task = world.task_of(examples[0])
    rewards = [task.reward(ex, t) for ex, t in zip(batch.examples, batch.texts, strict=True)]
    return sum(rewards) / len(rewards)


def _pass_at_k(world, view: PolicyView, examples, k: int, step: int) -> float:
    gen = torch.Generator().manual_seed(world.cfg.seed * 1_000_003 + step)
    with view.use() as model:
        batch = sample_rollouts(
            model,
            world.tokenizer,
            examples,
            group_size=k,
            temperature=world.cfg.sampling.temperature,
            max_new_tokens=world.cfg.sampling.max_new_tokens,
            generator=gen,
            device=view.device,
        )
    task = world.task_of(examples[0])
    r = [task.reward(ex, t) for ex, t in zip(batch.examples, batch.texts, strict=True)]
    solved = [max(r[i * k : (i + 1) * k]) for i in range(len(examples))]
    return sum(solved) / len(solved)


def probe_examples(world):
    """A fixed probe set: `diagnostics.n_prompts` training-distribution prompts per domain."""
    rng = random.Random(f"probe:{world.cfg.seed}")
    out = []
    for task in world.tasks.values():
        out += task.sample(rng, world.cfg.diagnostics.n_prompts)
    return out


def own_logits(batch: RolloutBatch) -> torch.Tensor | None:
    """The sampler's logits of its own tokens [B, T, V] (float32, on the batch's device),
    taken off the batch; None when it has none (image prompts)."""
    logits = batch.extras.pop("logits_B_T_V", None)
    return None if logits is None else logits.float().to(batch.completion_ids_B_T.device)


@torch.inference_mode()
def _logits_on(view: PolicyView, batch: RolloutBatch) -> torch.Tensor:
    with view.use() as model:
        b = batch.to(view.device)
        return completion_logits(model, b).float().to(batch.completion_ids_B_T.device)


def probe_rollout(world, view: PolicyView, examples, step: int) -> RolloutBatch:
    """One policy's diagnostics probe: samples seeded from (seed, step), so every student
    (and either back end) draws from the same stream; the sampler keeps its own logits."""
    gen = torch.Generator().manual_seed(world.cfg.seed * 7919 + step)
    with view.use() as model:
        return sample_rollouts(
            model,
            world.tokenizer,
            examples,
            group_size=world.cfg.diagnostics.samples_per_prompt,
            temperature=world.cfg.sampling.temperature,
            max_new_tokens=world.cfg.sampling.max_new_tokens,
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


def process_metrics() -> dict[str, float]:
    """This process's resident memory and CPU use, logged with the diagnostics."""
    proc = psutil.Process()
    return {
        "system/rss_mb": proc.memory_info().rss / 2**20,
        "system/cpu_percent": proc.cpu_percent(interval=None),
    }


@torch.inference_mode()
def measure_overlap(world, cycle: int, phase: str, step: int | None = None) -> dict[str, float]:
    """Top-k overlap, symmetric KL, overlap mass and entropy gap for every ordered branch
    pair (student's rollouts) and each branch against the base; logged and returned."""
    d = world.cfg.diagnostics
    step = world.step if step is None else step
    ks = sorted({d.top_k, *d.extra_k})
    temp = world.cfg.sampling.temperature
    metrics: dict[str, float] = {}
    examples = probe_examples(world)
    with world.timer("diagnostics"):
        for student in world.branches:
            batch = probe_rollout(world, student.view, examples, step)
            valid = batch.completion_mask_B_T.bool()
            s_logits = own_logits(batch)
            if s_logits is None:
                s_logits = _logits_on(student.view, batch)
            s_logits = s_logits[valid]
            others = [(t.name, t.view) for t in world.branches if t.name != student.name]
            if d.vs_base:
                others.append((BASE, world.base))
            for name, view in others:
                t_logits = _logits_on(view, batch)[valid]
                diag = pair_diagnostics(s_logits, t_logits, ks, temperature=temp)
                metrics.update(pair_metrics(student.name, name, diag))
        metrics.update(process_metrics())
        if torch.cuda.is_available():
            metrics["system/gpu_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    world.logger.log_metrics(metrics, step=step, cycle=cycle, phase=phase)
    return metrics
