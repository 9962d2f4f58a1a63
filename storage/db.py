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

Errors that a user can fix (a URL that is not one, a backend that is not installed, a
database file that cannot be opened or written, a folder that does not exist, a full disk, a
damaged file) raise StoreError naming the URL or file and the fix, never a driver traceback.
An existing SQLite file is checked once per process before anything touches it (`PRAGMA
quick_check` on a read-only connection, `check_sqlite_file`): a damaged store is refused,
never written. Only the default store's folder ($COPD_HOME) is created; a --db URL whose
folder does not exist is refused (a typo would otherwise start a new, empty store). A SQLite file on a read-only mount (or without write
permission) opens read-only (`mode=ro&immutable=1`: no WAL switch, no -shm file), so reads
work and a write fails with a StoreError that says the store is read-only.

Usage:
    db = Database(url)
    with db.session(write=True) as s:   # commits on success, rolls back on error, closes
        s.add(row)
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool, StaticPool

BUSY_TIMEOUT_MS = 30_000
_WRITE_OPTION = "copd_write"


class StoreError(RuntimeError):
    """A run store problem the user can fix; the message names the URL or file and the fix.
    Command lines print it as one line (`user_error`)."""

    user_error = True


def check_url(url: str) -> str:
    """`url` if SQLAlchemy can parse it and has its backend; else StoreError with the fix."""
    try:
        u = make_url(url)
    except ArgumentError as e:
        raise StoreError(
            f"run store URL {url!r} is not a database URL ({e}); use e.g. "
            "sqlite:///path/to/copd.db or postgresql+psycopg://user@host/db"
        ) from None
    try:
        u.get_dialect()
    except NoSuchModuleError:
        raise StoreError(
            f"run store URL {url!r}: unknown database backend {u.drivername!r}; use sqlite:/// "
            "or postgresql+psycopg:// (pip install 'psycopg[binary]')"
        ) from None
    except ImportError as e:
        raise StoreError(f"run store URL {url!r}: its driver is not installed ({e})") from None
    return url


def read_only_path(path: Path) -> bool:
    """A SQLite file that exists but cannot be written here (read-only mount, permissions)."""
    if not path.exists():
        return False
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        return True
    try:  # root passes os.access checks even on a read-only mount
        return os.statvfs(path).f_flag & os.ST_RDONLY != 0
    except (OSError, AttributeError):
        return False


def _home_db_path() -> Path:
    home = Path(os.environ.get("COPD_HOME", "") or Path.home() / ".copd").expanduser()
    return home / "copd.db"


def default_db_url() -> str:
    """$COPD_DB_URL, else sqlite:///$COPD_HOME/copd.db (COPD_HOME defaults to ~/.copd)."""
    url = os.environ.get("COPD_DB_URL", "").strip()
    if url:
        return url
    return f"sqlite:///{_home_db_path()}"


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
    check_url(url)
    if not is_sqlite(url):
        return create_engine(url, pool_pre_ping=True, poolclass=None if pooled else NullPool)
    path = sqlite_path(url)
    read_only = False
    if path is not None:
        check_sqlite_file(path)
    if path is None:
        # One shared connection, or every thread would see its own empty in-memory database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    elif read_only_path(path):
        read_only = True
        uri = f"file:{path.resolve()}?mode=ro&immutable=1"
        engine = create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
            poolclass=None if pooled else NullPool,
        )
    else:
        _make_folder(path)
        engine = create_engine(url, poolclass=None if pooled else NullPool)
    _install_sqlite_events(engine, foreign_keys=foreign_keys, read_only=read_only)
    return engine


