"""End-to-end: a real `streamlit run` server driven by headless Chromium (Playwright).

- the first run: Home -> "Launch the demo" queues the demo CoPD run and the independent
  experts; the Live view opens on them and overlays both methods' curves (the trainer is
  tests/fake_copd_trainer.py, which logs the real metric names on the run's schedule in
  seconds; the charts are the point here);
- links: `live?run=ID` and `compare?runs=A,B` open on what they name (seeded store);
- alerts: a run that logs a NaN reward gets an alert on Home and in its Live view;
- (slow) the Launch form with the real trainer and a tiny budget, through Runs, Live and
  Compare.

Screenshots of every page go to `test-artifacts/screenshots/` (gitignored); with
COPD_UPDATE_README_SHOT=1 the first-run pages also go to `docs/screenshots/`.

    .venv/bin/pytest -m browser tests/test_browser.py      # ~1 min on 2 CPU cores (+ slow)

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


FAKE_TRAINER = f"{sys.executable} {ROOT / 'tests' / 'fake_copd_trainer.py'}"
DOC_SHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture
def server(tmp_path):
    yield from _server(tmp_path)


# COPD_REAL_DEMO=1: the first-run test drives the real trainer (the full demo preset, both
# runs; ~10-20 min on 2 cores), e.g. to refresh docs/screenshots/ from a real demo group.
REAL_DEMO = os.environ.get("COPD_REAL_DEMO") == "1"
PATIENCE = 12 if REAL_DEMO else 1  # deadlines scale with it


@pytest.fixture
def fake_server(tmp_path):
    """The dashboard with the fake CoPD trainer behind its launcher (the real one with
    COPD_REAL_DEMO=1)."""
    if REAL_DEMO:
        yield from _server(tmp_path)
    else:
        yield from _server(tmp_path, COPD_TRAINER=FAKE_TRAINER, FAKE_STEP_S="0.05")


@pytest.fixture
def seeded_server(tmp_path):
    """The dashboard on a store seeded by tests/seed.py (no supervisor: nothing changes)."""
    from tests.seed import seed_store

    db = f"sqlite:///{tmp_path / 'copd.db'}"
    ids = seed_store(db)
    for base, _ in _server(tmp_path, COPD_SUPERVISE="0"):
        yield base, ids


def _server(tmp_path, **extra_env):
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
    env.update(extra_env)
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


def _open_list(page, label: str) -> None:
    """Open the selectbox `label`'s list. Scrolled into view first: when the click itself
    scrolled the page to reach a box below the fold, the scroll could land after the list
    opened and close it (Base Web closes it on scroll), leaving the box focused with no
    option to pick (seen in CI; 5 of 6 first clicks on the Runs page's picker here)."""
    box = page.get_by_role("combobox", name=label)
    box.scroll_into_view_if_needed()
    box.click()


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


@pytest.mark.slow
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


def _traces(page, title_part: str) -> dict[str, int]:
    """Trace name -> finite y values drawn, over the Plotly charts whose title holds
    `title_part` (read from the figures' decoded data)."""
    return page.evaluate(
        """(part) => {
        const out = {};
        for (const gd of document.querySelectorAll('.js-plotly-plot')) {
          const title = (gd.layout && gd.layout.title && gd.layout.title.text) || '';
          if (!title.includes(part)) continue;
          for (const t of gd._fullData || gd.data || []) {
            if (!t.y || typeof t.y[Symbol.iterator] !== 'function') continue;
            let n = 0;
            for (const y of t.y) if (Number.isFinite(y)) n++;
            out[t.name] = (out[t.name] || 0) + n;
          }
        }
        return out;
      }""",
        title_part,
    )


def _shoot(page, name: str, docs: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    if docs and os.environ.get("COPD_UPDATE_README_SHOT") == "1":  # tests never touch tracked files
        DOC_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHOTS / f"{name}.png", DOC_SHOTS / f"{name}.png")


def _browser(p):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    return browser, browser.new_page(viewport={"width": 1400, "height": 1800})


def test_first_run_home_demo_overlays_copd_and_experts_live(fake_server):
    """Exactly the README's path: Home -> Launch the demo -> the Live view shows both runs
    of the group, and the overlay draws CoPD's and the independent experts' curves."""
    import re

    from playwright.sync_api import expect, sync_playwright

    from storage import RunStore

    base, db = fake_server
    with sync_playwright() as p:
        browser, page = _browser(p)
        page.goto(base)
        _settle(page)
        _shoot(page, "home-empty")
        page.get_by_role("button", name="Launch the demo").click()
        page.wait_for_url(re.compile(r"/live\?run=\d+"), timeout=60_000)
        runs = sorted(RunStore.from_url(db).list_runs(), key=lambda r: r.id)
        assert [r.method for r in runs] == ["copd", "expert"]
        assert runs[0].group == runs[1].group and runs[0].seed == runs[1].seed
        expect(page.get_by_text("CoPD vs independent experts").first).to_be_visible(timeout=60_000)
        deadline = time.monotonic() + 180 * PATIENCE
        drawn: dict[str, int] = {}
        while time.monotonic() < deadline:
            drawn = _traces(
                page,
                "Top-10 overlap by method",
            )
            # the experts measure at CoPD's phase ends: 2 per cycle (+ step 0)
            if drawn.get("CoPD", 0) >= 10 and drawn.get("independent experts", 0) >= 10:
                break
            page.wait_for_timeout(1000)
        assert drawn.get("CoPD", 0) >= 10 and drawn.get("independent experts", 0) >= 10, drawn
        kl = _traces(page, "Symmetric KL by method")
        assert kl.get("CoPD", 0) > 0 and kl.get("independent experts", 0) > 0, kl
        store = RunStore.from_url(db)
        deadline = time.monotonic() + 60 * PATIENCE
        while time.monotonic() < deadline and any(
            r.status != "finished" for r in store.list_runs()
        ):
            page.wait_for_timeout(1000)
        page.reload()
        _settle(page)
        page.wait_for_timeout(2500)  # plotly draws after the script finishes
        _shoot(page, "live", docs=True)
        for name in ("home", "runs", "compare", "launch", "studies"):
            page.goto(f"{base}/{name if name != 'home' else ''}")
            _settle(page)
            page.wait_for_timeout(2000)
            _shoot(page, name, docs=True)
        browser.close()


def test_links_open_the_run_and_the_runs_they_name(seeded_server):
    import re

    from playwright.sync_api import expect, sync_playwright

    base, ids = seeded_server
    with sync_playwright() as p:
        browser, page = _browser(p)
        page.goto(f"{base}/live?run={ids.nan}")
        _settle(page)
        expect(page.get_by_role("combobox", name="Run")).to_have_value(
            re.compile(f"^#{ids.nan} copd-nan"), timeout=30_000
        )
        assert f"run={ids.nan}" in page.url
        a, b = ids.finished, ids.crashed
        page.goto(f"{base}/compare?runs={a},{b}")
        _settle(page)
        picker = page.get_by_test_id("stMultiSelect")
        expect(picker.get_by_text(f"#{a} copd-demo").first).to_be_visible(timeout=30_000)
        expect(picker.get_by_text(f"#{b} copd-oom").first).to_be_visible()
        assert f"runs={a}%2C{b}" in page.url or f"runs={a},{b}" in page.url
        browser.close()


def _chart(page, title_part: str) -> dict:
    """The rendered chart whose title holds `title_part`: its title, its traces (name and
    y values as drawn, null for a gap) and its y tick labels bottom to top, read from the
    page's SVG."""
    return page.evaluate(
        """(part) => {
        for (const gd of document.querySelectorAll('.js-plotly-plot')) {
          const title = (gd.layout && gd.layout.title && gd.layout.title.text) || '';
          if (!title.includes(part)) continue;
          const traces = (gd._fullData || gd.data || []).map(t => ({name: t.name, showlegend: t.showlegend,
            y: Array.from(t.y || [], v => (v === null || Number.isNaN(v)) ? null : v)}));
          const ticks = Array.from(gd.querySelectorAll('.ytick text'))
            .map(e => [e.getBoundingClientRect().top, e.textContent])
            .sort((a, b) => b[0] - a[0]).map(p => p[1]);
          return {title, traces, ticks};
        }
        return null;
      }""",
        title_part,
    )


def test_run_charts_say_what_they_draw(seeded_server):
    """Issue 38, defects 7-9, as drawn in Chromium: log-axis tick labels read as a scale
    (no bare minor digits "2", "5" between decades), one legend entry per reward series
    with a gap over the phases a phase-II series skips, and a symmetric-KL chart that
    names which samples each ordered pair is measured on."""
    from playwright.sync_api import sync_playwright

    base, ids = seeded_server
    with sync_playwright() as p:
        browser, page = _browser(p)
        page.goto(f"{base}/live?run={ids.finished}")
        _settle(page)
        page.wait_for_selector(".js-plotly-plot .ytick text", timeout=60_000)
        kl = _chart(page, "Symmetric KL")
        assert kl and "each student's samples" in kl["title"], kl and kl["title"]
        assert {t["name"] for t in kl["traces"] if t["y"]} >= {
            "add~rev · add's samples", "rev~add · rev's samples"
        }  # fmt: skip
        values = [float(t.replace("\u2212", "-")) for t in kl["ticks"]]
        assert len(values) >= 2 and values == sorted(values) and len(set(values)) == len(values), (
            kl["ticks"]
        )
        reward = _chart(page, "Reward per branch")
        shown = [
            t["name"]
            for t in reward["traces"]
            if t["showlegend"] is not False and not t["name"].startswith("phase ")
        ]
        assert sorted(shown) == ["add · on add", "add · on rev", "rev · on add", "rev · on rev"]
        peer = next(t for t in reward["traces"] if t["name"] == "add · on rev")
        own = next(t for t in reward["traces"] if t["name"] == "add · on add")
        assert peer["y"].count(None) == 5, peer["y"]  # a gap between each of the 6 phase IIs
        assert own["y"].count(None) == 0
        _shoot(page, "live-charts")
        browser.close()


def test_the_run_picker_never_shows_a_stale_status(seeded_server, tmp_path):
    """Issue 38, defect 4: with a running run selected on Runs, the run finishes; the page
    refreshes (the header says finished) but the picker kept "● running": the browser
    keeps the label it showed for the selected option. The label holds no status now."""
    import re

    from playwright.sync_api import expect, sync_playwright

    from storage import RunStore

    base, ids = seeded_server
    db = f"sqlite:///{tmp_path / 'copd.db'}"
    with sync_playwright() as p:
        browser, page = _browser(p)
        page.goto(f"{base}/runs")
        _settle(page)
        box = page.get_by_role("combobox", name="Run")
        _open_list(page, "Run")
        page.get_by_role("option", name=re.compile(f"^#{ids.running} ")).click()
        _settle(page)
        header = page.get_by_test_id("stMetricValue").first
        expect(header).to_contain_text("running", timeout=30_000)
        store = RunStore.from_url(db)
        store.set_status(ids.running, "finished")
        store.close()
        expect(header).to_contain_text("finished", timeout=60_000)  # the 5 s refresh
        label = box.input_value()
        assert label.startswith(f"#{ids.running} ") and "running" not in label, label
        browser.close()


def test_a_run_that_logs_nan_raises_an_alert_on_home_and_live(fake_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from app.control.launcher import Launcher
    from copd.spec import apply_overrides, presets
    from storage import RunStore

    base, db = fake_server
    cfg = apply_overrides(presets.get("demo"), ["name=probe-nan", "schedule.cycles=2"])
    run = Launcher(RunStore.from_url(db), tmp_path / "runs").submit(cfg)
    with sync_playwright() as p:
        browser, page = _browser(p)
        page.goto(base)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            _settle(page)
            if page.get_by_text("Alerts (1)").count():
                break
            page.wait_for_timeout(2000)
            page.reload()
        expect(page.get_by_text("Alerts (1)").first).to_be_visible()
        expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
        page.goto(f"{base}/live?run={run.id}")
        _settle(page)
        expect(
            page.get_by_text("nonfinite: branch/add/reward/mean is NaN at step 5").first
        ).to_be_visible(timeout=30_000)
        _shoot(page, "live-alert")
        browser.close()


@pytest.fixture
def hostile_server(tmp_path):
    """The dashboard on a store whose group, run name and error are markdown payloads
    (tests/test_security.py), no supervisor."""
    from tests.test_security import seed_hostile

    ids = seed_hostile(f"sqlite:///{tmp_path / 'copd.db'}")
    for base, _ in _server(tmp_path, COPD_SUPERVISE="0"):
        yield base, ids


def test_hostile_names_and_groups_render_as_text_and_fetch_nothing(hostile_server):
    """A group `[x](http://evil.example/x) ![p](http://127.0.0.1:9/p.png) ...` shows as those
    characters: no link to evil.example and no image from 127.0.0.1:9 in the DOM, and the
    browser sends no request to either, on the Live view (group heading) and the Runs view
    (run heading, error)."""
    from playwright.sync_api import sync_playwright

    from tests.test_security import ERROR, GROUP, NAME

    def shows(page, text: str) -> bool:  # the page's text, word joiners (invisible) dropped
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = page.evaluate("() => document.body.innerText.replaceAll('\\u2060', '')")
            if text in body:
                return True
            page.wait_for_timeout(500)
        return False

    base, ids = hostile_server
    requests: list[str] = []
    with sync_playwright() as p:
        browser, page = _browser(p)
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{base}/live?run={ids['named']}")
        _settle(page)
        assert shows(page, f"Group {GROUP}: CoPD vs independent experts")
        page.wait_for_timeout(1500)
        _shoot(page, "hostile-live")
        page.goto(f"{base}/runs")
        _settle(page)
        _open_list(page, "Run")
        page.get_by_role("option").filter(has_text=f"#{ids['named']} ").first.click()
        _settle(page)
        assert shows(page, f"#{ids['named']} {NAME}")
        _open_list(page, "Run")
        page.get_by_role("option").filter(has_text=f"#{ids['failed']} ").first.click()
        _settle(page)
        assert shows(page, f"failed: {ERROR}")
        page.wait_for_timeout(1500)
        _shoot(page, "hostile-runs")
        for url in (f"{base}/live?run={ids['named']}", f"{base}/runs"):
            page.goto(url)
            _settle(page)
            page.wait_for_timeout(1000)
            links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
            images = page.eval_on_selector_all("img[src]", "els => els.map(e => e.src)")
            assert not [h for h in links if "evil.example" in h], links
            assert not [s for s in images if "127.0.0.1:9/" in s or "evil" in s], images
            assert page.locator("strong", has_text="bold").count() == 0  # `**bold**` literal
        browser.close()
    leaked = [u for u in requests if "evil.example" in u or "127.0.0.1:9/" in u]
    assert not leaked, leaked


# ---------------------------------------------------------------------- issue 28: details
LONG_LINE = "step 12 " + " ".join(f"branch/add/loss/term{i}=0.{i:03d}" for i in range(40))
# Emoji blocks a browser without an emoji font shows as empty boxes.
EMOJI = "[\U0001f300-\U0001faff\u2600-\u27bf\u2b50\u23e9-\u23fa]"


def _overflows(page, selector: str) -> list[str]:
    """Elements matching `selector` whose content is wider than they are (cut off or
    scrolled sideways), by their text."""
    return page.evaluate(
        """(sel) => [...document.querySelectorAll(sel)]
            .filter(e => e.offsetParent !== null && e.clientWidth > 8
                         && e.scrollWidth > e.clientWidth + 1)
            .map(e => `${e.scrollWidth}>${e.clientWidth} ` +
              (e.innerText || e.getAttribute('aria-label') || e.className).slice(0, 80))""",
        selector,
    )


def _body(page) -> str:
    return page.evaluate("() => document.body.innerText.replaceAll('\\u2060', '')")


def _wait_text(page, text: str, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in _body(page):
            return True
        page.wait_for_timeout(300)
    return False


@pytest.fixture
def details_server(tmp_path):
    """The seeded store plus a run whose log and events hold lines longer than the page."""
    from storage import RunStore
    from tests.seed import seed_store

    db = f"sqlite:///{tmp_path / 'copd.db'}"
    ids = seed_store(db)
    store = RunStore.from_url(db)
    run_dir = tmp_path / "home" / "runs" / f"{ids.crashed}-copd-oom"
    run_dir.mkdir(parents=True)
    (run_dir / "train.log").write_text("start\n" + LONG_LINE + "\nend\n")
    store.update_run(ids.crashed, run_dir=str(run_dir))
    store.log_event(ids.crashed, "alert: " + LONG_LINE, level="warning", step=12)
    for base, _ in _server(tmp_path, COPD_SUPERVISE="0"):
        yield base, ids


def test_details_fit_the_page_links_say_what_is_absent_and_icons_need_no_emoji(details_server):
    """Issue 28 in a real browser (1440x900): the Runs table's columns, the log tail and the
    event lines show whole (wrapped, not cut); the navigation needs no emoji font; links to
    an absent run or group say so and show nothing else; the Compare toggles and the
    paired test's interval are not truncated. A screenshot per page, checked for its text."""
    import re

    from playwright.sync_api import sync_playwright

    base, ids = details_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{base}/runs")
        _settle(page)
        _open_list(page, "Run")
        page.get_by_role("option").filter(has_text=f"#{ids.crashed} ").first.click()
        _settle(page)
        assert _wait_text(page, "branch/add/loss/term39=0.039")  # the log line's end
        page.wait_for_timeout(1500)
        _shoot(page, "details-runs")
        body = _body(page)
        assert "Log tail" in body and "alert: step 12" in body
        assert not _overflows(page, '[data-testid="stCode"] pre, [data-testid="stCode"] code')
        assert not _overflows(page, '[data-testid="stDataFrame"] .dvn-scroller')
        nav = page.get_by_test_id("stSidebarNav").inner_text()
        assert "Runs" in nav and not re.search(EMOJI, nav), nav

        for url, asked in (
            (f"{base}/live?run=abc", "The link asks for run 'abc'"),
            (f"{base}/live?run=99999", "The link asks for run #99999"),
            (f"{base}/compare?group=nope", "The link asks for group 'nope'"),
        ):
            page.goto(url)
            _settle(page)
            assert _wait_text(page, asked), url
            assert page.get_by_role("combobox").count() == 0, url  # no other run in its place
            assert page.locator(".js-plotly-plot").count() == 0, url
            _shoot(page, "details-link-" + re.sub(r"\W+", "-", url.split("/")[-1]))

        page.goto(f"{base}/live?run={ids.finished}")
        _settle(page)
        assert _wait_text(page, "6/6")  # the cycle, 1-based, at the run's end
        page.wait_for_timeout(2000)
        _shoot(page, "details-live")
        assert "Top-10 overlap between branches" in _body(page)
        assert not _overflows(page, '[data-testid="stWidgetLabel"] p'), "a Live label is cut"

        page.goto(f"{base}/launch")
        _settle(page)
        assert _wait_text(page, "6 runs (2 presets × 3 seeds), about")  # the sweep preview
        page.get_by_role("tab", name="opd", exact=True).click()
        box = page.get_by_label("beta", exact=True).filter(visible=True).first
        box.fill("abc")
        box.press("Enter")
        _settle(page)
        assert _wait_text(page, "opd.beta: 'abc' is not a number")
        beside = page.get_by_test_id("stTabs").get_by_text("opd.beta: 'abc' is not a number")
        beside.scroll_into_view_if_needed()  # the error sits in the opd tab, under its field
        page.wait_for_timeout(500)
        _shoot(page, "details-launch")
        page.get_by_role("tab", name="run", exact=True).click()
        name = page.get_by_label("name", exact=True).filter(visible=True).first
        name.fill("../../etc")
        name.press("Enter")
        _settle(page)
        # the message as the browser renders its markdown: the backslash is there
        assert _wait_text(page, "cannot name a run folder; use a name without '/', '\\' or '..'")
        _shoot(page, "details-launch-name")

        page.goto(f"{base}/compare?group=seeds-demo")
        _settle(page)
        assert _wait_text(page, "Paired comparison of two arms")
        page.wait_for_timeout(2000)
        _shoot(page, "details-compare")
        body = _body(page)
        assert "Mean ± band over seeds" in body and "Results: test split" in body
        labels = '[data-testid="stWidgetLabel"] *, [data-testid="stCheckbox"] *'
        assert not _overflows(page, labels), "a label is cut"
        assert not _overflows(page, '[data-testid="stMetricValue"] div'), "a metric is cut"
        page.get_by_text("Paired comparison of two arms").scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        _shoot(page, "details-compare-paired")
        assert "95% CI" in _body(page)
        browser.close()


# ---------------------------------------------------------------------- issue 26: samples
@pytest.fixture
def samples_server(tmp_path, tiny_model_dir):
    """The dashboard on real tiny-model runs (CoPD + experts) with recorded samples, plus a
    hostile completion (tests/test_samples_view.py), no supervisor."""
    from tests.test_samples_view import build_demo_group

    url, ids, last = build_demo_group(tmp_path, tiny_model_dir)
    for base, _ in _server(tmp_path, COPD_SUPERVISE="0"):
        yield base, ids, last


def test_samples_view_shows_both_branches_shaded_and_payloads_as_text(samples_server):
    """live?run=ID&tab=samples: the most divergent prompt (the payload) first, shown as its
    characters with no script run and no image fetched; a real prompt's completions of both
    branches side by side, every token a shaded span with a hover text."""
    from playwright.sync_api import sync_playwright

    base, ids, last = samples_server
    requests: list[str] = []
    with sync_playwright() as p:
        browser, page = _browser(p)
        page.on("request", lambda r: requests.append(r.url))
        t0 = time.monotonic()
        page.goto(f"{base}/live?run={ids['copd']}&tab=samples")
        _settle(page)
        assert _wait_text(page, "most divergent first")
        page.wait_for_selector(".copd-tok", timeout=30_000)
        first_draw_s = time.monotonic() - t0
        body = _body(page)
        assert "<script>window.pwned=1</script>" in body.replace("\n", "")  # as text
        assert page.evaluate("() => window.pwned === undefined")
        images = page.eval_on_selector_all("img[src]", "els => els.map(e => e.src)")
        assert not [s for s in images if "198.51.100.7" in s or s.endswith("/x")], images
        # a real prompt: both branches, every token shaded, hover names both log-probs
        _open_list(page, "Prompt")
        page.get_by_role("option").filter(has_text="#0 ").first.click()
        _settle(page)
        page.wait_for_timeout(1000)
        blocks = page.locator(".copd-tokens")
        assert blocks.count() >= 2
        titles = page.eval_on_selector_all(".copd-tok", "els => els.map(e => e.title)")
        assert any("log p rev" in t for t in titles) and any("log p add" in t for t in titles)
        assert "reward" in _body(page) and "shaded by" in _body(page)
        _shoot(page, "samples", docs=True)
        browser.close()
    leaked = [u for u in requests if "198.51.100.7" in u]
    assert not leaked, leaked
    print(f"[samples view] first draw {first_draw_s:.2f} s")
