"""The Live view's Samples tab on real runs of the tiny model (CoPD and independent experts
in one group, through the real store logger), with a hostile completion written beside them:
AppTest here, the real browser in tests/test_browser.py."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
import streamlit as st

from app.dashboard.samples_view import rank_prompts
from app.dashboard.tokens import log_ratios, ratio_color, tokens_html
from storage import RunStore, Sample
from tests.app_support import clear_caches, new_app, use_store

PAYLOAD = (
    "<script>window.pwned=1</script>![x](http://198.51.100.7/x.png) <img src=x onerror=alert(1)>"
)


def payload_sample(step: int) -> Sample:
    toks = ["<script>", "window.pwned=1", "</script>", "![x](http://198.51.100.7/x.png)",
            " <img src=x onerror=alert(1)>"]  # fmt: skip
    return Sample(
        step=step, kind="probe", branch="add", domain="add", prompt_index=99,
        prompt="**bold** <b>prompt</b>", completion=PAYLOAD, reward=0.0, correct=False,
        tokens=toks, logp=[-0.5] * 5,
        peers={"rev": {"logp": [-4.0, -0.1, -0.5, -9.0, -0.5],
                       "in_topk": [False, True, True, False, True]}},
        disagreement=50.0, overlap=0.1,
    )  # fmt: skip


def build_demo_group(root: Path, model_dir: str) -> tuple[str, dict[str, int], int]:
    """A CoPD run and an expert run of the tiny model in group `samples-demo`, trained here
    through copd.runner.train_run with the store; the payload sample added to the CoPD run
    at its last recorded step. Returns (store URL, run ids by method, that step)."""
    from copd.runner import train_run
    from copd.spec import apply_overrides, presets
    from tests.tiny_support import tiny_overrides

    url = f"sqlite:///{root / 'copd.db'}"
    for preset in ("demo", "expert"):
        cfg = apply_overrides(
            presets.get(preset),
            [*tiny_overrides(model_dir), "diagnostics.samples_every=3",
             "group=samples-demo", f"name={preset}-samples"],
        ).validate()  # fmt: skip
        train_run(cfg, root / preset, db=url)
    store = RunStore.from_url(url)
    ids = {r.method: r.id for r in store.list_runs()}
    last = max(s for s, _ in store.sample_steps(ids["copd"]))
    store.log_samples(ids["copd"], [payload_sample(last)])
    return url, ids, last


@pytest.fixture(scope="module")
def demo_group(tmp_path_factory, tiny_model_dir):
    return build_demo_group(tmp_path_factory.mktemp("samples"), tiny_model_dir)


@pytest.fixture
def app(demo_group, monkeypatch, tmp_path):
    url, ids, last = demo_group
    use_store(monkeypatch, tmp_path, url)
    yield new_app(), ids, last
    clear_caches()


def test_real_runs_recorded_samples_for_both_branches(demo_group):
    url, ids, _ = demo_group
    store = RunStore.from_url(url)
    steps = store.sample_steps(ids["copd"])
    assert {s for s, k in steps if k == "probe"} == {0, 3, 6}
    assert {s for s, k in steps if k == "cross"} == {3, 6}
    at6 = [s for s in store.samples(ids["copd"], step=6, kind="probe") if s.prompt_index != 99]
    assert {s.branch for s in at6} == {"add", "rev"}
    assert all(len(s.tokens) == len(s.logp) > 0 for s in at6)
    assert store.sample_steps(ids["expert"])  # baselines record theirs too


def _open_samples(at, run_id):
    at.query_params["run"] = str(run_id)
    at.query_params["tab"] = "samples"
    at.run()
    at.switch_page("../pages/live.py").run()
    assert not at.exception, at.exception
    return at


def test_samples_tab_by_link_shows_both_branches_side_by_side(app):
    at, ids, last = app
    at = _open_samples(at, ids["copd"])
    assert at.radio(key="live:tab").value == "samples"
    step = next(s for s in at.get("select_slider") if s.key.endswith(":step"))
    assert step.value == last  # the latest recorded step by default
    domain = at.selectbox(key=f"samples:{ids['copd']}:domain")
    assert domain.value == "add"
    prompt = at.selectbox(key=f"samples:{ids['copd']}:probe:add:prompt")
    assert prompt.value == 99  # the payload disagrees most: ranked first
    htmls = [h.proto.body for h in at.get("html")]
    assert any("&lt;script&gt;" in b for b in htmls)  # escaped, shown as text
    assert not any("<script>" in b or "<img" in b for b in htmls)
    # pick a real prompt: both branches' completions, shaded by their peer
    prompt.set_value(0).run()
    assert not at.exception
    bodies = [h.proto.body for h in at.get("html")]
    shaded = [b for b in bodies if "copd-tok" in b]
    assert len(shaded) >= 2  # add's completion and rev's
    assert any("log p rev" in b for b in shaded) and any("log p add" in b for b in shaded)
    heads = " ".join(m.value for m in at.markdown)
    assert "**add**" in heads and "**rev**" in heads
    # the prompt across steps: one table, a row per recorded step (0, 3, 6)
    at.toggle(key=f"samples:{ids['copd']}:steps").set_value(True).run()
    table = next(h.proto.body for h in at.get("html") if "<th>step</th>" in h.proto.body)
    assert all(f"<td>step {s}</td>" in table for s in (0, 3, 6))
    # and in the group's other run (the experts: same seed, same probe prompt)
    at.toggle(key=f"samples:{ids['copd']}:runs").set_value(True).run()
    assert not at.exception
    assert any(f"run {ids['expert']} · expert" in m.value for m in at.markdown)


def test_samples_tab_of_an_expert_run_and_cross_batches(app):
    at, ids, _ = app
    at = _open_samples(at, ids["copd"])
    at.radio(key=f"samples:{ids['copd']}:kind").set_value("cross").run()
    assert not at.exception
    bodies = [h.proto.body for h in at.get("html") if "copd-tok" in h.proto.body]
    assert bodies  # the OPD batch: the teacher's log-probs shade it
    at2 = _open_samples(app[0], ids["expert"])
    assert any("copd-tok" in h.proto.body for h in at2.get("html"))


def test_tokens_html_escapes_and_shades():
    s = payload_sample(0)
    out = tokens_html(s, "rev")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "onerror=alert" not in out.replace("onerror=alert(1)&gt;", "")  # only as text
    assert html.escape("![x](http://198.51.100.7/x.png)") in out
    assert log_ratios(s, "rev") == [-3.5, 0.4, 0.0, -8.5, 0.0]
    assert out.count("copd-tok out") == 2  # two tokens outside rev's top-k
    assert ratio_color(-8.5).startswith("rgba(178,24,43,0.85")  # saturated red
    assert ratio_color(0.0).endswith(",0.000)") and ratio_color(None) == "transparent"
    assert log_ratios(s, None) == [None] * 5


def test_rank_prompts_most_divergent_first():
    a, b = payload_sample(0), payload_sample(0)
    b = Sample(**{**b.__dict__, "prompt_index": 1, "disagreement": 0.2, "branch": "rev"})
    df = rank_prompts([b, a])
    assert list(df["prompt"]) == [99, 1]


def test_copd_samples_prints_tokens_with_log_ratios(demo_group):
    import subprocess
    import sys

    url, ids, last = demo_group
    cmd = [sys.executable, "-m", "copd", "samples", str(ids["copd"]), "--db", url, "--tokens"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"step {last}: " in out.stdout and "most divergent first" in out.stdout
    first = out.stdout.split("\n\n")[1]
    assert first.startswith(f"step {last} · probe · add on add #99")  # the payload ranks first
    assert "log p rev" in first and "NO" in first  # tokens outside rev's top-k marked
    assert "\x1b" not in out.stdout
    bad = subprocess.run(cmd + ["--step", "1"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "nearest 0: pass --step 0" in bad.stderr
    cross = subprocess.run(cmd[:-1] + ["--kind", "cross", "--branch", "rev"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert cross.returncode == 0 and " · cross · rev on add" in cross.stdout
    # a run folder without the store: the same samples from its metrics.jsonl
    folder = RunStore.from_url(url).get_run(ids["copd"]).run_dir
    local = subprocess.run([sys.executable, "-m", "copd", "samples", folder, "--tokens"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert local.returncode == 0, local.stderr
    assert "step 6: " in local.stdout and " · probe · " in local.stdout and "log p " in local.stdout
    nowhere = subprocess.run([sys.executable, "-m", "copd", "samples", "no/such/dir"],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert nowhere.returncode != 0 and "neither a run id nor a folder" in nowhere.stderr


def test_compare_report_holds_the_most_divergent_samples_as_text(demo_group, monkeypatch):
    import pandas as pd

    from app.dashboard.report import compare_report
    from app.dashboard.samples_view import most_divergent

    url, ids, _ = demo_group
    monkeypatch.setenv("COPD_DB_URL", url)
    st.cache_resource.clear()
    top = most_divergent([ids["copd"], ids["expert"]], n=3)
    assert len(top) == 3 and top[0].prompt_index == 99  # the payload disagrees most
    assert [s.disagreement for s in top] == sorted((s.disagreement for s in top), reverse=True)
    runs = RunStore.from_url(url).list_runs()
    doc = compare_report(runs, [], pd.DataFrame(), pd.DataFrame(), title="t", samples=top)
    assert "The most divergent samples" in doc and "copd-tok" in doc
    assert "&lt;script&gt;" in doc and "<script>window" not in doc and "<img" not in doc
    st.cache_resource.clear()
