"""Schema migrations: bring a database to the newest Alembic revision, safely across processes.

The Alembic environment ships inside the package (storage/migrations/); its Config is built
here in code, so nothing depends on an alembic.ini or the current directory.

    python -m storage.migrate upgrade [URL]       # what RunStore.from_url does on open
    python -m storage.migrate current [URL]
    python -m storage.migrate revision -m "add x" # autogenerate against storage/models.py

Concurrency: first-time creation and upgrades are serialised, on SQLite by an exclusive
fcntl lock on `<db file>.lock`, on PostgreSQL by an advisory lock; a database already at head
is detected with one cheap read and skips the lock. Migrations run on a connection with
SQLite foreign keys OFF: a batch ("move and copy") table rebuild drops the old table, and
with foreign keys on that drop would cascade-delete every child row.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DatabaseError

from storage.db import (
    StoreError,
    check_sqlite_file,
    damaged_message,
    default_db_url,
    is_damage,
    is_sqlite,
    make_engine,
    read_only_path,
    sqlite_path,
    writer,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_PG_LOCK_KEY = 0x636F7064  # "copd"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migration history has {len(heads)} heads {heads}; merge them")
    return heads[0]


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return {r.revision for r in script.walk_revisions()}


def sqlite_schema(path: Path) -> tuple[set[str], str | None]:
    """The tables of the SQLite file at `path` and its Alembic revision (None when it has
    none), read through a read-only connection: looking writes nothing."""
    mode = "ro&immutable=1" if read_only_path(path) else "ro"
    conn = sqlite3.connect(f"file:{path.resolve()}?mode={mode}", uri=True)
    try:
        names = {
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith("sqlite_")
        }
        rev = None
        if "alembic_version" in names:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            rev = row[0] if row else None
        return names, rev
    finally:
        conn.close()


def refuse_foreign(where: str, tables: set[str], revision: str | None) -> None:
    """StoreError, before anything is written, unless the database is empty or a copd store
    at a revision this code knows: another application's tables are never touched, and a
    store written by a newer copd is never migrated backwards or half-read."""
    if tables and "alembic_version" not in tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"{where} is not a copd run store (it holds the tables {shown} and no copd "
            "schema); nothing was written to it: pass --db with a new file or a copd store"
        )
    if revision is not None and revision not in _known_revisions():
        raise StoreError(
            f"{where} is at schema revision {revision!r}, which this copd does not know (its "
            f"newest is {head_revision()!r}): it was written by a newer copd, or is another "
            "application's database; nothing was written to it: upgrade copd (git pull, "
            "then ./run.sh or pip install -e .) to open it, or pass --db with another store"
        )


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
        conn.rollback()
    return rev


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl  # POSIX only; imported here so the module imports on Windows

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def upgrade_database(url: str, revision: str = "head", engine: Engine | None = None) -> None:
    """Migrate the database at `url` to `revision` (default: the newest). `engine` is used for
    in-memory SQLite, where a second engine would see a different, empty database."""
    target = head_revision() if revision == "head" else revision
    path = sqlite_path(url)
    own = engine is None
    if path is not None and path.is_file():
        check_sqlite_file(path)  # damage first: its own message
        try:
            schema = sqlite_schema(path)
        except sqlite3.DatabaseError as e:  # damaged since this process last checked it
            raise StoreError(damaged_message(path, str(e))) from None
        refuse_foreign(str(path), *schema)  # before any connection writes (WAL)
    eng = make_engine(url, foreign_keys=False, pooled=False) if own else engine
    try:
        if path is None and eng.dialect.name == "postgresql":
            with eng.connect() as conn:
                names = set(inspect(conn).get_table_names())
                rev = None
                if "alembic_version" in names:
                    rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                conn.rollback()
            refuse_foreign(url, names, rev)
        try:
            current = current_revision(eng)
        except DatabaseError as e:
            if path is None:
                raise
            if is_damage(e):
                raise StoreError(damaged_message(path, str(e.orig))) from None
            raise StoreError(
                f"cannot open the run store {path} ({e.orig}): check that the file and its "
                "folder exist and are readable"
            ) from None
        if current == target:
            return
        if path is not None and read_only_path(path):
            raise StoreError(
                f"the run store {path} is read-only and at schema revision {current!r}, not "
                f"{target!r}: open it once where it is writable to upgrade it"
            )
        if path is not None:
            with _file_lock(path.with_name(path.name + ".lock")):
                _run_upgrade(eng, revision)
        elif not is_sqlite(url) and eng.dialect.name == "postgresql":
            with eng.connect() as lock_conn:
                lock_conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
                try:
                    _run_upgrade(eng, revision)
                finally:
                    lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                    lock_conn.commit()
        else:
            _run_upgrade(eng, revision)
    finally:
        if own:
            eng.dispose()


def _run_upgrade(engine: Engine, revision: str) -> None:
    # Another process may have finished the work while we waited for the lock; Alembic reads
    # the version table inside the transaction and then has nothing to do.
    with writer(engine).connect() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m storage.migrate", description=__doc__)
    p.add_argument("action", choices=["upgrade", "current", "revision"])
    p.add_argument("url", nargs="?", default=None, help="database URL (default: COPD_DB_URL)")
    p.add_argument("-m", "--message", default="schema change", help="revision message")
    args = p.parse_args(argv)
    url = args.url or default_db_url()
    if args.action == "upgrade":
        upgrade_database(url)
        print(f"{url}: at {head_revision()}")
    elif args.action == "current":
        eng = make_engine(url)
        print(f"{url}: at {current_revision(eng)} (head {head_revision()})")
        eng.dispose()
    else:
        upgrade_database(url)
        cfg = alembic_config(url)
        command.revision(cfg, message=args.message, autogenerate=True)


if __name__ == "__main__":
    main()
