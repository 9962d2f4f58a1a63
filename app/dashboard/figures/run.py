"""A run's figures (Live and Compare): metric curves, evaluations, timing, system.

No Streamlit here, so every chart is unit-testable. Inputs are the long frames of
`RunStore.metric_series` (after `series.with_x`, plus a `label` column naming each line)
and `RunStore.evaluations`. Every figure sets a constant `layout.uirevision`, so a live
refresh keeps the user's zoom and legend choices.

    fig = series_figure(df, title="Top-10 overlap", smoothing=0.6, schedule=schedule_of(cfg))
    fig = eval_figure(evals)            # one line per model per benchmark + "overall"
    fig = timing_figure(df)             # stacked totals of time/* per phase
    fig = compare_figure(df, labels, arms={1: "copd", 2: "copd"}, band="std", seed_lines=True)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.dashboard.figures.base import base_layout, color, hex_rgba, log_axis, shade
from app.dashboard.series import (
    Schedule,
    aggregate_runs,
    benchmarks_only,
    broken_line,
    ema,
    overall_scores,
)


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
    """Evaluation scores over steps: one colour per model, one dash per benchmark, and a
    thick "overall" line (mean over benchmarks) per model."""
    fig = go.Figure()
    evals = benchmarks_only(evals)
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
    t = df[df["key"].str.startswith("time/") & (df["key"] != "time/step_s")].copy()
    if t.empty:
        return pd.DataFrame(columns=["phase", "part", "seconds"])
    t["phase"] = t["phase"].replace("", "other").fillna("other")
    t["part"] = t["key"].str.removeprefix("time/").str.removesuffix("_s")
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


# Units of the process metrics: their axes start at 0 so a few MB of wobble on a GB-sized
# process reads as the flat line it is; CPU percent spans at least one full core.
SYSTEM_AXES = {
    "system/rss_mb": "MB",
    "system/gpu_mem_mb": "MB",
    "system/cpu_percent": "% of one core",
    "system/host/cpu_percent": "% of all cores",
    "system/host/ram_used_mb": "MB",
    "system/host/ram_percent": "%",
}
# The sampled GPUs' keys (system/gpu/<i>/<name>) by their name.
GPU_AXES = {
    "util_percent": "%", "mem_used_mb": "MB", "mem_percent": "%", "power_w": "W", "temp_c": "°C",
}  # fmt: skip


def system_unit(key: str) -> str | None:
    """The unit of a system/* key, or None when it has no known one."""
    if key in SYSTEM_AXES:
        return SYSTEM_AXES[key]
    parts = key.split("/")
    if len(parts) == 4 and parts[:2] == ["system", "gpu"]:
        return GPU_AXES.get(parts[3])
    return None


def provided_system_keys(df: pd.DataFrame) -> list[str]:
    """The `system/*` keys this platform actually reports: at least one finite, nonzero
    value (a metric the platform cannot measure arrives as all zeros or NaN, and an empty
    axis would only suggest a problem that is not there)."""
    out = []
    for k in dict.fromkeys(df["key"]):
        if not str(k).startswith("system/"):
            continue
        v = df.loc[df["key"] == k, "value"].to_numpy(dtype=float)
        if np.any(np.isfinite(v) & (v != 0)):
            out.append(str(k))
    return out


def system_range(key: str, values: np.ndarray) -> list[float] | None:
    """The y range of one system panel: from 0 to 10% above the largest value (CPU: at
    least 100%); None (auto) for a metric without a known unit."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    unit = system_unit(key)
    if unit is None or v.size == 0:
        return None
    top = float(v.max()) * 1.1
    if key == "system/cpu_percent" or unit in ("%", "% of all cores"):
        top = max(top, 100.0)
    return [0.0, top if top > 0 else 1.0]


def system_figure(df: pd.DataFrame, *, x: str = "step", revision: str = "system") -> go.Figure:
    """One small panel per `system/*` key the platform provides (shared x), each axis from 0
    (see `system_range`)."""
    keys = provided_system_keys(df)
    if not keys:
        return base_layout(go.Figure(), "System", "", x, revision)
    titles = [f"{k} ({system_unit(k)})" if system_unit(k) else k for k in keys]
    fig = make_subplots(rows=len(keys), cols=1, shared_xaxes=True, subplot_titles=titles)
    for i, k in enumerate(keys):
        g = df[df["key"] == k].sort_values("x" if "x" in df else "step")
        xs = g["x"] if "x" in g else g["step"]
        fig.add_trace(
            go.Scatter(x=xs, y=g["value"], mode="lines", name=k, line=dict(color=color(i))),
            row=i + 1,
            col=1,
        )
        rng = system_range(k, g["value"].to_numpy(dtype=float))
        if rng is not None:
            fig.update_yaxes(range=rng, row=i + 1, col=1)
    base_layout(fig, "System", "", x, revision)
    fig.update_layout(height=160 * len(keys) + 80, showlegend=False)
    return fig


def compare_figure(
    df: pd.DataFrame,
    labels: dict[int, str],
    *,
    title: str,
    arms: dict[int, str] | None = None,
    band: str = "std",
    smoothing: float = 0.0,
    x: str = "step",
    revision: str = "compare",
    seed_lines: bool = False,
    log_y: bool = False,
) -> go.Figure:
    """Overlay one metric across runs. With `arms` (run_id -> method label), runs of one
    arm become a mean line with a shaded band (+-std, or min-max); with `seed_lines`, each
    seed's own thin line is drawn under the band."""
    if "x" not in df:
        df = df.assign(x=df["step"].astype(float))
    if not arms:
        d = df.assign(label=df["run_id"].map(labels).fillna(df["run_id"].astype(str)))
        return series_figure(
            d, title=title, x=x, smoothing=smoothing, log_y=log_y, revision=revision
        )
    fig = go.Figure()
    agg = aggregate_runs(df, arms)
    for i, (arm, g) in enumerate(agg.groupby("arm", sort=True)):
        c = color(i)
        if seed_lines:  # first, so the band and the mean are drawn over them
            for rid in [r for r, a in arms.items() if a == arm]:
                r = df[df["run_id"] == rid].sort_values("x")
                fig.add_trace(
                    go.Scatter(
                        x=r["x"],
                        y=r["value"],
                        mode="lines",
                        line=dict(color=c, width=1),
                        opacity=0.45,
                        name=f"{labels.get(rid, str(rid))} (seed)",
                        legendgroup=arm,
                        showlegend=False,
                    )
                )
        mean = ema(g["mean"].to_numpy(dtype=float), smoothing)
        lo_v = g["mean"] - g["std"] if band == "std" else g["min"]
        hi_v = g["mean"] + g["std"] if band == "std" else g["max"]
        lo, hi = ema(lo_v.to_numpy(dtype=float), smoothing), ema(hi_v.to_numpy(), smoothing)
        xs = g["x"].to_numpy(dtype=float)
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([xs, xs[::-1]]),
                y=np.concatenate([hi, lo[::-1]]),
                fill="toself",
                fillcolor=hex_rgba(c, 0.18),
                line=dict(width=0),
                name=f"{arm} ({'±std' if band == 'std' else 'min–max'})",
                legendgroup=arm,
                hoverinfo="skip",
            )
        )
        n = int(g["n"].max()) if len(g) else 0
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=mean,
                mode="lines",
                line=dict(color=c, width=2.5),
                name=f"{arm} mean (n={n})",
                legendgroup=arm,
            )
        )
    base_layout(fig, title, "", x, revision)
    if log_y:
        log_axis(fig, df)
    return fig
