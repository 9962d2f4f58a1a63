"""P7: the dashboard at a demo's and at a lab's scale, against the targets of issue 25: the
store reads the pages make, their figure builds, each page's server time (first run and a
refresh tick with no new rows) and one real-browser first draw of the Live view.

    .venv/bin/python bench/dashboard.py                      # both scales; stores cached
    .venv/bin/python bench/dashboard.py --scale demo --no-browser
    .venv/bin/python bench/dashboard.py --lab-runs 1000 --lab-steps 10000 --lab-keys 200

Stores are written once through the store's real write path (storage.logger.StoreLogger,
synchronous with large batches: the same rows, summaries and rollup blocks a trainer's
logger writes) and cached under --cache (default /tmp/copd-bench-p7): a rerun reuses a
store of the same scale and schema. Scales:
- demo: the demo group, a CoPD run (80 steps, 8 cycles of 6 RL + 4 OPD, branches add and
  rev, the engine's metric names at its cadence: diagnostics every 2 steps and at phase
  ends, phase-II terms in phase II) and its independent experts; evaluations at the end;
- lab: --lab-runs runs: one of --lab-cycles cycles x --lab-steps steps x --lab-keys keys
  (every key at every step), the others --small-steps steps x --small-keys keys each.
Page times come from Streamlit's AppTest (the page script as the server runs it, caches
cleared before the first run); the browser draw from a `streamlit run` server and headless
Chromium (Playwright), from navigation to the last chart drawn. Every figure is a median
of --repeats runs, except the browser draw (one cold draw, then one warm, as stated).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import _common as C  # environment, repo on the path; shared timing

from copd.common import names as N  # noqa: E402  (after _common set the path)
from copd.spec import presets  # noqa: E402
from storage import RunStore  # noqa: E402
from storage.logger import StoreLogger  # noqa: E402
from storage.migrate import head_revision  # noqa: E402
from storage.rollup import WIDTHS  # noqa: E402

with contextlib.suppress(ImportError):  # caches used outside a server warn on every call
    import streamlit.logger

    streamlit.logger.set_log_level("error")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
LAYOUT = 3  # bump when what a store holds changes, so cached stores are rebuilt

TARGETS = {  # seconds (issue 25)
    "live_draw_demo": 2.0,
    "live_draw_long": 3.0,
    "tick": 0.2,
    "runs_table": 0.5,
    "live_series": 0.3,
    "compare_50x4": 0.5,
}


# ---------------------------------------------------------------------- the metric names
def key_plan(branches: list[str]) -> dict[str, list[str]]:
    """The keys a CoPD run logs, by when: every step, phase II steps, diagnostics steps."""
    pairs = [f"{s}~{t}" for s in branches for t in branches if s != t]
    every = [N.PROGRESS]
    every += [f"time/{t}_s" for t in ("rollout", "forward", "update", "logging", "teacher")]
    phase2, diag = [], []
    for b in branches:
        every += [f"branch/{b}/{k}" for k in ("reward/mean", "loss/pg", "entropy", "grad_norm",
                                              "response_len", "clip_frac", "signal_frac")]  # fmt: skip
        for t in branches:
            if t != b:
                phase2 += [f"branch/{b}/{k}/{t}" for k in ("loss/opd", "opd/adv_mean",
                           "opd/reverse_kl", "reward_on", "clip_frac", "signal/adv_abs",
                           "signal/log_ratio", "signal/pos_frac")]  # fmt: skip
        phase2.append(f"branch/{b}/signal/adv_abs/grpo")
        diag += [f"base/{b}/{k}" for k in ("overlap_top1", "overlap_top5", "overlap_top10",
                                           "overlap_mass", "sym_kl")]  # fmt: skip
    for p in pairs:
        diag += [f"pair/{p}/{k}" for k in ("overlap_top1", "overlap_top5", "overlap_top10",
                                           "overlap_mass", "sym_kl", "entropy_gap")]  # fmt: skip
    diag += ["system/rss_mb", "system/cpu_percent", "time/diagnostics_s"]
    return {"every": every, "phase2": phase2, "diag": diag}


def _value(key: str, step: int) -> float:
    h = (hash(key) % 1000) / 1000.0
    return 0.5 + 0.4 * math.sin(step / 37.0 + 6.28 * h) + 0.05 * math.sin(step * 1.7 + h)


def _config(name: str, method: str, cycles: int, rl: int, opd: int, group: str | None) -> dict:
    cfg = presets.get("demo").to_dict()
    cfg.update(name=name, method=method, group=group)
    cfg["schedule"].update(cycles=cycles, rl_steps=rl, opd_steps=opd)
    return cfg


def write_run(store: RunStore, run_id: int, cfg: dict, plan: dict[str, list[str]],
              all_every_step: bool = False) -> int:  # fmt: skip
    """Log a run's metrics through StoreLogger on its schedule; the number of points."""
    sc = cfg["schedule"]
    rl, period = sc["rl_steps"], sc["rl_steps"] + sc["opd_steps"]
    total, diag_every = sc["cycles"] * period, 2
    copd = cfg["method"] == "copd"
    n = 0
    with StoreLogger(store, run_id, flush_every_n=50_000, background=False) as lg:
        for step in range(total + 1):
            cycle, pos = divmod(max(step - 1, 0), period)
            phase = "opd" if copd and pos >= rl else "rl"
            keys = list(plan["every"])
            if all_every_step or (phase == "opd"):
                keys += plan["phase2"]
            if all_every_step or step % diag_every == 0 or pos + 1 in (rl, period):
                keys += plan["diag"]
            values = {k: _value(k, step) for k in keys}
            values[N.PROGRESS] = step / total
            lg.log_metrics(values, step=step, cycle=cycle, phase=phase)
            n += len(values)
        for b in ("add", "rev", "merged"):
            lg.log_eval(b, "add", 0.5, 64, step=total)
            lg.log_eval(b, "rev", 0.4, 64, step=total)
        lg.log_event("finished", step=total)
    return n


