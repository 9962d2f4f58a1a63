"""From a click on "Launch the demo" to feedback and to the first chart, in a real browser.

    .venv/bin/python bench/bench_demo_launch.py [--repeats 2]

`copd dashboard` (the README's command: the server and its supervisor process; `--via
streamlit`: a `streamlit run` server with its supervisor thread), on an empty store, the real
trainer behind it (the demo preset on the shipped base model); headless Chromium opens
Home and clicks "Launch the demo". Printed per repeat and as medians:
- feedback: seconds from the click until the page says something happened (the status
  line that names the runs being queued, or the Live view);
- first chart: seconds from the click until the Live view draws a chart with a point of
  the CoPD run (its step-0 overlap); on the way, when the Live view opened and when the
  trainer's first row reached the store;
- `--settle S`: wait S seconds after the page is ready before clicking (the dashboard's
  standby trainer, app/control/launch_standby.py, imports torch for its first seconds);
- anchor: a Streamlit app of one three-point Plotly chart drawn in a new tab, same server
  kind, same machine, same minute (what any Streamlit page costs here).
Targets (issue 38): feedback within 1 s, first chart within 8 s, on a 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import _common as C  # environment, repo on the path; shared timing
from dashboard import CHROMIUM, _time_draw, dashboard

from storage import RunStore  # noqa: E402

FEEDBACK_S, FIRST_CHART_S = 1.0, 8.0

FIRST_POINT = """() => {
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const title = (gd.layout && gd.layout.title && gd.layout.title.text) || '';
    if (!title.includes('overlap')) continue;
    for (const t of gd._fullData || []) {
      if (!t.y || (t.name || '').startsWith('phase')) continue;
      for (const y of t.y) if (Number.isFinite(y)) return true;
    }
  }
  return false;
}"""

FEEDBACK = """() => location.pathname.endsWith('/live')
  || document.body.innerText.includes('Queuing the demo')"""


def one_click(page, base: str, url: str, settle_s: float = 0.0) -> dict[str, float]:
    page.goto(base)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                           timeout=120_000)  # fmt: skip
    button = page.get_by_role("button", name="Launch the demo").first
    button.wait_for(timeout=60_000)
    page.wait_for_timeout(settle_s * 1000)  # a user reading the page before the click
    t0 = time.perf_counter()
    button.click()
    page.wait_for_function(FEEDBACK, timeout=60_000, polling=20)
    out = {"feedback_s": time.perf_counter() - t0}
    while "live_view_s" not in out or "first_row_s" not in out:  # where the time goes
        now = time.perf_counter() - t0
        if "live_view_s" not in out and page.url.split("?")[0].endswith("/live"):
            out["live_view_s"] = now
        if "first_row_s" not in out and first_row(url):
            out["first_row_s"] = now
        if now > 300:
            raise RuntimeError("no Live view or no first row in 300 s")
        page.wait_for_timeout(50)
    page.wait_for_function(FIRST_POINT, timeout=300_000, polling=50)
    out["first_chart_s"] = time.perf_counter() - t0
    return out


def first_row(url: str) -> bool:
    """Whether the CoPD run of the demo has a metric row in the store."""
    store = RunStore.from_url(url)
    try:
        copd = [r for r in store.list_runs() if r.method == "copd"]
        return bool(copd and store.metric_keys(copd[0].id))
    finally:
        store.close()


def stop_runs(url: str) -> None:
    import os
    import signal

    store = RunStore.from_url(url)
    for r in store.list_runs():
        if r.pid and not r.is_terminal:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(r.pid, signal.SIGKILL)
    store.close()


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--via", choices=["copd", "streamlit"], default="copd",
                    help="copd: the README's `copd dashboard` (a supervisor process beside the "
                         "server, woken by the click); streamlit: `streamlit run` with the "
                         "supervisor thread in the server")  # fmt: skip
    ap.add_argument("--settle", type=float, default=0.0,
                    help="seconds between the page being ready and the click (0: at once; the "
                         "dashboard's standby trainer is still importing for the first ~5 s)")  # fmt: skip
    a = ap.parse_args(argv)
    print(C.machine_line())
    rows = []
    for i in range(a.repeats):
        home = Path(tempfile.mkdtemp(prefix="copd-bench-demo-"))
        url = f"sqlite:///{home / 'copd.db'}"
        try:
            served = dashboard(url, home, supervise=True, copd=a.via == "copd")
            with served as base, sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM,
                                            args=["--no-sandbox", "--headless=new", "--disable-gpu"])  # fmt: skip
                page = browser.new_page(viewport={"width": 1400, "height": 2000})
                r = one_click(page, base, url, a.settle)
                browser.close()
                stop_runs(url)
            (home / "one_chart.py").write_text(
                "import plotly.graph_objects as go\nimport streamlit as st\n"
                "st.title('one chart')\nst.plotly_chart(go.Figure(go.Scatter(y=[1, 2, 3])))\n"
            )
            with dashboard(url, home, script=home / "one_chart.py") as base, sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM,
                                            args=["--no-sandbox", "--headless=new", "--disable-gpu"])  # fmt: skip
                _time_draw(browser.new_page(), base, 1)  # the server's first run: not timed
                r["anchor_s"] = _time_draw(browser.new_page(), base, 1)["drawn_s"]
                browser.close()
        finally:
            stop_runs(url)
            shutil.rmtree(home, ignore_errors=True)
        rows.append(r)
        print(f"repeat {i + 1}: feedback {r['feedback_s']:.2f} s, Live view open "
              f"{r['live_view_s']:.2f} s, first row in the store {r['first_row_s']:.2f} s, first "
              f"chart {r['first_chart_s']:.2f} s, one-chart app {r['anchor_s']:.2f} s  "
              f"({C.load_line()})")  # fmt: skip
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"median of {len(rows)}: feedback {med['feedback_s']:.2f} s (target {FEEDBACK_S:g} s), "
          f"first chart {med['first_chart_s']:.2f} s (target {FIRST_CHART_S:g} s), one-chart "
          f"app {med['anchor_s']:.2f} s; first chart / one-chart app = "
          f"{med['first_chart_s'] / med['anchor_s']:.1f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
