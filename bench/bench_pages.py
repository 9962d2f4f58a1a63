"""Server time of every dashboard page: the Streamlit script run of each page (Streamlit's
AppTest, in this process) on a store seeded like a lab's, first load and reload.

    .venv/bin/python bench/bench_pages.py [--runs 40] [--repeats 5] [--pages home,runs] [--json out.json]

The store: tests/seed.py (finished, running, crashed and NaN runs, a group of 3 seeds x 2
methods) plus `--runs` finished CoPD runs of 60 steps with evaluations, in groups of 4.
"first load": a new browser session with the query caches empty (what a page costs once
their 2 s lifetime is over, i.e. on almost every visit); "reload": the same session again
within the caches' lifetime. Printed per page: median and range in ms; the target is under
1 s for every page without heavy charts (Home, Launch, Runs, Compare's table, Studies).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import _common  # environment, repo on the path; shared timing

PAGES = ("home", "launch", "runs", "live", "compare", "studies")
TARGET_S = 1.0
HEAVY = {"live"}  # many charts: not held to the 1 s target


def seed(url: str, runs: int) -> None:
    from copd.spec import RunConfig
    from storage import RunStore
    from tests.seed import evaluations, seed_store, training_points

    seed_store(url)
    store = RunStore.from_url(url)
    for i in range(runs):
        cfg = RunConfig(name=f"lab-{i}", group=f"lab-{i // 4}", seed=i % 4).to_dict()
        run = store.create_run(cfg["name"], "copd", cfg, seed=i % 4, group=cfg["group"])
        store.log_metrics(run.id, training_points(60, seed=i))
        store.log_evals(run.id, evaluations([0, 20, 40, 60]))
        store.claim(run.id, host="bench")
        store.set_status(run.id, "finished")
    store.close()


def page_times(page: str, repeats: int) -> tuple[list[float], list[float]]:
    """(first-load seconds, reload seconds) of `page`, `repeats` each."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    entry = str(_common.ROOT / "app" / "main.py")
    first, again = [], []
    for _ in range(repeats):
        st.cache_data.clear()
        at = AppTest.from_file(entry, default_timeout=120)
        at.run()  # the session opens on Home; the page's own run is what is timed
        if page != "home":
            st.cache_data.clear()
            t0 = time.perf_counter()
            at.switch_page(f"../pages/{page}.py").run()
        else:
            st.cache_data.clear()
            t0 = time.perf_counter()
            at.run()
        first.append(time.perf_counter() - t0)
        assert not at.exception, (page, at.exception)
        t0 = time.perf_counter()
        at.run()
        again.append(time.perf_counter() - t0)
    return first, again


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40, help="extra finished runs in the store")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pages", default=",".join(PAGES), help="comma-separated, e.g. home,runs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="copd-bench-pages-"))
    url = f"sqlite:///{tmp / 'copd.db'}"
    os.environ.update(COPD_DB_URL=url, COPD_HOME=str(tmp), COPD_SUPERVISE="0")
    t0 = time.perf_counter()
    seed(url, args.runs)
    print(f"machine: {os.cpu_count()} cores, {_common.cpu_model()}")
    print(f"store: {args.runs + 10} runs, seeded in {time.perf_counter() - t0:.1f} s")
    print(_common.load_line())
    results = {}
    print(f"{'page':<9} {'first load':>30} {'reload':>30}  target")
    for page in [p for p in args.pages.split(",") if p in PAGES]:
        first, again = page_times(page, args.repeats)
        target = (
            "heavy charts" if page in HEAVY else _common.verdict(_common.median(first), TARGET_S)
        )
        print(f"{page:<9} {_common.spread(first):>30} {_common.spread(again):>30}  {target}")
        results[page] = {"first_s": first, "reload_s": again}
    print(_common.load_line())
    _common.write_json(args.json, {"runs": args.runs + 10, "pages": results})


if __name__ == "__main__":
    main()
