"""The Launcher's standby trainer: one `python -m copd standby` (copd/standby.py) kept
while this launcher has no CPU run going, handed the next CPU run, which then starts with
torch, transformers and the store already imported (seconds sooner; the demo's first chart
is what a user waits for). Off unless the launcher is built with `standby=True` (the
dashboard does, unless $COPD_STANDBY=0), and only with the engine's own trainer.

A run goes to the standby only when its environment agrees with the standby's in every
variable but the ones read at run time (threads, heartbeat): the libraries read the rest
at import. Any other run, a GPU run among them, and any run when the standby is gone or its
pipe is broken, starts afresh as before."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from pathlib import Path

from app.control import procs
from app.control.launch_base import LauncherBase
from storage import RunStatus

# read when the run starts (copd/train/world.py set_threads, storage.tracking), not at import
RUNTIME_VARS = frozenset({"OMP_NUM_THREADS", "MKL_NUM_THREADS", "COPD_THREADS", "COPD_HEARTBEAT_S"})


class Standby(LauncherBase):
    """keep_standby(): one warm trainer while idle; _hand_over(...): give it a run."""

    standby: bool
    _standby: subprocess.Popen | None
    _standby_env: dict[str, str]

    def _standby_argv(self) -> list[str] | None:
        """`<python> -m copd standby` for the engine's trainer; None for any other."""
        if self.trainer_argv[-3:] != ["-m", "copd", "train"]:
            return None
        return [*self.trainer_argv[:-1], "standby"]

    def keep_standby(self) -> None:
        """Start a standby when enabled, none is alive, and no CPU run of this launcher is
        going (its imports would take a core from a training run)."""
        argv = self._standby_argv() if self.standby else None
        if argv is None or (self._standby is not None and self._standby.poll() is None):
            return
        busy = any(
            r.host == self.host and not r.assigned_gpus
            for r in self.store.list_runs(status=RunStatus.RUNNING)
        )
        if busy:
            return
        self._standby_env = self._child_env([], 1)
        self._standby = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=str(self.repo_root),
            env=self._standby_env,
            start_new_session=True,
            close_fds=True,
            text=True,
        )

    def _hand_over(
        self, argv: list[str], log_path: Path, env: dict[str, str]
    ) -> subprocess.Popen | None:
        """The standby, now running `argv` with `env` and its output in `log_path`; None
        (start the run afresh) when there is none, it has exited, or `env` differs from
        its own beyond RUNTIME_VARS."""
        child, self._standby = self._standby, None
        if child is None:
            return None
        fixed = lambda e: {k: v for k, v in e.items() if k not in RUNTIME_VARS}  # noqa: E731
        if child.poll() is not None or fixed(env) != fixed(self._standby_env):
            self.stop_standby(child)
            return None
        copd_args = argv[len(self.trainer_argv) - 1 :]  # `train <config> --out ...`
        job = {"argv": copd_args, "env": env, "cwd": str(self.repo_root)}
        try:
            child.stdin.write(json.dumps({**job, "log": str(log_path)}) + "\n")
            child.stdin.close()
        except OSError:  # it died meanwhile (BrokenPipeError): start the run afresh
            self.stop_standby(child)
            return None
        return child

    def stop_standby(self, child: subprocess.Popen | None = None) -> None:
        """End a standby that holds no run (this launcher's by default): kill its group (it
        has written nothing and holds nothing) and reap it."""
        child = child or self._standby
        if child is self._standby:
            self._standby = None
        if child is None:
            return
        procs.signal_group(child.pid, signal.SIGKILL)
        child.wait()
        with contextlib.suppress(OSError):
            child.stdin.close()
