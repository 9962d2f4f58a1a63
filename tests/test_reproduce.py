"""`copd reproduce` on the tiny test model (every arm, one store group, the paper's table),
the pilot study's fit and its end-to-end run, the drift summary, and the Studies page."""

from __future__ import annotations

import json
import math
import random

import pytest

from copd.common.stats import fit_line, permutation_p
from copd.common.tables import paper_table
from experiments.drift import summarise_series
from experiments.pilot import run_pilot
from experiments.reproduce import ARMS, reproduce
from storage import RunStore
from storage.entities import MetricPoint
from tests.app_support import clear_caches, new_app, use_store
from tests.conftest import tiny_overrides
from tests.seed import seed_store

QUICK_ROWS = [
    "Base",
    "add-Expert",
    "rev-Expert",
    "Mixed GRPO",
    "Mixed GRPO (T steps)",
    "Static OPD add→rev",
    "Static OPD rev→add",
    "CoPD",
    "MOPD",
    "Weight average of experts",
    "sort-Expert",
    "CoPD (hub)",
]


# One arm of every method and both table sections, two seeds: the default suite. Every
# arm (19 x 2 runs, ~3 minutes) is the slow test below; CI runs both.
TABLE_ARMS = ("base", "expert", "mixed", "static_opd", "static_opd-rev", "weight_average", "copd",
              "base-3", "mopd-3")  # fmt: skip
TABLE_ROWS = ["Base", "add-Expert", "rev-Expert", "Mixed GRPO", "Static OPD add→rev",
              "Static OPD rev→add", "Weight average of experts", "CoPD", "MOPD"]  # fmt: skip


def run_reproduce(tmp_path_factory, tiny_model_dir, arms):
    out = tmp_path_factory.mktemp("reproduce")
    url = f"sqlite:///{out / 'runs.db'}"
    overrides = tiny_overrides(tiny_model_dir)
    payload = reproduce(
        [0, 1], "quick", overrides, out, url, "repro", arms=arms, log=lambda m: None
    )
    return out, url, payload


@pytest.fixture(scope="module")
def reproduced(tiny_model_dir, tmp_path_factory):
    return run_reproduce(tmp_path_factory, tiny_model_dir, TABLE_ARMS)


def check_reproduced(reproduced, arm_keys, rows, methods) -> None:
    out, url, payload = reproduced
    report = (out / "report.md").read_text()
    assert "## 2 domains" in report and "## 3 domains" in report and "Overall" in report
    for row in rows:
        assert f"| {row} |" in report, row
    assert "**" in report and "±" in report  # best in bold, mean ± std
    assert {(a["arm"], a["seed"]) for a in payload["arms"]} == {
        (k, s) for k in arm_keys for s in (0, 1)
    }
    results = json.loads((out / "results.json").read_text())
    assert results["scale"] == "quick" and results["timing"]["seconds"] > 0

    store = RunStore.from_url(url)
    assert store.list_groups() == ["repro"]
    runs = store.list_runs(group="repro")
    assert len(runs) == len(arm_keys) * 2
    assert {r.status for r in runs} == {"finished"}
    assert {r.method for r in runs} == methods
    evals = store.evaluations([r.id for r in runs])
    assert set(evals["run_id"]) == {r.id for r in runs}  # every arm logged its scores


METHODS = {"base", "expert", "mixed", "static_opd", "mopd", "copd", "weight_average"}


def test_reproduce_quick_runs_one_arm_of_every_method(reproduced):
    check_reproduced(reproduced, TABLE_ARMS, TABLE_ROWS, METHODS)


@pytest.mark.slow
def test_reproduce_quick_runs_every_arm(tiny_model_dir, tmp_path_factory):
    every = run_reproduce(tmp_path_factory, tiny_model_dir, None)
    check_reproduced(every, [a.key for a in ARMS], QUICK_ROWS, METHODS)


