"""The run store: SQLAlchemy 2 models, engine/session, RunStore API. Never imports copd.

    from storage import RunStore, MetricPoint
    store = RunStore.from_url()      # $COPD_DB_URL, else sqlite:///$COPD_HOME/copd.db
    run = store.create_run("demo", "copd", config={"seed": 0})

Layout: entities.py (what callers see), models.py (ORM rows + NaN/inf policy), db.py (engine,
SQLite settings, session helper), migrate.py + migrations/ (Alembic), queries.py (downsampled
series), store.py (RunStore, composed of store_runs.py, store_status.py, store_writes.py
and store_reads.py over store_base.py), logger.py (StoreLogger), tracking.py (track_run),
revision.py (code_revision).
"""

from storage.db import StoreError, default_db_url
from storage.entities import (
    STATUSES,
    TERMINAL,
    Checkpoint,
    Evaluation,
    Event,
    IllegalTransition,
    MetricPoint,
    Run,
    RunStatus,
    Sample,
    allowed_actions,
    allows,
)
from storage.revision import code_revision
from storage.store import RunBusy, RunStore

__all__ = [
    "STATUSES",
    "TERMINAL",
    "Checkpoint",
    "Evaluation",
    "Event",
    "IllegalTransition",
    "MetricPoint",
    "Run",
    "RunBusy",
    "RunStatus",
    "RunStore",
    "Sample",
    "allowed_actions",
    "allows",
    "StoreError",
    "code_revision",
    "default_db_url",
]
