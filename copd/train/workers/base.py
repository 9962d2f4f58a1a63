"""The branch-worker interface: what the CoPD driver loop asks of a branch, wherever it runs.

    group = make_group(world)                       # copd/train/workers/__init__.py
    stats = group.rl_steps({"add": (examples, 8, False)})["add"]
    group.close()

One driver loop (copd/train/algorithms/copd.py) talks to K branch workers through a narrow set of
methods; a worker holds its branch's weights, optimizer, token-sampling generator and teacher
snapshot. The driver holds the prompt samplers (one `random.Random` per branch, in the world)
and decides who samples what, who scores what, and when. Everything that crosses a worker
boundary is small and picklable: prompts, token ids and masks, rewards, texts, log-probs
[B, T], stats dicts of floats, and `BranchState` for checkpoints and the merge.

Back ends: `LocalGroup` (in-process, copd/train/workers/local.py) and `RayGroup` (a Ray actor per
branch, copd/train/workers/ray_backend.py). The group's typed methods (`rl_steps`,
`rollouts`, `scores`, `train_steps`, ...) build `Call`s of the worker operations in `Ops`
and issue them with `WorkerGroup.call`, in order; calls to different workers may run in
parallel (Ray), calls to one worker run in order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from copd.policy.batch import TeacherScores
from copd.policy.rollout import RolloutBatch
from copd.tasks import Example
from copd.train.checkpoint import BranchState
from copd.train.evaluate import BASE, overlap_diagnostics


@dataclass
class CrossBatch:
    """A student's samples of a teacher's prompts, with the teacher's scores
    (`World.score_opd`)."""

    teacher: str
    batch: RolloutBatch
    scores: TeacherScores


@dataclass(frozen=True)
class Call:
    """One operation on one worker: `op(worker, *args)`, `op` one of `Ops` (plain
    functions, so a Ray actor receives them by name and module, never as code)."""

    worker: str
    op: Callable[..., Any]
    args: tuple = ()


class BranchWorker(Protocol):
    """What one branch does for the driver. Stats dicts use unprefixed metric names
    (`reward/mean`, `opd/adv_mean/<teacher>`); the driver adds `branch/<name>/`."""

    name: str

    def rollout(self, examples: list[Example], group_size: int) -> RolloutBatch:
        """`group_size` samples per example from the branch's live policy, with verifier
        rewards, drawn from the branch's own token-sampling generator."""

    def rollouts(self, requests: list[tuple[list[Example], int]]) -> list[RolloutBatch]:
        """`rollout` for several (examples, group size) requests, in order; the built-in
        decoder samples them in one decode loop."""

    def score(self, batch: RolloutBatch) -> TeacherScores:
        """`batch`'s tokens scored by this branch as a teacher (its frozen snapshot when it
        holds one, else its live policy), as `World.score_opd` gives them."""

    def train_step(
        self, native: RolloutBatch | None, cross: list[CrossBatch], signal: bool = False
    ) -> dict[str, float]:
        """One combined update (`grpo.updates_per_batch` x `grpo.minibatches` optimizer
        steps): GRPO on `native` + each OPD term over `cross`, weighted per
        `opd.teacher_weighting`; `signal` also records the signal balance."""

    def rl_step(
        self, examples: list[Example], group_size: int, signal: bool = False
    ) -> dict[str, float]:
        """Phase I in one call: `rollout` then `train_step(batch, [])`."""

    def snapshot_teacher(self) -> None:
        """Freeze a copy of the current policy to teach from (opd.teacher="snapshot")."""

    def drop_teacher(self) -> None:
        """Teach from the live policy again."""

    def state(self) -> BranchState:
        """Weights, optimizer, token-sampling generator and snapshot (CPU tensors)."""

    def load_state(self, state: BranchState) -> None:
        """The inverse of `state`."""

    def evaluate(self, step: int, final: bool = False) -> dict[str, float]:
        """Held-out scores of the branch on every domain (+ "overall"; at the `final`
        evaluation also the validation split, see copd.train.evaluate), not logged."""

    def probe_rollout(self, examples: list[Example], step: int) -> RolloutBatch:
        """The diagnostics probe: samples seeded from (seed, step), as copd/train/evaluate.py."""

    def probe_logits(self, batch: RolloutBatch, base: bool = False) -> torch.Tensor:
        """Float32 logits [N, V] at `batch`'s N completion tokens, under this branch or
        (base=True) under the frozen base model."""

    def pop_times(self) -> dict[str, float]:
        """Seconds spent per part (`rollout`, `update`, ...) since the last call."""

    def sampling_engine(self) -> str:
        """How `rollout` samples: "hf", "vllm", or why vLLM fell back to the built-in
        decoder (copd/policy/rollout_vllm.py)."""


