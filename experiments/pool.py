"""Run many training configs as separate processes, a few at a time, one torch thread each.

    results = run_pool([Job(cfg, Path("runs/study/copd-s0")), ...], jobs=2, db=url)
    results[run_dir]   # {model: {benchmark: score}} from the run's results.json

Each job is `python -m copd train <run_dir>/config.json --out <run_dir> [--db URL]`, its
output in `<run_dir>/train.log`, with one torch thread (`threads=1`, COPD_THREADS=1,
OMP_NUM_THREADS=1): on a 2-core machine two such processes use both cores, where two
processes with two threads each would oversubscribe them and run many times slower. A job
whose folder already holds a `results.json` for the same config is reused, so a study that
was interrupted continues where it stopped. A failed job is reported with the tail of its
log; the others still run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from copd.spec import RunConfig, apply_overrides


@dataclass(frozen=True)
class Job:
    cfg: RunConfig
    run_dir: Path


class PoolError(RuntimeError):
    """Some jobs failed; `failed` maps each run folder to the tail of its log."""

    def __init__(self, failed: dict[str, str]):
        self.failed = failed
        lines = [f"{len(failed)} run(s) failed:"]
        lines += [f"--- {d}\n{tail}" for d, tail in failed.items()]
        super().__init__("\n".join(lines))


def one_thread(cfg: RunConfig) -> RunConfig:
    return apply_overrides(cfg, ["threads=1"]).validate()


def done(job: Job) -> dict | None:
    """The scores of a finished job with the same config, else None. The stored config is
    read through `RunConfig` first, so a field added since (with its default) is not a
    difference."""
    res, conf = job.run_dir / "results.json", job.run_dir / "config.json"
    if not (res.exists() and conf.exists()):
        return None
    try:
        stored = RunConfig.from_dict(json.loads(conf.read_text())).to_dict()
    except Exception:  # an unreadable or older-incompatible config: train again
        return None
    if json.loads(json.dumps(stored)) != json.loads(json.dumps(one_thread(job.cfg).to_dict())):
        return None
    return json.loads(res.read_text())["scores"]


def prepare(job: Job, store=None) -> None:
    """Clear what an earlier attempt left in the run folder (its metrics.jsonl would
    otherwise be appended to, its checkpoints and merged model mixed with the new run's),
    and drop the store's earlier run of that folder, so the group holds each run once."""
    for name in ("results.json", "metrics.jsonl"):
        (job.run_dir / name).unlink(missing_ok=True)
    for name in ("checkpoints", "merged"):
        shutil.rmtree(job.run_dir / name, ignore_errors=True)
    if store is not None:
        where = str(job.run_dir.resolve())
        for run in store.list_runs(group=job.cfg.group):
            if run.run_dir == where:
                store.delete_run(run.id)


def run_pool(
    jobs: Sequence[Job],
    n_jobs: int = 2,
    db: str | None = None,
    log: Callable[[str], None] = print,
    poll_s: float = 0.5,
) -> dict[Path, dict]:
    """Run every job (reusing finished ones); returns run folder -> scores. Raises
    PoolError after all jobs ended when some failed."""
    results: dict[Path, dict] = {}
    todo: list[Job] = []
    for job in jobs:
        if (scores := done(job)) is not None:
            results[job.run_dir] = scores
        else:
            todo.append(job)
    if len(results):
        log(f"[pool] reusing {len(results)} finished run(s); {len(todo)} to train")
    store = None
    if db and todo:
        from copd.runner import open_store

        store = open_store(db)
    env = {**os.environ, "COPD_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    running: dict[subprocess.Popen, tuple[Job, float]] = {}
    failed: dict[str, str] = {}
    queue = list(todo)
    while queue or running:
        while queue and len(running) < max(1, n_jobs):
            job = queue.pop(0)
            job.run_dir.mkdir(parents=True, exist_ok=True)
            prepare(job, store)
            one_thread(job.cfg).to_json(job.run_dir / "config.json")
            argv = [sys.executable, "-m", "copd", "train", str(job.run_dir / "config.json")]
            argv += ["--out", str(job.run_dir)] + (["--db", db] if db else [])
            with open(job.run_dir / "train.log", "w") as fh:
                proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
            running[proc] = (job, time.time())
            log(f"[pool] started {job.cfg.name} ({len(queue)} queued)")
        for proc in [p for p in running if p.poll() is not None]:
            job, t0 = running.pop(proc)
            res = job.run_dir / "results.json"
            if proc.returncode == 0 and res.exists():
                results[job.run_dir] = json.loads(res.read_text())["scores"]
                log(f"[pool] {job.cfg.name}: done in {time.time() - t0:.0f} s")
            else:
                tail = (job.run_dir / "train.log").read_text(errors="replace")[-2000:]
                failed[str(job.run_dir)] = tail
                log(f"[pool] {job.cfg.name}: FAILED (rc {proc.returncode})")
        time.sleep(poll_s)
    if failed:
        raise PoolError(failed)
    return results
