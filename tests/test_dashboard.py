"""Dashboard tests: pure chart/series/query/form functions, and every page through
Streamlit's AppTest against a seeded SQLite store (tests/seed.py).

Pages run with COPD_SUPERVISE=0 (no background thread); one test checks the supervisor
thread starts once and stops when the resource cache is cleared.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st

from app.dashboard import figures, forms, queries, series
from copd.spec import ConfigError, RunConfig
from storage import RunStore
from tests.app_support import clear_caches, new_app, use_store
from tests.seed import GROUP, seed_store
from tests.test_security import shown  # markdown source -> the text it shows

ENTRY = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


# ---------------------------------------------------------------------- pure functions
def _frame(values, phases, cycles, key="k", run_id=1):
    n = len(values)
    return pd.DataFrame(
        {
            "run_id": run_id,
            "key": key,
            "scope": "",
            "step": np.arange(n),
            "cycle": cycles,
            "phase": phases,
            "value": np.asarray(values, dtype=float),
            "wall_time": 1000.0 + 2 * np.arange(n),
        }
    )


def test_ema_debiased_and_skips_nonfinite():
    out = series.ema(np.array([1.0, 1.0, np.nan, 1.0]), 0.9)
    assert out[0] == pytest.approx(1.0)  # debiased: a constant stays constant
    assert np.isnan(out[2]) and out[3] == pytest.approx(1.0)
    assert np.array_equal(series.ema(np.array([3.0, 5.0]), 0.0), [3.0, 5.0])


def _shapes(fig):
    bands, lines = figures.shaded(fig)
    return sorted((x0, x1) for _, x0, x1, _ in bands), sorted(x for x, _ in lines)


def _diag_points(steps, key="pair/add~rev/overlap_top10"):
    """Diagnostics-like points at `steps` (values arbitrary), with the phase/cycle columns
    a trainer would log (not used for the bands)."""
    return series.with_x(_frame(np.linspace(0.2, 0.8, len(steps)), ["rl"] * len(steps),
                                [0] * len(steps), key=key).assign(step=list(steps)))  # fmt: skip


def test_bands_and_cycle_lines_come_from_the_schedule_not_the_points():
    """6 RL + 4 OPD steps per cycle, diagnostics every 2 steps: cycle 0's OPD band is
    [6, 10] (steps 7-10) and the cycle lines sit at 10, 20, 30 (the issue saw 8-12, 12, 22)."""
    sched = series.Schedule(rl_steps=6, opd_steps=4, cycles=8)
    fig = figures.series_figure(_diag_points(range(0, 81, 2)), title="o", schedule=sched)
    rects, lines = _shapes(fig)
    assert rects[:4] == [(0, 6), (6, 10), (10, 16), (16, 20)]
    assert len(rects) == 16 and rects[-1] == (76, 80)
    assert lines == [10, 20, 30, 40, 50, 60, 70]
    phases = [s.phase for s in series.schedule_spans(sched)]
    assert phases[:4] == ["rl", "opd", "rl", "opd"]


@pytest.mark.parametrize(
    ("rl", "opd", "diag", "cycles"), [(6, 4, 2, 8), (3, 5, 3, 4), (5, 5, 4, 3), (1, 2, 1, 5)]
)
def test_schedule_bands_for_any_ratio_and_cadence(rl, opd, diag, cycles):
    sched = series.Schedule(rl, opd, cycles)
    p = rl + opd
    fig = figures.series_figure(
        _diag_points(range(0, p * cycles + 1, diag)), title="o", schedule=sched
    )
    rects, lines = _shapes(fig)
    expected = []
    for c in range(cycles):
        expected += [(c * p, c * p + rl), (c * p + rl, (c + 1) * p)]
    x_max = max(range(0, p * cycles + 1, diag))  # the axis ends at the last point drawn
    expected = [(a, min(b, x_max)) for a, b in expected if a < x_max]
    assert rects == expected
    assert lines == [c * p for c in range(1, cycles) if c * p <= x_max]


def test_schedule_bands_of_a_live_and_of_a_resumed_run():
    sched = series.Schedule(6, 4, 8)
    # live at step 13: bands up to the last point only, the current phase cut there
    rects, lines = _shapes(figures.series_figure(_diag_points([0, 2, 6, 10, 12, 13]), title="o",
                                                schedule=sched))  # fmt: skip
    assert rects == [(0, 6), (6, 10), (10, 13)] and lines == [10]
    # resumed from step 40: the points restart mid-run, the bands stay on the schedule
    resumed = _diag_points([0, 2, 4, 6, 8, 10, 40, 42, 44, 46, 48, 50])
    rects, lines = _shapes(figures.series_figure(resumed, title="o", schedule=sched))
    assert (40, 46) in rects and (46, 50) in rects and lines == [10, 20, 30, 40, 50]


def test_a_baseline_without_phases_has_no_bands():
    assert series.schedule_of({"method": "expert", "schedule": {"rl_steps": 6}}) is None
    cfg = RunConfig().to_dict()
    assert series.schedule_of(cfg) == series.Schedule(6, 4, 8)
    assert series.schedule_of(cfg, "mixed") is None
    rects, lines = _shapes(figures.series_figure(_diag_points(range(0, 41, 2)), title="o"))
    assert rects == [] and lines == []


def test_with_x_time_is_relative_per_run():
    df = series.with_x(_frame([1, 2, 3], ["rl"] * 3, [0] * 3), "time")
    assert list(df["x"]) == [0.0, 2.0, 4.0]


def test_nonfinite_points_are_reported_with_steps():
    df = _frame([1.0, np.nan, np.inf, 2.0], ["rl"] * 4, [0] * 4, key="a/b")
    bad = series.nonfinite_points(df)
    assert list(bad["step"]) == [1, 2]
    assert series.describe_nonfinite(bad) == ["a/b: NaN at step 1; inf at step 2"]


def test_series_figure_marks_nan_shades_phases_and_keeps_uirevision():
    df = _frame([0.1, np.nan, 0.3, 0.4], ["rl", "rl", "opd", "opd"], [0, 0, 0, 1])
    sched = series.Schedule(rl_steps=2, opd_steps=1, cycles=2)
    fig = figures.series_figure(df, title="t", smoothing=0.5, revision="rev", schedule=sched)
    names = [t.name for t in fig.data]
    assert "NaN / inf" in names and "phase I · RL" in names and "phase II · OPD" in names
    marks = next(t for t in fig.data if t.name == "NaN / inf")
    assert list(marks.x) == [1.0] and list(marks.y) == [0.1]  # at the last finite value
    assert "k (raw)" in names  # raw line kept behind the smoothed one
    assert fig.layout.uirevision == "rev"
    bands, lines = figures.shaded(fig)
    assert [(ph, x0, x1) for ph, x0, x1, _ in bands] == [("opd", 2.0, 3.0), ("rl", 0.0, 2.0)]
    assert len(lines) == 1


def test_log_axis_and_eval_overall():
    fig = figures.series_figure(_frame([0.0, 1.0], ["rl"] * 2, [0] * 2), title="kl", log_y=True)
    assert fig.layout.yaxis.type == "log"
    assert "1 point(s) ≤ 0" in fig.layout.annotations[0].text
    # step 0 is exactly 0: the axis spans the data's decades, not 1e-12 to 1
    kl = _frame([0.0, 2e-3, 0.01, 0.05, 0.04], ["rl"] * 5, [0] * 5)
    lo, hi = figures.series_figure(kl, title="kl", log_y=True).layout.yaxis.range
    assert -2.7 > lo > -3.0 and -1.3 < hi < -1.0  # log10: 2e-3 .. 5e-2, a small pad
    assert figures.log_range(np.array([0.0, np.nan])) is None
    flat = figures.log_range(np.array([0.5, 0.5]))
    assert flat[0] < np.log10(0.5) < flat[1]
    # A trainer-logged "overall" row is not a benchmark: Overall is recomputed (0.4, not 0.4/3).
    ev = pd.DataFrame(
        {"model": ["merged"] * 3, "benchmark": ["add", "rev", "overall"],
         "score": [0.2, 0.6, 0.0], "step": [5, 5, 5]}
    )  # fmt: skip
    assert series.overall_scores(ev)["score"].tolist() == [pytest.approx(0.4)]
    names = [t.name for t in figures.eval_figure(ev).data]
    assert "merged · overall" in names and "merged · add" in names


def test_timing_totals_exclude_step_total():
    df = pd.concat(
        [
            _frame([1.0, 1.0], ["rl", "opd"], [0, 0], key="time/rollout_s"),
            _frame([9.0, 9.0], ["rl", "opd"], [0, 0], key="time/step_s"),
        ]
    )
    tot = figures.timing_totals(df)
    assert set(tot["part"]) == {"rollout"} and tot["seconds"].sum() == 2.0


def test_system_chart_skips_metrics_the_platform_lacks_and_anchors_at_zero():
    df = series.with_x(
        pd.concat(
            [
                _frame([0.0] * 5, ["rl"] * 5, [0] * 5, key="system/cpu_percent"),  # CPU: all 0
                _frame([900, 901, 902, 900, 901], ["rl"] * 5, [0] * 5, key="system/rss_mb"),
                _frame([np.nan] * 5, ["rl"] * 5, [0] * 5, key="system/gpu_mem_mb"),
            ]
        )
    )
    assert figures.provided_system_keys(df) == ["system/rss_mb"]
    fig = figures.system_figure(df)
    assert [t.name for t in fig.data] == ["system/rss_mb"]
    lo, hi = fig.layout.yaxis.range
    assert lo == 0 and 990 < hi < 1000  # a 2 MB wobble on 900 MB reads as flat
    assert figures.system_range("system/cpu_percent", np.array([30.0])) == [0.0, 100.0]
    empty = figures.system_figure(df[df["key"] == "system/cpu_percent"])
    assert len(empty.data) == 0


def test_progress_follows_the_logged_steps():
    pts = _frame([0.05, 0.125], ["rl"] * 2, [0] * 2, key="run/progress").assign(step=[4, 10])
    p = series.progress_of(0.0, pts, total_hint=None)  # the heartbeat has not caught up
    assert (p.step, p.total, p.fraction) == (10, 80, 0.125)
    assert series.progress_of(1.0, pts).fraction == 1.0
    none = series.progress_of(0.25, pts.iloc[:0], total_hint=80)
    assert (none.step, none.total, none.fraction) == (20, 80, 0.25)


def test_log_tail_collapses_carriage_return_segments(tmp_path):
    from app.dashboard.logview import collapse_cr, log_tail

    bar = "".join(f"\rtraining:  {i}%|{'#' * (i // 10)}| {i}/80" for i in range(0, 101, 5))
    log = tmp_path / "train.log"
    log.write_text("start\n" + bar + "\n" + "a\rb\r\n" + "[progress] step 80/80\n")
    assert log_tail(log).splitlines() == [
        "start", "training:  100%|##########| 100/80", "b", "[progress] step 80/80"
    ]  # fmt: skip
    assert log_tail(log, n_lines=1) == "[progress] step 80/80"
    assert log_tail(tmp_path / "missing.log") == ""
    assert collapse_cr("plain\nlines") == "plain\nlines"


def test_aggregate_runs_mean_and_band():
    df = pd.concat([_frame([1.0, 2.0], ["rl"] * 2, [0] * 2, run_id=i) for i in (1, 2)])
    df.loc[df["run_id"] == 2, "value"] += 2.0
    agg = series.aggregate_runs(series.with_x(df), {1: "copd", 2: "copd"})
    assert agg["mean"].tolist() == [2.0, 3.0] and agg["min"].tolist() == [1.0, 2.0]
    fig = figures.compare_figure(
        series.with_x(df), {1: "a", 2: "b"}, title="m", arms={1: "copd", 2: "copd"}
    )
    assert any(t.fill == "toself" for t in fig.data)
    assert not any(str(t.name).endswith("(seed)") for t in fig.data)  # seed lines: off
    fig = figures.compare_figure(
        series.with_x(df), {1: "a", 2: "b"}, title="m", arms={1: "copd", 2: "copd"},
        seed_lines=True,
    )  # fmt: skip
    names = [t.name for t in fig.data]
    assert names[:2] == ["a (seed)", "b (seed)"]  # drawn first: under the band and the mean
    assert names.index("a (seed)") < next(i for i, t in enumerate(fig.data) if t.fill == "toself")


def test_form_schema_comes_from_config_dataclasses():
    secs = {s.name: s for s in forms.form_sections()}
    assert list(secs)[1:] == list(forms.SECTIONS)
    by_path = {f.path: f for s in secs.values() for f in s.fields}
    assert by_path["grpo.group_size"].kind == "int"
    assert by_path["opd.teacher"].kind == "choice" and "snapshot" in by_path["opd.teacher"].choices
    assert by_path["grpo.std_normalize"].kind == "bool"
    assert "Dr. GRPO" in by_path["grpo.std_normalize"].help  # the inline comment
    assert by_path["diagnostics.extra_k"].kind == "list"
    with pytest.raises(ConfigError, match="grpo.group_size"):
        forms.build_config(RunConfig().to_dict(), {"grpo.group_size": 1})
    assert forms.parse_seeds("0-2") == [0, 1, 2] and forms.parse_seeds("3, 5") == [3, 5]


def test_check_model_dir(tmp_path):
    assert forms.check_model_dir("demo") is None
    assert "config.json" in forms.check_model_dir(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert forms.check_model_dir(str(tmp_path)) is None


# ---------------------------------------------------------------------- seeded store
@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    path = tmp_path_factory.mktemp("dash") / "copd.db"
    url = f"sqlite:///{path}"
    return url, seed_store(url)


def test_queries_on_seeded_store(seeded):
    url, ids = seeded
    store = RunStore.from_url(url)
    frame = queries.runs_frame(store)
    crashed = frame[frame["id"] == ids.crashed].iloc[0]
    assert "crashed" in crashed["status"]
    runs = store.list_runs(group=GROUP)
    arms = queries.seed_arms(runs)
    assert sorted(set(arms.values())) == ["copd", "mixed"]
    table = queries.results_table(store.evaluations([r.id for r in runs]), runs, arms)
    assert "Overall" in table.columns and "copd · merged" in table.index
    assert table.loc["copd · merged", "seeds"] == 3
    md = queries.results_markdown(table)
    assert "**" in md and "Overall" in md
    diff = queries.config_diff_frame(runs[:2])
    assert set(diff.index) == {"name", "seed"}


@pytest.fixture
def app(seeded, monkeypatch, tmp_path):
    """A fresh AppTest on the seeded store, with no caches shared with other tests."""
    url, ids = seeded
    use_store(monkeypatch, tmp_path, url)
    at = new_app()
    yield at, ids
    clear_caches()


def _text(at) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption]
    parts += (
        [e.value for e in at.info] + [e.value for e in at.warning] + [e.value for e in at.error]
    )
    return "\n".join(str(p) for p in parts)


def test_home_shows_counts(app):
    at, _ = app
    at.run()
    assert not at.exception
    labels = {m.label: m.value for m in at.metric}
    crashed, running = queries.status_label("crashed"), queries.status_label("running")
    assert labels[crashed] == "1" and labels[running] == "1"


def test_runs_page_lists_crashed_run_with_traceback(app):
    at, ids = app
    at.run()
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    df = at.dataframe[0].value
    row = df[df["id"] == ids.crashed].iloc[0]
    assert row["status"] == queries.status_label("crashed")
    at.selectbox(key="runs:selected").set_value(ids.crashed).run()
    assert not at.exception
    assert any("crashed" in e.value for e in at.error)
    assert any("CUDA out of memory" in c.value for c in at.code)


def test_runs_page_delete_asks_first(app, seeded):
    at, ids = app
    at.run()
    at.switch_page("../pages/runs.py").run()
    at.selectbox(key="runs:selected").set_value(ids.nan).run()
    at.button(key="runs:delete").click().run()
    assert any("Really delete" in w.value for w in at.warning)
    at.button(key="runs:no").click().run()
    assert not at.exception
    store = RunStore.from_url(seeded[0])
    store.get_run(ids.nan)  # still there
    doomed = store.create_run("doomed", "copd", RunConfig().to_dict())
    store.set_status(doomed.id, "cancelled")
    st.cache_data.clear()
    at.run()
    at.selectbox(key="runs:selected").set_value(doomed.id).run()
    at.button(key="runs:delete").click().run()
    at.button(key="runs:yes").click().run()
    assert not at.exception
    with pytest.raises(KeyError):
        store.get_run(doomed.id)


def test_runs_page_cancels_a_queued_run_after_confirmation(app, seeded):
    at, _ = app
    store = RunStore.from_url(seeded[0])
    queued = store.create_run("waiting", "copd", RunConfig().to_dict())
    at.run()
    at.switch_page("../pages/runs.py").run()
    at.selectbox(key="runs:selected").set_value(queued.id).run()
    assert not at.button(key="runs:cancel").disabled
    at.button(key="runs:cancel").click().run()
    assert any("Really cancel" in w.value for w in at.warning)
    assert store.get_run(queued.id).status == "queued"  # nothing happens before Yes
    at.button(key="runs:yes").click().run()
    assert not at.exception
    assert store.get_run(queued.id).status == "cancelled"


def test_live_view_draws_overlap_and_flags_nan(app):
    at, ids = app
    at.run()
    at.switch_page("../pages/live.py").run()
    assert not at.exception
    titles = " ".join(c.proto.spec for c in at.get("plotly_chart"))
    assert "Top-10 overlap" in titles and "Overlap vs base" not in titles  # its section: shut
    at.session_state["live:open:more"] = True
    at.run()
    charts_ = at.get("plotly_chart")
    assert len(charts_) >= 5
    titles = " ".join(c.proto.spec for c in charts_)
    assert "Top-10 overlap" in titles and "Overlap vs base" in titles
    assert "Prompt groups with a reward signal" in titles
    at.selectbox(key="live:run").set_value(ids.nan).run()
    assert not at.exception
    warn = shown("\n".join(w.value for w in at.warning))
    assert "branch/add/reward_on/add: NaN at steps 20, 21" in warn
    assert "pair/add~rev/sym_kl: inf at step 21" in warn


def test_compare_group_table(app):
    at, _ = app
    at.run()
    at.switch_page("../pages/compare.py").run()
    assert not at.exception
    assert at.selectbox(key="compare:group").value == GROUP
    text = _text(at)
    assert "Overall" in text and "copd · merged" in text and "mixed · mixed" in text
    assert "±" in text  # mean ± std over seeds
    assert len(at.get("plotly_chart")) >= 1


def test_compare_picked_runs_without_seed_bands_shows_config_diff(app):
    at, ids = app
    at.run()
    at.switch_page("../pages/compare.py").run()
    at.radio(key="compare:source").set_value("Pick runs").run()
    at.multiselect(key="compare:runs").set_value([ids.finished, ids.crashed]).run()
    assert not at.exception
    assert "±" in _text(at)  # equal configs apart from the name: one arm, aggregated
    at.toggle(key="compare:agg:True").set_value(False).run()
    assert not at.exception
    assert "±" not in _text(at)
    assert "Config differences" in [h.value for h in at.subheader]
    assert len(at.dataframe) == 1  # the config diff
    assert "name" in at.dataframe[0].value.index


def test_launch_rejects_invalid_value_and_records_nothing(app, seeded):
    at, _ = app
    at.run()
    at.switch_page("../pages/launch.py").run()
    assert not at.exception
    before = len(RunStore.from_url(seeded[0]).list_runs())
    at.text_input(key="cfg:demo:grpo.group_size").set_value("1").run()
    assert any("grpo.group_size" in shown(e.value) for e in at.error)
    at.button(key="launch:go").click().run()
    assert not at.exception
    assert any("Nothing was launched" in e.value for e in at.error)
    assert len(RunStore.from_url(seeded[0]).list_runs()) == before


def test_empty_store_shows_next_steps(monkeypatch, tmp_path):
    use_store(monkeypatch, tmp_path, f"sqlite:///{tmp_path / 'empty.db'}")
    at = new_app().run()
    for page in ("runs", "live", "compare"):
        at.switch_page(f"../pages/{page}.py").run()
        assert not at.exception
        assert any("No runs yet" in i.value for i in at.info), page
    st.cache_data.clear()


def test_supervisor_starts_once_and_stops_on_clear(monkeypatch, tmp_path):
    monkeypatch.setenv("COPD_DB_URL", f"sqlite:///{tmp_path / 'sup.db'}")
    monkeypatch.setenv("COPD_HOME", str(tmp_path))
    monkeypatch.setenv("COPD_SUPERVISE", "1")
    clear_caches()
    at = new_app().run()
    at.run()
    assert not at.exception
    sups = [t for t in threading.enumerate() if t.name == "copd-supervisor" and t.is_alive()]
    assert len(sups) == 1
    st.cache_resource.clear()  # releases the cached supervisor, which stops its thread
    sups[0].join(15)
    assert not sups[0].is_alive()


def test_launch_page_grid_sweep_queues_the_product_or_nothing(monkeypatch, tmp_path):
    """The ablation-set form takes a grid: presets x grid points x seeds runs in one group;
    an invalid grid value records nothing."""
    from app.control.launcher import Launcher

    url = f"sqlite:///{tmp_path / 'grid.db'}"
    use_store(monkeypatch, tmp_path, url)
    monkeypatch.setattr(Launcher, "tick", lambda self: [])  # queue only: start no trainer
    at = new_app().run()
    at.switch_page("../pages/launch.py").run()
    at.multiselect(key="ablation:presets").set_value(["demo"])
    at.text_input(key="ablation:seeds").set_value("0, 1")
    at.text_input(key="ablation:group").set_value("g1")
    at.text_area(key="ablation:grid").set_value("opd.beta=0.5,2\nschedule.rl_steps=3,4,6")
    at.button(key="ablation:go").click().run()
    assert not at.exception
    runs = RunStore.from_url(url).list_runs(group="g1")
    assert len(runs) == 1 * 2 * 3 * 2
    assert {(r.config["opd"]["beta"], r.config["schedule"]["rl_steps"]) for r in runs} == {
        (b, s) for b in (0.5, 2) for s in (3, 4, 6)
    }
    at.text_input(key="ablation:group").set_value("g2")
    at.text_area(key="ablation:grid").set_value("opd.beta=1,-1")
    at.button(key="ablation:go").click().run()
    assert any("Nothing was launched" in e.value for e in at.error)
    assert RunStore.from_url(url).list_runs(group="g2") == []
    clear_caches()


# ---------------------------------------------------------------------- first run, links, alerts
def _qp(at, name):
    """A query parameter of the app's URL after a run (one value)."""
    v = at.query_params.get(name)
    return v[-1] if isinstance(v, list) else v


