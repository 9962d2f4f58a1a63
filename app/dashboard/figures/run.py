"""A run's figures (Live and Compare): metric curves, evaluations, timing (the System
panels are in figures/system.py, Compare's overlays in figures/compare.py).

No Streamlit here, so every chart is unit-testable. Inputs are the long frames of
`RunStore.metric_series` (after `series.with_x`, plus a `label` column naming each line)
and `RunStore.evaluations`. Every figure sets a constant `layout.uirevision`, so a live
refresh keeps the user's zoom and legend choices.

    fig = series_figure(df, title="Top-10 overlap", smoothing=0.6, schedule=schedule_of(cfg))
    fig = eval_figure(evals)            # one line per model per benchmark + "overall"
    fig = timing_figure(df)             # stacked totals of time/* per phase
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.dashboard.figures.base import base_layout, color, log_axis, shade
from app.dashboard.series import (
    Schedule,
    benchmarks_only,
    broken_line,
    ema,
    overall_scores,
)
from copd.common import names as N
from copd.common.names import is_bench_key


def _nonfinite_marks(x: np.ndarray, y: np.ndarray, steps: np.ndarray) -> tuple[list, list, list]:
    """Where to draw a marker for each NaN/inf point: at the last finite value before it
    (or the first finite one), so the point is visible on the curve's own scale."""
    finite = np.isfinite(y)
    if finite.all():
        return [], [], []
    fallback = float(y[finite][0]) if finite.any() else 0.0
    xs, ys, texts = [], [], []
    last = fallback
    for xi, yi, si, ok in zip(x, y, steps, finite, strict=True):
        if ok:
            last = float(yi)
            continue
        xs.append(xi)
        ys.append(last)
        texts.append(f"{'NaN' if math.isnan(yi) else ('+inf' if yi > 0 else '-inf')} at step {si}")
    return xs, ys, texts


def series_figure(
    df: pd.DataFrame,
    *,
    title: str,
    y_title: str = "",
    x: str = "step",
    smoothing: float = 0.0,
    log_y: bool = False,
    schedule: Schedule | None = None,
    revision: str | None = None,
) -> go.Figure:
    """One line per `label` (column of `df`; falls back to `key`), x from column `x`.

    With a `schedule` (and x = step) the run's phases are shaded and its cycle ends drawn
    as dashed lines, from the schedule itself; without one (a baseline) there are none.

    With smoothing > 0 the raw line stays faint behind the EMA-smoothed one. Non-finite
    values are drawn as red crosses (hover says NaN/inf and the step), never dropped.
    With `log_y`, values <= 0 cannot be drawn and are left out of the line only.
    A series that exists in one kind of phase only (a reward on the peer's domain, the
    signal balance: phase II) is drawn with a gap over the phases where it has no point,
    not a straight line across them (`series.phase_breaks`).
    """
    fig = go.Figure()
    if "x" not in df:
        df = df.assign(x=df["step"].astype(float))
    label_col = "label" if "label" in df else "key"
    flagged = False  # the NaN/inf legend entry is shown once
    phased = schedule if x == "step" else None
    for i, (label, g) in enumerate(df.groupby(label_col, sort=False)):
        marked = _add_series(
            fig,
            g.sort_values("x"),
            str(label),
            color(i),
            smoothing=smoothing,
            log_y=log_y,
            nonfinite_legend=not flagged,
            schedule=phased,
        )
        flagged = flagged or marked
    if schedule is not None and x == "step" and len(df):
        shade(fig, schedule, x_max=float(df["x"].max()))
    base_layout(fig, title, y_title, x, revision or title)
    if log_y:
        log_axis(fig, df)
    elif len(df):
        single_point_axes(fig, df)
    return fig


def single_point_axes(fig: go.Figure, df: pd.DataFrame) -> None:
    """Axes that fit a chart of one step (a run's first diagnostics): x from just before
    the step to one step past it (not -1 to 1) and y a small band around the value
    (plotly's own ranges for a lone point are +-1, e.g. overlap 0 to 2)."""
    xs = df["x"].to_numpy(dtype=float)
    if np.unique(xs[np.isfinite(xs)]).size != 1:
        return
    x0 = float(xs[np.isfinite(xs)][0])
    fig.update_xaxes(range=[min(0.0, x0) - 0.5, max(x0, 0.0) + 1.0])
    v = df["value"].to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    if v.size:
        lo, hi = float(v.min()), float(v.max())
        pad = max(0.1 * max(abs(lo), abs(hi)), 0.05)
        fig.update_yaxes(range=[lo - pad, hi + pad])


