"""The dashboard's instruments: the grid-sweep view on Compare (swept-parameter detection,
seed bands, the heatmap and the paired comparison, whose numbers must be copd.common.stats.paired's
on the same scores) and the Live view's signal balance and overlap at several k.

Stores are seeded directly through RunStore (as tests/seed.py does); configs come from
copd.spec.sweep.sweep_configs, so a grid group looks exactly like one `copd sweep --grid` queues.
"""

from __future__ import annotations

import base64
import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from app.dashboard import figures, signal_data, sweep_data
from app.dashboard.series import Schedule
from copd.common import names as N
from copd.common.stats import mean_std, paired
from copd.spec.sweep import sweep_configs
from storage import RunStore
from storage.entities import Evaluation, MetricPoint
from tests.app_support import clear_caches, new_app, use_store

GRID = {"opd.beta": ["0.5", "2"], "schedule.rl_steps": ["2", "4"]}
SEEDS = (0, 1, 2)
GROUP = "grid-beta"


def _grid_runs():
    return sweep_configs(["demo"], list(SEEDS), GROUP, grid=GRID)


def true_score(beta: float, rl: int, seed: int, bench: str, split: str) -> float:
    """A made-up final score with a real effect of both parameters and a seed effect."""
    base = {"add": 0.40, "rev": 0.30}[bench] + (0.05 if split == "validation" else 0.0)
    return base + 0.10 * (beta > 1) + 0.02 * rl + 0.013 * seed + 0.004 * seed * seed * (rl == 4)


# ---------------------------------------------------------------------- pure functions
def _fake_runs(sweep):
    return [
        SimpleNamespace(id=i + 1, seed=r.seed, group=r.cfg.group, config=r.cfg.to_dict())
        for i, r in enumerate(sweep)
    ]


def test_swept_params_are_the_grid_keys_with_typed_values():
    runs = _fake_runs(_grid_runs())
    assert len(runs) == 12
    params = sweep_data.swept_params(runs)
    assert params == {"opd.beta": [0.5, 2.0], "schedule.rl_steps": [2, 4]}
    # one grid point alone: only the seed (and name) differ, so nothing is swept
    assert sweep_data.swept_params(runs[:3]) == {}
    labels = sweep_data.run_values(runs, params)["arm"]
    assert labels.nunique() == 4 and "beta=0.5 · rl_steps=2" in set(labels)


def test_swept_params_fold_preset_differences_into_method():
    sweep = sweep_configs(["demo", "mixed"], [0, 1], "abl", grid={"opd.beta": ["0.5", "2"]})
    params = sweep_data.swept_params(_fake_runs(sweep))
    # the presets differ in many fields (their budgets); those follow from the method
    assert list(params) == ["method", "opd.beta"]
    assert params["method"] == ["copd", "mixed"]


def test_param_band_and_heatmap_are_means_over_seeds():
    rows = []
    for rid, (beta, rl, seed) in enumerate(
        [(b, r, s) for b in (0.5, 2.0) for r in (2, 4) for s in SEEDS], start=1
    ):
        for bench in ("add", "rev"):
            v = true_score(beta, rl, seed, bench, "test")
            rows.append((rid, seed, beta, rl, bench, v))
    t = pd.DataFrame(
        rows, columns=["run_id", "seed", "opd.beta", "schedule.rl_steps", "bench", "score"]
    )
    overall = t.groupby(["run_id", "seed", "opd.beta", "schedule.rl_steps"], as_index=False)[
        "score"
    ].mean()
    t = pd.concat([t, overall.assign(bench="Overall")], ignore_index=True)
    t["arm"] = [
        f"beta={b} · rl_steps={r}"
        for b, r in zip(t["opd.beta"], t["schedule.rl_steps"], strict=True)
    ]
    band = sweep_data.param_band(t, "opd.beta", "Overall")
    assert list(band["line"].unique()) == ["rl_steps=2", "rl_steps=4"]
    row = band[(band["line"] == "rl_steps=4") & (band["value"] == 2.0)].iloc[0]
    want = [
        (true_score(2.0, 4, s, "add", "test") + true_score(2.0, 4, s, "rev", "test")) / 2
        for s in SEEDS
    ]
    assert row["mean"] == pytest.approx(mean_std(want)[0])
    assert row["std"] == pytest.approx(mean_std(want)[1]) and row["std"] > 0
    assert row["n"] == 3
    cells = sweep_data.heatmap_frame(t, "opd.beta", "schedule.rl_steps")
    assert cells.loc["2.0", "4"] == pytest.approx(mean_std(want)[0])
    assert cells.shape == (2, 2) and cells.loc["2.0", "2"] > cells.loc["0.5", "2"]
    fig = figures.param_figure(band, "opd.beta", "Overall", "test")
    assert [d.name for d in fig.data if d.fill != "toself"] == [
        "rl_steps=2 (n=3)",
        "rl_steps=4 (n=3)",
    ]