def _fresh_app(monkeypatch, tmp_path, name="first.db"):
    url = f"sqlite:///{tmp_path / name}"
    use_store(monkeypatch, tmp_path, url)
    return url, new_app()


def test_home_launches_the_demo_group_in_one_click_and_opens_it_live(monkeypatch, tmp_path):
    """One press: the demo CoPD run and the independent experts, same seed, one group,
    queued all at once; the Live view opens on the CoPD run with its link."""
    from app.control.launcher import Launcher

    ticks = []
    monkeypatch.setattr(Launcher, "tick", lambda self: ticks.append(1) or [])  # start nothing
    url, at = _fresh_app(monkeypatch, tmp_path)
    at.run()
    at.button(key="home:demo").click().run()
    assert not at.exception
    runs = sorted(RunStore.from_url(url).list_runs(), key=lambda r: r.id)
    assert [r.method for r in runs] == ["copd", "expert"] and ticks
    assert runs[0].group == runs[1].group == "demo-1" and runs[0].seed == runs[1].seed == 0
    assert at.title[0].value == ":material/monitoring: Live run view"
    assert at.selectbox(key="live:run").value == runs[0].id
    assert _qp(at, "run") == str(runs[0].id)
    assert any("Group demo-1: CoPD vs independent experts" in shown(h.value) for h in at.subheader)
    at.switch_page("../pages/home.py").run()
    at.button(key="home:demo").click().run()  # a second demo is a new group
    assert {r.group for r in RunStore.from_url(url).list_runs()} == {"demo-1", "demo-2"}
    clear_caches()


