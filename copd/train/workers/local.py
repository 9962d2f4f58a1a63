"""In-process branch workers: the default back end, and what each Ray actor runs inside.

    group = LocalGroup(world)          # one LocalWorker per branch of `world`
    stats = group.rl_steps({"add": (examples, 8, False)})["add"]

A `LocalWorker` wraps one branch of a `World` with the engine's primitives (rollout,
score, and `copd.train.update.optimize` over the terms of copd/train/terms.py); the numerics are the
engine's. Its token sampling
uses the branch's own generator `world.gens[name]`, so K in-process workers draw exactly
what K Ray actors (each a one-branch world) draw.

With `sampling.engine: "vllm"` a worker samples its training rollouts with a vLLM engine on
the branch's GPU (copd/policy/rollout_vllm.py), pushing the branch's weights to it before the
first rollout after each update; without vLLM or CUDA it keeps the built-in decoder, and
the group logs the reason once. Evaluation and the diagnostics probe use the built-in one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from copd.common import names as N
from copd.policy.batch import TeacherScores
from copd.policy.models import Branch
from copd.policy.rollout import RolloutBatch
from copd.policy.rollout_vllm import branch_weights, report_engines, rollout_engine
from copd.tasks import Example
from copd.train import checkpoint
from copd.train.checkpoint import BranchState
from copd.train.update import TermSpec, opd_weights, optimize
from copd.train.workers.base import Call, CrossBatch, WorkerGroup
from copd.train.world import World


class LocalWorker:
    """One branch of an in-process world behind the `BranchWorker` interface."""

    def __init__(self, world: World, branch: Branch) -> None:
        self.world = world
        self.branch = branch
        self.name = branch.name
        # A vLLM engine for training rollouts, or None (the built-in decoder); `engine` is
        # "hf", "vllm" or the reason vLLM could not be used.
        self.vllm, self.engine = rollout_engine(
            world.vllm, world.tokenizer, branch, in_process=len(world.branches) == 1
        )

    # ------------------------------------------------------------------ training
    def rollout(self, examples: list[Example], group_size: int) -> RolloutBatch:
        return self.rollouts([(examples, group_size)])[0]

    def rollouts(self, requests: list[tuple[list[Example], int]]) -> list[RolloutBatch]:
        w = self.world
        gen = w.gens[self.name]
        if self.vllm is None:  # the built-in decoder runs every request in one loop
            return w.rollouts(self.branch.view, requests, generator=gen)
        if self.vllm.stale:
            with w.timer("weight_sync"):
                self.vllm.sync_weights(branch_weights(self.branch))
        with w.timer("rollout"):
            batches = [self.vllm.sample(exs, g, gen) for exs, g in requests]
        return [w.score_rewards(b) for b in batches]

    def score(self, batch: RolloutBatch) -> TeacherScores:
        return self.world.score_opd(self.world.teacher_view(self.name), batch)

    def train_step(
        self, native: RolloutBatch | None, cross: list[CrossBatch], signal: bool = False
    ) -> dict[str, float]:
        w, b = self.world, self.branch
        specs = [] if native is None else [TermSpec(1.0, native.to(b.device))]
        weight = opd_weights(w.loss, len(cross))
        specs += [
            TermSpec(
                weight, c.batch.to(b.device), c.teacher, TeacherScores.of(c.scores).to(b.device)
            )
            for c in cross
        ]
        if not specs:
            return {}
        res = optimize(w, b, specs, measure_signal=signal)
        stats = dict(res.stats[0]) if native is not None else {}
        for spec, term_stats in zip(
            specs[len(specs) - len(cross) :], res.stats[len(specs) - len(cross) :], strict=True
        ):
            stats.update({f"{k}/{spec.teacher}": v for k, v in term_stats.items()})
        stats.update(res.signal)
        stats[N.GRAD_NORM] = res.grad_norm
        if self.vllm is not None:
            self.vllm.mark_stale()
        return stats

    def rl_step(
        self, examples: list[Example], group_size: int, signal: bool = False
    ) -> dict[str, float]:
        return self.train_step(self.rollout(examples, group_size), [], signal)

    # ------------------------------------------------------------------ teachers, state
    def snapshot_teacher(self) -> None:
        self.world.state.teachers[self.name] = self.branch.snapshot()

    def drop_teacher(self) -> None:
        self.world.state.teachers.pop(self.name, None)

    def state(self) -> BranchState:
        return checkpoint.branch_state(self.world, self.branch)

    def load_state(self, state: BranchState) -> None:
        checkpoint.load_branch_state(self.world, self.branch, state)
        if self.vllm is not None:
            self.vllm.mark_stale()

    def sampling_engine(self) -> str:
        return self.engine

    # ------------------------------------------------------------------ measurement
    def evaluate(self, step: int, final: bool = False) -> dict[str, float]:
        from copd.train.evaluate import evaluate

        views = {self.name: self.branch.view}
        return evaluate(self.world, views, step, log=False, final=final)[self.name]

    @torch.inference_mode()
    def probe_rollout(self, examples: list[Example], step: int) -> RolloutBatch:
        from copd.train.evaluate import probe_rollout

        with self.world.timer("diagnostics"):
            return probe_rollout(self.world, self.branch.view, examples, step)

    @torch.inference_mode()
    def probe_logits(self, batch: RolloutBatch, base: bool = False) -> torch.Tensor:
        from copd.train.evaluate import probe_logits

        view = self.world.base if base else self.branch.view
        with self.world.timer("diagnostics"):
            return probe_logits(view, batch)

    def pop_times(self) -> dict[str, float]:
        return self.world.timer.pop()


class LocalGroup(WorkerGroup):
    """Every branch of `world` as an in-process worker; calls run one after another.

    Timings stay in the shared `world.timer` (log_step reads them), so `pop_times` here
    returns nothing; diagnostics and evaluation use copd/train/evaluate.py on the world directly.
    """

    is_local = True

    def __init__(self, world: World) -> None:
        self.world = world
        self.workers = {b.name: LocalWorker(world, b) for b in world.branches}
        self.names = list(self.workers)
        notes = {n: w.engine for n, w in self.workers.items()}
        report_engines(world.logger.log_event, notes, world.state.step)

    def call(self, calls: list[Call]) -> list[Any]:
        return [c.op(self.workers[c.worker], *c.args) for c in calls]

    def pop_times(self) -> dict[str, float]:
        return {}

    def save(self, world: World, out_dir) -> Path:
        return checkpoint.save(world, out_dir)

    def measure_overlap(self, world: World, cycle: int, phase: str) -> dict[str, float]:
        from copd.train.evaluate import measure_overlap

        return measure_overlap(world, cycle, phase)

    def evaluate(self, world: World, step: int, final: bool = False) -> dict[str, dict[str, float]]:
        from copd.train.evaluate import evaluate

        return evaluate(world, {b.name: b.view for b in world.branches}, step=step, final=final)
