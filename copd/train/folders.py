"""A run's folder: its name, its creation (never shared with another run), its one
writer, and the metrics.jsonl lines a resume drops.

    out = new_run_dir(Path("runs"), run_id, cfg.name)    # runs/<id>-<slug>, fresh
    out = unique_run_dir(Path("runs"), cfg.name)         # no store: runs/<slug>[-n]
    with hold_run_folder(out): ...                        # one writer per folder
    truncate_jsonl(out / "metrics.jsonl", step)           # a resume: drop what came after

docs/ARCHITECTURE.md, "Run folders and resume"; copd/runner.py uses these.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from copd.errors import RunFolderBusy


def slugify(name: str) -> str:
    """A folder-safe slug of a run name: `CoPD demo (β=1)` -> `copd-demo-1`."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    return slug[:48] or "run"


def new_run_dir(root: Path, run_id: int, name: str) -> Path:
    """A fresh, empty folder `root/<id>-<slug>` for a recorded run, created here and now.
    Run ids repeat across stores (and when a store is recreated), so when that folder exists
    already it belongs to another run and a random suffix makes a new one: a run never
    inherits another run's checkpoints, metrics or resume marker."""
    import uuid

    root = Path(root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    base = f"{int(run_id)}-{slugify(name)}"
    candidate = root / base
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            candidate = root / f"{base}-{uuid.uuid4().hex[:8]}"


def unique_run_dir(root: Path, name: str) -> Path:
    """A fresh folder for a run with no store: `root/<slug>`, or `root/<slug>-2`, `-3`, ...
    when taken (created exclusively, so two runs started at once never share one)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base, n = slugify(name), 1
    while True:
        candidate = root / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1


def truncate_jsonl(path: Path, step: int) -> int:
    """Drop the metric, evaluation, checkpoint and sample lines with step > `step` from a
    metrics.jsonl (events stay); the number of lines dropped."""
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines(keepends=True):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill: drop it
            dropped += 1
            continue
        s = rec.get("step")
        if rec.get("type") != "event" and isinstance(s, int) and s > step:
            dropped += 1
            continue
        kept.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
    return dropped


LOCK_NAME = ".writer.lock"  # in a run folder, held by the process that writes it


@contextlib.contextmanager
def hold_run_folder(out: Path) -> Iterator[None]:
    """One writer per run folder: an exclusive lock on `out/.writer.lock` while the run
    writes there. The OS drops it when the process dies, so a kill -9 never leaves it
    held; a second trainer on the same folder is refused before it touches anything."""
    import fcntl
    import socket

    f = open(out / LOCK_NAME, "a+")  # noqa: SIM115  (held for the block)
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "a process"
            raise RunFolderBusy(
                f"run folder {out} is being written by {holder}: one writer per run; cancel "
                "that run first, or pass another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {socket.gethostname()}")
        f.flush()
        yield
    finally:
        f.close()