def test_live_group_overlay_draws_both_methods(monkeypatch, tmp_path):
    from tests.seed import training_points

    url, at = _fresh_app(monkeypatch, tmp_path, "overlay.db")
    store = RunStore.from_url(url)
    ids = {}
    for method in ("copd", "expert"):
        cfg = RunConfig(name=method, method=method, group="demo-1").to_dict()
        run = store.create_run(method, method, cfg, group="demo-1")
        store.log_metrics(run.id, training_points(30))
        ids[method] = run.id
    at.query_params["run"] = str(ids["expert"])
    at.run()
    at.switch_page("../pages/live.py").run()
    assert not at.exception
    assert at.selectbox(key="live:run").value == ids["expert"]  # the link picks the run
    specs = {c.proto.spec for c in at.get("plotly_chart")}
    overlay = [s for s in specs if "by method (mean of a~b, b~a)" in s]
    assert len(overlay) == 2  # overlap and symmetric KL
    assert all('"name":"CoPD"' in s and '"name":"independent experts"' in s for s in overlay)
    kl = next(s for s in overlay if "Symmetric KL" in s)
    assert '"type":"log"' in kl
    at.selectbox(key="live:run").set_value(ids["copd"]).run()
    assert _qp(at, "run") == str(ids["copd"])  # the picker writes the link
    st.cache_data.clear()


