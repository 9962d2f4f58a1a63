"""StoreLogger: the run store behind copd's Logger protocol (structural: of copd only the
torch-free `copd.common` is imported, for the metric-name grammar).

    lg = StoreLogger(store, run_id, flush_every_s=2.0, flush_every_n=500)
    lg.log_metrics({"branch/add/reward/mean": 0.4}, step=3, cycle=0, phase="rl")
    lg.close()     # flushes what is left; also registered with atexit

Logging must cost training next to nothing, so the calling thread only appends tuples to an
in-memory buffer. A daemon thread writes the buffer to the store every `flush_every_s`
seconds, or sooner once `flush_every_n` points are waiting (the caller just wakes it).
flush() and close() write synchronously in the caller's thread. Checkpoints are written at
once (after the pending points), since resuming depends on them.

Write failures in the background never reach training: the batch goes back in the buffer,
a warning is printed once, and the next flush retries (a deleted run drops its batch).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from typing import Any

from copd.common.names import scope_of
from storage.entities import Evaluation, Event, Sample

MAX_BUFFER = 2_000_000  # points kept while the database is unreachable; oldest dropped beyond
MAX_BUFFERED_SAMPLES = 200  # likewise for log_samples calls (a step's completions each)


class StoreLogger:
    """Buffers metrics, evaluations and events for one run and writes them in batches."""

    def __init__(
        self,
        store: Any,
        run_id: int,
        flush_every_s: float = 2.0,
        flush_every_n: int = 500,
        background: bool = True,
        samples_cap: int = 5000,
    ):
        if flush_every_s <= 0 or flush_every_n <= 0:
            raise ValueError(
                f"flush_every_s={flush_every_s} and flush_every_n={flush_every_n} must be > 0"
            )
        self.store = store
        self.run_id = int(run_id)
        self.flush_every_s = float(flush_every_s)
        self.flush_every_n = int(flush_every_n)
        self.background = background
        # (key, value, step, cycle, phase, wall_time); scope is derived off the hot path.
        self._metrics: list[tuple[str, float, int, int, str, float]] = []
        self._evals: list[Evaluation] = []
        self._events: list[Event] = []
        self._samples: list[tuple[int, int, str, float, list[dict]]] = []  # per log call
        self.samples_cap = int(samples_cap)
        self._lock = threading.Lock()  # guards the buffers (held for microseconds)
        self._write_lock = threading.Lock()  # one batch in flight at a time, in order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._warned: set[str] = set()
        self.points_written = 0
        self.write_cpu_s = 0.0  # CPU time spent writing batches (any thread), for benchmarks
        ref = weakref.ref(self)
        self._atexit = lambda: (lg := ref()) is not None and lg.close()
        atexit.register(self._atexit)

    # ---- the Logger protocol -----------------------------------------------------------------

    def log_metrics(
        self, metrics: dict[str, float], *, step: int, cycle: int = 0, phase: str = ""
    ) -> None:
        t = time.time()
        rows = [(k, float(v), step, cycle, phase, t) for k, v in metrics.items()]
        with self._lock:
            self._metrics.extend(rows)
            pending = len(self._metrics)
        self._after_append(pending)

    def log_eval(self, model: str, benchmark: str, score: float, n: int, *, step: int) -> None:
        ev = Evaluation(model, benchmark, float(score), int(n), int(step), time.time())
        with self._lock:
            self._evals.append(ev)
        self._after_append(0)

    def log_event(self, message: str, *, level: str = "info", step: int | None = None) -> None:
        ev = Event(str(message), level, step, time.time())
        with self._lock:
            self._events.append(ev)
        self._after_append(0)

    def log_samples(self, rows: list[dict], *, step: int, cycle: int = 0, phase: str = "") -> None:
        # entities are built on the writer thread: here only a reference is kept
        with self._lock:
            self._samples.append((int(step), int(cycle), phase, time.time(), rows))
        self._after_append(0)

    def log_checkpoint(self, path: str, *, step: int) -> None:
        """Record the checkpoint, and forget the run's checkpoints whose folders are gone
        (the writer prunes old ones before it reports a new one; this runs on its host)."""
        self.flush()
        self.store.add_checkpoint(self.run_id, int(step), str(path))
        gone = [
            c.path
            for c in self.store.checkpoints(self.run_id)
            if c.path != str(path) and not os.path.exists(c.path)
        ]
        self.store.remove_checkpoints(self.run_id, gone)

    def flush(self) -> None:
        """Write everything buffered now, in the caller's thread; errors propagate."""
        self._write_pending(raise_errors=True)

    def close(self) -> None:
        """Stop the writer thread and flush. Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60.0)
        self._write_pending(raise_errors=True)

    def __enter__(self) -> StoreLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- buffering -----------------------------------------------------------------------------

    def pending(self) -> int:
        with self._lock:
            return len(self._metrics) + len(self._evals) + len(self._events) + len(self._samples)

    def _after_append(self, pending_points: int) -> None:
        if not self.background:
            if pending_points >= self.flush_every_n:
                self.flush()
            return
        if self._thread is None and not self._closed:
            self._start_thread()
        if pending_points >= self.flush_every_n:
            self._wake.set()

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._loop, name=f"copd-store-logger-{self.run_id}", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_every_s)
            self._wake.clear()
            if self._stop.is_set():
                break  # close() writes the rest in its own thread
            self._write_pending(raise_errors=False)

    def _write_pending(self, raise_errors: bool) -> None:
        with self._write_lock:
            with self._lock:
                metrics, self._metrics = self._metrics, []
                evals, self._evals = self._evals, []
                events, self._events = self._events, []
                samples, self._samples = self._samples, []
            if not (metrics or evals or events or samples):
                return
            cpu0 = time.thread_time()
            try:
                if metrics:
                    rows = [(k, v, s, c, p, scope_of(k), t) for k, v, s, c, p, t in metrics]
                    self.store.log_metric_rows(self.run_id, rows)
                    self.points_written += len(rows)
                    metrics = []
                if evals:
                    self.store.log_evals(self.run_id, evals)
                    evals = []
                if events:
                    self.store.log_events(self.run_id, events)
                    events = []
                if samples:
                    items = [
                        Sample(step=st, cycle=c, phase=p, wall_time=t, **r)
                        for st, c, p, t, rows in samples
                        for r in rows
                    ]
                    self.store.log_samples(self.run_id, items, cap=self.samples_cap)
                    samples = []
            except Exception as e:
                if isinstance(e, KeyError):  # the run was deleted: nowhere to write
                    self._warn(f"run {self.run_id} is gone; dropping its buffered rows ({e})")
                else:
                    self._requeue(metrics, evals, events, samples)
                    self._warn(f"write to the run store failed, will retry: {e!r}")
                if raise_errors:
                    raise
            finally:
                self.write_cpu_s += time.thread_time() - cpu0

    def _requeue(self, metrics: list, evals: list, events: list, samples: list) -> None:
        with self._lock:
            self._metrics[:0] = metrics
            self._evals[:0] = evals
            self._events[:0] = events
            self._samples[:0] = samples[-MAX_BUFFERED_SAMPLES:]
            del self._samples[:-MAX_BUFFERED_SAMPLES]
            extra = len(self._metrics) - MAX_BUFFER
            if extra > 0:
                del self._metrics[:extra]
                self._warn(f"buffer full: dropped the {extra} oldest metric points")

    def _warn(self, msg: str) -> None:
        if msg not in self._warned:
            self._warned.add(msg)
            print(f"[storage.logger] {msg}", file=sys.stderr)
