"""Issue 28, the details a researcher trips over: truthful status and progress, the demo
model's vocabulary, overlay labels and titles by what differs, deep links that name
something absent, forms that check each field as it is edited, the sweep preview, the
results table's split and rows, text labels beside every icon, and page server times.

Each test drives the real pages through Streamlit's AppTest on a real SQLite store (or the
pure function behind them); the layout and link checks that need a real browser are in
tests/test_browser.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app.dashboard import series
from app.dashboard.signal_data import k_caption, vocab_size_of
from copd.spec import RunConfig
from storage import RunStore
from tests.app_support import clear_caches, new_app, use_store
from tests.seed import seed_store
from tests.test_security import shown

ENTRY = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('details') / 'copd.db'}"
    return url, seed_store(url)


def _app(monkeypatch, tmp_path, url: str) -> AppTest:
    use_store(monkeypatch, tmp_path, url)
    return new_app()


@pytest.fixture
def app(seeded, monkeypatch, tmp_path):
    url, ids = seeded
    yield _app(monkeypatch, tmp_path, url), ids
    clear_caches()


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _specs(at) -> str:
    return " ".join(c.proto.spec for c in at.get("plotly_chart"))


# ---------------------------------------------------------------------- 3: vocabulary
def test_the_builtin_demo_models_vocabulary_is_known():
    """model.path="demo" is no local directory, yet its vocabulary is the shipped base's."""
    vocab = vocab_size_of(RunConfig().to_dict())
    assert vocab == 32
    note = k_caption([1, 5, 10], vocab)
    assert "unknown" not in note and "Vocabulary 32 tokens" in note


# ---------------------------------------------------------------------- 4: status, progress
def test_cycle_is_one_based_of_the_schedule_and_absent_for_methods_without_cycles():
    sched = series.Schedule(rl_steps=6, opd_steps=4, cycles=8)
    assert series.cycle_text(80, sched) == "8/8"  # the last step of the last cycle
    assert [series.cycle_text(s, sched) for s in (0, 1, 10, 11)] == ["1/8", "1/8", "1/8", "2/8"]
    assert series.cycle_text(40, None) == "—"


def test_progress_has_one_rounding_down_to_a_whole_percent():
    assert [series.percent(f) for f in (0.0233, 0.4167, 0.999, 1.0, None)] == [
        "2%", "41%", "99%", "100%", "0%",
    ]  # fmt: skip


def test_live_header_reads_cycle_6_of_6_at_the_end(app):
    at, ids = app
    at.run()
    at.switch_page("../pages/live.py").run()
    at.selectbox(key="live:run").set_value(ids.finished).run()
    assert not at.exception
    m = _metrics(at)
    assert m["cycle"] == "6/6" and m["progress"] == "100%"


def test_progress_reads_the_same_on_live_runs_and_the_runs_table(monkeypatch, tmp_path):
    """7 of 300 steps (2.33%): "2%" in the Live header, the Runs header and the table."""
    from storage.entities import MetricPoint

    url = f"sqlite:///{tmp_path / 'progress.db'}"
    store = RunStore.from_url(url)
    run = store.create_run("slow", "copd", RunConfig().to_dict())
    store.mark_running(run.id, pid=999_999, pid_start_time=0.0, host="h")
    store.log_metrics(run.id, [MetricPoint("run/progress", 7 / 300, 7, 0, "rl", "", 1.0)])
    store.heartbeat(run.id, progress=7 / 300)
    at = _app(monkeypatch, tmp_path, url)
    at.query_params["run"] = str(run.id)
    at.run()
    at.switch_page("../pages/live.py").run()
    assert not at.exception and _metrics(at)["progress"] == "2%"
    at.switch_page("../pages/runs.py").run()
    assert not at.exception and _metrics(at)["progress"] == "2%"
    assert at.dataframe[0].value["progress"].tolist() == [2]
    st.cache_data.clear()


def test_an_expert_run_shows_no_cycle_and_no_teacher(monkeypatch, tmp_path):
    from tests.seed import training_points

    url = f"sqlite:///{tmp_path / 'expert.db'}"
    store = RunStore.from_url(url)
    run = store.create_run("experts", "expert", RunConfig(method="expert").to_dict())
    store.log_metrics(run.id, training_points(12))
    at = _app(monkeypatch, tmp_path, url)
    at.query_params["run"] = str(run.id)
    at.run()
    at.switch_page("../pages/live.py").run()
    assert not at.exception
    assert _metrics(at)["cycle"] == "—"
    specs = _specs(at)
    assert "Top-10 overlap between branches" in specs and "student~teacher" not in specs
    st.cache_data.clear()


