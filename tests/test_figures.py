"""The cost of a figure does not grow with a run's cycles: phase bands and cycle lines are
a constant number of path shapes per subplot that holds data (one per phase, one for the
lines), set in one layout update. Counted in plotly shape constructions (each validation of
a shape builds one) and in the bands the paths hold, not in seconds."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from app.dashboard import figures
from app.dashboard.series import Schedule
from copd.common import names as N

SHAPE_INIT = go.layout.Shape.__init__


def _count_shapes_built(build) -> tuple[go.Figure, int]:
    calls = 0

    def counting(self, *a, **k):
        nonlocal calls
        calls += 1
        SHAPE_INIT(self, *a, **k)

    with mock.patch.object(go.layout.Shape, "__init__", counting):
        fig = build()
    return fig, calls


def _schedule_shapes(fig: go.Figure) -> list:
    """The shapes of the phase bands and cycle lines (not, e.g., the cosine panel's zero line)."""
    return [s for s in fig.layout.shapes if s.type == "path"]


def _overlap(sched: Schedule) -> pd.DataFrame:
    steps = np.arange(0, sched.total + 1, 2)
    return pd.DataFrame({"key": "pair/add~rev/overlap_top10", "step": steps, "value": 0.5})


def _signal(sched: Schedule) -> pd.DataFrame:
    steps = np.arange(0, sched.total + 1, 2)
    keys = [
        N.branch("add", N.signal_key(k, t)) for k in ("grad_norm", "cos") for t in (None, "rev")
    ]
    return pd.concat([pd.DataFrame({"key": k, "step": steps, "value": 1.0}) for k in keys])


BUILDERS = {
    "series": lambda s: figures.series_figure(_overlap(s), title="o", schedule=s),
    "signal": lambda s: figures.signal_figure(_signal(s), "add", schedule=s),
    "overlap_k": lambda s: figures.overlap_k_figure(
        _overlap(s), {"top-10": ["pair/add~rev/overlap_top10"]}, schedule=s
    ),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_shapes_are_constant_in_cycles_and_built_once(name):
    counts = {}
    for cycles in (4, 8, 16, 100):
        sched = Schedule(6, 4, cycles)
        fig, built = _count_shapes_built(lambda s=sched: BUILDERS[name](s))
        n = len(_schedule_shapes(fig))
        subplots = {
            t.xaxis or "x" for t in fig.data if t.x is not None and len(t.x) and t.x[0] is not None
        }
        # per subplot one path per phase and one for the cycle lines ...
        assert n == len(subplots) * 3, (name, cycles, n, subplots)
        assert built <= 2 * n, f"{name}: {built} shape validations for {n} shapes"
        # ... holding two bands per cycle and a line between cycles, on every subplot
        bands, lines = figures.shaded(fig)
        assert len(bands) == len(subplots) * 2 * cycles
        assert len(lines) == len(subplots) * (cycles - 1)
        assert {x for _, x in lines} == subplots
        counts[cycles] = built
    assert counts[100] == counts[4]  # constant


def test_one_at_a_time_would_have_been_quadratic():
    """The anchor the count above guards against: adding bands one by one validates every
    shape already there again (so this test would fail on the old `shade`)."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1]))
    _, built = _count_shapes_built(
        lambda: [fig.add_vrect(x0=i, x1=i + 0.5) for i in range(40)] and fig
    )
    assert built > 40 * 39 / 2


def test_bands_sit_on_every_subplot_with_data_and_in_its_domain():
    sched = Schedule(2, 2, 3)
    fig = figures.signal_figure(_signal(sched), "add", schedule=sched)
    shapes = _schedule_shapes(fig)
    assert {(s.xref, s.yref) for s in shapes} == {("x", "y domain"), ("x2", "y2 domain")}
    assert {s.layer for s in shapes if s.name.startswith("phase")} == {"below"}
    bands, lines = figures.shaded(fig)
    # phase I [0, 2], II [2, 4], ... of 3 cycles, each a rectangle over the subplot's height
    assert sorted({(x0, x1) for _, x0, x1, _ in bands}) == [
        (0, 2),
        (2, 4),
        (4, 6),
        (6, 8),
        (8, 10),
        (10, 12),
    ]
    assert sorted({x for x, _ in lines}) == [4.0, 8.0]
    assert all(",0H" in s.path and "V1H" in s.path for s in shapes if s.name.startswith("phase"))


def test_a_kl_log_axis_fits_the_data_after_step_0_and_says_what_it_left_out():
    steps = [0, 2, 4, 6]
    df = pd.DataFrame({"key": "pair/a~b/sym_kl", "step": steps, "value": [1.7e-13, 0.02, 0.1, 0.3]})
    fig = figures.series_figure(df, title="kl", log_y=True)
    lo, hi = fig.layout.yaxis.range
    assert -2.5 < lo < -1.6 and -0.7 < hi < 0  # the data's decades, not 1e-13 .. 1
    notes = " ".join(a.text for a in fig.layout.annotations)
    assert "step 0: 1.7e-13" in notes and "below the axis" in notes


def test_a_single_point_gets_axes_around_it():
    df = pd.DataFrame({"key": "pair/a~b/overlap_top10", "step": [0], "value": [1.0]})
    fig = figures.series_figure(df, title="o")
    x0, x1 = fig.layout.xaxis.range
    y0, y1 = fig.layout.yaxis.range
    assert -1 < x0 < 0 < x1 <= 1.0 and 0.8 <= y0 < 1.0 < y1 <= 1.2
    two = pd.DataFrame({"key": "k", "step": [0, 2], "value": [1.0, 0.5]})
    assert figures.series_figure(two, title="o").layout.xaxis.range is None  # plotly's own


def test_phase_breaks_split_a_one_phase_series_only():
    """A phase-II-only series (steps 7-10 and 17-20 of 6 RL + 4 OPD) breaks between its
    phases; a series in both kinds of phase never breaks, even when thinned past a phase."""
    import numpy as np

    from app.dashboard.series import Schedule, phase_breaks

    sc = Schedule(rl_steps=6, opd_steps=4, cycles=2)
    assert [sc.phase_index(s) for s in (0, 1, 6, 7, 10, 11, 17)] == [0, 0, 0, 1, 1, 2, 3]
    opd_only = np.array([7, 8, 9, 10, 17, 18, 19, 20], dtype=float)
    assert phase_breaks(opd_only, sc).tolist() == [4]
    thinned = np.array([0, 6, 10, 20], dtype=float)  # skips cycle 1's phase I
    assert phase_breaks(thinned, sc).tolist() == []


def test_log_ticks_label_every_tick_in_full():
    import math

    from app.dashboard.figures.base import log_ticks

    vals, text = log_ticks(-3.3, -2.7)
    assert text == ["6e-4", "7e-4", "8e-4", "9e-4", "1e-3"]
    vals, text = log_ticks(-13, 0.5)
    assert len(vals) <= 8 and all(v == 10 ** round(math.log10(v)) for v in vals)  # decades
    assert [float(t) for t in text] == sorted(float(t) for t in text)


def test_grid_view_draws_a_categorical_field_as_points_and_one_seed_without_a_band():
    """Issue 38, defect 10: "method" on the x axis was a connected line with a slope and
    the title said "mean ± std" at n = 1."""
    import pandas as pd

    from app.dashboard import figures

    band = pd.DataFrame(
        {"line": ["", ""], "value": ["copd", "mixed"], "mean": [0.6, 0.55],
         "std": [float("nan"), float("nan")], "n": [1, 1]}
    )  # fmt: skip
    fig = figures.param_figure(band, "method", "Overall", "test")
    assert [t.mode for t in fig.data] == ["markers"]
    assert "±" not in fig.layout.title.text and "one seed" in fig.layout.title.text
    band = band.assign(std=[0.02, 0.03], n=[3, 3])
    fig = figures.param_figure(band, "method", "Overall", "test")
    assert fig.data[0].mode == "markers" and list(fig.data[0].error_y.array) == [0.02, 0.03]
    assert "mean ± std over seeds" in fig.layout.title.text
    numeric = pd.DataFrame(
        {"line": ["", ""], "value": [0.5, 1.0], "mean": [0.6, 0.55], "std": [0.0, 0.0], "n": [1, 1]}
    )
    fig = figures.param_figure(numeric, "opd.beta", "Overall", "test")
    assert [t.mode for t in fig.data] == ["lines+markers"]  # no band polygon at n = 1


def test_report_keeps_line_breaks_and_writes_no_none():
    """Issue 38, defect 12: notes showed a literal backslash-n and absent values "None"."""
    import dataclasses
    from datetime import datetime, timezone

    import pandas as pd

    from app.dashboard.report import compare_report
    from storage import Run

    run = Run(
        id=3, name="r", method="mixed", group=None, status="cancelled", config={}, seed=0,
        created_at=datetime.now(timezone.utc), started_at=None, ended_at=None, pid=None,
        pid_start_time=None, host=None, heartbeat_at=None, progress=0.0, error=None,
        code_revision=None, run_dir=None, requested_gpus=0, assigned_gpus=None, cpu_slots=1,
        notes="line one\nline two",
    )  # fmt: skip
    diff = pd.DataFrame({"#3": [None, 0.5]}, index=["opd.beta", "grpo.lr"])
    other = dataclasses.replace(run, id=4, notes="")
    html = compare_report([run, other], [], pd.DataFrame(), diff, title="t", notes="a\nb")
    assert "line one<br>line two" in html and "a<br>b" in html
    assert "\\n" not in html and ">None<" not in html
    assert "<td>—</td>" in html


def test_share_panels_span_zero_to_one_not_minus_one():
    """Issue 38, defect 12: a flat-zero clip fraction drew an axis from -1 to 1."""
    import pandas as pd

    from app.dashboard.figures.signal import share_range, signal_figure

    df = pd.DataFrame(
        {"key": ["branch/add/clip_frac"] * 3, "step": [1, 2, 3], "value": [0.0, 0.0, 0.0]}
    )
    assert share_range(df) == [0.0, 0.05]
    fig = signal_figure(df, "add")
    assert list(fig.layout.yaxis.range) == [0.0, 0.05]


def test_an_alert_names_its_step_once():
    from app.dashboard.live_view import alert_line

    assert alert_line("reward fell below 0.1 at step 10", 10).endswith("at step 10")
    assert alert_line("nonfinite: reward is NaN", 7).endswith("(step 7)")


def test_metric_names_parse_back_and_the_chart_catalogue_reads_them():
    """Issue 37: the name grammar parses as it builds; the Live view's charts are rows of
    a catalogue keyed on parsed names (a new chart = one row)."""
    from app.dashboard.charts import LINE_CHARTS, select_keys
    from copd.common import names as N

    n = N.parse(N.pair("add", "rev", N.SYM_KL))
    assert (n.kind, n.owner, n.key, n.student, n.teacher) == (
        "pair",
        "add~rev",
        "sym_kl",
        "add",
        "rev",
    )
    assert N.parse(N.branch("add", N.reward_on("rev"))).under("branch", "reward_on/")
    assert N.parse(N.time_key("rollout")) == N.Name("time", "", "rollout_s")
    assert N.parse("bare") == N.Name("", "", "bare")
    keys = [
        N.pair("add", "rev", N.overlap_key(10)), N.pair("add", "rev", N.SYM_KL),
        N.vs_base("add", N.overlap_key(10)), N.branch("add", N.REWARD_MEAN),
        N.branch("add", N.reward_on("add")), N.branch("add", N.reward_on("rev")),
        N.branch("rev", N.REWARD_MEAN), N.branch("add", N.SIGNAL_FRAC), N.time_key("update"),
        N.SYSTEM_HOST_CPU_PERCENT, N.PROGRESS, N.branch("add", N.PG_LOSS),
    ]  # fmt: skip
    groups = select_keys(keys)
    assert groups["overlap"] == [keys[0]] and groups["sym_kl"] == [keys[1]]
    assert groups["overlap_base"] == [keys[2]]
    # add's own-domain reward once (reward_on/add), rev's (no per-domain keys) as own batch
    assert groups["reward"] == [keys[4], keys[5], keys[6]]
    assert groups["signal"] == [keys[7]] and groups["time"] == [keys[8]]
    assert groups["system"] == [keys[9]]
    by = {c.group: c for c in LINE_CHARTS}
    assert by["reward"].labels(groups["reward"]) == {
        keys[4]: "add · on add",
        keys[5]: "add · on rev",
        keys[6]: "rev · own batch",
    }
    assert by["sym_kl"].labels([keys[1]]) == {keys[1]: "add~rev · add's samples"}
    # the row added for the channel's progress: each student's KL to each teacher
    kl = [N.branch("mopd", f"{N.OPD_REVERSE_KL}/fwd"), N.branch("add", f"{N.OPD_REVERSE_KL}/rev")]
    got = select_keys([*keys, *kl, N.branch("add", N.OPD_ADV_MEAN + "/rev")])
    assert got["teacher_kl"] == kl and not groups["teacher_kl"]
    assert by["teacher_kl"].labels(kl) == {kl[0]: "mopd ← fwd", kl[1]: "add ← rev"}


def test_the_signal_balance_draws_the_peer_rl_cosine():
    """Issue 39's instrument in the signal balance: a panel of cos_peer_rl per teacher."""
    import pandas as pd

    from app.dashboard.figures.signal import signal_figure
    from copd.common import names as N

    keys = [
        N.branch("add", N.signal_key("cos_peer_rl", "rev")),
        N.branch("add", N.signal_key("cos", "rev")),
    ]
    df = pd.DataFrame({"key": keys * 2, "step": [7, 7, 8, 8], "value": [0.5, 0.0, 0.4, 0.1]})
    fig = signal_figure(df, "add")
    titles = [a.text for a in fig.layout.annotations]
    assert "Cosine of ∇OPD(t) with ∇GRPO on t's prompts and rewards" in titles
    assert any(t.name == "OPD ← rev" and list(t.y) == [0.5, 0.4] for t in fig.data)