def _finish(store: RunStore, run_id: int, running: bool = False) -> None:
    store.set_status(run_id, "running")
    if not running:
        store.set_status(run_id, "finished")


def build_demo(store: RunStore) -> dict:
    ids = {}
    for method in ("copd", "expert"):
        cfg = _config(f"{method}-demo", method, 8, 6, 4, "demo-1")
        run = store.create_run(cfg["name"], method, cfg, group="demo-1")
        write_run(store, run.id, cfg, key_plan(["add", "rev"]))
        _finish(store, run.id)
        ids[method] = run.id
    return {"live": ids["copd"], "compare": [ids["copd"], ids["expert"]]}


def build_lab(store: RunStore, a: argparse.Namespace) -> dict:
    """The long run first (its id is 1), then the small ones."""
    per_cycle = a.lab_steps // a.lab_cycles
    cfg = _config("long", "copd", a.lab_cycles, per_cycle * 6 // 10, per_cycle - per_cycle * 6 // 10,
                  None)  # fmt: skip
    named = key_plan(["add", "rev", "sort"])
    keys = named["every"] + named["phase2"] + named["diag"]  # 132 names, run/progress first
    keys += [f"branch/extra/k{i:03d}" for i in range(max(0, a.lab_keys - len(keys)))]
    plan = {"every": keys[: a.lab_keys], "phase2": [], "diag": []}
    long_run = store.create_run("long", "copd", cfg)
    t0 = time.perf_counter()
    n_long = write_run(store, long_run.id, cfg, plan, all_every_step=True)
    print(f"  long run: {n_long:,} points in {time.perf_counter() - t0:.0f} s", flush=True)
    _finish(store, long_run.id, running=True)
    small_plan = key_plan(["add", "rev"])
    small_plan = {"every": (small_plan["every"] + small_plan["diag"])[: a.small_keys],
                  "phase2": [], "diag": []}  # fmt: skip
    small = []
    t0 = time.perf_counter()
    for i in range(a.lab_runs - 1):
        cfg = _config(f"r{i}", "copd", 1, a.small_steps, 0, f"sweep-{i // 50}")
        run = store.create_run(cfg["name"], "copd", cfg, group=cfg["group"], seed=i % 3)
        write_run(store, run.id, cfg, small_plan, all_every_step=True)
        _finish(store, run.id)
        small.append(run.id)
    print(f"  {len(small)} small runs in {time.perf_counter() - t0:.0f} s", flush=True)
    return {"live": long_run.id, "compare": small[:50], "keys": len(keys)}