def test_the_live_picker_follows_a_run_that_finished(monkeypatch, tmp_path):
    """The run finishes between two refreshes: the status beside the picker (and the
    auto-refresh switch) follow the fresh status instead of the cached "running"."""
    url = f"sqlite:///{tmp_path / 'finish.db'}"
    store = RunStore.from_url(url)
    run = store.create_run("soon-done", "copd", RunConfig().to_dict())
    store.mark_running(run.id, pid=999_999, pid_start_time=0.0, host="h")
    at = _app(monkeypatch, tmp_path, url)
    at.query_params["run"] = str(run.id)
    at.run()
    at.switch_page("../pages/live.py").run()
    assert "running" in _metrics(at)["status"]
    store.set_status(run.id, "finished")
    at.run()  # within the runs cache's lifetime: only the fragment's read is fresh
    assert not at.exception
    assert "finished" in _metrics(at)["status"]
    picker = at.selectbox(key="live:run")  # no status in a picker (defect 4): none to go stale
    assert picker.format_func(picker.value) == f"#{run.id} soon-done · copd"  # type: ignore[attr-defined]
    assert any("auto-refresh is off" in c.value for c in at.caption)
    st.cache_data.clear()


def test_the_live_view_opens_on_the_demos_copd_run_not_the_newer_baseline(monkeypatch, tmp_path):
    """Issue 38, defect 11: the demo launches CoPD, then the experts; the sidebar's Live
    view opened the newest running run (the experts)."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    store = RunStore.from_url(url)
    copd = store.create_run("demo", "copd", RunConfig().to_dict(), group="demo-1")
    expert = store.create_run("demo-expert", "expert", RunConfig(method="expert").to_dict(),
                              group="demo-1")  # fmt: skip
    for r in (copd, expert):
        store.mark_running(r.id, pid=999_999, pid_start_time=0.0, host="h")
    at = _app(monkeypatch, tmp_path, url)
    at.run()
    at.switch_page("../pages/live.py").run()
    assert not at.exception
    assert at.selectbox(key="live:run").value == copd.id
    st.cache_data.clear()


def test_a_resumed_run_keeps_its_first_start(tmp_path):
    """Started and duration cover the whole run: a resume keeps the first start."""
    store = RunStore.from_url(f"sqlite:///{tmp_path / 'resume.db'}")
    run = store.create_run("r", "copd", RunConfig().to_dict())
    assert store.claim(run.id, host="h")
    first = store.get_run(run.id).started_at
    store.set_status(run.id, "cancelled")
    store.set_status(run.id, "queued")  # resume
    assert store.claim(run.id, host="h")
    store.mark_running(run.id, pid=1, pid_start_time=0.0, host="h")
    again = store.get_run(run.id)
    assert again.started_at == first
    store.set_status(run.id, "finished")
    done = store.get_run(run.id)
    assert done.started_at == first and done.ended_at > first


# ---------------------------------------------------------------------- 5: overlay labels
def test_overlaid_sweep_arms_are_labelled_by_their_swept_value(tmp_path):
    from app.dashboard.live_view import overlay_labels

    store = RunStore.from_url(f"sqlite:///{tmp_path / 'labels.db'}")

    def run(beta, seed=0, method="copd", group="g"):
        cfg = RunConfig(method=method, seed=seed, group=group, name=f"r{beta}-{seed}").to_dict()
        cfg["opd"]["beta"] = beta
        return store.create_run(cfg["name"], method, cfg, seed=seed, group=group)

    a, b, c = run(0.5), run(2.0), run(2.0, seed=1)
    assert overlay_labels([a, b, c]) == {
        a.id: "CoPD · beta=0.5",
        b.id: "CoPD · beta=2.0 · seed 0",
        c.id: "CoPD · beta=2.0 · seed 1",
    }
    copd, expert = run(1.0, group="d"), run(1.0, method="expert", group="d")
    assert overlay_labels([copd, expert]) == {copd.id: "CoPD", expert.id: "independent experts"}


# ---------------------------------------------------------------------- 6: deep links
@pytest.mark.parametrize(
    ("page", "param", "value", "named"),
    [
        ("live", "run", "abc", "run 'abc'"),
        ("live", "run", "99999", "run #99999"),
        ("compare", "group", "nope", "group 'nope'"),
        ("compare", "runs", "99998", "#99998"),
    ],
)
def test_a_link_to_something_absent_says_so_and_shows_nothing_else(app, page, param, value, named):
    at, _ = app
    at.query_params[param] = value
    at.run()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception
    warnings = [shown(w.value) for w in at.warning]
    assert any(named in w and "not" in w for w in warnings), warnings
    assert not at.get("plotly_chart") and not at.selectbox and not at.multiselect
    assert not at.dataframe


# ---------------------------------------------------------------------- 7: the launch form
def _launch(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'launch.db'}"
    at = _app(monkeypatch, tmp_path, url)
    at.run()
    at.switch_page("../pages/launch.py").run()
    assert not at.exception
    return url, at


def _tab(at, name):
    return next(t for t in at.tabs if t.label == name)


def test_a_third_branch_switches_the_topology_and_says_so(monkeypatch, tmp_path):
    """Issue 38, defect 11: a third branch on Launch gave "'pair' needs exactly 2 branches"
    instead of switching the topology or saying how."""
    _, at = _launch(monkeypatch, tmp_path)
    at.number_input(key="cfg:demo:n_branches").set_value(3).run()
    assert not at.exception
    assert not [e.value for e in at.error], [e.value for e in at.error]
    assert at.selectbox(key="cfg:demo:topology.kind").value == "hub"
    assert not [w.value for w in at.warning if "Session State" in w.value]
    assert any("topology set to 'hub'" in i.value for i in at.info)
    assert any("3 branches" in c.value for c in at.caption)  # the config builds
    at.number_input(key="cfg:demo:n_branches").set_value(2).run()
    assert at.selectbox(key="cfg:demo:topology.kind").value == "pair"
    assert not [e.value for e in at.error]


def test_a_number_field_with_text_shows_its_error_in_its_tab(monkeypatch, tmp_path):
    url, at = _launch(monkeypatch, tmp_path)
    at.text_input(key="cfg:demo:opd.beta").set_value("abc").run()
    assert not at.exception
    beside = [shown(e.value) for e in _tab(at, "opd").error]
    assert beside == ["opd.beta: 'abc' is not a number; type a number such as 1, 0.5 or 1e-3"]
    at.text_input(key="cfg:demo:opd.beta").set_value("-1").run()
    assert any("opd.beta" in shown(e.value) for e in _tab(at, "opd").error)
    at.text_input(key="cfg:demo:opd.beta").set_value("2").run()
    assert not _tab(at, "opd").error and not at.error
    st.cache_data.clear()


@pytest.mark.parametrize("name", ["", "../../etc", "a\\b"])
def test_a_bad_run_name_is_refused_as_it_is_typed(monkeypatch, tmp_path, name):
    url, at = _launch(monkeypatch, tmp_path)
    at.text_input(key="cfg:demo:name").set_value(name).run()
    beside = [shown(e.value) for e in _tab(at, "run").error]
    assert len(beside) == 1 and "cannot name a run folder" in beside[0]
    assert "without '/', '\\' or '..'" in beside[0]  # the backslash survives the markdown
    at.button(key="launch:go").click().run()
    assert any("Nothing was launched" in e.value for e in at.error)
    assert RunStore.from_url(url).list_runs() == []
    st.cache_data.clear()


def test_a_refusal_at_submit_says_nothing_was_launched(monkeypatch, tmp_path):
    """The submit-time check stays the last line of defence (here: the trainer's preflight
    refusing the config), and its message ends in "Nothing was launched."."""
    from app.control.launcher import Launcher
    from copd.spec import ConfigError

    def refuse(self, cfg, **options):
        raise ConfigError("model.path: the tokenizer has 40 tokens, the model 32 rows")

    monkeypatch.setattr(Launcher, "submit", refuse)
    url, at = _launch(monkeypatch, tmp_path)
    at.button(key="launch:go").click().run()
    assert not at.exception
    assert any(
        "40 tokens" in shown(e.value) and e.value.endswith("Nothing was launched.")
        for e in at.error
    )
    st.cache_data.clear()


# ---------------------------------------------------------------------- 8: sweep preview
def _finished_run(store, cfg: dict, seconds: float):
    """A finished run of `cfg` that took `seconds` from start to end."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    from storage.models import RunRow

    run = store.create_run(cfg["name"], cfg["method"], cfg)
    store.claim(run.id, host="h")
    store.set_status(run.id, "finished")
    end = datetime.now(timezone.utc)
    with store.db.session(write=True) as s:
        s.execute(
            update(RunRow)
            .where(RunRow.id == run.id)
            .values(started_at=end - timedelta(seconds=seconds), ended_at=end)
        )
    return run