class Ops:
    """The operations a driver sends to a worker, one per `BranchWorker` method:
    `Ops.rl_step(worker, examples, group_size, signal)` calls `worker.rl_step(...)`."""

    @staticmethod
    def rollout(w: BranchWorker, examples: list[Example], group_size: int) -> RolloutBatch:
        return w.rollout(examples, group_size)

    @staticmethod
    def rollouts(w: BranchWorker, requests: list[tuple[list[Example], int]]) -> list[RolloutBatch]:
        return w.rollouts(requests)

    @staticmethod
    def score(w: BranchWorker, batch: RolloutBatch) -> TeacherScores:
        return w.score(batch)

    @staticmethod
    def train_step(
        w: BranchWorker, native: RolloutBatch | None, cross: list[CrossBatch], signal: bool
    ) -> dict[str, float]:
        return w.train_step(native, cross, signal)

    @staticmethod
    def rl_step(
        w: BranchWorker, examples: list[Example], group_size: int, signal: bool = False
    ) -> dict[str, float]:
        return w.rl_step(examples, group_size, signal)

    @staticmethod
    def snapshot_teacher(w: BranchWorker) -> None:
        w.snapshot_teacher()

    @staticmethod
    def drop_teacher(w: BranchWorker) -> None:
        w.drop_teacher()

    @staticmethod
    def state(w: BranchWorker) -> BranchState:
        return w.state()

    @staticmethod
    def load_state(w: BranchWorker, st: BranchState) -> None:
        w.load_state(st)

    @staticmethod
    def evaluate(w: BranchWorker, step: int, final: bool = False) -> dict[str, float]:
        return w.evaluate(step, final)

    @staticmethod
    def probe_rollout(w: BranchWorker, examples: list[Example], step: int) -> RolloutBatch:
        return w.probe_rollout(examples, step)

    @staticmethod
    def probe_logits(w: BranchWorker, batch: RolloutBatch, base: bool = False) -> torch.Tensor:
        return w.probe_logits(batch, base)

    @staticmethod
    def pop_times(w: BranchWorker) -> dict[str, float]:
        return w.pop_times()

    @staticmethod
    def sampling_engine(w: BranchWorker) -> str:
        return w.sampling_engine()