def open_store(cache: Path, name: str, scale: dict, build) -> tuple[RunStore, dict, str]:
    """The cached store of this scale, built first when missing or stale."""
    cache.mkdir(parents=True, exist_ok=True)
    db, meta_path = cache / f"{name}.db", cache / f"{name}.json"
    want = {"scale": scale, "schema": head_revision(), "layout": LAYOUT, "widths": list(WIDTHS)}
    if meta_path.exists() and db.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("want") == want:
            print(f"{name} store: cached {db} ({db.stat().st_size / 2**20:,.0f} MiB)")
            return RunStore.from_url(f"sqlite:///{db}"), meta["ids"], f"sqlite:///{db}"
    for p in cache.glob(f"{name}.db*"):
        p.unlink()
    url = f"sqlite:///{db}"
    store = RunStore.from_url(url)
    t0 = time.perf_counter()
    ids = build(store)
    rows = store.metric_count([r.id for r in store.list_runs()])
    took = time.perf_counter() - t0
    print(f"{name} store: built {rows:,} metric rows in {took:.0f} s ({rows / took:,.0f} rows/s), "
          f"{db.stat().st_size / 2**20:,.0f} MiB")  # fmt: skip
    meta_path.write_text(json.dumps({"want": want, "ids": ids, "rows": rows, "build_s": took}))
    return store, ids, url


