"""Launch and supervise background training runs; the one code path of the CLI and dashboard.

    from app.control.launcher import Launcher, detect_gpus
    L = Launcher(store, runs_root=Path("~/.copd/runs").expanduser())
    run = L.submit(cfg.to_dict(), group="ablation-beta")   # validated, queued, config.json written
    L.tick()          # mark dead runs crashed, start queued runs whose resources are free
    L.cancel(run.id)  # SIGTERM the trainer's process group, SIGKILL after the grace period
    L.resume(run.id)  # back to queued; the next start passes --resume <run_dir>

A queued run only starts when something ticks: the dashboard's background thread
(`app.control.supervisor.start_supervisor`), `copd supervise`, or any `copd launch` / `copd runs` call.

Every run lives in its own new folder `runs_root/<id>-<slug>/` (config.json, train.log,
checkpoints), created exclusively at submit: when a folder of that name exists (another
store's run 1, a store deleted and recreated) the new one gets a random suffix, so a run never
resumes, appends to or prunes another's files. Submit first runs `copd check` on the config
in a child process (tasks, dataset rows, model config and tokenizer; cached per model and
tasks), so a run that could not start is refused with the trainer's own message and nothing
is recorded. Starting a run claims it in the store (queued -> running in one conditional
UPDATE), so two supervisors on one store never start it twice. The trainer is
`python -m copd train <run_dir>/config.json --out <run_dir> --db <URL> --run-id <id>`, started
in its own session with its output in train.log; it records running/finished/failed/cancelled
itself. The launcher holds no state beyond the DB and the run folders (the Popen objects it
keeps only serve to reap its own children), so a new Launcher on the same DB, e.g. after a
dashboard restart, supervises runs started by an earlier one: liveness is the recorded
(pid, create time) pair checked with psutil, plus the heartbeat.

The Launcher is composed of role classes (one module each, over launch_base.py): preflight
(launch_preflight.py), scheduling (launch_schedule.py), spawning (launch_spawn.py) and the
actions on a run (launch_actions.py); construction and submit are here.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from app.control import procs
from app.control.gpus import GPU, detect_gpus
from app.control.launch_actions import RunActions
from app.control.launch_base import (
    CANCEL_MARKER,
    CONFIG_NAME,
    CRASH_LOG_LINES,
    HEARTBEAT_S,
    LOCK_NAME,
    LOG_NAME,
    PREFLIGHT_TIMEOUT_S,
    REPO,
    RESUME_MARKER,
    LauncherError,
    TickReport,
)
from app.control.launch_preflight import Preflight
from app.control.launch_schedule import Scheduler
from app.control.launch_spawn import Spawner
from app.control.launch_standby import Standby
from copd.common.tags import check_notes, check_tags
from copd.runner import check_run_group, check_run_name, new_run_dir
from copd.runner import slugify as slugify
from copd.spec import ConfigError, RunConfig
from storage import Run, RunStore
from storage.revision import code_revision

__all__ = [
    "CANCEL_MARKER",
    "CONFIG_NAME",
    "CRASH_LOG_LINES",
    "GPU",
    "HEARTBEAT_S",
    "LOCK_NAME",
    "LOG_NAME",
    "PREFLIGHT_TIMEOUT_S",
    "RESUME_MARKER",
    "Launcher",
    "LauncherError",
    "TickReport",
    "default_runs_root",
    "detect_gpus",
    "slugify",
]


class Launcher(Preflight, Scheduler, Spawner, Standby, RunActions):
    """Queue, start, watch, cancel and resume trainer processes recorded in a RunStore.

    `max_cpu_runs`: concurrent runs that ask for no GPU (default: one per 4 cores, at least
    1; see `procs.default_max_cpu_runs`). `heartbeat_s`: the trainers' heartbeat interval,
    passed to them as COPD_HEARTBEAT_S; a run whose process is gone is marked crashed once its
    heartbeat is older than two intervals. `gpus`: override detection (tests, pinning).
    `trainer_argv`: the command before the config path (default `python -m copd train`).
    `standby`: keep a warm trainer while no CPU run is going and hand it the next one
    (launch_standby.py; the dashboard's supervisor turns it on). `defer_starts`: `start_now`
    wakes the `copd supervise` process beside the dashboard instead of ticking here.
    """

    def __init__(
        self,
        store: RunStore,
        runs_root: str | Path,
        max_cpu_runs: int | None = None,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        gpus: Sequence[GPU] | None = None,
        db_url: str | None = None,
        trainer_argv: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        repo_root: Path = REPO,
        preflight: bool = True,
        standby: bool = False,
        defer_starts: bool = False,
    ):
        self.store = store
        self.runs_root = Path(runs_root).expanduser().resolve()
        self.cores = procs.cpu_count()
        if max_cpu_runs is not None and max_cpu_runs < 1:  # 0 is not "the default"
            raise ConfigError(f"max_cpu_runs: {max_cpu_runs} must be >= 1 (None: the default)")
        self.max_cpu_runs = max_cpu_runs or procs.default_max_cpu_runs(self.cores)
        # An explicit max_cpu_runs also caps the count; by default runs are counted in threads.
        self.cpu_run_cap = max_cpu_runs or self.cores
        if self.max_cpu_runs < 1:
            raise ConfigError("max_cpu_runs: must be >= 1")
        self.heartbeat_s = float(heartbeat_s)
        self.gpus = list(detect_gpus() if gpus is None else gpus)
        self.db_url = db_url or procs.child_db_url(store)
        self.trainer_argv = list(trainer_argv or [sys.executable, "-m", "copd", "train"])
        self.base_env = dict(os.environ if env is None else env)
        self.repo_root = Path(repo_root)
        self.host = socket.gethostname()
        self._children: dict[int, subprocess.Popen] = {}  # run id -> our child (reaping only)
        self.preflight = preflight  # run `copd check` at submit (off: process-mechanics tests)
        self._checked: dict[str, str] = {}  # preflight key -> "" (passed) or the error
        self.standby = standby  # keep a warm trainer for the next CPU run (launch_standby.py)
        self.defer_starts = defer_starts  # start_now(): wake the supervisor process instead
        self._standby, self._standby_env = None, {}

    # ------------------------------------------------------------------ queue
    def submit(
        self,
        cfg: Mapping[str, Any] | RunConfig,
        name: str | None = None,
        method: str | None = None,
        group: str | None = None,
        gpus: int = 0,
        seed: int | None = None,
        tags: Sequence[str] = (),
        notes: str = "",
    ) -> Run:
        """Validate `cfg` and check it with `copd check` (raises ConfigError with the
        message), then record a queued run in a new folder holding its config.json, with its
        tags and notes (TagError before anything is checked when one is invalid)."""
        tags, notes = check_tags(tags), check_notes(notes)
        data = cfg.to_dict() if isinstance(cfg, RunConfig) else json.loads(json.dumps(dict(cfg)))
        for key, value in (("name", name), ("method", method), ("group", group), ("seed", seed)):
            if value is not None:
                data[key] = value
        rc = RunConfig.from_dict(data).validate()
        check_run_name(rc.name)
        check_run_group(rc.group)
        if gpus < 0:
            raise ConfigError("gpus: must be >= 0 (0 runs on the CPU)")
        if gpus > len(self.gpus):
            raise ConfigError(
                f"gpus: {gpus} requested but this machine has {len(self.gpus)}; "
                f"ask for at most {len(self.gpus)}"
            )
        data = rc.to_dict()
        if self.preflight:
            self.check(data)
        made: list[Path] = []

        def folder(run_id: int) -> str:  # inside the transaction that creates the row
            run_dir = new_run_dir(self.runs_root, run_id, rc.name)
            made.append(run_dir)
            (run_dir / CONFIG_NAME).write_text(json.dumps(data, indent=2) + "\n")
            return str(run_dir)

        try:
            return self.store.create_run(
                name=rc.name,
                method=rc.method,
                config=data,
                seed=rc.seed,
                group=rc.group,
                requested_gpus=gpus,
                cpu_slots=0 if gpus else 1,
                code_revision=code_revision(self.repo_root),
                run_dir_for=folder,
                tags=tags,
                notes=notes,
            )
        except Exception:
            for d in made:  # nothing half-recorded: no row, no folder
                shutil.rmtree(d, ignore_errors=True)
            raise


def default_runs_root() -> Path:
    """$COPD_HOME/runs (COPD_HOME defaults to ~/.copd)."""
    home = os.environ.get("COPD_HOME") or os.path.join("~", ".copd")
    return Path(home).expanduser() / "runs"
