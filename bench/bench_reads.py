"""Store reads the Runs page and Home make, at a lab's scale: the latest values of every run
and the metric keys of a run, from the summary kept as rows are written (metric_latest),
against the anchor of scanning the metrics table as the store did before, in the same run.

    .venv/bin/python bench/bench_reads.py [--runs 20] [--steps 1000] [--keys 100] [--repeats 3]

The store is written through the store's own write path (`log_metric_rows`, batches of one
step's keys, as StoreLogger sends them). Printed: rows, file size, write seconds, then per
read the median seconds with the summary, the anchor's, and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common  # environment, repo on the path; shared timing
from sqlalchemy import text

from storage import RunStore

SCAN_LATEST = """
SELECT m.key, m.step, m.value FROM metrics m
JOIN (SELECT key, MAX(step) AS s FROM metrics WHERE run_id = :r GROUP BY key) t
  ON m.run_id = :r AND m.key = t.key AND m.step = t.s
"""
SCAN_KEYS = "SELECT DISTINCT key FROM metrics WHERE run_id = :r ORDER BY key"


def build(store: RunStore, runs: int, steps: int, keys: int) -> list[int]:
    names = [f"branch/b{i % 4}/k{i}" for i in range(keys)]
    ids = []
    for r in range(runs):
        run = store.create_run(f"r{r}", "copd", {})
        ids.append(run.id)
        batch = []
        for s in range(steps):
            batch += [(k, float(s) + i, s, s // 10, "rl", "", 0.0) for i, k in enumerate(names)]
            if len(batch) >= 5000:
                store.log_metric_rows(run.id, batch)
                batch = []
        store.log_metric_rows(run.id, batch)
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(_common.machine_line(threads=False))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lab.db"
        store = RunStore.from_url(f"sqlite:///{path}")
        t0 = time.perf_counter()
        ids = build(store, args.runs, args.steps, args.keys)
        wrote = time.perf_counter() - t0
        rows = args.runs * args.steps * args.keys
        size = path.stat().st_size / 2**20
        print(f"store: {args.runs} runs x {args.steps} steps x {args.keys} keys = {rows:,} rows, "
              f"{size:,.0f} MiB, written in {wrote:.1f} s ({rows / wrote:,.0f} rows/s)")  # fmt: skip
        print(_common.load_line())

        def scan(sql: str) -> None:
            with store.db.engine.connect() as conn:
                for r in ids:
                    conn.execute(text(sql), {"r": r}).all()

        reads = {
            f"latest values of {args.runs} runs (Runs page)": (
                lambda: [store.latest_metrics(r) for r in ids],
                lambda: scan(SCAN_LATEST),
            ),
            f"metric keys of {args.runs} runs": (
                lambda: [store.metric_keys(r) for r in ids],
                lambda: scan(SCAN_KEYS),
            ),
        }
        print(f"{'read':<44} {'summary s':>10} {'scan s':>10} {'ratio':>8}")
        for name, (fast, slow) in reads.items():
            a, b = _common.median_time(fast, args.repeats), _common.median_time(slow, args.repeats)
            print(f"{name:<44} {a:>10.4f} {b:>10.4f} {b / a:>7.0f}x")
        print(_common.load_line())
        store.close()


if __name__ == "__main__":
    main()
