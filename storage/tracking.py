"""track_run: the trainer side of a run's lifecycle in the store.

    with track_run(store, run_id, heartbeat_s=5.0) as tr:
        for step in range(n):
            ...
            tr.progress = (step + 1) / n

On entry the run is marked running with this process's pid, its start time (psutil, so a
reused pid can be told apart) and host; a daemon thread then heartbeats every `heartbeat_s`
seconds with the latest `tr.progress`, each beat in its own short session. On exit:
    clean exit, SystemExit(0)                     -> finished
    `tr.cancelled = True`, or RunCancelled raised -> cancelled (RunCancelled is swallowed:
                                                     it is the way to leave the block early)
    KeyboardInterrupt                             -> cancelled, re-raised
    any other exception (SystemExit(n != 0) too)  -> failed, error = message + traceback tail
                                                     (last ~4000 chars), re-raised
If the run was moved meanwhile (e.g. the launcher marked it crashed), the final status
cannot be written; a warning is printed and the original outcome stands.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psutil

from copd.common.errors import TrainingCancelled
from storage.entities import IllegalTransition, RunStatus

if TYPE_CHECKING:
    from storage.store import RunStore

TRACEBACK_TAIL_CHARS = 4000


# Raise inside `track_run` to stop the run and record it as cancelled: the engine's own
# cancel exception (one class for both; copd.common is the store's only project import).
RunCancelled = TrainingCancelled


class Tracker:
    """What the `with track_run(...)` block sees: set `progress` (0..1) and `cancelled`."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self._progress: float | None = None
        self.cancelled = False

    @property
    def progress(self) -> float | None:
        return self._progress

    @progress.setter
    def progress(self, value: float) -> None:
        self._progress = min(1.0, max(0.0, float(value)))


class _Heartbeat:
    def __init__(self, store: RunStore, tracker: Tracker, interval_s: float):
        self.store, self.tracker, self.interval_s = store, tracker, interval_s
        self._stop = threading.Event()
        self._warned = False
        self._thread = threading.Thread(
            target=self._loop, name=f"copd-heartbeat-{tracker.run_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.store.heartbeat(self.tracker.run_id, self.tracker.progress)
            except Exception as e:  # a missed beat must never stop training
                if not self._warned:
                    self._warned = True
                    print(f"[storage.tracking] heartbeat failed: {e!r}", file=sys.stderr)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30.0)


def error_text(exc: BaseException) -> str:
    """'Type: message' followed by the last TRACEBACK_TAIL_CHARS characters of the traceback."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{type(exc).__name__}: {exc}\n\n{tb[-TRACEBACK_TAIL_CHARS:]}"


LEASE_BEATS = 3  # a writer whose heartbeat is this many intervals old has lost the run


def take_lease(store: RunStore, run_id: int, heartbeat_s: float = 5.0) -> None:
    """Make this process the run's one writer (RunStore.mark_running), or raise RunBusy
    naming the live holder. Take it before touching anything of the run (a resume's
    truncation included): a refused writer must leave the run as it was."""
    me = psutil.Process(os.getpid())
    store.mark_running(run_id, pid=me.pid, pid_start_time=me.create_time(),
                       host=socket.gethostname(), lease_s=LEASE_BEATS * heartbeat_s)  # fmt: skip


@contextmanager
def track_run(store: RunStore, run_id: int, heartbeat_s: float = 5.0) -> Iterator[Tracker]:
    """Mark the run running (its writer lease), heartbeat while the block runs, record how
    it ended."""
    take_lease(store, run_id, heartbeat_s)
    tr = Tracker(run_id)
    beat = _Heartbeat(store, tr, heartbeat_s)
    beat.start()
    status, error = RunStatus.FINISHED, None
    try:
        yield tr
    except RunCancelled:
        tr.cancelled = True
    except KeyboardInterrupt:
        tr.cancelled = True
        raise
    except SystemExit as e:
        if e.code not in (None, 0):
            status, error = RunStatus.FAILED, error_text(e)
        raise
    except BaseException as e:
        status, error = RunStatus.FAILED, error_text(e)
        raise
    finally:
        beat.stop()
        if status == RunStatus.FINISHED and tr.cancelled:
            status = RunStatus.CANCELLED
        _finish(store, run_id, status, error, tr.progress)


def _finish(
    store: RunStore, run_id: int, status: RunStatus, error: str | None, progress: float | None
):
    # Runs in a finally block: never let a store problem replace the training's own exception.
    try:
        if progress is not None and status != RunStatus.FINISHED:
            store.heartbeat(run_id, progress)
        store.set_status(run_id, status, error=error)
    except IllegalTransition as e:
        print(f"[storage.tracking] run {run_id}: final status not recorded: {e}", file=sys.stderr)
    except Exception as e:
        print(f"[storage.tracking] run {run_id}: could not record {status}: {e!r}", file=sys.stderr)
