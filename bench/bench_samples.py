"""How fast the Samples tab draws: its reads, its HTML, and the whole page's server time.

    .venv/bin/python bench/bench_samples.py [--samples 16] [--tokens 64] [--steps 50] [--repeats 5]

Builds a store with one CoPD-like run that recorded --samples completions of --tokens tokens
(two branches, each scored by its peer and the base) at each of --steps steps, through
RunStore.log_samples (the StoreLogger's write). Then, median of --repeats:
  - the reads of one step (sample_steps + samples), the one prompt's history across steps;
  - tokens_html of every sample of a step (the HTML the tab draws);
  - the Live page's server time on the Samples tab (AppTest: the whole script, the tab's
    queries and HTML), against the same page's Samples tab of a run with no samples (the
    anchor: what the page costs without the tab's work).
Target (issue 26): a view of 16 samples x 64 tokens draws in under 1 s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import _common  # noqa: F401  (environment first)
from _common import load_line, machine_line, median, median_time, verdict

from app.dashboard.tokens import tokens_html
from storage import RunStore, Sample

ENTRY = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


def fake_sample(step: int, i: int, tokens: int) -> Sample:
    branch = ("add", "rev")[i % 2]
    peer = ("rev", "add")[i % 2]
    return Sample(
        step=step, kind="probe", branch=branch, domain=("add", "rev")[(i // 2) % 2],
        prompt_index=i // 4, prompt=f"{i}23+456=", completion="5" * tokens, reward=float(i % 2),
        correct=bool(i % 2), tokens=[str(j % 10) for j in range(tokens)],
        logp=[-0.01 * (j % 50) for j in range(tokens)],
        peers={p: {"logp": [-0.02 * (j % 70) for j in range(tokens)],
                   "in_topk": [j % 7 != 0 for j in range(tokens)]} for p in (peer, "base")},
        disagreement=0.1 * (i % 9), overlap=0.9,
    )  # fmt: skip


def page_time(url: str, run_id: int, repeats: int) -> float:
    """Median seconds of the Live page's script on the Samples tab (Home is run first,
    untimed; the query caches are cleared before each timed run: a first draw)."""
    import time

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ.update(COPD_DB_URL=url, COPD_SUPERVISE="0")
    times = []
    for _ in range(repeats + 1):  # the first pays the imports
        at = AppTest.from_file(ENTRY, default_timeout=120)
        at.query_params["run"] = str(run_id)
        at.query_params["tab"] = "samples"
        at.run()
        st.cache_data.clear()
        t0 = time.perf_counter()
        at.switch_page("../pages/live.py").run()
        times.append(time.perf_counter() - t0)
        assert not at.exception, at.exception
    return median(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(machine_line(threads=False))
    tmp = tempfile.TemporaryDirectory()
    url = f"sqlite:///{tmp.name}/samples.db"
    os.environ["COPD_HOME"] = tmp.name
    store = RunStore.from_url(url)
    run = store.create_run("samples", "copd", {"group": None}, group=None)
    empty = store.create_run("empty", "copd", {})
    for step in range(0, args.steps * 10, 10):
        store.log_samples(run.id, [fake_sample(step, i, args.tokens) for i in range(args.samples)])
    last = (args.steps - 1) * 10
    print(f"store: 1 run, {args.samples} samples x {args.tokens} tokens at {args.steps} steps "
          f"({store.sample_count(run.id)} rows)")  # fmt: skip
    t_read = median_time(lambda: (store.sample_steps(run.id), store.samples(run.id, step=last)),
                         args.repeats)  # fmt: skip
    t_hist = median_time(lambda: store.sample_history([run.id], "add", 0), args.repeats)
    rows = store.samples(run.id, step=last)
    t_html = median_time(lambda: [tokens_html(s, "rev") for s in rows], args.repeats)
    t_page = page_time(url, run.id, args.repeats)
    t_anchor = page_time(url, empty.id, args.repeats)
    print(load_line())
    print(f"reads of one step            {t_read * 1e3:8.1f} ms")
    print(f"one prompt across {args.steps} steps  {t_hist * 1e3:8.1f} ms")
    print(f"tokens_html x {len(rows):<3}            {t_html * 1e3:8.1f} ms")
    print(f"Live page, Samples tab       {t_page * 1e3:8.1f} ms server time  "
          f"(anchor, no samples: {t_anchor * 1e3:.1f} ms; the tab's own work "
          f"{(t_page - t_anchor) * 1e3:.1f} ms)")  # fmt: skip
    print(f"target: the tab with {args.samples} x {args.tokens} draws in < 1 s: "
          f"{verdict(t_page, 1.0)}")  # fmt: skip
    store.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
