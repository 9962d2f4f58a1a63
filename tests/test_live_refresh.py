"""A Live view refresh with no new rows reads no series and rebuilds no figure (the data
signature RunStore.data_version is unchanged, so app/dashboard/widgets.memo answers), and
every chart keeps its zoom across refreshes (layout.uirevision set, stable keys). A new
row, an evaluation or an alert makes the next refresh read and rebuild. Real Streamlit
AppTest on a real SQLite store."""

from __future__ import annotations

import json

import pytest
import streamlit as st

from copd.spec import RunConfig
from storage import MetricPoint, RunStore
from storage.entities import Evaluation
from tests.app_support import clear_caches, new_app, use_store
from tests.seed import training_points

SECTIONS = ("more", "signal", "system")  # the Live view's sections drawn on demand


@pytest.fixture
def live(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'live.db'}"
    use_store(monkeypatch, tmp_path, url)
    store = RunStore.from_url(url)
    ids = {}
    for method in ("copd", "expert"):  # a group, so the overlay is drawn too
        cfg = RunConfig(name=method, method=method, group="g").to_dict()
        run = store.create_run(method, method, cfg, group="g")
        store.log_metrics(run.id, training_points(30))
        ids[method] = run.id
    reads: list[tuple] = []
    real = RunStore.metric_series
    monkeypatch.setattr(
        RunStore, "metric_series", lambda self, *a, **k: reads.append(a) or real(self, *a, **k)
    )
    clear_caches()
    at = new_app()
    at.query_params["run"] = str(ids["copd"])
    at.run()
    at.switch_page("../pages/live.py").run()
    assert not at.exception
    for name in SECTIONS:  # open every section, so every chart of the view is drawn
        at.session_state[f"live:open:{name}"] = True
    at.run()
    assert not at.exception
    yield at, store, ids, reads
    store.close()
    clear_caches()


def _builds(at) -> dict[str, int]:
    return dict(at.session_state["copd:builds"])


def _tick(at) -> None:
    st.cache_data.clear()  # as after the queries' TTL: only the signature saves the reads
    at.run()
    assert not at.exception


def test_a_refresh_with_no_new_rows_reads_and_builds_nothing(live):
    at, store, ids, reads = live
    charts = at.get("plotly_chart")
    assert len(charts) >= 6
    builds = _builds(at)
    figures = [n for n in builds if not n.endswith(":data")]
    assert len(figures) >= 6 and set(builds.values()) == {1}
    for chart in charts:  # zoom survives a refresh: a constant uirevision on every chart
        assert json.loads(chart.proto.spec)["layout"].get("uirevision")

    reads.clear()
    for _ in range(2):
        _tick(at)
        assert _builds(at) == builds  # no figure rebuilt, no data re-read
    assert reads == []
    assert len(at.get("plotly_chart")) == len(charts)  # and every chart is still drawn
    specs = [json.loads(c.proto.spec)["layout"]["uirevision"] for c in at.get("plotly_chart")]
    assert specs == [json.loads(c.proto.spec)["layout"]["uirevision"] for c in charts]

    # one new point of the run: its data and figures are read and built again, once
    store.log_metrics(ids["copd"], [MetricPoint("branch/add/reward/mean", 0.9, step=30)])
    _tick(at)
    after = _builds(at)
    assert after[f"live:{ids['copd']}:data"] == 2
    assert after[f"live:{ids['copd']}:reward"] == 2
    assert reads
    _tick(at)
    assert _builds(at) == after

    # an evaluation and an event change the signature too
    store.log_evals(ids["copd"], [Evaluation("merged", "add", 0.5, 8, step=30)])
    _tick(at)
    assert _builds(at)[f"live:{ids['copd']}:data"] == 3
    store.log_event(ids["copd"], "alert: reward is NaN", level="warning", step=30)
    _tick(at)
    assert _builds(at)[f"live:{ids['copd']}:data"] == 4


def test_data_version_changes_with_every_kind_of_write(tmp_path):
    store = RunStore.from_url(f"sqlite:///{tmp_path / 'v.db'}")
    run = store.create_run("r", "copd", {})
    seen = [store.data_version(run.id)]
    store.log_metrics(run.id, [MetricPoint("k", 1.0, step=5)])
    seen.append(store.data_version(run.id))
    store.log_metrics(run.id, [MetricPoint("k", 2.0, step=3)])  # an older step
    seen.append(store.data_version(run.id))
    store.log_evals(run.id, [Evaluation("m", "b", 0.5, 4, step=5)])
    seen.append(store.data_version(run.id))
    store.log_event(run.id, "hello")
    seen.append(store.data_version(run.id))
    store.truncate_after(run.id, 4)
    seen.append(store.data_version(run.id))
    assert len(set(seen)) == len(seen)
    assert store.data_version(run.id) == store.data_version([run.id])  # and reads alike
    store.close()


def test_the_live_signature_moves_only_with_what_the_view_draws(live):
    from app.dashboard.live_view import live_signature

    at, store, ids, _ = live
    url = store.url
    sig = live_signature(store.get_run(ids["copd"]), url)
    assert live_signature(store.get_run(ids["copd"]), url) == sig  # a tick: nothing new
    store.heartbeat(ids["copd"])  # a heartbeat alone changes nothing drawn
    assert live_signature(store.get_run(ids["copd"]), url) == sig
    store.log_metrics(ids["expert"], [MetricPoint("pair/add~rev/sym_kl", 0.1, step=31)])
    st.cache_data.clear()
    moved = live_signature(store.get_run(ids["copd"]), url)
    assert moved != sig  # a new row of a group peer: the overlay would change
    store.heartbeat(ids["copd"], progress=0.5)
    assert live_signature(store.get_run(ids["copd"]), url) != moved


def test_a_first_draw_holds_the_headline_charts_and_a_section_draws_when_opened(live):
    """Closed sections run nothing: the browser's first draw is the header, the group
    overlay, the run's rewards and evaluations; each section's charts come when it is
    opened, and stay while it is open."""
    at, store, ids, reads = live
    rid = ids["copd"]
    every = {c.key for c in at.get("plotly_chart")}
    for name in SECTIONS:
        at.session_state[f"live:open:{name}"] = False
    at.run()
    first = {c.key for c in at.get("plotly_chart")}
    # the group overlay draws this run's overlap and KL: its per-pair charts wait
    headline = {f"live:group:g:{n}" for n in ("overlap", "sym_kl")} | {f"live:{rid}:reward"}
    assert headline <= first and first < every
    assert not first & {f"live:{rid}:overlap", f"live:{rid}:sym_kl"}
    assert {f"live:{rid}:overlap", f"live:{rid}:sym_kl"} <= every
    assert not {k for k in first if ":signal:" in k or k.endswith((":time", ":system"))}
    labels = [e.label for e in at.expander]
    assert any(lb.startswith("Time and system") for lb in labels), labels
    at.session_state["live:open:system"] = True
    at.run()
    opened = {c.key for c in at.get("plotly_chart")}
    assert opened - first == {f"live:{rid}:time", f"live:{rid}:system"}, every - first