def test_compare_table_shows_the_reproduce_group(reproduced):
    from app.dashboard.queries import results_markdown, results_table, seed_arms

    _, url, _ = reproduced
    store = RunStore.from_url(url)
    runs = store.list_runs(group="repro")
    table = results_table(store.evaluations([r.id for r in runs]), runs, seed_arms(runs))
    assert {"add", "rev", "sort", "Overall", "seeds"} <= set(table.columns)
    rows = set(table.index)
    assert {"base · base", "base-3 · base", "copd · merged", "mixed · mixed"} <= rows
    assert {"static_opd · rev", "static_opd-rev · add", "mopd · mopd"} <= rows
    assert (table["seeds"] == 2).all()  # the two seeds of each arm form one row
    md = results_markdown(table)
    assert "±" in md and "nan" not in md  # 2-domain rows show "—" under sort


def test_markdown_table_bolds_best_and_shows_spread():
    text = paper_table({"x": [{"a": 0.2}, {"a": 0.4}], "y": [{"a": 0.5}]}).markdown()
    assert "| x | 0.300 ± 0.141 | 0.300 ± 0.141 | 2 |" in text
    assert "| y | **0.500 ± 0.000** | **0.500 ± 0.000** | 1 |" in text


# ---------------------------------------------------------------------- pilot statistics
def test_fit_of_a_perfect_line_is_exact():
    x = [0.1, 0.3, 0.5, 0.7, 0.9]
    fit = fit_line(x, [2 * v - 1 for v in x])
    assert fit.r == pytest.approx(1.0, abs=1e-12)
    assert fit.slope == pytest.approx(2.0) and fit.intercept == pytest.approx(-1.0)
    assert fit.n == 5
    # Exact permutation test: only the identity and the reversal reach |r| = 1 (2 of 120).
    assert fit.p_value == pytest.approx(2 / 120) and fit.p_method == "exact permutation"
    assert fit_line(x, [-v for v in x]).r == pytest.approx(-1.0, abs=1e-12)


def test_fit_of_noise_has_r_near_zero_and_large_p():
    rng = random.Random(0)
    x = [rng.random() for _ in range(1000)]
    y = [rng.random() for _ in range(1000)]
    fit = fit_line(x, y)
    assert abs(fit.r) < 0.08 and fit.p_value > 0.01
    p, how = permutation_p(x[:30], y[:30], draws=2000)
    assert p > 0.05 and how.startswith("permutation")


def test_fit_degenerate_inputs():
    assert math.isnan(fit_line([1.0, 1.0, 1.0], [0.0, 1.0, 2.0]).r)  # constant x
    assert math.isnan(fit_line([1.0], [2.0]).r)
    with pytest.raises(ValueError, match="differ in length"):
        fit_line([1.0, 2.0], [1.0])


