"""Concurrency on one SQLite file: 4 writer processes log metric batches as fast as they can
while a reader polls metric_series. Expect zero "database is locked" errors and zero lost
rows (rows each writer saw committed == rows present afterwards).

Runs 25 s of load by default (~30 s in all with process start-up);
COPD_CONCURRENCY_SECONDS shortens it while developing."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

from sqlalchemy.exc import OperationalError

from storage import MetricPoint, RunStore

N_WRITERS = 4
BATCH_STEPS = 5
KEYS = [f"branch/b{i}/loss" for i in range(10)]  # 10 keys x 5 steps = 50 points a batch


def _writer(url: str, run_id: int, ready, start, stop, results) -> None:
    store = RunStore.from_url(url)
    written = locked = other = batches = 0
    step = 0
    ready.put(run_id)
    start.wait(120)
    while not stop.is_set():
        pts = [
            MetricPoint(k, float(step + s) + 0.5 * i, step + s, phase="rl")
            for s in range(BATCH_STEPS)
            for i, k in enumerate(KEYS)
        ]
        try:
            store.log_metrics(run_id, pts)
            written += len(pts)
            batches += 1
        except OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                locked += 1
            else:
                other += 1
        except Exception:
            other += 1
        step += BATCH_STEPS
    store.close()
    results.put((run_id, written, batches, locked, other))


def test_writers_and_reader_lose_nothing(tmp_path):
    # 8 s of four writers and a reader hold thousands of contended transactions; a soak of
    # any length: COPD_CONCURRENCY_SECONDS=300 ./test.sh tests/storage/test_storage_concurrency.py
    seconds = float(os.environ.get("COPD_CONCURRENCY_SECONDS", "8"))
    t_begin = time.monotonic()
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    store = RunStore.from_url(url)
    run_ids = [store.create_run(f"w{i}", "copd", {}).id for i in range(N_WRITERS)]

    ctx = mp.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    start, stop = ctx.Event(), ctx.Event()
    procs = [
        ctx.Process(target=_writer, args=(url, rid, ready, start, stop, results)) for rid in run_ids
    ]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=120)
        start.set()
        startup_s = time.monotonic() - t_begin
        polls = read_errors = max_seen = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                df = store.metric_series(run_ids, KEYS[:2], max_points=200)
                n = store.metric_count(run_ids)
                assert n >= max_seen  # committed rows never vanish
                max_seen = n
                assert len(df) <= 200 * N_WRITERS * 2
                polls += 1
            except OperationalError:
                read_errors += 1
            time.sleep(0.05)
        stop.set()
        outcome = [results.get(timeout=120) for _ in procs]
    finally:
        stop.set()
        start.set()
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()

    assert [p.exitcode for p in procs] == [0] * N_WRITERS
    written = {rid: w for rid, w, _, _, _ in outcome}
    present = {rid: store.metric_count(rid) for rid in run_ids}
    locked = sum(o[3] for o in outcome)
    other = sum(o[4] for o in outcome)
    print(
        f"\n[concurrency] {seconds:.0f}s of load after {startup_s:.1f}s start-up, {N_WRITERS} "
        f"writers: batches "
        f"{sum(o[2] for o in outcome)}, rows written {sum(written.values())}, rows present "
        f"{sum(present.values())}, lock errors {locked}, other errors {other}, reader polls "
        f"{polls}, read errors {read_errors}"
    )
    assert locked == 0 and other == 0 and read_errors == 0
    assert present == written  # zero lost rows, zero phantom rows
    assert all(w > 0 for w in written.values())  # every writer made progress
    assert polls > 0
    store.close()