# ---------------------------------------------------------------------- store reads, figures
def reads(store: RunStore, ids: dict, repeats: int) -> dict[str, float]:
    from app.dashboard.charts import select_keys
    from app.dashboard.live_view import live_signature
    from app.dashboard.queries import runs_frame
    from app.dashboard.signal_data import signal_keys
    from storage.queries import windowed_rows

    live = ids["live"]
    keys = store.metric_keys(live)
    groups = select_keys(keys)
    wanted = [k for g in groups.values() for k in g] + [N.PROGRESS] + list(signal_keys(keys))
    compare = ids["compare"]
    ckeys = [k for k in store.metric_keys(compare) if k.startswith("branch/")][:4]
    out = {
        "runs_table": C.median_time(lambda: runs_frame(store), repeats),
        "live_series": C.median_time(lambda: store.metric_series(live, keys, 500), repeats),
        "live_view_series": C.median_time(lambda: store.metric_series(live, wanted, 500), repeats),
        "compare_50x4": C.median_time(lambda: store.metric_series(compare, ckeys, 500), repeats),
        "data_version": C.median_time(lambda: store.data_version(live), repeats),
        # the Live page's auto-refresh tick: the run, then its view's signature (pages/live.py)
        "tick": C.median_time(lambda: live_signature(store.get_run(live), store.url), repeats),
    }
    # the anchor: the windowed downsampler over every row, as the store read before the
    # rollup, against the rollup's read, both over 10 of the run's keys
    ten = keys[:10]
    with store.db.session() as s:
        out["scan_10"] = C.median_time(
            lambda: windowed_rows(s, {(live, k) for k in ten}, 500), max(1, repeats // 3)
        )
    out["rollup_10"] = C.median_time(lambda: store.metric_series(live, ten, 500), repeats)
    out["live_keys"], out["compare_runs"] = len(keys), len(compare)
    return out


def figure_builds(store: RunStore, ids: dict, repeats: int) -> dict[str, float]:
    """The Live view's figures of its run, from data read once (figure time alone)."""
    from app.dashboard import figures
    from app.dashboard.charts import LINE_CHARTS, select_keys
    from app.dashboard.series import schedule_of, with_x
    from app.dashboard.signal_data import overlap_k_keys, signal_branches, signal_keys

    run = store.get_run(ids["live"])
    keys = store.metric_keys(run.id)
    groups = select_keys(keys)
    sched = schedule_of(run.config, run.method)
    df = with_x(store.metric_series(run.id, keys, 500), "step")

    def build() -> int:
        n = 0
        for chart in LINE_CHARTS:
            if groups[chart.group]:
                labels = chart.labels(groups[chart.group])
                d = df[df["key"].isin(labels)]
                figures.series_figure(d.assign(label=d["key"].map(labels)), title=chart.title,
                                      y_title=chart.y_title, log_y=chart.log_y,
                                      schedule=sched)  # fmt: skip
                n += 1
        panels = overlap_k_keys(keys, "pair/")
        if len(panels) >= 2:
            figures.overlap_k_figure(df, panels, schedule=sched, x="step")
            n += 1
        wanted = set(signal_keys(keys))
        for b in signal_branches(keys):
            figures.signal_figure(df[df["key"].isin(wanted)], b, schedule=sched, x="step")
            n += 1
        figures.timing_figure(df)
        return n + 1

    n = build()
    return {"figures": n, "figures_s": C.median_time(build, repeats)}


# ---------------------------------------------------------------------- pages (AppTest)
def page_times(url: str, ids: dict, repeats: int) -> dict[str, float]:
    """Server time of each page's script: the first run (caches cleared) and a refresh
    tick with no new rows (the Live view's fragment tick; the Runs table's)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ.update(COPD_DB_URL=url, COPD_SUPERVISE="0")
    entry = str(ROOT / "app" / "main.py")
    pages = {
        "live": ("live", {"run": str(ids["live"])}),
        "runs": ("runs", {}),
        "compare": ("compare", {"runs": ",".join(map(str, ids["compare"]))}),
    }
    out: dict[str, float] = {}
    for name, (page, params) in pages.items():
        first, tick = [], []
        for _ in range(repeats):
            st.cache_data.clear()
            st.cache_resource.clear()
            at = AppTest.from_file(entry, default_timeout=600)
            for k, v in params.items():
                at.query_params[k] = v
            at.run()
            t0 = time.perf_counter()
            at.switch_page(f"../pages/{page}.py").run()
            first.append(time.perf_counter() - t0)
            if at.exception:
                raise RuntimeError(f"{page}: {at.exception[0].message}")
            t0 = time.perf_counter()
            at.run()
            tick.append(time.perf_counter() - t0)
            out[f"{name}_charts"] = len(at.get("plotly_chart"))
        out[f"{name}_first"], out[f"{name}_tick"] = C.median(first), C.median(tick)
    st.cache_data.clear()
    st.cache_resource.clear()
    return out


# ---------------------------------------------------------------------- the browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ONE_CHART_APP = """import plotly.graph_objects as go
import streamlit as st

st.title("one chart")
st.plotly_chart(go.Figure(go.Scatter(y=[1, 2, 3])), key="c")
"""


@contextlib.contextmanager
def dashboard(
    url: str, home: Path, script: Path | None = None, supervise: bool = False, copd: bool = False
):
    """A `streamlit run` server of the dashboard (or of `script`) on a free port; with
    `supervise`, its supervisor starts the runs it queues (runs folder under `home`); with
    `copd`, the README's `copd dashboard` instead (its own supervisor process beside it)."""
    port = _free_port()
    env = dict(os.environ, COPD_DB_URL=url, COPD_HOME=str(home), COPD_SUPERVISE=str(int(supervise)))
    log = open(home / "streamlit.log", "w")  # noqa: SIM115
    argv = [sys.executable, "-m", "streamlit", "run", str(script or ROOT / "app" / "main.py"),
            "--server.headless", "true", "--server.address", "127.0.0.1",
            "--server.port", str(port), "--browser.gatherUsageStats", "false"]  # fmt: skip
    if copd:
        argv = [sys.executable, "-m", "copd", "dashboard", "--db", url, "--port", str(port)]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                    break
            time.sleep(0.3)
        else:
            raise RuntimeError("streamlit did not start: " + (home / "streamlit.log").read_text())
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        log.close()


STATE = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  return [app ? app.getAttribute('data-test-script-state') : null,
          plots.filter(gd => gd.querySelector('.main-svg')).length];
}"""


def _time_draw(page, url: str, charts: int, timeout_s: float = 300.0) -> dict[str, float]:
    """Navigate and poll: seconds until the script has run (state back to notRunning with
    a chart on the page) and until `charts` Plotly charts are drawn."""
    t0 = time.perf_counter()
    page.goto(url)
    script = None
    while time.perf_counter() - t0 < timeout_s:
        state, drawn = page.evaluate(STATE)
        now = time.perf_counter() - t0
        if script is None and state == "notRunning" and drawn:
            script = now
        if state == "notRunning" and drawn >= charts:
            return {"script_s": script or now, "drawn_s": now}
        page.wait_for_timeout(50)
    raise RuntimeError(f"{url}: {charts} charts not drawn within {timeout_s:.0f} s")


def browser_draws(url: str, run_id: int, charts: int, home: Path) -> dict[str, float]:
    """Seconds from navigating to /live?run=ID until the script has finished and `charts`
    Plotly charts are drawn: on a freshly started server (cold) and on a second page load
    (the server's query caches warm, the browser session new)."""
    from playwright.sync_api import sync_playwright

    home.mkdir(parents=True, exist_ok=True)
    out = {}
    with dashboard(url, home) as base, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        page.goto(base)  # the server's first script run and the app's assets, not timed
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                               timeout=120_000)  # fmt: skip
        for name in ("cold", "warm"):
            page2 = browser.new_page(viewport={"width": 1400, "height": 2400})
            t = _time_draw(page2, f"{base}/live?run={run_id}", charts)
            out[name], out[f"{name}_script"] = t["drawn_s"], t["script_s"]
            page2.close()
        # the anchor: a page of the same app with no chart (the frontend's own load, the
        # session's start and a short script), drawn in a new tab the same way
        page2 = browser.new_page(viewport={"width": 1400, "height": 2400})
        t0 = time.perf_counter()
        page2.goto(f"{base}/runs")
        page2.wait_for_function(
            """() => [...document.querySelectorAll('h1')].some(h => h.textContent.includes('Runs'))
                  && document.querySelector('[data-testid="stApp"]')
                       .getAttribute('data-test-script-state') === 'notRunning'""",
            timeout=300_000,
            polling=50,
        )
        out["no_chart_page"] = time.perf_counter() - t0
        page2.close()
        browser.close()
    # the other anchor: a Streamlit app of one three-point Plotly chart, drawn the same way
    # (the frontend's and plotly.js's own load in a new tab)
    app = home / "one_chart.py"
    app.write_text(ONE_CHART_APP)
    with dashboard(url, home, script=app) as base, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new", "--disable-gpu"]
        )
        page = browser.new_page()
        _time_draw(page, base, 1)  # the server's first run, not timed
        page2 = browser.new_page(viewport={"width": 1400, "height": 2400})
        out["one_chart_app"] = _time_draw(page2, base, 1)["drawn_s"]
        browser.close()
    return out


