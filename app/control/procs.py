"""Process mechanics for the launcher: spawn detached trainers, check liveness, signal groups.

    p = spawn(argv, log_path=run_dir / "train.log", env=env, cwd=repo_root)
    start = process_start_time(p.pid)
    is_alive(p.pid, start)          # False once exited, a zombie, or the pid was reused
    signal_group(p.pid, signal.SIGTERM)

Why these rules (see the dashboard notes, pitfalls 6-7):
- a process is identified by (pid, create_time): a pid alone may have been reused by an
  unrelated process after the trainer died;
- `psutil.Process.is_running()` is True for zombies, so the status is checked explicitly;
- children get their own session (`start_new_session=True`), so Ctrl-C in the terminal of the
  dashboard or CLI does not reach them, and the whole group can be signalled at once;
- output goes to a file, never to a pipe, so a child does not depend on its parent's life.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from storage import RunStore

# Recorded and observed create times of the same process agree to ~10 ms (both come from
# /proc/<pid>/stat); a reused pid starts later by far more than this.
START_TIME_TOLERANCE_S = 1.0


def spawn(
    argv: Sequence[str], *, log_path: Path, env: Mapping[str, str], cwd: Path
) -> subprocess.Popen:
    """Start `argv` (no shell) in its own session with stdout+stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(cwd),
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )


def process_start_time(pid: int) -> float | None:
    """The process's create time (epoch seconds, psutil), or None when it is already gone."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None


def is_alive(pid: int | None, start_time: float | None) -> bool:
    """True when `pid` runs and is the same process that started at `start_time`.

    Dead means: no such pid, a zombie (reaped here when it is our own child), or a pid whose
    create time differs from the recorded one by more than START_TIME_TOLERANCE_S (reused).
    With no recorded start time only existence and zombie state are checked.
    """
    if pid is None or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if start_time is not None and abs(proc.create_time() - start_time) > START_TIME_TOLERANCE_S:
            return False
        if proc.status() == psutil.STATUS_ZOMBIE:
            reap_if_child(pid)
            return False
        return True
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        reap_if_child(pid)
        return False
    except psutil.AccessDenied:
        return True  # exists but belongs to someone else: we cannot prove it dead


def reap_if_child(pid: int) -> None:
    """Collect the exit status of a finished child of this process so it leaves no zombie.

    Needed when the Popen object that started it is gone (a new Launcher in the same
    process); a no-op for processes that are not our children.
    """
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def signal_group(pid: int, sig: int) -> bool:
    """Send `sig` to the process group led by `pid` (our children lead their own session).

    Falls back to the single process when the group is gone; False when nothing was signalled.
    """
    try:
        os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        pass
    except PermissionError:
        return False
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def cpu_count() -> int:
    """Cores this process may use (CPU affinity / container limits), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_max_cpu_runs(cores: int) -> int:
    """Concurrent CPU runs by default: one per 4 cores, at least 1.

    A CPU run of torch uses every thread it is given; two runs sharing few cores oversubscribe
    them and each runs many times slower (measured: two 2-thread runs on 2 cores), so small
    machines run one at a time and big ones give each run at least 4 threads.
    """
    return max(1, cores // 4)


def tail_lines(path: Path, n_lines: int = 200, max_bytes: int = 1 << 20) -> str:
    """The last `n_lines` lines of a text file (reads at most `max_bytes` from the end)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except (FileNotFoundError, IsADirectoryError):
        return ""
    lines = data.decode(errors="replace").split("\n")  # "\r" stays in its line (a bar redraw)
    if lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines[-n_lines:]) if n_lines > 0 else ""


def child_db_url(store: RunStore) -> str:
    """The URL a child process uses to reach the same DB (passwords included)."""
    for attr in ("url", "db_url"):
        value = getattr(store, attr, None)
        if value:
            return _render_url(value)
    engine = getattr(store, "engine", None)
    if engine is not None:
        return _render_url(engine.url)
    raise ValueError("db_url: cannot tell this store's URL; pass Launcher(..., db_url=...)")


def _render_url(url: Any) -> str:
    """Render for a child process: keep the password, make a SQLite path absolute (children
    run in the repository root, not in our working directory)."""
    from sqlalchemy.engine import make_url

    u = make_url(str(url) if not hasattr(url, "render_as_string") else url)
    if u.get_backend_name() == "sqlite":
        if not u.database or u.database == ":memory:":
            raise ValueError(
                "db_url: an in-memory SQLite store cannot be shared with trainer processes; "
                "use a file (sqlite:///path/to/copd.db)"
            )
        u = u.set(database=str(Path(u.database).expanduser().resolve()))
    return u.render_as_string(hide_password=False)
