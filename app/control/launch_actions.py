"""The Launcher's actions on one run: cancel (non-blocking or waiting), resume, delete, and
the tail of its train.log."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

from app.control import procs
from app.control.launch_base import (
    CANCEL_MARKER,
    LOG_NAME,
    RESUME_MARKER,
    LauncherBase,
    LauncherError,
)
from storage import Run, RunStatus, allows


class RunActions(LauncherBase):
    """request_cancel, cancel, resume, delete, log_tail."""

    def request_cancel(self, run_id: int, grace_s: float = 20.0) -> Run:
        """Non-blocking cancel: queued -> cancelled now; running -> SIGTERM now, and later
        ticks SIGKILL the group after `grace_s` and record cancelled if the trainer did not."""
        with self._lock():
            run = self.store.get_run(run_id)
            if run.status == RunStatus.QUEUED:
                return self.store.set_status(run_id, RunStatus.CANCELLED)
            if run.status != RunStatus.RUNNING:
                return run
            run_dir = self._run_dir(run)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / CANCEL_MARKER).write_text(f"{time.time() + grace_s}\n")
            if self._local(run) and self._alive(run):
                procs.signal_group(run.pid, signal.SIGTERM)
            return run

    def cancel(self, run_id: int, grace_s: float = 20.0) -> Run:
        """Cancel and wait: SIGTERM, up to `grace_s` for the trainer to checkpoint and exit,
        then SIGKILL the group; the run ends `cancelled` either way."""
        run = self.request_cancel(run_id, grace_s)
        if run.status != RunStatus.RUNNING:
            return run
        deadline = time.monotonic() + grace_s
        while self._alive(run) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._local(run) and self._alive(run):
            procs.signal_group(run.pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 10.0
            while self._alive(run) and time.monotonic() < kill_deadline:
                time.sleep(0.05)
        self.tick()  # records cancelled when the trainer could not
        self._run_dir(run).joinpath(CANCEL_MARKER).unlink(missing_ok=True)
        return self.store.get_run(run_id)

    def resume(self, run_id: int, trust_task_code: bool = False) -> Run:
        """cancelled/crashed/failed -> queued; the next start resumes from the run folder's
        latest checkpoint (`--resume <run_dir>`). A run that imports task code (launched
        with `--trust-task-code`) is resumed only when asked with it again."""
        with self._lock():
            run = self.store.get_run(run_id)
            if not allows(run.status, "resume"):
                raise LauncherError(
                    f"run {run_id} is {run.status}; only cancelled, crashed or failed runs "
                    "can be resumed"
                )
            if run.config.get("trust_task_code") and not trust_task_code:
                raise LauncherError(
                    f"run {run_id} imports task code its config names (it was launched with "
                    f"--trust-task-code); resume it with: copd resume {run_id} --trust-task-code"
                )
            run_dir = self._run_dir(run)
            (run_dir / RESUME_MARKER).write_text("resume from the latest checkpoint\n")
            (run_dir / CANCEL_MARKER).unlink(missing_ok=True)
            return self.store.set_status(run_id, RunStatus.QUEUED)

    def delete(self, run_id: int) -> None:
        """Remove a run that is not running, with its folder (only if under runs_root)."""
        with self._lock():
            run = self.store.get_run(run_id)
            if not allows(run.status, "delete"):
                raise LauncherError(f"run {run_id} is running; cancel it before deleting it")
            self.store.delete_run(run_id)
            self._children.pop(run_id, None)
        if run.run_dir:
            d = Path(run.run_dir).resolve()
            if d != self.runs_root and self.runs_root in d.parents:
                shutil.rmtree(d, ignore_errors=True)

    def log_tail(self, run_id: int, n_lines: int = 200) -> str:
        """The last lines of the run's train.log ('' before it exists)."""
        run = self.store.get_run(run_id)
        return procs.tail_lines(self._run_dir(run) / LOG_NAME, n_lines) if run.run_dir else ""
