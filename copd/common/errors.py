"""The one exception that stops a run as cancelled, shared by the engine and the store."""

from __future__ import annotations


class TrainingCancelled(Exception):
    """A stop was requested (SIGTERM, a cancel): raised by a training loop after it saved a
    checkpoint, or inside `storage.tracking.track_run`, which records the run as cancelled."""