# ---------------------------------------------------------------------- main
def run_scale(name: str, a: argparse.Namespace) -> dict:
    if name == "demo":
        scale = {"demo": True}
        store, ids, url = open_store(Path(a.cache), "demo", scale, build_demo)
    else:
        scale = {k: getattr(a, k) for k in ("lab_runs", "lab_cycles", "lab_steps", "lab_keys",
                                            "small_steps", "small_keys")}  # fmt: skip
        store, ids, url = open_store(Path(a.cache), "lab", scale, lambda s: build_lab(s, a))
    if a.build_only:
        store.close()
        return {"scale": scale, "built": url}
    res: dict = {"scale": scale, "rows": store.metric_count([r.id for r in store.list_runs()]),
                 "runs": len(store.list_runs())}  # fmt: skip
    print(C.load_line(), flush=True)
    res["reads"] = reads(store, ids, a.repeats)
    res["figures"] = figure_builds(store, ids, a.repeats)
    store.close()
    res["pages"] = page_times(url, ids, a.repeats)
    if not a.no_browser:
        if Path(CHROMIUM).exists():
            res["browser"] = browser_draws(
                url, ids["live"], res["pages"]["live_charts"], Path(a.cache) / f"{name}-home"
            )
        else:
            res["browser"] = {"skipped": f"{CHROMIUM} missing"}
    res["load"] = C.load_line()
    return res


