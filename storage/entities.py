"""What callers of the run store see: plain frozen dataclasses, plus the run status machine.

ORM rows (storage/models.py) never leave the store; every query converts them to these.
Datetimes are timezone-aware UTC; `wall_time` fields are float epoch seconds.

Status machine (the only legal moves: MOVES below; `RunStore.move` and `check_transition`
enforce it; `allows(status, action)` / `allowed_actions(status)` say what a user may do):

    queued    -> running | cancelled
    running   -> finished | failed | cancelled | crashed
    cancelled | crashed | failed -> queued      (resume)
    finished  -> (nothing)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any


class RunStatus(str, Enum):
    """A run's status, stored as its value (so stores written before read unchanged)."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CRASHED = "crashed"

    def __str__(self) -> str:
        return self.value


S = RunStatus
# The one table of legal moves: status -> the statuses a run may move to from it.
MOVES: dict[RunStatus, tuple[RunStatus, ...]] = {
    S.QUEUED: (S.RUNNING, S.CANCELLED),
    S.RUNNING: (S.FINISHED, S.FAILED, S.CANCELLED, S.CRASHED),
    S.CANCELLED: (S.QUEUED,),
    S.CRASHED: (S.QUEUED,),
    S.FAILED: (S.QUEUED,),
    S.FINISHED: (),
}
STATUSES = tuple(s.value for s in RunStatus)
TERMINAL = (S.FINISHED.value, S.FAILED.value, S.CANCELLED.value, S.CRASHED.value)
_LEGAL = {k.value: tuple(v.value for v in vs) for k, vs in MOVES.items()}

# What a user may do to a run, by status (the Runs view and the launcher ask here).
ACTIONS: dict[str, tuple[RunStatus, ...]] = {
    "cancel": (S.QUEUED, S.RUNNING),  # a queued run is cancelled at once, a running one stopped
    "resume": (S.CANCELLED, S.CRASHED, S.FAILED),  # back to queued, from its checkpoint
    "delete": (S.QUEUED, S.FINISHED, S.FAILED, S.CANCELLED, S.CRASHED),  # never while running
}


def sources(to: str) -> tuple[RunStatus, ...]:
    """The statuses from which a run may move to `to`."""
    return tuple(k for k, vs in MOVES.items() if to in vs)


def allowed_actions(status: str) -> tuple[str, ...]:
    """The user actions a run in `status` allows, in the order of ACTIONS."""
    return tuple(a for a in ACTIONS if allows(status, a))


def allows(status: str, action: str) -> bool:
    """Whether a run in `status` allows `action` ("cancel" | "resume" | "delete")."""
    return status in {s.value for s in ACTIONS[action]}


class IllegalTransition(ValueError):
    """A status move the state machine forbids (e.g. finished -> running)."""


def check_transition(current: str, requested: str) -> None:
    """Raise IllegalTransition (or ValueError for an unknown status) unless current -> requested
    is a legal move."""
    current, requested = str(current), str(requested)  # a RunStatus or its stored value
    if requested not in STATUSES:
        raise ValueError(f"status {requested!r} is unknown; use one of {', '.join(STATUSES)}")
    allowed = _LEGAL.get(current, ())
    if requested not in allowed:
        hint = f"allowed from {current!r}: {', '.join(allowed)}" if allowed else "it is final"
        raise IllegalTransition(f"cannot move a run from {current!r} to {requested!r} ({hint})")


@dataclass(frozen=True)
class Run:
    id: int
    name: str
    method: str
    group: str | None
    status: RunStatus
    config: dict[str, Any]
    seed: int
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    pid: int | None
    pid_start_time: float | None
    host: str | None
    heartbeat_at: datetime | None
    progress: float
    error: str | None
    code_revision: str | None
    run_dir: str | None
    requested_gpus: int
    assigned_gpus: str | None
    cpu_slots: int
    tags: tuple[str, ...] = ()  # sorted; copd/common/tags.py says what a tag may hold
    notes: str = ""

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    step: int
    cycle: int = 0
    phase: str = ""
    scope: str = ""
    wall_time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Evaluation:
    model: str
    benchmark: str
    score: float
    n: int
    step: int
    wall_time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Event:
    message: str
    level: str = "info"
    step: int | None = None
    wall_time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: str
    wall_time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Sample:
    """One recorded completion (copd/train/samples.py has the fields' meaning): who sampled
    it, on which prompt, its reward, and per token the sampler's log-prob and each peer's
    (`peers`: {name: {"logp": [...], "in_topk": [...] | None}})."""

    step: int
    kind: str  # "probe" | "cross"
    branch: str
    domain: str
    prompt_index: int
    prompt: str
    completion: str
    reward: float
    correct: bool
    tokens: list[str]
    logp: list[float | None]
    peers: dict[str, dict[str, Any]]
    disagreement: float = float("nan")
    overlap: float | None = None
    cycle: int = 0
    phase: str = ""
    wall_time: float = field(default_factory=time.time)
    run_id: int | None = None

    @property
    def peer_names(self) -> list[str]:
        """The peers that scored this sample: branch peers by name, the base model last."""
        return sorted(self.peers, key=lambda p: (p == "base", p))
