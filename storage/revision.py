"""The code revision a run was launched from: `git rev-parse --short HEAD`, or None.

    from storage import code_revision
    store.create_run(..., code_revision=code_revision())

A "-dirty" suffix marks uncommitted changes to tracked files. Never raises: outside a git
checkout, without git, or on a slow filesystem (5 s timeout) the answer is None.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        res = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5.0, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def code_revision(repo_dir: str | Path | None = None) -> str | None:
    """Short commit hash of the repository at `repo_dir` (default: the one this package lives
    in), with "-dirty" appended when tracked files have uncommitted changes; None if unknown."""
    cwd = Path(repo_dir) if repo_dir is not None else _PACKAGE_ROOT
    if not cwd.is_dir():
        return None
    rev = _git(["rev-parse", "--short", "HEAD"], cwd)
    if not rev:
        return None
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return f"{rev}-dirty" if status else rev
