"""Waiting on subprocesses without racing them.

A test waits only for a condition that, once true, stays true (a trainer paused at a step
by $COPD_PAUSE_AT, a run in a terminal status, a file written whole), never for a window
(rows past a checkpoint but before the next one). So how long the wait takes depends on
the machine's load, never whether it succeeds. `wait_until` fails at once, with the
process's log, when the process it waits on has exited; its timeout is only a guard
against a hang, set below pytest-timeout so the failure still shows the log.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

HANG_S = 540.0  # the guard: well past any wait on a loaded 2-core machine


def log_tail(log: Path | None, lines: int = 40) -> str:
    if log is None:
        return ""
    try:
        text = Path(log).read_text(errors="replace").splitlines()[-lines:]
    except OSError as e:
        return f"\n(no log at {log}: {e})"
    return f"\n--- last lines of {log} ---\n" + "\n".join(text)


def wait_until(
    pred,
    what: str,
    *,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
    timeout: float = HANG_S,
    poll: float = 0.05,
):
    """Poll `pred` until it returns something truthy and return it. With `proc`: fail as
    soon as it has exited without `pred` holding. Failures show the tail of `log`."""
    t0 = time.monotonic()
    while True:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            value = pred()  # it may have become true just before the exit
            if value:
                return value
            pytest.fail(f"not {what}: the process exited with {proc.returncode}{log_tail(log)}")
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"not {what} after {timeout:.0f} s (a hang){log_tail(log)}")
        time.sleep(poll)
