"""The Studies page's and the experiments' figures: the pilot's gain-vs-overlap scatter
(paper Fig. 2a/b), drift curves (Fig. 2c/d, 4a/b), a reproduction table as bars, and the
study's map and drift figures. They take plain records, so `copd pilot | drift | reproduce
| study` write their PNGs with the same charts the dashboard shows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from copd.common import names as N
from copd.common.stats import mean_std
from copd.spec import method_label

COLORS = {"expert": "#d62728", "copd": "#1f77b4"}


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
        pair = N.parse(key).kind == "pair"
        kind = "branch vs branch" if pair else "vs base"
        fig.add_trace(
            go.Scatter(
                x=g["step"],
                y=g["value"],
                mode="lines",
                name=f"{method}: {kind}",
                line=dict(
                    color=COLORS.get(method, "#7f7f7f"),
                    dash="solid" if pair else "dot",
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


def study_map_figure(summary: dict[str, dict], title: str):
    """Validation Overall per arm (mean, error bar = std over seeds; dots = seeds)."""
    arms = sorted(summary, key=lambda a: summary[a]["mean"])
    colour = ["#1f77b4" if a.startswith("copd") else "#d62728" for a in arms]
    fig = go.Figure(
        go.Bar(
            y=arms,
            x=[summary[a]["mean"] for a in arms],
            orientation="h",
            marker_color=colour,
            error_x=dict(type="data", array=[summary[a]["std"] for a in arms]),
            name="mean ± std",
        )  # fmt: skip
    )
    fig.add_trace(
        go.Scatter(
            y=[a for a in arms for _ in summary[a]["per_seed"]],
            x=[v for a in arms for v in summary[a]["per_seed"].values()],
            mode="markers",
            marker=dict(color="black", size=5),
            name="seeds",
        )  # fmt: skip
    )
    vals = [v for a in arms for v in summary[a]["per_seed"].values()]
    lo, hi = min(vals), max(vals)
    fig.update_layout(
        title=title, xaxis_title="validation Overall (merged / mixed policy)",
        xaxis_range=[max(0.0, lo - 0.05), min(1.0, hi + 0.03)], height=120 + 28 * len(arms), width=760,
        margin=dict(l=170, r=20, t=50, b=40), showlegend=False,
    )  # fmt: skip
    return fig


def study_drift_figure(series: dict[str, dict[str, dict[int, list[float]]]]):
    """Branch-vs-branch overlap (top-1/5/10, mass) and symmetric KL per step, mean and a
    band of ± std over seeds, CoPD against independent experts."""
    qty = ["overlap_top1", "overlap_top5", "overlap_top10", "overlap_mass", "sym_kl"]
    fig = make_subplots(rows=1, cols=len(qty), subplot_titles=qty, horizontal_spacing=0.05)
    colours = {"copd": "31,119,180", "expert": "214,39,40"}
    for method, per_q in series.items():
        for j, q in enumerate(qty, start=1):
            steps = sorted(per_q.get(q, {}))
            if not steps:
                continue
            ms = [mean_std(per_q[q][st]) for st in steps]
            mean = [m for m, _ in ms]
            hi = [m + sd for m, sd in ms]
            lo = [m - sd for m, sd in ms]
            c = colours.get(method, "90,90,90")
            fig.add_trace(go.Scatter(x=steps + steps[::-1], y=hi + lo[::-1], fill="toself",
                                     fillcolor=f"rgba({c},0.2)", line=dict(width=0),
                                     showlegend=False, hoverinfo="skip"), 1, j)  # fmt: skip
            fig.add_trace(go.Scatter(x=steps, y=mean, line=dict(color=f"rgb({c})"),
                                     name=method_label(method),
                                     showlegend=j == 1), 1, j)  # fmt: skip
    fig.update_layout(height=330, width=1500, margin=dict(l=40, r=10, t=50, b=40))
    return fig
