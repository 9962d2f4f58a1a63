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
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from app.control import procs
from app.control.gpus import GPU, detect_gpus
from copd.common.tags import check_notes, check_tags
from copd.runner import check_run_group, check_run_name, new_run_dir
from copd.runner import slugify as slugify
from copd.spec import ConfigError, RunConfig
from storage import Run, RunStatus, RunStore, allows
from storage.revision import code_revision

__all__ = [
    "GPU",
    "Launcher",
    "LauncherError",
    "TickReport",
    "default_runs_root",
    "detect_gpus",
    "slugify",
]

REPO = Path(__file__).resolve().parents[2]
# The trainers' heartbeat interval (storage.tracking.track_run(heartbeat_s=...)); a
# launcher started with COPD_HEARTBEAT_S set expects, and passes on, that interval.
HEARTBEAT_S = float(os.environ.get("COPD_HEARTBEAT_S", "5") or 5)
CONFIG_NAME = "config.json"
LOG_NAME = "train.log"
RESUME_MARKER = ".resume"  # present: start the trainer with --resume <run_dir>
CANCEL_MARKER = ".cancel"  # holds the epoch time after which a cancelled run gets SIGKILL
LOCK_NAME = ".launcher.lock"
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


class Launcher:
    """Queue, start, watch, cancel and resume trainer processes recorded in a RunStore.

    `max_cpu_runs`: concurrent runs that ask for no GPU (default: one per 4 cores, at least
    1; see `procs.default_max_cpu_runs`). `heartbeat_s`: the trainers' heartbeat interval,
    passed to them as COPD_HEARTBEAT_S; a run whose process is gone is marked crashed once its
    heartbeat is older than two intervals. `gpus`: override detection (tests, pinning).
    `trainer_argv`: the command before the config path (default `python -m copd train`).
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

    def check(self, config: Mapping[str, Any]) -> None:
        """`python -m copd check` on `config` in a child process (the trainer's interpreter
        and imports); ConfigError with its message when it fails. One check per distinct
        (model, tasks, task options), so a sweep of many runs checks each setting once."""
        key = json.dumps(
            {k: config.get(k) for k in ("model", "branches", "task_options", "trust_task_code")},
            sort_keys=True,
            default=str,
        )
        if key not in self._checked:
            self._checked[key] = self._run_check(config)
        if self._checked[key]:
            raise ConfigError(self._checked[key])

    def _run_check(self, config: Mapping[str, Any]) -> str:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="copd-check-") as tmp:
            path = Path(tmp) / CONFIG_NAME
            path.write_text(json.dumps(dict(config), indent=2) + "\n")
            argv = [*self.trainer_argv[:-1], "check", str(path)]
            if self.trainer_argv[-1] != "train":  # a stand-in trainer: the engine's own check
                argv = [sys.executable, "-m", "copd", "check", str(path)]
            if config.get("trust_task_code"):  # the submitter was given --trust-task-code
                argv.append("--trust-task-code")
            env = self._child_env([])
            try:
                res = subprocess.run(
                    argv, cwd=self.repo_root, env=env, capture_output=True, text=True,
                    timeout=PREFLIGHT_TIMEOUT_S, stdin=subprocess.DEVNULL,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                return f"copd check did not finish in {PREFLIGHT_TIMEOUT_S:.0f} s"
        if res.returncode == 0:
            return ""
        lines = [ln for ln in (res.stderr or res.stdout).strip().splitlines() if ln.strip()]
        starts = [i for i, ln in enumerate(lines) if ln.startswith("error: ")]
        if starts:  # the message, with its continuation lines (e.g. a dataset's bad rows)
            return "\n".join(lines[starts[-1] :])[len("error: ") :]
        return "copd check failed:\n" + "\n".join(lines[-15:])

    def tick(self) -> TickReport:
        """One supervision pass: reap children, mark dead runs, start what fits (FIFO)."""
        report = TickReport()
        with self._lock():
            for p in self._children.values():
                p.poll()  # reap: a finished child must not linger as a zombie
            self._reconcile(report)
            self._start_queued(report)
        return report

    # ------------------------------------------------------------------ cancel / resume
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

    # ------------------------------------------------------------------ internals
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

    def _start(self, run: Run, gpu_ids: list[int]) -> bool:
        """Spawn the trainer and record it running; False when it could not be spawned."""
        if run.run_dir:
            run_dir = Path(run.run_dir)
        else:  # a row queued without a folder (an older store): one folder, chosen once
            fresh = new_run_dir(self.runs_root, run.id, run.name)
            run_dir = Path(self.store.set_run_dir_if_unset(run.id, str(fresh)))
            if run_dir != fresh:
                shutil.rmtree(fresh, ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = run_dir / CONFIG_NAME
        if not cfg_path.exists():  # folder cleaned by hand: the DB holds the config too
            cfg_path.write_text(json.dumps(run.config, indent=2) + "\n")
        argv = [*self.trainer_argv, str(cfg_path), "--out", str(run_dir)]
        argv += ["--db", self.db_url, "--run-id", str(run.id)]
        if run.config.get("trust_task_code"):  # granted at submit or resume, by the flag
            argv.append("--trust-task-code")
        marker = run_dir / RESUME_MARKER
        if marker.exists():
            argv += ["--resume", str(run_dir)]
        assigned = ",".join(str(g) for g in gpu_ids) if gpu_ids else None
        if not self.store.claim(run.id, self.host, assigned_gpus=assigned):
            return False  # another supervisor started it (or it was cancelled) meanwhile
        log_path = run_dir / LOG_NAME
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with open(log_path, "a") as log:
            log.write(f"=== {stamp} launch: {' '.join(argv)}\n")
        try:
            child = procs.spawn(
                argv,
                log_path=log_path,
                env=self._child_env(gpu_ids, None if gpu_ids else self.cpu_threads(run)),
                cwd=self.repo_root,
            )
        except OSError as exc:  # e.g. the interpreter moved: record it, do not retry forever
            self._set_status(run.id, RunStatus.FAILED, f"could not start {argv[0]}: {exc}")
            return False
        marker.unlink(missing_ok=True)  # one resume per request; a fresh start never resumes
        start = procs.process_start_time(child.pid) or time.time()
        try:
            self.store.mark_running(run.id, child.pid, start, self.host, assigned_gpus=assigned)
        except Exception:
            procs.signal_group(child.pid, signal.SIGKILL)
            child.wait()
            raise
        self._children[run.id] = child
        return True

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

    def _child_env(self, gpu_ids: list[int], threads: int | None = None) -> dict[str, str]:
        env = dict(self.base_env)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("HF_DATASETS_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # ids as nvidia-smi/NVML number them
        env["PYTHONUNBUFFERED"] = "1"
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpu_ids)  # "" hides all GPUs
        if gpu_ids:
            threads = max(1, self.cores // max(1, len(self.gpus)))
        elif threads is None:
            threads = max(1, self.cores // self.max_cpu_runs)
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "COPD_THREADS"):
            env[key] = str(threads)
        env["COPD_HEARTBEAT_S"] = str(self.heartbeat_s)
        return env

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


# ---------------------------------------------------------------------- helpers
def default_runs_root() -> Path:
    """$COPD_HOME/runs (COPD_HOME defaults to ~/.copd)."""
    home = os.environ.get("COPD_HOME") or os.path.join("~", ".copd")
    return Path(home).expanduser() / "runs"


def _read_float(path: Path, default: float) -> float:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return default
