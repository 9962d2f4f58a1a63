"""Screenshots of every dashboard page from an existing run store, e.g. a real demo group,
for docs/screenshots/ (headless Chromium through Playwright, as tests/test_browser.py), and
each page's first draw in a new tab against a one-chart Streamlit app.

    .venv/bin/python scripts/shoot_pages.py --db sqlite:////path/copd.db --out docs/screenshots

The store is copied first (a SQLite file; the dashboard runs with no supervisor), so nothing
is written to it. Pages: home, launch, runs, live (a CoPD run of a group holding independent
experts, else any grouped CoPD run), compare (that group: results, retention), compare-grid
(a group whose runs differ in config fields: the grid view, parallel coordinates, when the
store has one), studies, each 1400 x 1800. Printed per page: seconds from opening it in a
new tab until the script has run and every chart on it is drawn, and the same for a
Streamlit app of one three-point Plotly chart on the same machine (the anchor). Needs
/usr/bin/chromium and the playwright package.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
SIZE = {"width": 1400, "height": 1800}


def serve(db: str, home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`streamlit run app/main.py` on a free port; returns the process and its address."""
    return serve_script(ROOT / "app" / "main.py", log, db=db, home=home)


def serve_script(
    script: Path, log: Path, db: str = "", home: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """`streamlit run SCRIPT` on a free port; returns the process and its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, COPD_DB_URL=db, COPD_HOME=str(home or log.parent),
               COPD_SUPERVISE="0", HF_HUB_OFFLINE="1")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script),
         "--server.headless", "true", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(240):
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                return proc, base
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit(f"streamlit did not start; see {log}")


def settle(page) -> None:
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                           timeout=120_000)  # fmt: skip
    page.wait_for_timeout(3000)  # plotly draws after the script finishes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True, help="sqlite:///PATH of the store to show")
    ap.add_argument("--out", default="docs/screenshots")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from storage import RunStore

    tmp = Path(tempfile.mkdtemp(prefix="copd-shots-"))
    src = Path(args.db.removeprefix("sqlite:///"))
    with sqlite3.connect(src) as live, sqlite3.connect(tmp / "copd.db") as copy:
        live.backup(copy)  # with what its WAL holds (a file copy would miss the last writes)
    db = f"sqlite:///{tmp / 'copd.db'}"
    runs = RunStore.from_url(db).list_runs()
    with_experts = {r.group for r in runs if r.method == "expert" and r.group}
    grouped = [r for r in runs if r.method == "copd" and r.group]
    copd = next((r for r in grouped if r.group in with_experts), grouped[0] if grouped else None)
    if copd is None:
        raise SystemExit("the store holds no CoPD run in a group; launch the demo first")
    urls = {
        "home": "", "launch": "launch", "runs": "runs", "live": f"live?run={copd.id}",
        "compare": f"compare?group={copd.group}", "studies": "studies",
    }  # fmt: skip
    sweep = next((g for g in {r.group for r in grouped} if g not in with_experts), None)
    if sweep:
        urls["compare-grid"] = f"compare?group={sweep}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proc, base = serve(db, tmp / "home", tmp / "streamlit.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new", "--disable-gpu"]
            )
            warm = browser.new_page(viewport=SIZE)
            warm.goto(base)  # the server's first script run: not timed
            settle(warm)
            for name, path in urls.items():
                page = browser.new_page(viewport=SIZE)  # a new tab, as a link opens
                seconds = first_draw(page, f"{base}/{path}")
                settle(page)
                page.screenshot(path=str(out / f"{name}.png"))
                for shot, text in BELOW_THE_FOLD.get(name, ()):  # scrolled to a section
                    target = page.get_by_text(text).first
                    if target.count():
                        target.scroll_into_view_if_needed()
                        page.wait_for_timeout(1500)
                        page.screenshot(path=str(out / f"{shot}.png"))
                        print(f"{'':13s} {out / shot}.png  (scrolled to {text!r})")
                print(f"{name:13s} first draw {seconds:5.2f} s  {out / name}.png  {base}/{path}")
                page.close()
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
    one_chart_anchor(tmp)


# Sections below the fold of a page, shot scrolled to: (file name, text that heads it).
BELOW_THE_FOLD = {
    "compare": (("compare-benchmarks", "Benchmarks: columns grouped"),
                ("compare-retention", "Retention: each domain")),
    "compare-grid": (("compare-grid-view", "Grid sweep: final score"),
                     ("compare-parcoords", "Every run: swept fields")),
}  # fmt: skip

ONE_CHART_APP = """import plotly.graph_objects as go
import streamlit as st

st.title("one chart")
st.plotly_chart(go.Figure(go.Scatter(y=[1, 2, 3])), key="c")
"""

DRAWN = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const ready = app && app.getAttribute('data-test-script-state') === 'notRunning'
    && document.querySelector('h1') !== null;
  return ready && plots.every(gd => gd.querySelector('.main-svg'));
}"""


def first_draw(page, url: str) -> float:
    """Seconds from opening `url` until the script has run and every chart on the page is
    drawn (held for 300 ms, so a chart that appears late counts)."""
    t0 = time.perf_counter()
    page.goto(url)
    since = None
    while time.perf_counter() - t0 < 300:
        if page.evaluate(DRAWN):
            since = since or time.perf_counter()
            if time.perf_counter() - since >= 0.3:
                return since - t0
        else:
            since = None
        page.wait_for_timeout(50)
    raise SystemExit(f"{url} was not drawn within 300 s")


def one_chart_anchor(tmp: Path) -> None:
    """The first draw of a one-chart Streamlit app in a new tab (the frontend's, the
    session's and plotly.js's own cost on this machine)."""
    from playwright.sync_api import sync_playwright

    app = tmp / "one_chart.py"
    app.write_text(ONE_CHART_APP)
    proc, base = serve_script(app, tmp / "anchor.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new", "--disable-gpu"]
            )
            first_draw(browser.new_page(viewport=SIZE), base)  # the server's first run
            seconds = first_draw(browser.new_page(viewport=SIZE), base)
            print(f"{'one-chart app':13s} first draw {seconds:5.2f} s  (the anchor)")
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