def _signal_frame() -> pd.DataFrame:
    rows = []
    keys = [N.branch("add", N.SIGNAL_GRAD_GRPO), N.branch("add", N.SIGNAL_ADV_GRPO)]
    for t in ("rev", "sort"):
        keys += [N.branch("add", N.signal_key(k, t)) for k in ("grad_norm", "cos", "adv_abs")]
        keys += [N.branch("add", N.signal_key(k, t)) for k in ("pos_frac", "log_ratio")]
        keys.append(N.branch("add", f"{N.CLIP_FRAC}/{t}"))
    keys += [N.branch("add", N.CLIP_FRAC), N.branch("rev", N.SIGNAL_GRAD_GRPO)]
    keys.append(N.branch("add", N.REWARD_MEAN))  # not a signal-balance metric
    for step in (3, 4, 8):
        for k in keys:
            rows.append({"run_id": 1, "key": k, "step": step, "value": 0.1 * step, "phase": "opd"})
    return pd.DataFrame(rows)


def test_signal_figure_has_a_trace_for_each_term_in_each_panel():
    df = _signal_frame()
    assert signal_data.signal_branches(list(df["key"].unique())) == ["add", "rev"]
    assert signal_data.parse_signal_key("branch/add/clip_frac/rev") == ("add", "clip_frac", "rev")
    assert signal_data.parse_signal_key("branch/add/signal/cos/rev") == ("add", "cos", "rev")
    assert signal_data.parse_signal_key("branch/add/reward/mean") is None
    fig = figures.signal_figure(df, "add", schedule=Schedule(2, 2, 2))
    lines = [d for d in fig.data if d.x is not None and d.x[0] is not None]
    by_panel: dict[str, set[str]] = {}
    for d in lines:
        by_panel.setdefault(d.xaxis, set()).add(d.name)
    grpo, rev, sort = "GRPO (native)", "OPD ← rev", "OPD ← sort"
    # panels in SIGNAL_PANELS order: grad_norm, cos, adv_abs, pos_frac, log_ratio, clip_frac
    assert by_panel == {
        "x": {grpo, rev, sort},
        "x2": {rev, sort},
        "x3": {grpo, rev, sort},
        "x4": {rev, sort},
        "x5": {rev, sort},
        "x6": {grpo, rev, sort},
    }
    assert len(lines) == 15  # 3 + 2 + 3 + 2 + 2 + 3
    # one legend entry per term, the same colour in every panel; phases shaded
    legend = [d.name for d in lines if d.showlegend]
    assert sorted(legend) == sorted([grpo, rev, sort])
    assert len({d.line.color for d in lines if d.name == rev}) == 1
    assert {d.name for d in fig.data} >= {"phase I · RL", "phase II · OPD"}
    assert fig.layout.shapes  # the bands themselves
    # the other branch only has its GRPO gradient norm
    other = figures.signal_figure(df, "rev")
    assert [d.name for d in other.data] == [grpo]


