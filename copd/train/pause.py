"""A seam for tests and debugging: hold a trainer at a chosen step, at a known state.

    COPD_PAUSE_AT="20:/tmp/paused" copd train demo --db ...

Right after step 20's work (its rows logged; its diagnostics, evaluation and checkpoint
done when due), the trainer flushes its loggers, so every row up to step 20 is in
metrics.jsonl and the run store, then creates the file (holding the step) and waits until
the file is deleted. A test that must act at a moment of training (kill -9 with rows logged
past a checkpoint, cancel mid-phase) waits for the file instead of polling a race against
the trainer's speed; deleting the file lets the trainer go on. Unset, it costs one dict
lookup per step.

    COPD_PAUSE_AT="checkpoint-10:/tmp/paused"

holds it the moment the folder `checkpoints/step-000010` exists, before the checkpoint is
recorded anywhere and without flushing: the window a kill -9 must not lose rows in.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV = "COPD_PAUSE_AT"


def pause_point() -> tuple[str, Path] | None:
    """(point, file) from $COPD_PAUSE_AT, or None when unset; a point is "20" (after step
    20) or "checkpoint-20". A malformed value is an error that names the expected form (it
    is only ever set on purpose)."""
    raw = os.environ.get(ENV, "")
    if not raw:
        return None
    point, sep, path = raw.partition(":")
    if not sep or not point.removeprefix("checkpoint-").isdigit() or not path:
        raise ValueError(
            f"{ENV}={raw!r}: expected STEP:FILE or checkpoint-STEP:FILE, e.g. {ENV}=20:/tmp/p"
        )
    return point, Path(path)


def maybe_pause(point: str, flush=None) -> None:
    """At the pause point: `flush()` the loggers (when given), create the file, wait until
    it is gone."""
    found = pause_point()
    if found is None or found[0] != point:
        return
    if flush is not None:
        flush()
    path = found[1]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(point)
    tmp.replace(path)  # appears whole: a reader never sees an empty file
    while path.exists():
        time.sleep(0.05)
