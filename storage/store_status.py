"""The RunStore's status machine: one conditional move, set_status, the writer lease
(mark_running), the supervisor's claim, heartbeats."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, func, or_, update

from storage.db import StoreError
from storage.entities import (
    STATUSES,
    TERMINAL,
    IllegalTransition,
    Run,
    RunStatus,
    check_transition,
    sources,
)
from storage.models import RunRow
from storage.store_base import StorePart, run_row, utcnow


def _aware(t: datetime) -> datetime:
    """SQLite hands datetimes back naive (they were stored as UTC)."""
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


class RunBusy(StoreError):
    """Another live process holds the run's writer lease; nothing was written."""


def _first_start(now: datetime):
    """started_at for a move to running: the run's first start, kept across resumes."""
    return func.coalesce(RunRow.started_at, now)


class RunLifecycle(StorePart):
    """A run's status and process: move, set_status, mark_running, claim, heartbeat."""

    def move(
        self, run_id: int, to: str, *, only_from: tuple[str, ...] | None = None, **fields: Any
    ) -> bool:
        """Move a run to status `to` in one conditional UPDATE, if its current status may
        move there (storage/entities.py MOVES; `only_from` narrows that); True when it moved.
        Exactly one of any number of concurrent callers wins a move. `fields`: columns set
        with it (started_at, pid, ...)."""
        if to not in STATUSES:
            raise ValueError(f"status {to!r} is unknown; use one of {', '.join(STATUSES)}")
        allowed = [s.value for s in sources(to) if only_from is None or s in only_from]
        with self.db.session(write=True) as s:
            res = s.execute(
                update(RunRow)
                .where(RunRow.id == int(run_id), RunRow.status.in_(allowed))
                .values(status=RunStatus(to).value, **fields)
            )
            return res.rowcount == 1

    def set_status(self, run_id: int, status: str, error: str | None = None) -> Run:
        """Move a run along the status machine (storage/entities.py); IllegalTransition if the
        move is not allowed. running sets started_at (the first start only: a resumed run
        keeps it, so its start and duration cover the whole run), terminal states set
        ended_at, and a resume (-> queued) clears the previous attempt's end time, error and
        process."""
        now = utcnow()
        fields: dict[str, Any] = {}
        if status == RunStatus.RUNNING:
            fields = {"started_at": _first_start(now), "heartbeat_at": now}
        elif status in TERMINAL:
            fields = {"ended_at": now}
            if error is not None:
                fields["error"] = error
            if status == RunStatus.FINISHED:
                fields["progress"] = 1.0
        elif status == RunStatus.QUEUED:
            fields = dict(ended_at=None, error=None, pid=None, pid_start_time=None,
                          heartbeat_at=None, assigned_gpus=None)  # fmt: skip
        if not self.move(run_id, status, **fields):
            check_transition(self.get_run(run_id).status, status)  # raises, naming the move
            raise IllegalTransition(f"run {run_id} changed status meanwhile; try again")
        return self.get_run(run_id)

    def mark_running(
        self, run_id: int, pid: int, pid_start_time: float | None, host: str | None,
        assigned_gpus: str | None = None, lease_s: float | None = None,
    ) -> Run:  # fmt: skip
        """queued -> running, recording the process. On a run already running it takes the
        run's writer lease, in one conditional UPDATE: granted when no process is recorded
        yet (the launcher claimed the run), when the recorded one is this process (the
        launcher recorded the child it spawned, the trainer then records itself), or when
        the holder's heartbeat is older than `lease_s` (it died without a status); else
        RunBusy naming the holder. One writer per run, however many try."""
        now = utcnow()
        proc = dict(pid=int(pid), pid_start_time=pid_start_time, host=host, heartbeat_at=now)
        if assigned_gpus is not None:
            proc["assigned_gpus"] = assigned_gpus
        if self.move(run_id, RunStatus.RUNNING, started_at=_first_start(now), **proc):
            return self.get_run(run_id)
        free = [RunRow.pid.is_(None), and_(RunRow.pid == int(pid), RunRow.host == host)]
        if lease_s is not None:
            stale = now - timedelta(seconds=float(lease_s))
            free += [RunRow.heartbeat_at.is_(None), RunRow.heartbeat_at < stale]
        with self.db.session(write=True) as s:
            res = s.execute(
                update(RunRow)
                .where(RunRow.id == int(run_id), RunRow.status == RunStatus.RUNNING.value)
                .where(or_(*free))
                .values(**proc)
            )
            if res.rowcount == 1:
                return self.get_run(run_id)
            row = run_row(s, run_id)
            if row.status != RunStatus.RUNNING:
                check_transition(row.status, RunStatus.RUNNING)
                raise IllegalTransition(f"run {run_id} changed status meanwhile; try again")
            beat = row.heartbeat_at
            age = (now - _aware(beat)).total_seconds() if beat is not None else float("nan")
            raise RunBusy(
                f"run {run_id} is being written by process {row.pid} on {row.host} (heartbeat "
                f"{age:.1f} s ago): one writer per run; cancel it first (copd cancel "
                f"{run_id}) or wait until it ends"
            )

    def claim(self, run_id: int, host: str | None, assigned_gpus: str | None = None) -> bool:
        """queued -> running in one conditional UPDATE, before a supervisor spawns the trainer:
        True for exactly one caller, however many supervisors (threads, processes, machines)
        try to start the same run; False when it is no longer queued. The process fields
        follow with `mark_running` once the trainer is spawned."""
        now = utcnow()
        return self.move(
            run_id, RunStatus.RUNNING, only_from=(RunStatus.QUEUED,),
            started_at=_first_start(now),
            heartbeat_at=now, host=host, pid=None, pid_start_time=None,
            assigned_gpus=assigned_gpus,
        )  # fmt: skip

    def heartbeat(self, run_id: int, progress: float | None = None) -> None:
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if progress is not None:
            values["progress"] = min(1.0, max(0.0, float(progress)))
        with self.db.session(write=True) as s:
            res = s.execute(update(RunRow).where(RunRow.id == int(run_id)).values(**values))
            if res.rowcount == 0:
                raise KeyError(f"run {run_id} does not exist")
