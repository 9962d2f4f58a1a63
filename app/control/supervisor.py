"""The supervisor loop: tick a Launcher every few seconds so queued runs start and dead
runs are marked crashed, and evaluate the alert rules (app/control/alerts.py). `copd supervise` runs it in the foreground; the dashboard keeps one
background thread per server process:

    @st.cache_resource
    def supervisor():
        return start_supervisor(store(), runs_root())

The thread only touches the DB and processes, never Streamlit (no session context there).
This module imports app.control.launcher; the launcher never imports it.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.control.launch_base import WAKE_NAME
from app.control.launcher import Launcher

if TYPE_CHECKING:
    from storage import RunStore


def supervise(
    store: RunStore,
    runs_root: str | Path,
    interval_s: float = 2.0,
    stop_event: threading.Event | None = None,
    launcher: Launcher | None = None,
    **launcher_kwargs: Any,
) -> None:
    """Tick every `interval_s` until `stop_event` is set; an error in one tick is printed and
    the loop goes on (a supervisor must outlive a transient DB lock)."""
    from app.control.alerts import AlertWatcher

    launcher = launcher or Launcher(store, runs_root, **launcher_kwargs)
    stop_event = stop_event or threading.Event()
    alerts = AlertWatcher(store)  # the alert rules on stored metrics and status
    while not stop_event.is_set():
        try:
            launcher.tick()
        except Exception as exc:  # keep supervising; the next tick retries
            print(f"copd supervisor: tick failed: {exc!r}", file=sys.stderr)
        try:
            alerts.tick()
        except Exception as exc:
            print(f"copd supervisor: alerts failed: {exc!r}", file=sys.stderr)
        wait_or_wake(stop_event, interval_s, launcher.runs_root / WAKE_NAME)


def wait_or_wake(stop_event: threading.Event, interval_s: float, wake: Path) -> None:
    """Wait `interval_s`, or less: until `stop_event` is set or `wake` is touched (a dashboard
    queued a run: `Launcher.start_now`), looking at its mtime every 0.1 s (one stat)."""
    seen = _mtime(wake)
    deadline = time.monotonic() + interval_s
    while not stop_event.is_set() and _mtime(wake) == seen:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        stop_event.wait(min(0.1, left))


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


@dataclass
class Supervisor:
    """A background supervisor thread; `stop()` ends it after the current tick."""

    launcher: Launcher
    thread: threading.Thread
    stop_event: threading.Event

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)
        self.launcher.stop_standby()  # a warm trainer holding no run ends with us


def start_supervisor(
    store: RunStore, runs_root: str | Path, interval_s: float = 2.0, **launcher_kwargs: Any
) -> Supervisor:
    """Start `supervise` in a daemon thread (the dashboard keeps one per process through
    `st.cache_resource`). The thread only touches the DB and processes, never Streamlit."""
    launcher = Launcher(store, runs_root, **launcher_kwargs)
    stop = threading.Event()
    thread = threading.Thread(
        target=supervise,
        args=(store, runs_root, interval_s, stop, launcher),
        name="copd-supervisor",
        daemon=True,
    )
    thread.start()
    return Supervisor(launcher, thread, stop)
