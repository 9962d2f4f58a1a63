"""The Launcher's scheduling: one tick reaps children, marks dead runs crashed (or
cancelled), and starts the queued runs that fit (FIFO per resource kind; CPU runs counted
in threads); the capacity it schedules by."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from app.control import procs
from app.control.launch_base import (
    CANCEL_MARKER,
    CRASH_LOG_LINES,
    LOG_NAME,
    LauncherBase,
    TickReport,
)
from storage import Run, RunStatus


class Scheduler(LauncherBase):
    """tick(), and what it starts runs by: cpu_threads, cpu_budget, capacity()."""

    def tick(self) -> TickReport:
        """One supervision pass: reap children, mark dead runs, start what fits (FIFO)."""
        report = TickReport()
        with self._lock():
            for p in self._children.values():
                p.poll()  # reap: a finished child must not linger as a zombie
            self._reconcile(report)
            self._start_queued(report)
            self.keep_standby()  # a warm trainer for the next CPU run, while idle
        return report

    def _reconcile(self, report: TickReport) -> None:
        now = time.time()
        for run in self.store.list_runs(status=RunStatus.RUNNING):
            run_dir = self._run_dir(run)
            cancel_marker = run_dir / CANCEL_MARKER
            alive = self._alive(run)
            if cancel_marker.exists():
                if alive:
                    if self._local(run) and now > _read_float(cancel_marker, default=now):
                        procs.signal_group(run.pid, signal.SIGKILL)
                    continue
                cancel_marker.unlink(missing_ok=True)
                if self._set_status(
                    run.id,
                    RunStatus.CANCELLED,
                    "cancelled; the process stopped before recording its own status",
                ):
                    report.cancelled.append(run.id)
                continue
            if alive:
                continue
            child = self._children.get(run.id)
            beat = run.heartbeat_at or run.started_at
            age = now - beat.timestamp() if beat is not None else float("inf")
            # Our own child that exited is known dead, and it writes its final status before
            # exiting, so there is nothing to wait for. Otherwise only (pid, create time)
            # speaks for it, and a stale heartbeat must confirm.
            exited = child is not None and child.poll() is not None
            if not exited and age <= 2 * self.heartbeat_s:
                continue
            how = f"exited with code {child.returncode}" if exited else "is no longer running"
            error = (
                f"crashed: process {run.pid} on {run.host} {how} without recording a final "
                f"status; last heartbeat {age:.1f} s ago.\n--- last lines of {LOG_NAME} ---\n"
                + procs.tail_lines(run_dir / LOG_NAME, CRASH_LOG_LINES)
            )
            if self._set_status(run.id, RunStatus.CRASHED, error):
                report.crashed.append(run.id)
            self._children.pop(run.id, None)

    def _start_queued(self, report: TickReport) -> None:
        # Only this machine's runs hold its GPUs and CPU slots.
        running = [r for r in self.store.list_runs(status=RunStatus.RUNNING) if self._local(r)]
        held = {int(g) for r in running for g in (r.assigned_gpus or "").split(",") if g}
        free_gpus = [g.index for g in self.gpus if g.index not in held]
        # CPU runs are counted in threads: a run takes its config's `threads`, or the
        # default share cores / max_cpu_runs; runs start while the cores hold them (one
        # always may), and never more than an explicit max_cpu_runs. Two 1-thread runs
        # share 2 cores (the demo group draws side by side); two default runs go in turn.
        cpu_runs = [r for r in running if not r.requested_gpus]
        cpu_busy, cpu_count = sum(self.cpu_threads(r) for r in cpu_runs), len(cpu_runs)
        # FIFO per resource kind (oldest id first); a GPU run that does not fit yet blocks
        # later GPU runs so that a big request is not starved by small ones.
        gpu_blocked = False
        for run in sorted(self.store.list_runs(status=RunStatus.QUEUED), key=lambda r: r.id):
            n = run.requested_gpus or 0
            if n == 0:
                need = self.cpu_threads(run)
                if cpu_count >= self.cpu_run_cap or (
                    cpu_busy and cpu_busy + need > self.cpu_budget
                ):
                    continue
                cpu_busy, cpu_count = cpu_busy + need, cpu_count + 1
                started = self._start(run, [])
            else:
                if gpu_blocked or n > len(self.gpus):
                    continue  # more than this machine has: leave it queued, block nobody
                if n > len(free_gpus):
                    gpu_blocked = True
                    continue
                assigned, free_gpus = free_gpus[:n], free_gpus[n:]
                started = self._start(run, assigned)
            if started:
                report.started.append(run.id)

    @property
    def cpu_budget(self) -> int:
        """Threads the CPU runs may hold together: the cores, or max_cpu_runs default
        shares when an explicit max_cpu_runs asks for more runs than that."""
        return max(self.cores, self.max_cpu_runs * max(1, self.cores // self.max_cpu_runs))

    def capacity(self) -> str:
        """What the launcher runs at once, as `_start_queued` counts it (the supervisor
        prints it): CPU runs by threads, not a fixed count."""
        default = max(1, self.cores // self.max_cpu_runs)
        cap = f", at most {self.cpu_run_cap} at once" if self.cpu_run_cap < self.cores else ""
        gpus = f"{len(self.gpus)} GPU" + ("" if len(self.gpus) == 1 else "s")
        return (
            f"CPU runs share {self.cpu_budget} threads (each takes its config's `threads`, "
            f"else {default}; one always may start){cap}; {gpus}"
        )

    def cpu_threads(self, run: Run) -> int:
        """Cores a CPU run takes: its config's `threads`, else cores / max_cpu_runs."""
        asked = int((run.config or {}).get("threads") or 0)
        default = max(1, self.cores // self.max_cpu_runs)
        return min(asked, self.cores) if asked > 0 else default


def _read_float(path: Path, default: float) -> float:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return default
