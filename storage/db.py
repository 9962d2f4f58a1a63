"""Engine and session plumbing for the run store: one engine factory, one session helper.

Where the database lives (`default_db_url`):
    1. $COPD_DB_URL if set (any SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db);
    2. else sqlite:///$COPD_HOME/copd.db, with COPD_HOME defaulting to ~/.copd.

SQLite settings, all made in `_sqlite_on_connect` (the one place):
    journal_mode=WAL       readers never block the writer, the writer never blocks readers
    busy_timeout=30000     a writer waits up to 30 s for the lock instead of failing
    synchronous=NORMAL     safe with WAL; a commit does not fsync every time
    foreign_keys=ON        ON DELETE CASCADE works (off only while migrating, see migrate.py)
pysqlite's own transaction handling is switched off (isolation_level=None) and the `begin`
event emits BEGIN itself: `BEGIN IMMEDIATE` for write sessions, so the write lock is taken
up front (a deferred read->write upgrade fails at once with "database is locked" whatever
the busy timeout), and a plain deferred `BEGIN` for read sessions.

Usage:
    db = Database(url)
    with db.session(write=True) as s:   # commits on success, rolls back on error, closes
        s.add(row)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool, StaticPool

BUSY_TIMEOUT_MS = 30_000
_WRITE_OPTION = "copd_write"


def default_db_url() -> str:
    """$COPD_DB_URL, else sqlite:///$COPD_HOME/copd.db (COPD_HOME defaults to ~/.copd)."""
    url = os.environ.get("COPD_DB_URL", "").strip()
    if url:
        return url
    home = Path(os.environ.get("COPD_HOME", "") or Path.home() / ".copd").expanduser()
    return f"sqlite:///{home / 'copd.db'}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for in-memory databases and other backends."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:"):
        return None
    return Path(u.database).expanduser()


def make_engine(url: str, *, foreign_keys: bool = True, pooled: bool = True) -> Engine:
    """An engine for `url`. SQLite gets WAL, busy_timeout, synchronous=NORMAL, foreign keys
    (unless `foreign_keys=False`, used only while migrating) and explicit BEGIN handling."""
    if not is_sqlite(url):
        return create_engine(url, pool_pre_ping=True, poolclass=None if pooled else NullPool)
    path = sqlite_path(url)
    if path is None:
        # One shared connection, or every thread would see its own empty in-memory database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, poolclass=None if pooled else NullPool)
    _install_sqlite_events(engine, foreign_keys=foreign_keys)
    return engine


def _install_sqlite_events(engine: Engine, *, foreign_keys: bool) -> None:
    @event.listens_for(engine, "connect")
    def _sqlite_on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_on_begin)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # first: the next ones may wait
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _sqlite_on_begin(conn) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def writer(engine: Engine) -> Engine:
    """The same engine (same pool), flagged so that its transactions take the write lock."""
    return engine.execution_options(**{_WRITE_OPTION: True})


class Database:
    """An engine plus the one session helper the store uses."""

    def __init__(self, url: str, engine: Engine | None = None):
        self.url = url
        self.engine = engine if engine is not None else make_engine(url)
        self._readers = sessionmaker(self.engine, expire_on_commit=False)
        self._writers = sessionmaker(writer(self.engine), expire_on_commit=False)

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """A short-lived session: commit on success, roll back on error, always close.
        Pass write=True for anything that writes (SQLite: BEGIN IMMEDIATE)."""
        s = (self._writers if write else self._readers)()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()
