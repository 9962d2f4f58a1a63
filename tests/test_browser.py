"""End-to-end: a real `streamlit run` server driven by headless Chromium (Playwright).

Launches the demo preset from the Launch form with a tiny budget, sees it running on the
Runs page, waits for the live view's overlap chart to draw points, opens Compare, and
saves a screenshot of every page to `test-artifacts/screenshots/` (gitignored); the live
view's also goes to `docs/screenshots/live.png` for the README.

    .venv/bin/pytest -m browser tests/test_browser.py      # ~2-3 min on 2 CPU cores

Needs the system Chromium (`apt-get install -y chromium`) and the playwright package; the
test skips with the reason when either is missing (Playwright's own browser download
does not work offline).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SHOTS = ROOT / "test-artifacts" / "screenshots"
README_SHOT = ROOT / "docs" / "screenshots" / "live.png"
# The smallest demo that still runs both phases, diagnostics and an evaluation (~1 min).
TINY = {
    "model": {"demo_hidden": 32, "demo_layers": 1, "demo_warmup_steps": 20},
    "grpo": {"group_size": 2, "prompts_per_step": 2},
    "opd": {"cross_prompts_per_step": 2, "cross_group_size": 2},
    "schedule": {"cycles": 2, "rl_steps": 2, "opd_steps": 1, "diag_every": 1},
    "eval": {"n_prompts": 8},
    "diagnostics": {"n_prompts": 2},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: install it with `apt-get install -y chromium`")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    port = _free_port()
    db = f"sqlite:///{tmp_path / 'copd.db'}"
    env = dict(
        os.environ,
        COPD_DB_URL=db,
        COPD_HOME=str(tmp_path / "home"),
        COPD_SUPERVISE="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )
    log = open(tmp_path / "streamlit.log", "w")  # noqa: SIM115  (closed after the server stops)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app" / "main.py"),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--browser.gatherUsageStats",
            "false",
        ],  # fmt: skip
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not become healthy: " + (tmp_path / "streamlit.log").read_text())
    yield base, db
    os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(15)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()
    _stop_trainers(db)


def _stop_trainers(db: str) -> None:
    """Trainers run in their own sessions and outlive the server: end ours."""
    from storage import RunStore

    for run in RunStore.from_url(db).list_runs(status="running"):
        if run.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.pid, signal.SIGKILL)


def _settle(page, timeout: float = 60_000) -> None:
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout
    )


def _set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True).filter(visible=True).first
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_timeout(300)
    _settle(page)


def _overlap_points(page) -> int:
    """Finite y values drawn on the overlap chart (read from the Plotly figure's data)."""
    return page.evaluate(
        """() => {
        for (const gd of document.querySelectorAll('.js-plotly-plot')) {
          const title = (gd.layout && gd.layout.title && gd.layout.title.text) || '';
          if (!title.includes('Top-10 overlap')) continue;
          let n = 0;
          // _fullData holds decoded arrays (plotly sends numpy data base64-encoded)
          for (const t of gd._fullData || gd.data || []) {
            if (!t.y || typeof t.y[Symbol.iterator] !== 'function') continue;
            for (const y of t.y) if (Number.isFinite(y)) n++;
          }
          return n;
        }
        return 0;
      }"""
    )


def test_launch_watch_compare(server):
    from playwright.sync_api import expect, sync_playwright

    base, db = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        page.goto(base)
        _settle(page)
        expect(page.get_by_text("No runs yet").first).to_be_visible()
        page.screenshot(path=str(SHOTS / "home.png"))

        page.goto(f"{base}/launch")
        _settle(page)
        for tab, fields in TINY.items():
            page.get_by_role("tab", name=tab, exact=True).click()
            for label, value in fields.items():
                _set_number(page, label, value)
        page.screenshot(path=str(SHOTS / "launch.png"))
        page.get_by_role("button", name="Launch", exact=True).click()
        expect(page.get_by_text("queued.").first).to_be_visible(timeout=30_000)

        page.goto(f"{base}/runs")
        _settle(page)
        expect(page.get_by_test_id("stMetricValue").filter(has_text="running").first).to_be_visible(
            timeout=60_000
        )
        page.screenshot(path=str(SHOTS / "runs.png"))

        page.goto(f"{base}/live")
        page.wait_for_selector('[data-testid="stApp"]')
        from storage import RunStore

        store = RunStore.from_url(db)
        # Generous: on a busy 2-core machine the tiny run's first diagnostics can take minutes.
        deadline = time.monotonic() + 420
        while _overlap_points(page) == 0 and time.monotonic() < deadline:
            if store.list_runs()[0].status in ("failed", "crashed"):
                break
            page.wait_for_timeout(2000)
        if _overlap_points(page) == 0:
            page.screenshot(path=str(SHOTS / "live-failed.png"))
            run = store.list_runs()[0]
            log = next(Path(run.run_dir).glob("*.log"), None) if run.run_dir else None
            tail = log.read_text()[-3000:] if log else "(no log)"
            pytest.fail(
                f"the overlap chart never drew a point; run {run.status}: {run.error}\n{tail}"
            )

        # Let the run finish (auto-refresh keeps the view current) for a complete picture.
        while time.monotonic() < deadline and store.list_runs()[0].status == "running":
            page.wait_for_timeout(3000)
        page.reload()
        _settle(page)
        page.wait_for_timeout(3000)  # plotly draws after the script finishes
        page.screenshot(path=str(SHOTS / "live.png"))
        if os.environ.get("COPD_UPDATE_README_SHOT") == "1":  # tests never touch tracked files
            README_SHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(SHOTS / "live.png", README_SHOT)

        page.goto(f"{base}/compare")
        _settle(page)
        expect(page.get_by_text("Compare runs").first).to_be_visible()
        page.screenshot(path=str(SHOTS / "compare.png"))
        browser.close()
    assert store.list_runs()[0].status in ("running", "finished")