def test_the_sweep_preview_counts_the_runs_and_times_them_before_launch(monkeypatch, tmp_path):
    from app.dashboard.preview import total_steps
    from app.dashboard.queries import format_duration
    from copd.spec import presets
    from copd.spec.sweep import sweep_configs

    url, at = _launch(monkeypatch, tmp_path)
    at.multiselect(key="ablation:presets").set_value(["demo"])
    at.text_input(key="ablation:seeds").set_value("0, 1")
    at.text_area(key="ablation:grid").set_value("opd.beta=0.5,2\nschedule.rl_steps=3,4,6").run()
    assert not at.exception
    info = [shown(i.value) for i in at.info if "runs (" in shown(i.value)]
    assert len(info) == 1, [i.value for i in at.info]
    assert info[0].startswith("12 runs (1 preset × 6 grid points (beta 2 × rl_steps 3) × 2 seeds)")
    assert "no finished run of this kind to time yet: ~2 s per step assumed" in info[0]
    assert RunStore.from_url(url).list_runs() == []  # a preview records nothing
    # a finished demo run of 80 steps that took 80 s: 1 s per step for every planned run
    demo = presets.get("demo").to_dict()
    past = _finished_run(RunStore.from_url(url), demo, seconds=total_steps(demo) * 1.0)
    planned = sweep_configs(
        ["demo"], [0, 1], "ablation-1", grid={"opd.beta": ["0.5", "2"],
                                              "schedule.rl_steps": ["3", "4", "6"]},
    )  # fmt: skip
    expected = format_duration(sum(total_steps(r.cfg.to_dict()) for r in planned))
    st.cache_data.clear()
    at.run()
    info = [shown(i.value) for i in at.info if "runs (" in shown(i.value)]
    assert f"about {expected} on this machine" in info[0], info
    assert "timed from 1 finished run of the same kind" in info[0]
    assert [r.id for r in RunStore.from_url(url).list_runs()] == [past.id]
    at.text_area(key="ablation:grid").set_value("opd.beta=1,-1").run()
    assert not [i for i in at.info if "runs (" in i.value]
    assert any("opd.beta" in shown(e.value) for e in at.error)  # as it is typed
    st.cache_data.clear()