def test_live_link_to_a_missing_run_says_so(app):
    at, ids = app
    at.query_params["run"] = "99999"
    at.run()
    at.switch_page("../pages/live.py").run()
    assert not at.exception
    assert any("#99999" in w.value for w in at.warning)


def test_compare_links_select_a_group_or_runs_and_follow_the_pickers(app, seeded):
    at, ids = app
    at.query_params["runs"] = f"{ids.finished},{ids.crashed}"
    at.run()
    at.switch_page("../pages/compare.py").run()
    assert not at.exception
    assert at.radio(key="compare:source").value == "Pick runs"
    assert at.multiselect(key="compare:runs").value == [ids.finished, ids.crashed]
    at.radio(key="compare:source").set_value("Ablation group").run()
    assert _qp(at, "group") == GROUP and "runs" not in at.query_params
    at.radio(key="compare:source").set_value("Pick runs").run()
    assert "group" not in at.query_params and _qp(at, "runs")
    # a shared link to another group opens on it (not on the first group, the default)
    store = RunStore.from_url(seeded[0])
    other = store.create_run("zz", "copd", RunConfig().to_dict(), group="zz-linked")
    store.set_status(other.id, "cancelled")
    st.cache_data.clear()
    fresh = new_app()
    fresh.query_params["group"] = "zz-linked"
    fresh.run()
    fresh.switch_page("../pages/compare.py").run()
    assert not fresh.exception
    assert fresh.selectbox(key="compare:group").value == "zz-linked"
    assert _qp(fresh, "group") == "zz-linked"


