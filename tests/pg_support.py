"""A throwaway PostgreSQL cluster (Debian's binaries under /usr/lib/postgresql/*/bin),
started once per session for every test that asks for `pg_server` (tests/conftest.py
registers the fixture); it skips with the reason when the binaries or psycopg are missing
(CI installs the `postgresql` apt package)."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bindir() -> str | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(f"{d}/initdb") and os.path.exists(f"{d}/pg_ctl"):
            return d
    return shutil.which("initdb") and os.path.dirname(shutil.which("initdb") or "")


class PgServer:
    """A PostgreSQL cluster in a temp dir on 127.0.0.1:port, trust auth, superuser `copd`."""

    def __init__(self, bindir: str):
        self.bindir = bindir
        self.port = _free_port()
        # Not under pytest's tmp dir: that one is private to root, and the server runs as the
        # unprivileged `postgres` user when we are root (initdb refuses to run as root).
        self.dir = Path(tempfile.mkdtemp(prefix="copd-pg-"))
        self.data = self.dir / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as e:
                raise RuntimeError("running as root and there is no `postgres` user") from e
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._db_ids = itertools.count()

    def _run(self, *args: str) -> None:
        res = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")

    def start(self) -> None:
        self._run(f"{self.bindir}/initdb", "-D", str(self.data), "-A", "trust", "-U", "copd",
                  "-E", "UTF8", "--no-sync")  # fmt: skip
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-o", opts,
                  "-l", str(self.dir / "server.log"), "-w", "-t", "60", "start")  # fmt: skip

    def stop(self) -> None:
        try:
            self._run(
                f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"
            )
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://copd@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        from sqlalchemy import create_engine, text

        name = f"copd_test_{next(self._db_ids)}"
        eng = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        eng.dispose()
        return self.url(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[dev]' or '.[postgres]')")
    bindir = _pg_bindir()
    if not bindir:
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql)")
    server = PgServer(bindir)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        shutil.rmtree(server.dir, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL cluster: {e}")
    yield server
    server.stop()
