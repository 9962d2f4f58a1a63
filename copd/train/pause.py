"""A seam for tests and debugging: hold a trainer at a chosen step, at a known state.

    COPD_PAUSE_AT="20:/tmp/paused" copd train demo --db ...

Right after step 20's work (its rows logged; its diagnostics, evaluation and checkpoint
done when due), the trainer flushes its loggers, so every row up to step 20 is in
metrics.jsonl and the run store, then creates the file (holding the step) and waits until
the file is deleted. A test that must act at a moment of training (kill -9 with rows logged
past a checkpoint, cancel mid-phase) waits for the file instead of polling a race against
the trainer's speed; deleting the file lets the trainer go on. Unset, it costs one dict
lookup per step.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV = "COPD_PAUSE_AT"


def pause_point() -> tuple[int, Path] | None:
    """(step, file) from $COPD_PAUSE_AT, or None when unset. A malformed value is an error
    that names the expected form (it is only ever set on purpose)."""
    raw = os.environ.get(ENV, "")
    if not raw:
        return None
    step, sep, path = raw.partition(":")
    if not sep or not step.strip().isdigit() or not path:
        raise ValueError(f"{ENV}={raw!r}: expected STEP:FILE, e.g. {ENV}=20:/tmp/paused")
    return int(step), Path(path)


def maybe_pause(step: int, flush) -> None:
    """At the pause step: `flush()` the loggers, create the file, wait until it is gone."""
    point = pause_point()
    if point is None or point[0] != step:
        return
    flush()
    path = point[1]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(str(step))
    tmp.replace(path)  # appears whole: a reader never sees an empty file
    while path.exists():
        time.sleep(0.05)