def test_compare_seed_lines_toggle_and_report(app):
    at, ids = app
    at.run()
    at.switch_page("../pages/compare.py").run()
    spec = next(c.proto.spec for c in at.get("plotly_chart"))
    assert "(seed)" not in spec
    at.toggle(key="compare:seedlines").set_value(True).run()
    assert not at.exception
    spec = next(c.proto.spec for c in at.get("plotly_chart"))
    assert spec.count("(seed)") == 6  # 3 seeds x 2 methods, under the bands
    assert "Report" in [h.value for h in at.subheader]
    assert at.get("download_button")  # the report's button (built when clicked)


def test_report_is_one_offline_html_file(seeded):
    from app.dashboard import report

    url, ids = seeded
    store = RunStore.from_url(url)
    runs = store.list_runs(group=GROUP)
    arms = queries.seed_arms(runs)
    df = series.with_x(store.metric_series([r.id for r in runs], ["pair/add~rev/overlap_top10"]))
    fig = figures.compare_figure(df, {r.id: r.name for r in runs}, title="overlap", arms=arms)
    table = queries.results_table(store.evaluations([r.id for r in runs]), runs, arms)
    diff = queries.config_diff_frame(runs)
    store.update_run(runs[0].id, code_revision="abc1234")
    runs = store.list_runs(group=GROUP)
    html = report.compare_report(runs, [fig, fig], table, diff, title="Group seeds-demo")
    assert html.startswith("<!DOCTYPE html>") and html.count("Plotly.newPlot") == 2
    assert not re.search(r"<script[^>]*\ssrc=", html)  # every script inline: nothing fetched
    assert not re.search(r"<link[^>]*\shref=", html)
    assert len(html) > 1_000_000  # plotly.js inlined
    assert html.count("plotly.js v") <= 2  # ... once (its banner), not per figure
    assert "copd · merged" in html and "±" in html and 'class="best"' in html
    assert "abc1234" in html and "(not recorded)" in html
    assert "<th>seed</th>" in html or ">seed<" in html  # the config differences


