"""The Studies page's data and charts (no Streamlit here): the pilot study's gain-vs-overlap
scatter with its fitted line and Pearson r (paper Fig. 2a/b), and drift curves of overlap
and symmetric KL through training (Fig. 2c/d, 4a/b).

    pts = pilot_points(store, run_ids)          # list of dicts, one per student
    fig = pilot_figure(pts, fit_of(pts))        # plotly scatter + line + r annotation
    df = drift_series(store, run_ids)           # [run, method, key, step, value]
    fig = drift_figure(df.to_dict("records"))

Both figure builders take plain records, so `copd pilot` / `copd drift` write their PNGs
with the same charts the dashboard shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from copd.common import names as N
from copd.common.stats import fit_line

PILOT_KEYS = ("pilot/overlap", "pilot/gain", "pilot/temperature", "pilot/pre", "pilot/post")
DRIFT_QTY = (N.overlap_key(10), N.SYM_KL)
COLORS = {"expert": "#d62728", "copd": "#1f77b4"}


def pilot_runs(runs: Sequence[Any]) -> list[Any]:
    """The runs that hold a pilot study (method "pilot")."""
    return [r for r in runs if r.method == "pilot"]


def pilot_points(store: Any, run_ids: Sequence[int]) -> list[dict[str, float]]:
    """One record per student across `run_ids`: overlap, gain, temperature, pre, post, seed."""
    if not run_ids:
        return []
    df = store.metric_series(list(run_ids), list(PILOT_KEYS), max_points=10_000)
    if df.empty:
        return []
    wide = df.pivot_table(index=["run_id", "step"], columns="key", values="value")
    out = []
    for (run_id, step), row in wide.iterrows():
        if pd.isna(row.get("pilot/overlap")) or pd.isna(row.get("pilot/gain")):
            continue
        rec = {k.split("/", 1)[1]: float(row[k]) for k in PILOT_KEYS if k in row}
        out.append({**rec, "run_id": int(run_id), "student": int(step)})
    return out


def fit_of(points: Sequence[dict[str, float]]) -> dict[str, float]:
    """The least-squares line and Pearson r of gain on overlap (copd.common.stats.fit_line)."""
    return asdict(fit_line([p["overlap"] for p in points], [p["gain"] for p in points]))


def _fmt(v: float, spec: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def pilot_figure(points: Sequence[dict[str, Any]], fit: dict[str, Any]) -> go.Figure:
    """Gain (post - pre accuracy on the teacher's domain) vs top-k overlap, one marker per
    student (colour = training temperature), the fitted line, and r / N / p in the title."""
    xs = [p["overlap"] for p in points]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[p["gain"] for p in points],
            mode="markers",
            name="students",
            marker=dict(
                size=11,
                color=[p.get("temperature", 1.0) for p in points],
                colorscale="Viridis",
                showscale=True,
                colorbar=dict(title="T"),
            ),
            text=[f"T={p.get('temperature', float('nan')):.2f}" for p in points],
            hovertemplate="O_k %{x:.3f}<br>gain %{y:+.3f}<br>%{text}<extra></extra>",
        )
    )
    slope, icpt = fit.get("slope", math.nan), fit.get("intercept", math.nan)
    if xs and not math.isnan(slope):
        lo, hi = min(xs), max(xs)
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[slope * lo + icpt, slope * hi + icpt],
                mode="lines",
                name="least-squares fit",
                line=dict(color="black", dash="dash"),
            )
        )
    fig.update_layout(
        title=(
            f"OPD gain vs top-k overlap: r = {_fmt(fit.get('r'), '.3f')}, N = {fit.get('n', 0)}, "
            f"p = {_fmt(fit.get('p_value'), '.3g')}"
        ),
        xaxis_title="top-k overlap O_k with the teacher (student's rollouts)",
        yaxis_title="gain on the teacher's domain (post − pre)",
        template="plotly_white",
        legend=dict(orientation="h", y=-0.2),
        margin=dict(l=60, r=20, t=60, b=60),
    )
    return fig


def drift_keys(keys: Sequence[str]) -> list[str]:
    """The overlap / symmetric-KL diagnostics among a run's metric keys."""
    return [
        k for k in keys if k.startswith(("base/", "pair/")) and k.rsplit("/", 1)[-1] in DRIFT_QTY
    ]


def drift_series(store: Any, runs: Sequence[Any]) -> pd.DataFrame:
    """[run, method, key, step, value] of the drift diagnostics of `runs`."""
    frames = []
    for r in runs:
        keys = drift_keys(store.metric_keys(r.id))
        if not keys:
            continue
        df = store.metric_series(r.id, keys, max_points=2000)
        frames.append(
            pd.DataFrame(
                {
                    "run": f"#{r.id} {r.name}",
                    "method": r.method,
                    "key": df["key"],
                    "step": df["step"],
                    "value": df["value"],
                }
            )
        )
    cols = ["run", "method", "key", "step", "value"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def drift_figure(records: Sequence[dict[str, Any]]) -> go.Figure:
    """Two panels over training steps: top-10 overlap (left) and symmetric KL (right, log
    axis); one line per run and diagnostic, solid for branch-vs-branch (`pair/`), dotted
    for vs-base (`base/`); red = independent experts, blue = CoPD."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("top-10 overlap", "symmetric KL"))
    df = pd.DataFrame(list(records), columns=["run", "method", "key", "step", "value"])
    shown: set[tuple[str, str]] = set()
    for (run, method, key), g in df.groupby(["run", "method", "key"], sort=True):
        qty = key.rsplit("/", 1)[-1]
        g = g.sort_values("step")
        if qty == "sym_kl":
            g = g[(g["step"] > 0) & (g["value"] > 0)]  # step 0 is ~0 (a copy): off the log axis
        kind = "branch vs branch" if key.startswith("pair/") else "vs base"
        fig.add_trace(
            go.Scatter(
                x=g["step"],
                y=g["value"],
                mode="lines",
                name=f"{method}: {kind}",
                line=dict(
                    color=COLORS.get(method, "#7f7f7f"),
                    dash="solid" if key.startswith("pair/") else "dot",
                    width=1.5,
                ),
                legendgroup=f"{method}:{kind}",
                showlegend=(method, kind) not in shown,
                hovertext=f"{run} {key}",
            ),
            row=1,
            col=1 if qty == "overlap_top10" else 2,
        )
        shown.add((method, kind))
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_layout(
        template="plotly_white",
        height=420,
        margin=dict(l=50, r=20, t=50, b=50),
        legend=dict(font=dict(size=9)),
        title="Drift: experts (red) vs CoPD (blue); solid = branch vs branch, dotted = vs base",
    )
    return fig


def results_figure(table: dict[str, dict[str, list[float]]], title: str) -> go.Figure:
    """Grouped bars of a reproduction table: one group per benchmark (and Overall), one bar
    per method/model row, height = mean over seeds, error bar = std over seeds.
    `table`: row label -> {column: [score per seed]} (experiments.reproduce.summarise)."""
    fig = go.Figure()
    cols = list(dict.fromkeys(c for per in table.values() for c in per))
    cols = [c for c in cols if c != "Overall"] + ["Overall"]
    for label, per in table.items():
        means, stds = [], []
        for c in cols:
            v = per.get(c, [])
            m = sum(v) / len(v) if v else math.nan
            means.append(m)
            stds.append(
                math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
            )
        fig.add_trace(go.Bar(name=label, x=cols, y=means, error_y=dict(type="data", array=stds)))
    fig.update_layout(
        barmode="group",
        title=title,
        yaxis_title="greedy accuracy (held-out)",
        template="plotly_white",
        legend=dict(font=dict(size=9)),
        margin=dict(l=50, r=20, t=50, b=40),
    )
    return fig
