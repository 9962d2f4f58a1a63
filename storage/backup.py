"""Back up and check a SQLite run store: `copd store backup OUT`, `copd store check`.

    copy = backup_store("sqlite:///~/.copd/copd.db", Path("copd-2024-05-01.db"))
    problems = check_store("sqlite:///~/.copd/copd.db")     # [] when sound

`backup_store` uses SQLite's online backup API (`sqlite3.Connection.backup`) on a read-only
connection: it is safe while trainers write (the copy is one consistent snapshot; WAL
readers never block the writer) and never writes into the store. The copy is written to a
temporary file beside OUT, checked with `PRAGMA integrity_check`, and only then renamed to
OUT, so OUT is either a sound copy or absent. `check_store` runs the full `integrity_check`
(slower than the `quick_check` every open runs, storage/db.py: it also compares indexes
with their tables). PostgreSQL stores are backed up with the server's own tools (pg_dump).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from storage.db import (
    BUSY_TIMEOUT_MS,
    StoreError,
    check_url,
    default_db_url,
    read_only_path,
    sqlite_path,
    sqlite_problems,
)


def store_file(url: str | None) -> Path:
    """The existing SQLite file of `url` (default: the default store); StoreError otherwise."""
    url = check_url(url or default_db_url())
    path = sqlite_path(url)
    if path is None:
        raise StoreError(
            f"{url} is not a SQLite file store: back up and check a PostgreSQL store with its "
            "own tools (pg_dump, pg_amcheck)"
        )
    if not path.is_file():
        raise StoreError(f"the run store {path} does not exist: pass --db with the store's URL")
    return path


def check_store(url: str | None = None) -> list[str]:
    """What `PRAGMA integrity_check` finds wrong with the store at `url`; [] when sound."""
    return sqlite_problems(store_file(url), quick=False)


def backup_store(url: str | None, out: Path) -> Path:
    """A consistent copy of the store at `url` in the new file `out` (its folder must exist);
    safe while runs write. StoreError when `out` exists or the store is damaged."""
    path = store_file(url)
    out = Path(out).expanduser()
    if out.exists():
        raise StoreError(f"{out} exists already: name a new file for the backup")
    if not out.parent.is_dir():
        raise StoreError(
            f"the backup's folder {out.parent} does not exist: create it first "
            f"(mkdir -p {out.parent})"
        )
    if out.absolute() == path.absolute():
        raise StoreError(f"{out} is the store itself: name a new file for the backup")
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    mode = "ro&immutable=1" if read_only_path(path) else "ro"
    try:
        src = sqlite3.connect(f"file:{path.resolve()}?mode={mode}", uri=True)
        dst = sqlite3.connect(tmp)
        try:
            src.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        problems = sqlite_problems(tmp, quick=False)
        if problems:
            raise StoreError(
                f"the run store {path} is damaged ({problems[0]}), so a copy would be too: "
                f"restore an older backup, or salvage rows with `sqlite3 {path} .recover`"
            )
        os.replace(tmp, out)
    except sqlite3.DatabaseError as e:
        if "disk is full" in str(e):
            raise StoreError(
                f"no space left on {out.parent} for the backup ({e}): free some space there "
                "or name a file on another disk"
            ) from None
        raise StoreError(
            f"cannot back up the run store {path} ({e}): `copd store check` says what is wrong"
        ) from None
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)
    return out