def test_alerts_on_home_and_in_the_run_view(app, seeded):
    from app.control.alerts import AlertWatcher

    at, ids = app
    url, _ = seeded
    AlertWatcher(RunStore.from_url(url), recheck_s=0.0).tick()
    at.run()
    assert not at.exception
    table = next(d.value for d in at.dataframe)
    row = table[table["run"] == ids.nan].iloc[0]
    assert row["alerts"] == 2 and row["view"] == f"live?run={ids.nan}"  # NaN + failed
    assert ids.finished not in set(table["run"])
    at.query_params["run"] = str(ids.nan)
    at.switch_page("../pages/live.py").run()
    warn = shown("\n".join(w.value for w in at.warning))
    assert "2 alert(s)" in warn and "nonfinite: branch/add/reward/mean is NaN at step 20" in warn


def test_readme_describes_the_demo_button_in_homes_words():
    from app.control.demo import DEMO_DESCRIPTION

    readme = " ".join((Path(ENTRY).parent.parent / "README.md").read_text().split())
    assert " ".join(DEMO_DESCRIPTION.split()) in readme


def test_eval_overall_never_mixes_the_validation_rows_in():
    ev = pd.DataFrame(
        {
            "model": "merged",
            "benchmark": ["add", "rev", "add@val", "overall@val", "overall"],
            "score": [0.2, 0.6, 0.9, 0.9, 0.4],
            "step": 80,
        }  # fmt: skip
    )
    assert series.overall_scores(ev)["score"].tolist() == [pytest.approx(0.4)]
    val = series.benchmarks_only(ev, "validation")
    assert val["benchmark"].tolist() == ["add@val"]


