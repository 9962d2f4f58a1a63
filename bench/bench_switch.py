"""In-app page switches in a real browser: from a click on a sidebar link to the page drawn.

    .venv/bin/python bench/bench_switch.py --db sqlite:///PATH [--repeats 3]

A `streamlit run` server of the dashboard on the store PATH (no supervisor), headless
Chromium opens Home once, then clicks each sidebar link in turn (Launch, Runs, Live run
view, Compare, Studies, Home) and times, per click, the seconds until the page's title is
shown, the script has finished and its Plotly charts (if any) are drawn. Printed per page as
the median of --repeats rounds. Target: an in-app page switch under 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import _common as C  # environment, repo on the path; shared timing
from dashboard import CHROMIUM, dashboard

SWITCH_S = 1.0
PAGES = [  # sidebar label -> a heading the page shows once drawn
    ("Launch", "Launch"),
    ("Runs", "Runs"),
    ("Live run view", "Live run view"),
    ("Compare", "Compare"),
    ("Studies", "Studies"),
    ("Home", "copd"),
]
DRAWN = """([title]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (![...document.querySelectorAll('h1')].some(h => h.textContent.includes(title)))
    return false;
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  return plots.every(gd => gd.querySelector('.main-svg'));
}"""


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    print(C.machine_line())
    times: dict[str, list[float]] = {label: [] for label, _ in PAGES}
    home = Path(tempfile.mkdtemp(prefix="copd-bench-switch-"))
    with dashboard(a.db, home) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--headless=new", "--disable-gpu"])  # fmt: skip
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.goto(base)
        page.wait_for_function(DRAWN, arg=["copd"], timeout=120_000)
        for _ in range(a.repeats + 1):  # the first round warms the server's caches: not kept
            for label, title in PAGES:
                link = page.locator('[data-testid="stSidebarNav"] a', has_text=label).first
                t0 = time.perf_counter()
                link.click()
                page.wait_for_timeout(100)  # the click's rerun starts
                page.wait_for_function(DRAWN, arg=[title], timeout=120_000, polling=20)
                times[label].append(time.perf_counter() - t0)
        browser.close()
    for label, ts in times.items():
        med = statistics.median(ts[1:])
        print(f"{label:<14} in-app switch {med:.2f} s (median of {len(ts) - 1}; target "
              f"{SWITCH_S:g} s)  ({C.load_line()})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