# ---------------------------------------------------------------------- 9, 10: Compare
def _demo_group(url: str) -> dict[str, int]:
    """A finished demo group: CoPD with its merged model, experts with branches only."""
    from tests.seed import evaluations, training_points

    store = RunStore.from_url(url)
    ids = {}
    for method in ("copd", "expert"):
        cfg = RunConfig(name=f"demo-{method}", method=method, group="demo-1").to_dict()
        run = store.create_run(cfg["name"], method, cfg, group="demo-1")
        store.log_metrics(run.id, training_points(20))
        evals = evaluations([0, 20])
        if method == "expert":  # experts are never merged
            evals = [e for e in evals if e.model != "merged"]
        store.log_evals(run.id, evals)
        store.claim(run.id, host="h")
        store.set_status(run.id, "finished")
        ids[method] = run.id
    return ids


def test_compare_a_demo_group_by_each_methods_reported_model(monkeypatch, tmp_path):
    """The grid view compares CoPD's merged model with the experts on their own domains
    (before: the experts silently dropped out); the results table names its split and has
    the experts' own-domain row."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    ids = _demo_group(url)
    at = _app(monkeypatch, tmp_path, url)
    at.query_params["group"] = "demo-1"
    at.run()
    at.switch_page("../pages/compare.py").run()
    assert not at.exception
    assert at.selectbox(key="compare:sweep:model").value == "reported model"
    spec = next(
        c.proto.spec
        for c in at.get("plotly_chart")
        if "method" in c.proto.spec and "Overall" in c.proto.spec
    )
    assert '"copd"' in spec and '"expert"' in spec, spec[:400]
    assert not any("Left out" in c.value for c in at.caption)
    heads = [h.value for h in at.subheader]
    assert "Results: test split, final evaluation of each finished run" in heads
    text = "\n".join(m.value for m in at.markdown)
    assert f"expert #{ids['expert']} · own-domain experts" in shown(text)
    at.selectbox(key="compare:sweep:model").set_value("merged").run()
    left = [shown(c.value) for c in at.caption if "Left out" in c.value]
    assert left and f"#{ids['expert']} expert: no merged model" in left[0]
    st.cache_data.clear()


def _compare_group(monkeypatch, tmp_path, url: str, group: str) -> AppTest:
    """The Compare page opened on `group` by its link, run without an exception."""
    at = _app(monkeypatch, tmp_path, url)
    at.query_params["group"] = group
    at.run()
    at.switch_page("../pages/compare.py").run()
    assert not at.exception
    return at


def _every_method_group(url: str) -> dict[str, int]:
    """A finished run of every method of the method table, each with its models' test and
    validation scores at its final step (20), plus a cancelled mixed run holding only step-0
    scores."""
    from copd.spec.methods import METHOD_TABLE
    from storage import Evaluation

    store = RunStore.from_url(url)
    models = {
        "copd": ["add", "rev", "merged"], "weight_average": ["add", "rev", "merged"],
        "expert": ["add", "rev"], "mixed": ["mixed"], "mopd": ["add", "rev", "mopd"],
        "static_opd": ["add", "rev"], "sequential": ["sequential"],
    }  # fmt: skip
    assert set(models) == set(METHOD_TABLE), "a new method: give it a run here"
    ids = {}
    for method, names in [*models.items(), ("cancelled", ["mixed"])]:
        real = "mixed" if method == "cancelled" else method
        cfg = RunConfig(name=f"g-{method}", method=real, group="every").to_dict()
        run = store.create_run(cfg["name"], real, cfg, group="every")
        step = 0 if method == "cancelled" else 20
        lift = {"copd": 0.1, "mixed": 0.05, "cancelled": -0.2}.get(method, 0.0)
        store.log_evals(run.id, [
            Evaluation(m, b, 0.5 + lift + (0.1 if m == b else 0.0), 64, step)
            for m in names for b in ("add", "rev", "add@val", "rev@val")
        ])  # fmt: skip
        store.claim(run.id, host="h")
        store.set_status(run.id, "cancelled" if method == "cancelled" else "finished")
        ids[method] = run.id
    store.close()
    return ids


def test_every_method_is_compared_by_its_reported_model_and_unfinished_runs_are_left_out(
    monkeypatch, tmp_path
):
    """Before: the grid and the paired comparison left out mixed GRPO ("no validation
    evaluation of its reported model", although it has mixed/add@val), and a cancelled
    run's step-0 scores (the base model's) stood as its result. Now every method has one
    reported model (merged, the mixed / MOPD policy, the static-OPD student, experts on
    their own domains) in the grid, the paired data and the results table alike, and a run
    without its final evaluation is named and left out."""
    from app.dashboard.queries import reported_model, settled
    from app.dashboard.sweep_data import REPORTED, reported_evals, score_table

    url = f"sqlite:///{tmp_path / 'every.db'}"
    ids = _every_method_group(url)
    store = RunStore.from_url(url)
    runs = store.list_runs(group="every")
    evals = store.evaluations([r.id for r in runs])
    by_id = {r.id: r for r in runs}
    assert {m: reported_model(by_id[i]) for m, i in ids.items()} == {
        "copd": "merged", "weight_average": "merged", "expert": "own-domain experts",
        "mixed": "mixed", "mopd": "mopd", "static_opd": "rev", "sequential": "sequential",
        "cancelled": "mixed",
    }  # fmt: skip
    finished, left = settled(runs, evals)
    assert left == [f"#{ids['cancelled']} mixed: cancelled, last evaluated at step 0"]
    table = score_table(reported_evals(evals, finished), finished, {"method": []},
                        model=REPORTED, split="validation")  # fmt: skip
    assert set(table["run_id"]) == {ids[m] for m in ids if m != "cancelled"}
    # the study's report judges each run by the same model, and so does the HTML report
    from app.dashboard.queries import results_table
    from app.dashboard.report import compare_report
    from experiments.study_analysis import primary_model, run_scores

    for r in finished:
        scores = {m: {"add": 0.5} for m in ("add", "rev", "merged", "mixed", "mopd", "sequential")}
        assert primary_model(run_scores(scores, r.config, r.method)) == reported_model(r)
    html = compare_report(finished, [], results_table(evals, finished), pd.DataFrame(), title="t")
    for r in finished:
        assert f"{r.method} #{r.id} · {reported_model(r)}" in html
    store.close()

    at = _compare_group(monkeypatch, tmp_path, url, "every")
    captions = [shown(c.value) for c in at.caption]
    assert not any("mixed: no validation evaluation" in c for c in captions), captions
    unfinished = [c for c in captions if c.startswith("Unfinished")]
    assert unfinished and f"#{ids['cancelled']} mixed: cancelled" in unfinished[0]
    text = shown("\n".join(m.value for m in at.markdown))
    row = next(line for line in text.splitlines() if line.startswith("| mixed · mixed |"))
    assert row.endswith("| 1 |"), row  # one seed: the cancelled run's step 0 is no result
    assert "0.3" not in row  # its (base model's) scores are in no mean
    st.cache_data.clear()


def test_own_domain_row_scores_each_expert_on_its_own_domain(tmp_path):
    from app.dashboard.queries import OWN_DOMAIN, results_table

    url = f"sqlite:///{tmp_path / 'own.db'}"
    ids = _demo_group(url)
    store = RunStore.from_url(url)
    runs = store.list_runs()
    evals = store.evaluations(list(ids.values()))
    table = results_table(evals, runs)
    row = table.loc[f"expert #{ids['expert']} · {OWN_DOMAIN}"]
    last = evals[(evals["run_id"] == ids["expert"]) & (evals["step"] == 20)]
    for domain in ("add", "rev"):
        own = last[(last["model"] == domain) & (last["benchmark"] == domain)]["score"].iloc[0]
        assert row[domain] == pytest.approx(own)
    assert row["Overall"] == pytest.approx((row["add"] + row["rev"]) / 2)


def test_the_report_holds_the_split_the_grid_view_and_the_paired_test(seeded):
    import plotly.graph_objects as go

    from app.dashboard.queries import results_table
    from app.dashboard.report import compare_report
    from app.dashboard.sweep_data import GridReport
    from tests.seed import GROUP

    store = RunStore.from_url(seeded[0])
    runs = store.list_runs(group=GROUP)
    table = results_table(store.evaluations([r.id for r in runs]), runs)
    fig = go.Figure(
        go.Scatter(x=["copd", "mixed"], y=[0.8, 0.7]), layout={"title": "Overall vs method"}
    )
    grid = GridReport(
        "test",
        "reported model",
        "Overall",
        [fig],
        ["Paired comparison on Overall: mean A − B = +0.1000"],
    )
    html = compare_report(runs, [], table, __import__("pandas").DataFrame(), title="g", grid=grid)
    assert "Results: test split, latest evaluation of each run" in html
    assert "Grid sweep: final score per swept parameter" in html
    assert "Paired comparison on Overall" in html and "Overall vs method" in html
    assert html.count("<script") >= 1  # plotly.js inlined with the grid figure


# ---------------------------------------------------------------------- 13: read less
def test_home_counts_every_runs_alerts_in_one_read(tmp_path):
    """Home's alert counts: one grouped read, not one read of events per run."""
    from sqlalchemy import event

    from app.control.alerts import ALERT_LEVEL, alert_counts

    store = RunStore.from_url(f"sqlite:///{tmp_path / 'alerts.db'}")
    runs = [store.create_run(f"r{i}", "copd", RunConfig().to_dict()) for i in range(12)]
    for r in runs[::3]:
        store.log_event(r.id, "nonfinite: x is NaN at step 3", level=ALERT_LEVEL, step=3)
        store.log_event(r.id, "stall: no heartbeat", level=ALERT_LEVEL)
    store.log_event(runs[1].id, "phase II started", step=6)  # not an alert
    statements = []
    listener = lambda *a: statements.append(a[2])  # noqa: E731
    event.listen(store.db.engine, "before_cursor_execute", listener)
    counts = alert_counts(store, runs)
    event.remove(store.db.engine, "before_cursor_execute", listener)
    assert counts == {r.id: 2 for r in runs[::3]}
    assert len([s for s in statements if "events" in s.lower()]) == 1, statements


