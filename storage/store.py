"""RunStore: the run store's API (runs, metrics, evaluations, events, checkpoints).

    from storage import RunStore
    store = RunStore.from_url()            # $COPD_DB_URL, else sqlite:///$COPD_HOME/copd.db
    run = store.create_run("demo", "copd", config={...})
    store.log_metrics(run.id, [MetricPoint("branch/add/reward/mean", 0.4, step=1)])
    df = store.metric_series([run.id], ["branch/add/reward/mean"], max_points=500)

Opening a store migrates its database to the newest schema (storage/migrate.py). Every method
runs in its own short session (storage/db.py), so one store object is safe to share between
threads and is cheap to keep for the life of a process. Entities come back, never ORM rows.

The API is composed of role classes, one module each: store_runs.py (RunRecords: run rows,
tags, notes), store_status.py (RunLifecycle: status moves, the writer lease, claim,
heartbeats), store_writes.py (RunDataWrites) and store_reads.py (RunDataReads); what they
share is in store_base.py.
"""

from __future__ import annotations

from storage.db import Database, check_url, default_db_url, make_engine, sqlite_path
from storage.migrate import upgrade_database
from storage.store_base import utcnow
from storage.store_reads import RunDataReads
from storage.store_runs import UPDATABLE, RunRecords
from storage.store_status import RunBusy, RunLifecycle
from storage.store_writes import RunDataWrites

__all__ = ["UPDATABLE", "RunBusy", "RunStore", "utcnow"]


class RunStore(RunRecords, RunLifecycle, RunDataWrites, RunDataReads):
    """The run store. Build it with `RunStore.from_url(url)`."""

    def __init__(self, db: Database):
        self.db = db

    @classmethod
    def from_url(cls, url: str | None = None) -> RunStore:
        """Open (creating or migrating as needed) the database at `url`; None means
        $COPD_DB_URL, else sqlite:///$COPD_HOME/copd.db."""
        url = check_url(url or default_db_url())
        if url.startswith("sqlite") and sqlite_path(url) is None:
            engine = make_engine(url)  # in-memory: migrate on the very engine the store uses
            upgrade_database(url, engine=engine)
            return cls(Database(url, engine))
        upgrade_database(url)
        return cls(Database(url))

    @property
    def url(self) -> str:
        return self.db.url

    def close(self) -> None:
        self.db.dispose()