def test_a_branch_named_after_its_domain_follows_a_new_domain(app):
    """Changing a branch's domain on Launch kept its old name, so every chart labelled the
    `sort` branch "rev"; a name the user typed is kept."""
    at, _ = app
    at.run()
    at.switch_page("../pages/launch.py").run()
    assert at.text_input(key="cfg:demo:br1:name").value == "rev"
    at.selectbox(key="cfg:demo:br1:task").set_value("sort").run()
    assert at.text_input(key="cfg:demo:br1:name").value == "sort"
    at.text_input(key="cfg:demo:br0:name").set_value("mine").run()
    at.selectbox(key="cfg:demo:br0:task").set_value("fwd").run()
    assert at.text_input(key="cfg:demo:br0:name").value == "mine"
    assert not at.exception


def test_an_ablation_set_into_an_existing_group_is_said_before_launching(app):
    """A second set launched into a group name that holds runs was merged into it
    silently (the grid then listed fields it never swept); now the page says so, offers a
    free name, and launches into it only when asked to."""
    from app.dashboard.forms import free_group_name

    at, _ = app
    url = os.environ["COPD_DB_URL"]
    before = len(RunStore.from_url(url).list_runs())
    at.run()
    at.switch_page("../pages/launch.py").run()
    assert not [w for w in at.warning if "already holds" in w.value]  # ablation-1 is free
    at.text_input(key="ablation:group").set_value(GROUP).run()
    warned = [w.value for w in at.warning if "already holds" in w.value]
    assert warned and "seeds-demo-1" in shown(warned[0]), warned
    at.button(key="ablation:go").click().run()
    assert any("already exists" in shown(e.value) for e in at.error)
    assert any("Nothing was launched" in e.value for e in at.error)
    assert len(RunStore.from_url(url).list_runs()) == before
    assert free_group_name("ablation-1", {"ablation-1", "ablation-2"}) == "ablation-3"
    assert free_group_name("paper", {"paper"}) == "paper-1"


