"""A run's log as a person reads it: carriage-return progress bars collapsed.

A progress bar on a terminal redraws one line with carriage returns; written to a file
(older trainers did, before copd.train.logger.Progress printed plain lines off a terminal) the
line holds every redraw. `collapse_cr` keeps what a terminal would show: the last segment
of each line.

    text = log_tail(Path(run.run_dir) / "train.log", n_lines=200)
"""

from __future__ import annotations

from pathlib import Path

from app.control.procs import tail_lines

MAX_BYTES = 1 << 20


def collapse_cr(text: str) -> str:
    """Each line's last non-empty carriage-return segment (`a\\rb\\rc` -> `c`); a trailing
    `\\r` (a bar left mid-redraw) does not blank the line."""
    out = []
    for line in text.split("\n"):
        if "\r" in line:
            segments = [s for s in line.split("\r") if s.strip()]
            line = segments[-1] if segments else ""
        out.append(line)
    return "\n".join(out)


def log_tail(path: str | Path, n_lines: int = 200, max_bytes: int = MAX_BYTES) -> str:
    """The last `n_lines` lines of a log file after `collapse_cr`, trailing blank lines
    dropped ('' when it does not exist); reads at most `max_bytes` from its end
    (`app.control.procs.tail_lines`, the launcher's reader)."""
    lines = collapse_cr(tail_lines(Path(path), n_lines + 50, max_bytes)).split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines[-n_lines:]) if n_lines > 0 else ""
