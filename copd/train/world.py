"""The training world: base model, branches, tasks, RNGs, timer and logger, with its
sampling and teacher-scoring primitives. The loss terms are copd/train/terms.py, the optimizer
steps copd/train/update.py; algorithms (copd/train/algorithms/) are readable loops over the three.

    world = World.build(cfg, logger)          # base model, tokenizer, tasks, branches, RNGs
    batch = world.rollout(branch.view, examples, group_size)   # samples + verifier rewards
    scores = world.score_opd(teacher_view, batch)               # what an OPD term needs
    res = optimize(world, branch, [TermSpec(1.0, batch), TermSpec(w, cross, "rev", scores)])

Every random draw comes from RNGs held by the world (a `random.Random` per branch for
prompts, one `torch.Generator` for sampling) so a checkpoint can restore them exactly.

What the training code reads of the config is a typed frozen value built here once
(`World.build`; copd/train/settings.py, copd/policy/decoding.py): `world.loss`,
`world.decoding`, `world.batches`, `world.cadence`, ... The engine never reads `world.cfg`
(the config the world was built from: the studies and benchmarks that `reconfigure` a
world derive their variants from it), so a function's signature, or the settings field it
reads, says what configuration it depends on.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from copd.builders.demo_base import resolve_model_path
from copd.common import names as N
from copd.common.errors import TrainingCancelled  # noqa: F401  (re-exported: the loops raise it)
from copd.errors import ConfigError
from copd.policy.batch import TeacherScores
from copd.policy.decoding import Decoding
from copd.policy.models import (
    Branch,
    PolicyView,
    load_policy,
    make_branches,
    set_attention,
)
from copd.policy.rollout import (
    RolloutBatch,
    completion_logits,
    logprobs_from_logits,
    sample_rollout_sets,
)
from copd.policy.rollout_vllm import VLLMSettings
from copd.spec import BackendConfig, MethodInfo, RunConfig, method_info
from copd.tasks import Example, Task, get_task
from copd.tasks.media import check_task_media
from copd.train.algorithms.baselines import Budget, budget_for
from copd.train.benchmarks import build_benchmarks
from copd.train.logger import Logger, NullLogger
from copd.train.settings import (
    BatchSettings,
    Cadence,
    EvalSettings,
    LossSettings,
    MergeSettings,
    SampleSettings,
    zero_advantage_skippable,
)


class Timer:
    """Accumulates wall seconds per part (`time/rollout_s`, ...) between `pop()` calls."""

    def __init__(self) -> None:
        self.acc: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, key: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.acc[key] += time.perf_counter() - t0

    def add(self, parts: dict[str, float]) -> None:
        """Seconds measured elsewhere (a Ray worker's), counted with this process's."""
        for key, secs in parts.items():
            self.acc[key] += secs

    def pop(self) -> dict[str, float]:
        out = dict(self.acc)
        self.acc.clear()
        return out


def set_threads(n: int) -> None:
    """torch threads: explicit `threads`, else $COPD_THREADS (set by the launcher), else
    all cores. Decode is dispatch-bound; only forward/backward gain from threads."""
    n = n or int(os.environ.get("COPD_THREADS", "0") or 0) or (os.cpu_count() or 1)
    torch.set_num_threads(n)


@dataclass
class TrainState:
    """What changes while a run trains (the rest of the world is built once). A checkpoint
    saves and restores it (copd/train/checkpoint.py)."""

    step: int = 0  # optimizer steps completed
    stop_requested: bool = False  # a stop was asked for (SIGTERM): checkpoint and leave
    teachers: dict[str, PolicyView] = field(default_factory=dict)  # snapshots when frozen
    resume_extra: dict = field(default_factory=dict)  # a restored checkpoint's `extra`
    restored_from: str = ""  # the checkpoint folder `checkpoint.restore` loaded, if any


@dataclass
class World:
    """The parts of a run built once (`World.build`), with the train state in `state`.

    The settings fields (keyword-only, from `method` on) are every part of the config the
    training code reads, each built once from `cfg` (`settings_from`)."""

    cfg: RunConfig  # what it was built from; the engine reads the settings below instead
    tokenizer: object
    tasks: dict[str, Task]  # by task spec string
    branches: list[Branch]
    base: PolicyView
    logger: Logger
    rngs: dict[str, random.Random]  # prompt sampling, per branch (and "mixed", "diag")
    gen: torch.Generator  # token sampling
    timer: Timer = field(default_factory=Timer)
    base_path: str = ""
    # Token sampling per branch for loops that run through copd/workers (CoPD): a stream
    # per branch, seeded from (seed, name), so an in-process run and one with a Ray actor
    # per branch draw the same tokens.
    gens: dict[str, torch.Generator] = field(default_factory=dict)
    benchmarks: dict = field(default_factory=dict)  # name -> Benchmark (copd/train/benchmarks.py)
    state: TrainState = field(default_factory=TrainState)
    # ------------------------------------------------ the settings (copd/train/settings.py)
    method: MethodInfo = field(kw_only=True)  # the method table's row the world is built for
    # The whole config as a dict, for the two readers that need the config itself rather
    # than a setting: the checkpoint's meta.json (what the run was) and the Ray actors,
    # which rebuild their one-branch worlds from it (copd/train/workers/ray_backend.py).
    config_dict: dict[str, Any] = field(kw_only=True)
    decoding: Decoding = field(kw_only=True)  # the training rollouts' decoding
    vllm: VLLMSettings | None = field(kw_only=True)  # the vLLM engines; None: built-in decoder
    loss: LossSettings = field(kw_only=True)  # what the loss terms and the update step read
    evaluation: EvalSettings = field(kw_only=True)  # what evaluation and diagnostics read
    batches: BatchSettings = field(kw_only=True)  # what each update draws, and from whom
    cadence: Cadence = field(kw_only=True)  # when the loops measure, evaluate, checkpoint
    recording: SampleSettings = field(kw_only=True)  # which completions are recorded
    merge: MergeSettings = field(kw_only=True)  # the final merge of the branches
    budget: Budget | None = field(kw_only=True)  # a baseline's step budget; None for CoPD
    # Each branch's task by branch name (the driver's copy: with Ray it holds no branch).
    branch_tasks: dict[str, Task] = field(kw_only=True)
    backend: BackendConfig = field(kw_only=True)  # where the CoPD branches run

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, cfg: RunConfig, logger: Logger | None = None, names=None) -> World:
        cfg.validate()
        logger = logger or NullLogger()
        set_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        if names is None:  # the policies the method trains (e.g. one "mixed" policy)
            names = cfg.policy_names()
        tasks = {
            b.task: get_task(
                b.task, trust_task_code=cfg.trust_task_code, **cfg.task_options.get(b.task, {})
            )
            for b in cfg.branches
        }
        check_task_media(tasks)
        if cfg.eval.test_draw != "standard":
            check_fresh_draw(tasks, cfg.eval.test_draw, cfg.eval.n_prompts, logger.log_event)
        path = resolve_model_path(cfg.model, log=lambda m: logger.log_event(m))
        base, tok = load_policy(path, cfg.model.dtype, cfg.model.gguf_file)
        if (
            cfg.backend.kind == "ray"
        ):  # branches live in Ray actors (copd/train/workers/ray_backend.py)
            set_attention(base, cfg.model.attn_implementation, "cpu")  # the driver's copy
            branches, base_view = [], PolicyView(base.requires_grad_(False).eval())
        else:
            branches, base_view = make_branches(base, cfg, tasks, names)
        rngs = {n: random.Random(f"{cfg.seed}:{n}") for n in names}  # the driver's, on Ray too
        rngs["mixed"] = random.Random(f"{cfg.seed}:mixed")
        gen = torch.Generator().manual_seed(cfg.seed)
        gens = {b.name: branch_generator(cfg.seed, b.name) for b in branches}
        return cls(
            cfg, tok, tasks, branches, base_view, logger, rngs, gen, base_path=path, gens=gens,
            benchmarks=build_benchmarks(cfg),
            **settings_from(cfg, tok, base_view.module, path, tasks),
        )  # fmt: skip

    def reconfigure(self, cfg: RunConfig) -> None:
        """Swap in another config of the same run (a study varying the temperature, a
        benchmark toggling a knob) and rebuild every setting from it."""
        self.cfg = cfg
        settings = settings_from(cfg, self.tokenizer, self.base.module, self.base_path, self.tasks)
        for name, value in settings.items():
            setattr(self, name, value)

    def branch(self, name: str) -> Branch:
        return next(b for b in self.branches if b.name == name)

    def task_of(self, example: Example) -> Task:
        return next(t for t in self.tasks.values() if t.name == example.domain)

    # ------------------------------------------------------------------ primitives
    def prompts(self, task: Task, n: int, rng_key: str) -> list[Example]:
        return task.sample(self.rngs[rng_key], n)

    def rollout(
        self,
        view: PolicyView,
        examples: list[Example],
        group_size: int,
        generator: torch.Generator | None = None,
        greedy: bool = False,
    ) -> RolloutBatch:
        """Sample `group_size` completions per example and score them with the verifiers.
        `generator`: the token-sampling stream (default: the world's shared `gen`);
        `greedy`: the most likely token at every step instead (draws nothing)."""
        return self.rollouts(view, [(examples, group_size)], generator, greedy)[0]

    def rollouts(
        self,
        view: PolicyView,
        requests: list[tuple[list[Example], int]],
        generator: torch.Generator | None = None,
        greedy: bool = False,
    ) -> list[RolloutBatch]:
        """`rollout` for several (examples, group size) requests of one policy, decoded
        together in one loop (`sample_rollout_sets`), each batch scored by the verifiers."""
        decoding = self.decoding.as_greedy() if greedy else self.decoding
        with self.timer("rollout"), view.use() as model:
            batches = sample_rollout_sets(
                model,
                self.tokenizer,
                requests,
                decoding,
                generator=self.gen if generator is None else generator,
                device=view.device,
            )
        return [self.score_rewards(b) for b in batches]

    def score_rewards(self, batch: RolloutBatch) -> RolloutBatch:
        """Fill `batch.rewards_B` with each completion's verifier reward; returns the batch."""
        batch.rewards_B = torch.tensor(
            [
                self.task_of(ex).reward(ex, text)
                for ex, text in zip(batch.examples, batch.texts, strict=True)
            ],
            dtype=torch.float32,
        )
        return batch

    @torch.no_grad()
    def score(self, view: PolicyView, batch: RolloutBatch) -> torch.Tensor:
        """Log-probs [B, T] of `batch`'s sampled tokens under `view` (a teacher), on the
        teacher's device; returned on the batch's device."""
        with self.timer("teacher"), view.use() as model:
            b = batch.to(view.device)
            logits = completion_logits(model, b)
            lp = logprobs_from_logits(logits, b.completion_ids_B_T, self.loss.temperature)
        return lp.to(batch.completion_ids_B_T.device)

    @torch.no_grad()
    def score_opd(self, view: PolicyView, batch: RolloutBatch) -> TeacherScores:
        """What an OPD term needs from a teacher (`opd.advantage`): the log-probs [B, T] of
        the sampled tokens ("sampled"); for "full_kl" also its full log-distribution
        ("full", [B, T, V]); for "topk" its top-k log-probs and token ids ("topk_vals",
        "topk_idx", [B, T, k]). Returned on the batch's device."""
        kind = self.loss.opd_advantage
        if kind == "sampled":
            return TeacherScores(self.score(view, batch))
        dev = batch.completion_ids_B_T.device
        with self.timer("teacher"), view.use() as model:
            b = batch.to(view.device)
            logits = completion_logits(model, b).float() / self.loss.temperature
            lsm = torch.log_softmax(logits, -1)
            out = {"logp": lsm.gather(-1, b.completion_ids_B_T.long().unsqueeze(-1)).squeeze(-1)}
            if kind == "full_kl":
                out["full"] = lsm
            else:
                k = min(self.loss.topk, lsm.shape[-1])
                out["topk_vals"], out["topk_idx"] = lsm.topk(k, dim=-1)
        return TeacherScores(**out).to(dev)

    def teacher_view(self, name: str) -> PolicyView:
        """The peer's live policy, or its frozen snapshot when `opd.teacher == "snapshot"`."""
        return self.state.teachers.get(name) or self.branch(name).view

    def snapshot_teachers(self) -> None:
        self.state.teachers = {b.name: b.snapshot() for b in self.branches}


def settings_from(
    cfg: RunConfig, tokenizer: object, base_module: object, model_path: str, tasks: dict
) -> dict[str, Any]:
    """Every settings field of a World, built from `cfg` (`tasks`: the world's, by task
    spec; `model_path`: the resolved base model folder)."""
    info = method_info(cfg.method)
    decoding = Decoding.from_config(cfg.sampling)
    skip = zero_advantage_skippable(cfg, tokenizer, base_module)
    return dict(
        method=info,
        config_dict=cfg.to_dict(),
        decoding=decoding,
        vllm=VLLMSettings.from_config(cfg, model_path, decoding),
        loss=LossSettings.from_config(cfg, skip),
        evaluation=EvalSettings.from_config(cfg),
        batches=BatchSettings.from_config(cfg, static=info.reported == "student"),
        cadence=Cadence.from_config(cfg),
        recording=SampleSettings.from_config(cfg),
        merge=MergeSettings.from_config(cfg),
        budget=None if info.budget == "copd" else budget_for(cfg),
        branch_tasks={b.name: tasks[b.task] for b in cfg.branches},
        backend=cfg.backend,
    )


def check_fresh_draw(tasks: dict[str, Task], draw: str, n: int, log: Callable) -> None:
    """`eval.test_draw` "fresh" or "fresh_or_whole": every domain can give `n` fresh test
    prompts (or, under "fresh_or_whole", has its test split scored whole, which `log`
    says), else a ConfigError naming the domain and the fix, before anything trains."""
    for t in tasks.values():
        if not hasattr(t, "fresh_examples"):
            raise ConfigError(
                f"eval.test_draw: {draw!r} needs built-in generated domains; {t.name!r} has "
                "no fresh draw (use 'standard')"
            )
        if draw == "fresh_or_whole" and t.test_split_exhausted():
            log(
                f"eval.test_draw=fresh_or_whole: {t.name}'s test split holds "
                f"{len(t.scored_keys())} inputs, all scored before; scored whole, each once"
            )
            continue
        try:
            t.fresh_examples(n)
        except ValueError as e:
            raise ConfigError(f"eval.test_draw: {e}") from None


def branch_generator(seed: int, name: str) -> torch.Generator:
    """A token-sampling generator seeded from (seed, branch name), stable across processes."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "big") >> 1)


def log_step(
    world: World, metrics: dict[str, float], cycle: int, phase: str, total: int | None = None
) -> None:
    """The step's metrics and progress, in one logger call. Its seconds (`time/*`) go out
    with those of its after-step work at the step's end (`loop.log_step_times`).
    Called after `world.state.step += 1`, so it counts the steps done.
    `total`: the loop's step count when it is not `schedule.total_steps()` (baselines)."""
    total = total or world.cadence.schedule.total_steps() or 1
    metrics = dict(metrics)
    metrics[N.PROGRESS] = world.state.step / total
    t0 = time.perf_counter()
    world.logger.log_metrics(metrics, step=world.state.step, cycle=cycle, phase=phase)
    world.timer.acc["logging"] += time.perf_counter() - t0