def test_the_runs_page_shows_the_end_of_the_log(tmp_path, monkeypatch):
    """Issue 38, defect 11: the log tail opened scrolled to its top, the oldest of 200
    lines. The block shown whole now ends at the log's last line."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store = RunStore.from_url(url)
    run_dir = tmp_path / "runs" / "1-long"
    run_dir.mkdir(parents=True)
    (run_dir / "train.log").write_text("".join(f"line {i}\n" for i in range(300)))
    run = store.create_run("long", "copd", RunConfig().to_dict(), run_dir=str(run_dir))
    use_store(monkeypatch, tmp_path, url)
    at = new_app().run()
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    shown = at.code[0].value.splitlines()
    assert shown[-1] == "line 299" and len(shown) == 20, shown[:3]
    assert at.expander[0].label == "Last 200 lines"
    assert at.code[1].value.splitlines()[0] == "line 100"
    assert run.id == at.selectbox(key="runs:selected").value
    st.cache_data.clear()


def test_runs_table_shows_config_fields_as_columns_kept_in_the_link(tmp_path, monkeypatch):
    """Issue 38: config fields as Runs-table columns, chosen by the user, the choice kept
    in the link (`?cols=`), the fields that differ between runs offered first."""
    url = f"sqlite:///{tmp_path / 'cols.db'}"
    store = RunStore.from_url(url)
    for beta, rl in ((0.5, 6), (2.0, 3)):
        cfg = RunConfig(name=f"b{beta}").to_dict()
        cfg["opd"]["beta"], cfg["schedule"]["rl_steps"] = beta, rl
        store.create_run(cfg["name"], "copd", cfg)
    use_store(monkeypatch, tmp_path, url)
    at = new_app().run()
    at.query_params["cols"] = "opd.beta,no.such.field"
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    picker = at.multiselect(key="runs:config_cols")
    assert picker.value == ["opd.beta"]
    assert picker.options[:2] == ["opd.beta", "schedule.rl_steps"]  # the differing ones first
    table = at.dataframe[0].value
    assert sorted(table["opd.beta"].tolist()) == [0.5, 2.0]
    picker.set_value(["opd.beta", "schedule.rl_steps"]).run()
    assert at.query_params["cols"] == "opd.beta,schedule.rl_steps"
    assert sorted(at.dataframe[0].value["schedule.rl_steps"].tolist()) == [3, 6]
    st.cache_data.clear()


def test_live_smoothing_is_per_chart_by_default(app):
    """Issue 38: noisy rewards smoothed by default with the raw line faint behind; the
    diagnostics drawn as measured; a number applies to every chart."""
    at, ids = app
    at.query_params["run"] = str(ids.finished)
    at.run()
    at.switch_page("../pages/live.py").run()
    assert not at.exception and at.select_slider(key="live:smooth").value == "auto"

    def raw_traces(title: str) -> int:
        spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                    if title in c.proto.spec)  # fmt: skip
        return sum(1 for t in spec["data"] if str(t.get("name", "")).endswith("(raw)"))

    assert raw_traces("Reward per branch") == 4 and raw_traces("Top-10 overlap") == 0
    at.select_slider(key="live:smooth").set_value(0.0).run()
    assert raw_traces("Reward per branch") == 0
    at.select_slider(key="live:smooth").set_value(0.8).run()
    assert raw_traces("Top-10 overlap") > 0