def test_overlap_at_k_and_the_vocabulary_caption(tmp_path):
    keys = [f"pair/add~rev/overlap_top{k}" for k in (10, 1, 5)] + [
        "pair/add~rev/overlap_mass",
        "base/add/overlap_top1",
        "pair/add~rev/sym_kl",
    ]
    panels = signal_data.overlap_k_keys(keys)
    assert list(panels) == ["top-1", "top-5", "top-10", "mass"]
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"vocab_size": 30}))
    assert signal_data.vocab_size_of({"model": {"path": str(model)}}) == 30
    assert signal_data.vocab_size_of({"model": {"path": "Qwen/Qwen3-1.7B"}}) is None
    (model / "config.json").write_text(json.dumps({"text_config": {"vocab_size": 50}}))
    assert signal_data.vocab_size_of({"model": {"path": str(model)}}) == 50
    small = signal_data.k_caption([1, 5, 10], 30)
    assert "10/30 = 33.3%" in small and "top-1 (≤ 5% of the vocabulary) discriminates" in small
    assert "each overlap discriminates" in signal_data.k_caption([1, 5, 10], 151_936)
    assert "unknown" in signal_data.k_caption([1, 5, 10], None)
    df = pd.DataFrame(
        [{"run_id": 1, "key": k, "step": s, "value": 0.5} for k in keys for s in (0, 2)]
    )
    fig = figures.overlap_k_figure(df, panels, vocab=30)
    assert [a.text for a in fig.layout.annotations][:3] == [
        "top-1 overlap · k/V = 3%",
        "top-5 overlap · k/V = 17%",
        "top-10 overlap · k/V = 33%",
    ]
    assert len(fig.data) == 4


# ---------------------------------------------------------------------- AppTest
@pytest.fixture(scope="module")
def grid_store(tmp_path_factory):
    """A grid group (2 params x 2 values x 3 seeds) with final evaluations of the merged
    model on both splits, and one CoPD run with signal-balance and overlap-at-k metrics."""
    tmp = tmp_path_factory.mktemp("grid")
    url = f"sqlite:///{tmp / 'grid.db'}"
    store = RunStore.from_url(url)
    for r in _grid_runs():
        run = store.create_run(r.cfg.name, r.cfg.method, r.cfg.to_dict(), seed=r.seed, group=GROUP)
        beta, rl = float(r.point["opd.beta"]), int(r.point["schedule.rl_steps"])
        evals = []
        for split, suffix in (("test", ""), ("validation", N.VAL_SUFFIX)):
            for bench in ("add", "rev"):
                score = true_score(beta, rl, r.seed, bench, split)
                evals.append(Evaluation("merged", bench + suffix, score, 64, 12))
                evals.append(Evaluation("add", bench + suffix, score - 0.2, 64, 12))
        evals.append(Evaluation("merged", "add", 0.01, 64, 4))  # an earlier step: ignored
        store.log_evals(run.id, evals)
        store.mark_running(run.id, pid=999_999, pid_start_time=0.0, host="h")
        store.set_status(run.id, "finished")
    model = tmp / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"vocab_size": 30}))
    cfg = _grid_runs()[0].cfg.to_dict()
    cfg.update(group=None, name="signal-run")
    cfg["model"]["path"] = str(model)
    run = store.create_run("signal-run", "copd", cfg)
    pts = []
    for _, row in _signal_frame().iterrows():
        pts.append(MetricPoint(row["key"], row["value"], row["step"], 0, "opd", "add"))
    for step in (0, 4, 8):
        for key in ("overlap_top1", "overlap_top5", "overlap_top10", "overlap_mass"):
            for pair in ("add~rev", "rev~add"):
                pts.append(MetricPoint(f"pair/{pair}/{key}", 0.5, step, 0, "opd", pair))
    store.log_metrics(run.id, pts)
    store.close()
    return url, run.id


@pytest.fixture
def app(grid_store, monkeypatch, tmp_path):
    url, _ = grid_store
    use_store(monkeypatch, tmp_path, url)
    yield new_app()
    clear_caches()


