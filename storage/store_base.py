"""What the parts of the RunStore share: the `StorePart` base (the store's `db`), the clock
and the read of one run's row.

The RunStore (storage/store.py) is composed of role classes, each a `StorePart`:
store_runs.py (run rows, tags, notes), store_status.py (status moves, the writer lease,
heartbeats), store_writes.py (metrics, evaluations, events, checkpoints, samples) and
store_reads.py (the reads of them).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy.orm import Session

from storage.db import Database
from storage.models import RunRow


class StorePart:
    """A role of the RunStore: its methods run on the store's database `db`."""

    db: Database


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def run_row(s: Session, run_id: int) -> RunRow:
    """The run's row in session `s`; KeyError when the run does not exist."""
    row = s.get(RunRow, int(run_id))
    if row is None:
        raise KeyError(f"run {run_id} does not exist")
    return row