class WorkerGroup(ABC):
    """The branch workers of a run, by name, in the config's branch order."""

    names: list[str]
    is_local: bool = False

    @abstractmethod
    def call(self, calls: list[Call]) -> list[Any]:
        """Run `calls` and return their results in order. Calls to one worker run in the
        order given; calls to different workers may overlap (Ray)."""

    def each(self, op: Callable[..., Any], args: dict[str, tuple]) -> dict[str, Any]:
        """`op` on the named workers (one call each), results by name."""
        names = list(args)
        return dict(zip(names, self.call([Call(n, op, args[n]) for n in names]), strict=True))

    def _all(self, op: Callable[..., Any]) -> dict[str, Any]:
        return self.each(op, {n: () for n in self.names})

    # ------------------------------------------------------------------ training
    def rl_steps(
        self, work: dict[str, tuple[list[Example], int, bool]]
    ) -> dict[str, dict[str, float]]:
        """Phase I: each named worker's (examples, group size, signal) `rl_step`."""
        return self.each(Ops.rl_step, work)

    def rollouts(
        self, requests: dict[str, list[tuple[list[Example], int]]]
    ) -> dict[str, list[RolloutBatch]]:
        """Each named worker samples its (examples, group size) requests."""
        return self.each(Ops.rollouts, {n: (r,) for n, r in requests.items()})

    def scores(self, jobs: list[tuple[str, RolloutBatch]]) -> list[TeacherScores]:
        """Each (teacher, batch): the batch scored by that teacher's worker, in order."""
        return self.call([Call(t, Ops.score, (batch,)) for t, batch in jobs])

    def train_steps(
        self, work: dict[str, tuple[RolloutBatch | None, list[CrossBatch], bool]]
    ) -> dict[str, dict[str, float]]:
        """Each named worker's (native, cross batches, signal) combined update."""
        return self.each(Ops.train_step, work)

    # ------------------------------------------------------------------ teachers, state
    def states(self) -> dict[str, BranchState]:
        return self._all(Ops.state)

    def load_checkpoint(self, path: str | Path) -> None:
        """Load every worker's branch from the checkpoint folder at `path`."""
        from copd.train.checkpoint import read_branch_states

        states = read_branch_states(path, self.names)
        self.call([Call(n, Ops.load_state, (states[n],)) for n in self.names])

    def pop_times(self) -> dict[str, float]:
        """Seconds per part summed over workers (what the step spent in each)."""
        out: dict[str, float] = {}
        for t in self._all(Ops.pop_times).values():
            for k, v in t.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def sampling_engines(self) -> dict[str, str]:
        """How each worker samples (`BranchWorker.sampling_engine`)."""
        return self._all(Ops.sampling_engine)

    def snapshot_teachers(self) -> None:
        self._all(Ops.snapshot_teacher)

    def drop_teachers(self) -> None:
        self._all(Ops.drop_teacher)

    def save(self, world, out_dir: str | Path) -> Path:
        """Checkpoint the run: the driver's world (step, prompt RNGs) + every worker's state."""
        from copd.train import checkpoint

        return checkpoint.save(world, out_dir, branch_states=self.states())

    def measure_overlap(self, world, cycle: int, phase: str) -> dict[str, float]:
        return measure_overlap_via_workers(world, self, cycle, phase)

    def evaluate(self, world, step: int, final: bool = False) -> dict[str, dict[str, float]]:
        """Held-out scores of every branch (each in its worker), logged like
        `copd.train.evaluate.evaluate`."""
        out = self.each(Ops.evaluate, {n: (step, final) for n in self.names})
        n_prompts = world.evaluation.n_prompts
        for model_name, scores in out.items():
            for bench, s in scores.items():
                n = 0 if bench.startswith("overall") else n_prompts
                world.logger.log_eval(model_name, bench, s, n, step=step)
        return out

    def close(self) -> None:
        """Release the workers (Ray actors); the in-process group has nothing to release."""
        return None


@torch.inference_mode()
def measure_overlap_via_workers(
    world, group: WorkerGroup, cycle: int, phase: str, step: int | None = None
) -> dict[str, float]:
    """`copd.train.evaluate.measure_overlap` with the branches in workers: each student samples
    the probe (same seeded stream), every peer and the base return logits at the student's
    completion tokens, and the driver computes the pair diagnostics
    (`copd.train.evaluate.overlap_diagnostics`). Same numbers as the in-process version; the
    logits [N, V] of each pair cross the worker boundary."""
    step = world.state.step if step is None else step
    names = group.names

    def probes(examples, step):  # every student samples at once (in parallel on Ray)
        batches = group.each(Ops.probe_rollout, {s: (examples, step) for s in names})
        return [(s, batches[s]) for s in names]

    def logits_at(student, batch, teachers):  # the base is scored in the student's worker
        return group.call(
            [
                Call(student, Ops.probe_logits, (batch, True))
                if t == BASE
                else Call(t, Ops.probe_logits, (batch,))
                for t in teachers
            ]
        )

    rows = [] if world.recording.due(step) else None
    metrics = overlap_diagnostics(world, names, probes, logits_at, step, rows)
    world.logger.log_metrics(metrics, step=step, cycle=cycle, phase=phase)
    if rows:
        world.logger.log_samples(rows, step=step, cycle=cycle, phase=phase)
    return metrics