def _add_series(
    fig: go.Figure,
    g: pd.DataFrame,
    label: str,
    c: str,
    *,
    smoothing: float,
    log_y: bool,
    nonfinite_legend: bool,
    schedule: Schedule | None = None,
) -> bool:
    """One line's traces (faint raw line when smoothed, the line, NaN/inf crosses); True
    when crosses were drawn. The line joins its drawable points and breaks only at the
    phases its series skips (`phase_breaks`, with a `schedule`)."""
    xs = g["x"].to_numpy(dtype=float)
    ys = g["value"].to_numpy(dtype=float)
    plot_y = np.where(np.isfinite(ys), ys, np.nan)
    if log_y:
        plot_y = np.where(plot_y > 0, plot_y, np.nan)
    if smoothing > 0:
        raw_x, raw_y = broken_line(xs, plot_y, schedule)
        fig.add_trace(
            go.Scatter(
                x=raw_x,
                y=raw_y,
                mode="lines",
                line=dict(color=c, width=1),
                opacity=0.25,
                name=f"{label} (raw)",
                legendgroup=label,
                showlegend=False,
                hoverinfo="skip",
            )
        )
        plot_y = ema(plot_y, smoothing)
    line_x, line_y = broken_line(xs, plot_y, schedule)
    fig.add_trace(
        go.Scatter(
            x=line_x,
            y=line_y,
            mode="lines+markers" if len(xs) < 40 else "lines",
            marker=dict(size=4),
            line=dict(color=c, width=2),
            name=label,
            legendgroup=label,
            connectgaps=False,
        )
    )
    mx, my, mt = _nonfinite_marks(xs, ys, g["step"].to_numpy())
    if not mx:
        return False
    fig.add_trace(
        go.Scatter(
            x=mx,
            y=my,
            mode="markers",
            marker=dict(symbol="x", size=11, color="red", line=dict(width=1)),
            name="NaN / inf",
            legendgroup="nonfinite",
            showlegend=nonfinite_legend,
            text=mt,
            hovertemplate="%{text}<extra>" + label + "</extra>",
        )
    )
    return True


def eval_figure(evals: pd.DataFrame, *, revision: str = "evals") -> go.Figure:
    """Evaluation scores over steps: one colour per model, one dash per benchmark (the
    domains and the configured `<name>@bench` benchmarks), and a thick "overall" line (mean
    over the domains) per model."""
    fig = go.Figure()
    extra = evals[evals["benchmark"].astype(str).map(is_bench_key)] if len(evals) else evals
    evals = pd.concat([benchmarks_only(evals), extra]) if len(extra) else benchmarks_only(evals)
    if evals.empty:
        return base_layout(fig, "Evaluation", "score", "step", revision)
    dashes = ["dot", "dash", "dashdot", "longdash", "longdashdot"]
    benches = sorted(evals["benchmark"].unique())
    overall = overall_scores(evals)
    for i, model in enumerate(sorted(evals["model"].unique(), key=_model_order)):
        c = color(i)
        m = evals[evals["model"] == model]
        for j, bench in enumerate(benches):
            g = m[m["benchmark"] == bench].sort_values("step")
            if g.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=g["step"],
                    y=g["score"],
                    mode="lines+markers",
                    line=dict(color=c, dash=dashes[j % len(dashes)], width=1.5),
                    name=f"{model} · {bench}",
                    legendgroup=model,
                )
            )
        o = overall[overall["model"] == model]
        fig.add_trace(
            go.Scatter(
                x=o["step"],
                y=o["score"],
                mode="lines+markers",
                line=dict(color=c, width=4),
                name=f"{model} · overall",
                legendgroup=model,
            )
        )
    return base_layout(fig, "Evaluation", "score", "step", revision)


def _model_order(model: str) -> tuple[int, str]:
    """Branches first (alphabetical), then merged, then base."""
    return ({"merged": 1, "base": 2}.get(model, 0), model)


def timing_totals(df: pd.DataFrame) -> pd.DataFrame:
    """Total seconds per (phase, time key), leaving out `time/step_s` (the sum of the
    others, which would count twice). Columns phase, part, seconds."""
    t = df[df["key"].str.startswith(N.TIME_PREFIX) & (df["key"] != N.time_key("step"))].copy()
    if t.empty:
        return pd.DataFrame(columns=["phase", "part", "seconds"])
    t["phase"] = t["phase"].replace("", "other").fillna("other")
    t["part"] = t["key"].str.removeprefix(N.TIME_PREFIX).str.removesuffix("_s")
    t = t[np.isfinite(t["value"].astype(float))]
    return (
        t.groupby(["phase", "part"], as_index=False)["value"]
        .sum()
        .rename(columns={"value": "seconds"})
    )


def timing_figure(df: pd.DataFrame, *, revision: str = "timing") -> go.Figure:
    """Stacked bars: x = phase, stacks = time/* parts, height = total seconds."""
    tot = timing_totals(df)
    fig = go.Figure()
    for i, (part, g) in enumerate(tot.groupby("part", sort=True)):
        fig.add_trace(go.Bar(x=g["phase"], y=g["seconds"], name=part, marker_color=color(i)))
    fig.update_layout(barmode="stack")
    base_layout(fig, "Time per phase (totals)", "seconds", "phase", revision)
    fig.update_layout(hovermode="closest")
    return fig