# ---------------------------------------------------------------------- 12: text labels
def test_every_status_reads_in_words_with_a_symbol_text_fonts_carry():
    """Each status: a symbol outside the emoji planes (no variation selector asking for an
    emoji), then the status as a word, so a browser without an emoji font shows it whole."""
    from app.dashboard.queries import status_label
    from storage import RunStatus

    for status in RunStatus:
        label = status_label(status)
        symbol, _, word = label.partition(" ")
        assert word == status.value, label
        assert len(symbol) == 1 and ord(symbol) < 0x1F000 and "\ufe0f" not in label, label
        assert not 0x2600 <= ord(symbol) <= 0x26FF, label  # Miscellaneous Symbols: emoji


def test_page_icons_come_from_the_bundled_icon_font():
    """Navigation, page links, titles and buttons use `:material/...:` icons, never emoji."""
    import ast
    import re

    root = Path(ENTRY).parent.parent
    emoji = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf\u23e9-\u23fa\u2b50]")
    found = []
    for path in [root / "app" / "main.py", *sorted((root / "pages").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in (
                "Page", "page_link", "title", "button",
            ):  # fmt: skip
                texts = [a.value for a in node.args if isinstance(a, ast.Constant)]
                texts += [k.value.value for k in node.keywords
                          if k.arg == "icon" and isinstance(k.value, ast.Constant)]  # fmt: skip
                found += [
                    f"{path.name}: {t}" for t in texts if isinstance(t, str) and emoji.search(t)
                ]
    assert not found, found


def test_copd_runs_rounds_progress_as_the_pages_do(tmp_path):
    from app.control.run_table import format_table, run_summary

    store = RunStore.from_url(f"sqlite:///{tmp_path / 'cli.db'}")
    run = store.create_run("slow", "copd", RunConfig().to_dict())
    store.claim(run.id, host="h")
    store.heartbeat(run.id, progress=0.999)
    text = format_table([run_summary(store, store.get_run(run.id))])
    assert " 99% " in text and "100%" not in text  # not done: never reads 100%


def test_retention_is_each_methods_reported_score_over_the_same_seeds_expert(monkeypatch, tmp_path):
    """Issue 38 (the paper's claim as a view): per domain, the reported model's final test
    score as a share of that domain's expert (same seed) and of the expert's gain over the
    base (step-0 scores); computed here by hand from the scores the store holds."""
    from app.dashboard.queries import settled
    from app.dashboard.retention import retention_rows, retention_summary
    from storage import Evaluation

    url = f"sqlite:///{tmp_path / 'every.db'}"
    ids = _every_method_group(url)
    store = RunStore.from_url(url)
    for method in ("expert", "mixed"):  # the base at step 0: 0.4 on both domains
        store.log_evals(ids[method], [Evaluation(m, b, 0.4, 64, 0) for m in
                                      (("add", "rev") if method == "expert" else ("mixed",))
                                      for b in ("add", "rev")])  # fmt: skip
    runs = store.list_runs(group="every")
    evals = store.evaluations([r.id for r in runs])
    finished, _ = settled(runs, evals)
    summary = retention_summary(retention_rows(evals, finished)).set_index(["method", "domain"])
    expert = 0.6  # each expert on its own domain: 0.5 + 0.1
    expected = {  # method -> its reported model's score on (add, rev)
        "copd": (0.6, 0.6), "weight_average": (0.5, 0.5), "mixed": (0.55, 0.55),
        "mopd": (0.5, 0.5), "static_opd": (0.5, 0.6),  # the student "rev": +0.1 on rev
        "sequential": (0.5, 0.5),
    }  # fmt: skip
    assert set(summary.index.get_level_values("method")) == set(expected)
    for method, scores in expected.items():
        for domain, score in zip(("add", "rev"), scores, strict=True):
            row = summary.loc[(method, domain)]
            assert row["share"] == pytest.approx(score / expert), (method, domain)
            assert row["n"] == 1
            gain = (score - 0.4) / (expert - 0.4)
            assert row["gain_share"] == pytest.approx(gain), (method, domain)
    store.close()

    at = _compare_group(monkeypatch, tmp_path, url, "every")
    assert "Score kept per domain" in _specs(at)
    at.radio(key="compare:retention").set_value("gain_share").run()
    assert "Gain kept per domain" in _specs(at)
    st.cache_data.clear()