def _make_folder(path: Path) -> None:
    """Create the default store's folder; refuse any other store whose folder is missing."""
    if path.parent.is_dir():
        return
    if path.expanduser().absolute() != _home_db_path().absolute():
        raise StoreError(
            f"the run store's folder {path.parent} does not exist: create it first "
            f"(mkdir -p {path.parent}) or pass --db with a file in an existing folder"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(
            f"cannot create the run store's folder {path.parent}: {e.strerror or e}; "
            "pass --db with a writable location or set COPD_HOME"
        ) from None


# ---------------------------------------------------------------------- damaged files
_SOUND: set[str] = set()  # files that passed quick_check in this process


def damaged_message(path: Path, problem: str) -> str:
    """The one line a damaged SQLite store gets: which file, what SQLite said, the fix."""
    return (
        f"the run store {path} is damaged ({problem}); nothing was written to it: restore a "
        "copy made with `copd store backup`, or pass --db with a new store file "
        "(`copd store check` lists the damage)"
    )


def is_damage(e: BaseException) -> bool:
    """Whether a driver error says the database file itself is damaged."""
    msg = str(getattr(e, "orig", e))
    return "malformed" in msg or "not a database" in msg


def sqlite_problems(path: Path, quick: bool = True) -> list[str]:
    """What `PRAGMA quick_check` (or `integrity_check` when not `quick`) finds wrong with the
    SQLite file at `path`, read through a read-only connection; [] when it is sound."""
    mode = "ro&immutable=1" if read_only_path(path) else "ro"
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode={mode}", uri=True)
    except sqlite3.Error as e:
        return [str(e)]
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        rows = conn.execute("PRAGMA quick_check" if quick else "PRAGMA integrity_check")
        found = [str(r[0]) for r in rows.fetchall()]
    except sqlite3.DatabaseError as e:
        return [str(e)]
    finally:
        conn.close()
    return [] if found == ["ok"] else found


def check_sqlite_file(path: Path) -> None:
    """StoreError (naming the file and the fix) unless the existing SQLite file at `path` is
    sound. Runs quick_check once per process per file: it reads every page, so it is not
    repeated for each engine a process opens."""
    key = str(path.expanduser().absolute())
    if key in _SOUND or not path.is_file() or path.stat().st_size == 0:
        return
    problems = sqlite_problems(path)
    if problems:
        raise StoreError(damaged_message(path, problems[0]))
    _SOUND.add(key)


def _install_sqlite_events(engine: Engine, *, foreign_keys: bool, read_only: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _sqlite_on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_on_begin)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # first: the next ones may wait
        if not read_only:  # switching to WAL is a write
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
        self.path = sqlite_path(url) if is_sqlite(url) else None
        self.read_only = self.path is not None and read_only_path(self.path)
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
        except DatabaseError as e:
            s.rollback()
            err = self.explain(e)
            if err is e:
                raise
            raise err from e
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def explain(self, e: DatabaseError) -> Exception:
        """A StoreError for a SQLite file that cannot be opened or written, is full or is
        damaged; `e` otherwise."""
        return explain_sqlite_error(e, self.path, self.read_only)

    def dispose(self) -> None:
        self.engine.dispose()


def explain_sqlite_error(e: DatabaseError, path: Path | None, read_only: bool = False) -> Exception:
    """A StoreError naming the file and the fix for what SQLite said; `e` otherwise."""
    msg = str(getattr(e, "orig", e))
    if path is None:
        return e
    if is_damage(e):
        return StoreError(damaged_message(path, msg))
    if not isinstance(e, OperationalError):  # e.g. an IntegrityError: the caller's to handle
        return e
    if "disk is full" in msg:
        return StoreError(
            f"no space left on the disk holding the run store {path} ({msg}): free some space "
            "there, then resume"
        )
    if "readonly" in msg or "read-only" in msg or read_only:
        return StoreError(
            f"the run store {path} is read-only ({msg}); it can be read (copd runs, the "
            "dashboard) but not written: pass --db with a writable copy to launch or train"
        )
    if "unable to open database file" in msg:
        return StoreError(
            f"cannot open the run store {path} ({msg}): check that the file and its folder "
            "exist and are writable"
        )
    return e
