"""Fixtures for the run store tests: a fresh SQLite file per test, or a fresh database on
the session's PostgreSQL cluster (tests/pg_support.py).

`any_store` runs a test on both backends; its PostgreSQL half skips with the reason when the
binaries or psycopg are missing (CI installs the `postgresql` apt package).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import RunStore


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'copd.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[RunStore]:
    s = RunStore.from_url(db_url)
    yield s
    s.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    """The same test on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'copd.db'}"
    else:
        url = request.getfixturevalue("pg_server").new_database()
    s = RunStore.from_url(url)
    yield s
    s.close()
