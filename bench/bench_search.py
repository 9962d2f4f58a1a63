"""Run search at a lab's scale: a query (copd/common/query.py) over 1,000 runs with full
configs, evaluated in Python, against the anchor of listing the same runs with no query.

    .venv/bin/python bench/bench_search.py [--runs 1000] [--repeats 5] [--json out.json]

Printed, as medians: `filter_runs` over the listed runs (parse, type check, evaluation;
each run's fields resolved as the query reads them), against the anchor of flattening
every run's config first (what a record-per-run design pays); `RunStore.list_runs()` and
`list_runs(where=...)` from a SQLite store (rows, tags and the query). Target: a search of
1,000 runs under 100 ms on top of the listing, so the Runs page's filter costs less than
a rerun's other reads.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common  # environment, repo on the path; shared timing

from copd.spec import RunConfig
from storage import RunStore
from storage.search import filter_runs, run_record

QUERY = 'opd.beta >= 1 and method == "copd" and "ablation" in tags and schedule.cycles > 2'
TARGET_S = 0.1


def seed(store: RunStore, n: int) -> None:
    """`n` runs with full configs: beta, cycles, method and tags varied."""
    base = RunConfig().to_dict()
    for i in range(n):
        cfg = {**base, "opd": {**base["opd"], "beta": [0.25, 0.5, 1.0, 2.0][i % 4]},
               "schedule": {**base["schedule"], "cycles": 1 + i % 8}}  # fmt: skip
        tags = ["ablation"] if i % 3 == 0 else ["smoke", f"batch-{i // 100}"]
        store.create_run(f"r{i}", ["copd", "mixed", "expert"][i % 3], cfg, seed=i % 5, tags=tags)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    print(_common.machine_line(threads=False))
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore.from_url(f"sqlite:///{Path(tmp) / 'copd.db'}")
        seed(store, args.runs)
        runs = store.list_runs()
        matched = len(filter_runs(runs, QUERY))
        t_flat = _common.median_time(lambda: [run_record(r) for r in runs], args.repeats)
        t_filter = _common.median_time(lambda: filter_runs(runs, QUERY), args.repeats)
        t_list = _common.median_time(store.list_runs, args.repeats)
        t_where = _common.median_time(lambda: store.list_runs(where=QUERY), args.repeats)
        store.close()
    print(_common.load_line())
    print(f"{args.runs} runs, query {QUERY!r}: {matched} match")
    print(f"  filter_runs (fields as read)    {t_filter * 1e3:8.1f} ms  "
          f"{_common.verdict(t_filter, TARGET_S)} (target {TARGET_S * 1e3:.0f} ms)")  # fmt: skip
    print(f"  every config flattened          {t_flat * 1e3:8.1f} ms  (anchor: "
          f"{t_flat / t_filter:.0f}x the search)")  # fmt: skip
    print(f"  list_runs()                     {t_list * 1e3:8.1f} ms  (anchor)")
    print(f"  list_runs(where=QUERY)          {t_where * 1e3:8.1f} ms  "
          f"{t_where / t_list:.2f}x the anchor")  # fmt: skip
    _common.write_json(args.json, {"runs": args.runs, "matched": matched, "flatten_s": t_flat,
                                   "filter_s": t_filter, "list_s": t_list, "where_s": t_where})  # fmt: skip


if __name__ == "__main__":
    main()