def _overall(beta, rl, seed, split):
    return (true_score(beta, rl, seed, "add", split) + true_score(beta, rl, seed, "rev", split)) / 2


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_compare_grid_view_heatmap_and_paired_numbers(app):
    at = app
    at.run()
    at.switch_page("../pages/compare.py").run()
    assert not at.exception
    assert at.selectbox(key="compare:group").value == GROUP
    assert any(h.value.startswith("Grid sweep") for h in at.subheader)
    assert at.radio(key="compare:sweep:split").value == "validation"  # choose on validation
    # each run's reported model first: the merged one for these CoPD runs
    assert at.selectbox(key="compare:sweep:model").value == "reported model"
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("vs opd.beta" in s for s in specs) and any(
        "vs schedule.rl_steps" in s for s in specs
    )
    assert any('"heatmap"' in s for s in specs)
    # parallel coordinates: one line per run over both swept fields and the score
    par = json.loads(next(s for s in specs if '"parcoords"' in s))["data"][0]
    assert [d["label"] for d in par["dimensions"]] == ["opd.beta", "schedule.rl_steps", "Overall"]
    values = par["dimensions"][0]["values"]  # plotly's typed array: float64 bytes
    n = len(base64.b64decode(values["bdata"])) // 8 if isinstance(values, dict) else len(values)
    assert n == len(SEEDS) * 4

    for split in ("validation", "test"):
        at.radio(key="compare:sweep:split").set_value(split).run()
        assert not at.exception
        cells = next(d.value for d in at.dataframe if d.value.index.name == "opd.beta")
        for beta in (0.5, 2.0):
            for rl in (2, 4):
                want = sum(_overall(beta, rl, s, split) for s in SEEDS) / len(SEEDS)
                assert cells.loc[str(beta), str(rl)] == pytest.approx(want)
        # default arms: A = the last grid point, B = the first
        assert at.selectbox(key="compare:sweep:a").value == "beta=2.0 · rl_steps=4"
        assert at.selectbox(key="compare:sweep:b").value == "beta=0.5 · rl_steps=2"
        want = paired(
            [_overall(2.0, 4, s, split) for s in SEEDS], [_overall(0.5, 2, s, split) for s in SEEDS]
        )
        got = _metrics(at)
        assert got["mean Overall A − B"] == f"{want.diff:+.4f}"
        assert got["95% CI"] == f"[{want.ci_low:+.4f}, {want.ci_high:+.4f}]"
        assert got["p (paired permutation)"] == f"{want.p_value:.3g}" == "0.25"
        assert got["seeds"] == "3"

    # another pair of arms, on one domain
    at.selectbox(key="compare:sweep:bench").set_value("rev").run()
    at.selectbox(key="compare:sweep:a").set_value("beta=0.5 · rl_steps=4").run()
    assert not at.exception
    want = paired(
        [true_score(0.5, 4, s, "rev", "test") for s in SEEDS],
        [true_score(0.5, 2, s, "rev", "test") for s in SEEDS],
    )
    assert _metrics(at)["mean rev A − B"] == f"{want.diff:+.4f}"
    assert not math.isnan(want.ci_low)


def test_live_view_draws_signal_balance_and_overlap_at_k(app, grid_store):
    _, run_id = grid_store
    at = app
    at.query_params["run"] = str(run_id)
    at.run()
    at.switch_page("../pages/live.py").run()
    assert not at.exception
    assert at.selectbox(key="live:run").value == run_id
    assert "Signal balance" not in [h.value for h in at.subheader]  # its section is shut
    at.session_state["live:open:more"] = at.session_state["live:open:signal"] = True
    at.run()
    assert "Signal balance" in [h.value for h in at.subheader]
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = {f["layout"]["title"]["text"] for f in figs}
    # one branch tab drawn at a time: the first, then the one picked
    assert "Signal balance · branch add" in titles and "Signal balance · branch rev" not in titles
    at.session_state[f"signal:{run_id}:branch"] = "branch rev"
    at.run()
    assert not at.exception
    shown = {json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")}
    assert "Signal balance · branch rev" in shown and "Signal balance · branch add" not in shown
    assert "Overlap at several k (student~teacher)" in titles
    names = {d.get("name") for f in figs for d in f["data"]}
    assert {"GRPO (native)", "OPD ← rev", "OPD ← sort"} <= names
    captions = " ".join(c.value for c in at.caption)
    assert "Vocabulary 30 tokens" in captions and "10/30 = 33.3%" in captions