def report(name: str, r: dict) -> list[str]:
    rd, fg, pg, br = r["reads"], r["figures"], r["pages"], r.get("browser", {})
    long = name == "lab"

    def row(what: str, value: float | None, target: str | None) -> str:
        v = "n/a" if value is None else f"{value:8.3f} s"
        t = (
            ""
            if target is None
            else f"<= {TARGETS[target]:.1f} s  "
            + ("n/a" if value is None else C.verdict(value, TARGETS[target]))
        )
        return f"  {what:<58} {v:>10}   {t}"

    draw = "live_draw_long" if long else "live_draw_demo"
    return [
        f"{name}: {r['runs']} runs, {r['rows']:,} metric rows; {r['load']}",
        row("browser: Live view first draw (fresh server)", br.get("cold"), draw),
        row(
            "browser: anchor, the Runs page (no chart) in a new tab", br.get("no_chart_page"), None
        ),
        row(
            "browser: anchor, a one-chart Streamlit app in a new tab", br.get("one_chart_app"), None
        ),
        row("browser: Live view draw, second page load", br.get("warm"), None),
        row(f"page: Live first run ({pg['live_charts']} charts), server", pg["live_first"], None),
        row("tick: Live auto-refresh with no new rows (pages/live.py watch)", rd["tick"], "tick"),
        row("page: Live rerun, data unchanged (nothing rebuilt), server", pg["live_tick"], None),
        row("page: Runs first run, server", pg["runs_first"], None),
        row("page: Runs refresh tick, server", pg["runs_tick"], None),
        row(
            f"page: Compare of {rd['compare_runs']} runs first run, server",
            pg["compare_first"],
            None,
        ),  # fmt: skip
        row(f"read: Runs page table ({r['runs']} runs)", rd["runs_table"], "runs_table"),
        row(
            f"read: Live series, all {rd['live_keys']} keys x 500 points",
            rd["live_series"],
            "live_series",
        ),  # fmt: skip
        row("read: the Live view's own series", rd["live_view_series"], None),
        row(
            f"read: Compare {rd['compare_runs']} runs x 4 keys", rd["compare_50x4"], "compare_50x4"
        ),  # fmt: skip
        row("read: data signature (a tick's only read)", rd["data_version"], None),
        row("read: 10 keys x 500 points from the rollup", rd["rollup_10"], None),
        row(
            f"read: the same by a scan of every row (before), {rd['scan_10'] / rd['rollup_10']:.0f}x",
            rd["scan_10"],
            None,
        ),  # fmt: skip
        row(f"figures: the Live view's {fg['figures']} figures", fg["figures_s"], None),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=["demo", "lab", "both"], default="both")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", default="/tmp/copd-bench-p7")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument(
        "--build-only", action="store_true", help="build (or find) the stores, time nothing"
    )
    ap.add_argument("--lab-runs", type=int, default=1000)
    ap.add_argument("--lab-cycles", type=int, default=100)
    ap.add_argument("--lab-steps", type=int, default=10_000)
    ap.add_argument("--lab-keys", type=int, default=200)
    ap.add_argument("--small-steps", type=int, default=100)
    ap.add_argument("--small-keys", type=int, default=20)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.lab_steps % a.lab_cycles or a.lab_steps // a.lab_cycles < 2:
        ap.error("--lab-steps must be a multiple of --lab-cycles, at least 2 steps per cycle")
    print(C.machine_line(threads=False))
    print(f"start: {C.load_line()}", flush=True)
    results, lines = {}, []
    for name in ("demo", "lab") if a.scale == "both" else (a.scale,):
        results[name] = run_scale(name, a)
        if not a.build_only:
            lines += report(name, results[name])
    print("\n" + "\n".join(lines))
    C.write_json(a.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