def test_pilot_runs_on_the_tiny_model_and_logs_points(tiny_model_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    payload = run_pilot(
        temperatures=(0.5, 1.5), seeds=(0,), overrides=tiny_overrides(tiny_model_dir),
        out=tmp_path, db=url, group="pilot-t", student_steps=2, opd_steps=2, n_probe=8,
        log=lambda m: None,
    )  # fmt: skip
    pts = payload["points"]
    assert [p["temperature"] for p in pts] == [0.5, 1.5]
    for p in pts:
        assert 0.0 <= p["overlap"] <= 1.0 and p["gain"] == pytest.approx(p["post"] - p["pre"])
    assert json.loads((tmp_path / "pilot.json").read_text())["fit"]["n"] == 2
    store = RunStore.from_url(url)
    (run,) = store.list_runs(group="pilot-t")
    assert run.method == "pilot" and run.status == "finished"
    df = store.metric_series(run.id, ["pilot/overlap", "pilot/gain"])
    assert sorted(df[df["key"] == "pilot/gain"]["step"]) == [0, 1]


# ---------------------------------------------------------------------- drift
def test_drift_summary_start_mid_end_and_growth():
    pts = [("base/add/sym_kl", s, v) for s, v in [(0, 0.0), (2, 0.01), (4, 0.03), (8, 0.1)]]
    pts += [("pair/add~rev/overlap_top10", s, 1.0 - s / 10) for s in (0, 2, 4, 8)]
    out = summarise_series(pts)
    assert out["base/add/sym_kl"]["start"] == 0.01 and out["base/add/sym_kl"]["end"] == 0.1
    assert out["base/add/sym_kl"]["mid"] == 0.03  # step 4 is the middle of 2..8
    assert out["base/add/sym_kl"]["growth"] == pytest.approx(10.0)
    assert out["pair/add~rev/overlap_top10"]["at0"] == 1.0
    assert "growth" not in out["pair/add~rev/overlap_top10"]


# ---------------------------------------------------------------------- Studies page
@pytest.fixture
def studies_app(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 's.db'}"
    seed_store(url)
    store = RunStore.from_url(url)
    run = store.create_run("pilot-s0", "pilot", {}, seed=0, group="pilot-g")
    store.set_status(run.id, "running")
    pts = []
    for i, ov in enumerate([0.6, 0.7, 0.8, 0.9]):
        pts += [
            MetricPoint("pilot/overlap", ov, i, wall_time=1.0),
            MetricPoint("pilot/gain", 0.5 * ov - 0.2, i, wall_time=1.0),
            MetricPoint("pilot/temperature", 1.6 - i * 0.3, i, wall_time=1.0),
        ]
    store.log_metrics(run.id, pts)
    store.set_status(run.id, "finished")
    use_store(monkeypatch, tmp_path, url)
    yield new_app()
    clear_caches()


def test_studies_page_shows_pilot_scatter_and_r(studies_app):
    at = studies_app
    at.run()
    at.switch_page("../pages/studies.py").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pearson r"] == "1.000" and metrics["N (students)"] == "4"
    charts = at.get("plotly_chart")
    assert len(charts) >= 2  # the pilot scatter and the drift curves of the seeded group
    pilot = json.loads(charts[0].proto.spec)
    assert "r = 1.000" in pilot["layout"]["title"]["text"]
    assert [t["mode"] for t in pilot["data"]] == ["markers", "lines"]


def test_reproduce_reuses_finished_arms_and_rejects_unknown_ones(tiny_model_dir, tmp_path):
    from copd.spec import ConfigError

    args = ([0], "quick", tiny_overrides(tiny_model_dir), tmp_path)
    first = reproduce(*args, arms=["base"], log=lambda m: None)
    said: list[str] = []
    again = reproduce(*args, arms=["base"], reuse=True, log=said.append)
    assert any("reused" in m for m in said)
    assert again["arms"][0]["scores"] == first["arms"][0]["scores"]
    assert again["arms"][0]["seconds"] >= first["arms"][0]["seconds"]  # the measured time
    with pytest.raises(ConfigError, match="pick from"):
        reproduce(*args, arms=["nope"], log=lambda m: None)


def test_studies_page_draws_the_map_from_the_store_group(studies_app):
    """A `copd study map` group (CoPD one factor at a time, and mixed GRPO) is drawn on the
    Studies page from the store: score per swept field on the validation split."""
    import os

    from copd.spec.sweep import run_config
    from storage.entities import Evaluation

    store = RunStore.from_url(os.environ["COPD_DB_URL"])
    arms = {"copd": ("demo", []), "copd-beta4": ("demo", ["opd.beta=4"]), "mixed": ("mixed", [])}
    for arm, (preset, over) in arms.items():
        for seed in (0, 1):
            cfg = run_config(preset, seed, "study-map-2dom", over, name=f"{arm}-s{seed}")
            run = store.create_run(cfg.name, cfg.method, cfg.to_dict(), seed=seed,
                                   group="study-map-2dom")  # fmt: skip
            model = "merged" if cfg.method == "copd" else "mixed"
            base = {"copd": 0.6, "copd-beta4": 0.5, "mixed": 0.65}[arm] + 0.01 * seed
            store.log_evals(run.id, [
                Evaluation(model, b, base, 128, 80) for b in ("add@val", "rev@val", "add", "rev")
            ])  # fmt: skip
            store.set_status(run.id, "running")
            store.set_status(run.id, "finished")
    at = studies_app
    at.run()
    at.switch_page("../pages/studies.py").run()
    assert not at.exception
    at.selectbox(key="studies:map_group").set_value("study-map-2dom").run()
    assert not at.exception
    assert any("Grid sweep" in h.value for h in at.subheader)
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any("opd.beta" in json.dumps(f["layout"]) for f in figs)
