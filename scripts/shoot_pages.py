"""Screenshots of every dashboard page from an existing run store, e.g. a real demo group,
for docs/screenshots/ (headless Chromium through Playwright, as tests/test_browser.py).

    .venv/bin/python scripts/shoot_pages.py --db sqlite:////path/copd.db --out docs/screenshots

The store is copied first (a SQLite file; the dashboard runs with no supervisor), so nothing
is written to it. Pages: home, launch, runs, live (the group's CoPD run), compare (its
group), studies, each 1400 x 1800. Needs /usr/bin/chromium and the playwright package.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, COPD_DB_URL=db, COPD_HOME=str(home), COPD_SUPERVISE="0",
               HF_HUB_OFFLINE="1")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"),
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
    shutil.copy(src, tmp / "copd.db")
    db = f"sqlite:///{tmp / 'copd.db'}"
    runs = RunStore.from_url(db).list_runs()
    copd = next((r for r in runs if r.method == "copd" and r.group), None)
    if copd is None:
        raise SystemExit("the store holds no CoPD run in a group; launch the demo first")
    urls = {
        "home": "", "launch": "launch", "runs": "runs", "live": f"live?run={copd.id}",
        "compare": f"compare?group={copd.group}", "studies": "studies",
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proc, base = serve(db, tmp / "home", tmp / "streamlit.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new", "--disable-gpu"]
            )
            page = browser.new_page(viewport=SIZE)
            for name, path in urls.items():
                page.goto(f"{base}/{path}")
                settle(page)
                page.screenshot(path=str(out / f"{name}.png"))
                print(f"{out / name}.png  {base}/{path}")
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
