"""A damaged run store is refused in one line and never written; `copd store backup|check`.

Each test makes a real SQLite store (RunStore.from_url, one run), damages the file the way
disks and people do (cut short, random bytes over the header or over pages, zeroed pages,
replaced by a text file), then runs the command line on it: one line naming the file and the
fix, exit code != 0, and the file's bytes unchanged.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from copd import cli
from storage import RunStore, StoreError
from storage import db as storage_db
from storage.backup import backup_store, check_store

REPO = Path(__file__).resolve().parent.parent
PAGE = 4096


def make_store(path: Path) -> str:
    url = f"sqlite:///{path}"
    store = RunStore.from_url(url)
    store.create_run("kept", "copd", {"seed": 0}, group="g")
    store.close()
    return url


def _overwrite(path: Path, start: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(start)
        fh.write(data)


def _random(n: int) -> bytes:
    rng = random.Random(0)
    return bytes(rng.randrange(256) for _ in range(n))


DAMAGE = {
    "truncated": lambda p: os.truncate(p, p.stat().st_size // 2),
    "header_random": lambda p: _overwrite(p, 0, _random(100)),
    "pages_random": lambda p: _overwrite(p, PAGE, _random(2 * PAGE)),
    "pages_zeroed": lambda p: _overwrite(p, PAGE, bytes(p.stat().st_size - PAGE)),
    "text_file": lambda p: p.write_text("these are my notes, not a database\n" * 40),
}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=sorted(DAMAGE))
def damaged(request, tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "copd.db"
    url = make_store(path)
    DAMAGE[request.param](path)
    return url, path


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_damaged_store_is_refused_in_one_line_and_left_unchanged(damaged, capsys):
    url, path = damaged
    before = sha(path)
    with pytest.raises(StoreError, match="is damaged"):
        RunStore.from_url(url)
    for argv in (["runs", "--db", url], ["cancel", "1", "--db", url]):
        assert cli.main(argv) == 2
        line = one_line(capsys.readouterr().err)
        assert str(path) in line and "is damaged" in line and "copd store backup" in line
    assert sha(path) == before


def test_launch_into_a_damaged_store_trains_nothing(damaged, tmp_path, capsys):
    url, path = damaged
    before = sha(path)
    runs = tmp_path / "runs"
    argv = ["launch", "demo", "--db", url, "--runs-root", str(runs), "--no-wait"]
    assert cli.main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert str(path) in line and "--db" in line
    assert sha(path) == before
    assert not runs.exists() or not any(runs.iterdir())


def test_store_check_lists_the_damage_and_exits_1(damaged, capsys):
    url, path = damaged
    before = sha(path)
    assert cli.main(["store", "check", "--db", url]) == 1
    err = capsys.readouterr().err
    assert f"damaged: {path}" in err and "Traceback" not in err
    assert sha(path) == before


def test_backup_of_a_damaged_store_is_refused_and_writes_no_copy(damaged, tmp_path, capsys):
    url, path = damaged
    out = tmp_path / "copy.db"
    assert cli.main(["store", "backup", "--db", url, str(out)]) == 2
    assert "damaged" in one_line(capsys.readouterr().err)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".copy")) == []


def test_damaged_store_from_a_real_subprocess(tmp_path):
    path = tmp_path / "copd.db"
    url = make_store(path)
    DAMAGE["pages_random"](path)
    before = sha(path)
    res = subprocess.run(
        [sys.executable, "-m", "copd", "runs", "--db", url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert "is damaged" in one_line(res.stderr)
    assert sha(path) == before


def test_check_and_backup_of_a_sound_store_while_a_writer_holds_it_open(tmp_path, capsys):
    path = tmp_path / "copd.db"
    url = make_store(path)
    assert cli.main(["store", "check", "--db", url]) == 0
    assert capsys.readouterr().out.strip() == f"ok: {path}"
    # A store still open for writing: its last run lives in the WAL, not yet in the file.
    store = RunStore.from_url(url)
    store.create_run("in-the-wal", "grpo", {"seed": 1})
    assert (tmp_path / "copd.db-wal").stat().st_size > 0
    out = tmp_path / "backups" / "copy.db"
    out.parent.mkdir()
    assert cli.main(["store", "backup", "--db", url, str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    store.create_run("after-the-copy", "grpo", {"seed": 2})
    store.close()
    copy = RunStore.from_url(f"sqlite:///{out}")
    assert sorted(r.name for r in copy.list_runs()) == ["in-the-wal", "kept"]
    copy.close()
    assert check_store(f"sqlite:///{out}") == []
    with pytest.raises(StoreError, match="exists already"):
        backup_store(url, out)
    with pytest.raises(StoreError, match="does not exist: create it"):
        backup_store(url, tmp_path / "nowhere" / "copy.db")


def test_quick_check_runs_once_per_process_per_file(tmp_path, monkeypatch):
    url = make_store(tmp_path / "copd.db")  # checked (and found sound) here
    calls = []
    real = storage_db.sqlite_problems
    monkeypatch.setattr(
        storage_db, "sqlite_problems", lambda p, quick=True: calls.append(p) or real(p, quick)
    )
    for _ in range(3):
        RunStore.from_url(url).close()
    assert calls == []
    other = tmp_path / "other.db"
    make_store(other)
    RunStore.from_url(f"sqlite:///{other}").close()
    assert calls == [other]  # a new file: checked once, on its first open


def test_missing_folder_is_refused_but_the_default_store_makes_its_own(
    tmp_path, monkeypatch, capsys
):
    missing = tmp_path / "no" / "such" / "dir"
    url = f"sqlite:///{missing / 'x.db'}"
    assert cli.main(["runs", "--db", url]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"mkdir -p {missing}" in line
    assert not (tmp_path / "no").exists()
    monkeypatch.delenv("COPD_DB_URL", raising=False)
    monkeypatch.setenv("COPD_HOME", str(tmp_path / "fresh" / "home"))
    store = RunStore.from_url(None)
    assert store.list_runs() == []
    store.close()
    assert (tmp_path / "fresh" / "home" / "copd.db").is_file()


def test_store_commands_refuse_what_they_cannot_do(tmp_path, capsys):
    assert cli.main(["store", "check", "--db", f"sqlite:///{tmp_path / 'absent.db'}"]) == 2
    assert "does not exist" in one_line(capsys.readouterr().err)
    assert cli.main(["store", "check", "--db", "postgresql+psycopg://u@h/db"]) == 2
    assert "pg_dump" in one_line(capsys.readouterr().err)


# ---------------------------------------------------------------------- not ours
def foreign_sqlite(path: Path, with_runs: bool) -> str:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO contacts (name) VALUES ('Ada')")
    if with_runs:  # a table named like one of ours must not fool the check
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, what TEXT)")
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


@pytest.mark.parametrize("with_runs", [False, True])
def test_another_applications_sqlite_file_is_refused_unchanged(tmp_path, capsys, with_runs):
    """`copd runs --db contacts.db` on another application's file: one line, and the file
    is byte for byte as it was, still in its own journal mode (before: ten copd tables and
    WAL mode added, or a 116-line traceback with WAL mode set)."""
    path = tmp_path / "contacts.db"
    url = foreign_sqlite(path, with_runs)
    before = sha(path)
    for argv in (["runs", "--db", url], ["launch", "demo", "--db", url, "--no-wait"]):
        assert cli.main(argv) == 2
        line = one_line(capsys.readouterr().err)
        assert "is not a copd run store" in line and "contacts" in line and "--db" in line
    with pytest.raises(StoreError, match="not a copd run store"):
        RunStore.from_url(url)
    assert sha(path) == before
    assert not Path(f"{path}-wal").exists()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def newer_schema(url: str) -> None:
    from sqlalchemy import create_engine, text

    RunStore.from_url(url).close()
    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    eng.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_store_at_a_newer_schema_is_refused_naming_the_revision(
    tmp_path, capsys, backend, request
):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'copd.db'}"
    else:
        url = request.getfixturevalue("pg_server").new_database()
    newer_schema(url)
    before = sha(tmp_path / "copd.db") if backend == "sqlite" else None
    assert cli.main(["runs", "--db", url]) == 2
    line = one_line(capsys.readouterr().err)
    assert "'9999_from_the_future'" in line and "upgrade copd" in line, line
    if before is not None:
        assert sha(tmp_path / "copd.db") == before


def test_a_postgres_database_of_another_application_is_refused(capsys, request):
    from sqlalchemy import create_engine, inspect, text

    url = request.getfixturevalue("pg_server").new_database()
    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE contacts (id SERIAL PRIMARY KEY, name TEXT)"))
    assert cli.main(["runs", "--db", url]) == 2
    assert "is not a copd run store" in one_line(capsys.readouterr().err)
    with eng.connect() as conn:
        assert inspect(conn).get_table_names() == ["contacts"]
    eng.dispose()
