"""What the parts of the Launcher share: its settings and file names, LauncherError,
TickReport, and `LauncherBase` (the Launcher's state, and the checks every part makes: is a
run's process local and alive, its folder, a status set unless the trainer set one, the
lock between supervisors on this machine).

The Launcher (app/control/launcher.py: construction and submit) is composed of role
classes, each a `LauncherBase`: launch_preflight.py (`copd check` before a run is recorded),
launch_schedule.py (tick: reconcile the running, start the queued that fit), launch_spawn.py
(start one trainer process) and launch_actions.py (cancel, resume, delete, log tail).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.control import procs
from app.control.gpus import GPU
from copd.runner import slugify
from storage import Run, RunStatus, RunStore

REPO = Path(__file__).resolve().parents[2]
# The trainers' heartbeat interval (storage.tracking.track_run(heartbeat_s=...)); a
# launcher started with COPD_HEARTBEAT_S set expects, and passes on, that interval.
HEARTBEAT_S = float(os.environ.get("COPD_HEARTBEAT_S", "5") or 5)
CONFIG_NAME = "config.json"
LOG_NAME = "train.log"
RESUME_MARKER = ".resume"  # present: start the trainer with --resume <run_dir>
CANCEL_MARKER = ".cancel"  # holds the epoch time after which a cancelled run gets SIGKILL
LOCK_NAME = ".launcher.lock"
# touched by a dashboard whose runs a `copd supervise` process starts: that supervisor ticks
# at once instead of at its next interval (app/control/supervisor.py)
WAKE_NAME = ".wake"
CRASH_LOG_LINES = 40
PREFLIGHT_TIMEOUT_S = 300.0


class LauncherError(RuntimeError):
    """An action the run's state does not allow (e.g. deleting a running run)."""


@dataclass
class TickReport:
    """What one tick changed: run ids started, marked crashed, and cancelled."""

    started: list[int] = field(default_factory=list)
    crashed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)


class LauncherBase:
    """The Launcher's state (set by `Launcher.__init__`) and the checks its parts share."""

    store: RunStore
    runs_root: Path
    cores: int
    max_cpu_runs: int
    cpu_run_cap: int
    heartbeat_s: float
    gpus: list[GPU]
    db_url: str
    trainer_argv: list[str]
    base_env: dict[str, str]
    repo_root: Path
    host: str
    _children: dict[int, subprocess.Popen]  # run id -> our child (reaping only)
    preflight: bool
    defer_starts: bool  # start_now() wakes the supervisor process instead of ticking here
    _checked: dict[str, str]  # preflight key -> "" (passed) or the error

    def _local(self, run: Run) -> bool:
        """The run's process lives on this machine (only then may we signal its pid)."""
        return not run.host or run.host == self.host

    def _alive(self, run: Run) -> bool:
        """Whether the run's recorded process is running here (other hosts: by heartbeat)."""
        if not self._local(run):
            beat = run.heartbeat_at or run.started_at
            return beat is not None and time.time() - beat.timestamp() <= 2 * self.heartbeat_s
        child = self._children.get(run.id)
        if child is not None and child.pid == run.pid and child.poll() is not None:
            return False
        return procs.is_alive(run.pid, run.pid_start_time)

    def _set_status(self, run_id: int, status: RunStatus, error: str | None) -> bool:
        """Set a status unless the trainer got there first (then its own record stands)."""
        try:
            self.store.set_status(run_id, status, error=error)
            return True
        except ValueError:  # IllegalTransition: the run already left `running`
            return False

    def start_now(self) -> None:
        """Start what was just queued: tick here, or (`defer_starts`, a dashboard beside a
        `copd supervise` process) wake that supervisor, which owns the standby trainer."""
        if not self.defer_starts:
            self.tick()
            return
        self.runs_root.mkdir(parents=True, exist_ok=True)
        (self.runs_root / WAKE_NAME).write_text(f"{time.time()}\n")

    def _run_dir(self, run: Run) -> Path:
        if run.run_dir:
            return Path(run.run_dir)
        return self.runs_root / f"{run.id}-{slugify(run.name)}"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise state changes between supervisors on this machine (dashboard thread,
        `copd launch`, `copd supervise`), so no queued run is started twice."""
        self.runs_root.mkdir(parents=True, exist_ok=True)
        with open(self.runs_root / LOCK_NAME, "a") as f:
            try:
                import fcntl
            except ImportError:  # not POSIX: a single supervisor is assumed
                yield
                return
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
