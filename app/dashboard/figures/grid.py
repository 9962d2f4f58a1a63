"""Compare's figures over arms: score against a swept field with a seed band, a two-field
heatmap, parallel coordinates of every swept field and the score (data:
app/dashboard/sweep_data.py), and the retention of each expert's score per method
(data: app/dashboard/retention.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.dashboard.figures.base import base_layout, color, hex_rgba
from app.dashboard.sweep_data import show


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def param_figure(band: pd.DataFrame, param: str, bench: str, split: str) -> go.Figure:
    """Score against one swept parameter, one series per combination of the others. A
    numeric field: a mean line with a ±std band over seeds. A categorical one (method,
    merge.method): a marker per value with ±std error bars, side by side, no line (a slope
    between categories means nothing). Where every point is one seed there is no spread
    to draw, and the title says so instead of "mean ± std"."""
    fig = go.Figure()
    numeric = _numeric(band["value"].tolist())
    n_max = int(band["n"].max()) if len(band) else 0
    for i, (line, g) in enumerate(band.groupby("line", sort=False)):
        c = color(i)
        xs = g["value"].tolist() if numeric else [show(v) for v in g["value"]]
        mean, std = g["mean"].to_numpy(float), g["std"].to_numpy(float)
        name = line or "mean"
        n = int(g["n"].max())
        label = (
            f"{name} (n={n})" if int(g["n"].min()) == n else f"{name} (n={int(g['n'].min())}-{n})"
        )
        if not numeric:
            spread = dict(type="data", array=np.nan_to_num(std), visible=n > 1)
            fig.add_trace(
                go.Scatter(
                    x=xs, y=mean, mode="markers", marker=dict(color=c, size=10),
                    error_y=spread, name=label, legendgroup=name,
                )
            )  # fmt: skip
            continue
        if n > 1:
            fig.add_trace(
                go.Scatter(
                    x=xs + xs[::-1],
                    y=np.concatenate([mean + std, (mean - std)[::-1]]),
                    mode="lines", fill="toself", fillcolor=hex_rgba(c, 0.18), line=dict(width=0),
                    name=f"{name} (±std)", legendgroup=name, hoverinfo="skip", showlegend=False,
                )
            )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=xs, y=mean, mode="lines+markers", line=dict(color=c, width=2.5),
                name=label, legendgroup=name,
            )
        )  # fmt: skip
    what = "mean ± std over seeds" if n_max > 1 else "one seed per point, no spread"
    title = f"{bench} ({split}) vs {param}: {what}"
    base_layout(fig, title, f"{bench} score", param, f"sweep:{param}:{bench}:{split}")
    fig.update_layout(hovermode="closest")
    if not numeric:
        fig.update_xaxes(type="category")
        fig.update_layout(scattermode="group")
    return fig


def heatmap_figure(cells: pd.DataFrame, bench: str, split: str) -> go.Figure:
    """Mean score per cell of two swept parameters, the value written in each cell."""
    z = cells.to_numpy(dtype=float)
    text = [["" if math.isnan(v) else f"{v:.3f}" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z, x=[str(c) for c in cells.columns], y=[str(i) for i in cells.index],
            text=text, texttemplate="%{text}", colorscale="Viridis",
            colorbar=dict(title=bench), hovertemplate="%{y} · %{x}: %{z:.3f}<extra></extra>",
        )
    )  # fmt: skip
    title = f"Mean {bench} ({split}) per cell"
    base_layout(fig, title, str(cells.index.name), str(cells.columns.name), f"heat:{bench}:{split}")
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    fig.update_layout(hovermode="closest")
    return fig


def retention_figure(summary: pd.DataFrame, what: str = "share") -> go.Figure:
    """Per domain, one bar per method: the mean over seeds of `what` ("share": score /
    the same-seed expert's; "gain_share": the share of the expert's gain over the base
    kept), ±std error bars, a dashed line at 1 (the expert)."""
    fig = go.Figure()
    for i, (method, g) in enumerate(summary.groupby("method", sort=True)):
        fig.add_trace(
            go.Bar(
                x=g["domain"], y=g[what], name=f"{method} (n={int(g['n'].max())})",
                marker_color=color(i),
                error_y=dict(type="data", array=np.nan_to_num(g[f"{what} std"].to_numpy(float))),
            )
        )  # fmt: skip
    fig.add_hline(y=1.0, line_dash="dash", line_color="rgba(90,90,90,0.7)",
                  annotation_text="expert", annotation_position="top left")  # fmt: skip
    title = {
        "share": "Score kept per domain: reported model / that domain's expert (same seed)",
        "gain_share": "Gain kept per domain: (model − base) / (expert − base), same seed",
    }[what]
    base_layout(fig, title, "share of the expert", "domain", f"retention:{what}")
    fig.update_layout(barmode="group", hovermode="closest")
    fig.update_xaxes(type="category")
    return fig


def parallel_figure(table: pd.DataFrame, params: list[str], bench: str) -> go.Figure:
    """Parallel coordinates: one line per run over the swept fields and the final score
    `bench` (coloured by it); a categorical field is an axis of its values in order."""
    t = table[table["bench"] == bench]
    dims = []
    for p in params:
        vals = t[p].tolist()
        if _numeric(vals):
            dims.append(dict(label=p, values=t[p].astype(float)))
        else:
            cats = sorted({show(v) for v in vals})
            codes = [cats.index(show(v)) for v in vals]
            dims.append(dict(label=p, values=codes, tickvals=list(range(len(cats))), ticktext=cats))
    dims.append(dict(label=bench, values=t["score"].astype(float)))
    fig = go.Figure(
        go.Parcoords(
            line=dict(color=t["score"].astype(float), colorscale="Viridis", showscale=True,
                      colorbar=dict(title=bench)),
            dimensions=dims,
        )
    )  # fmt: skip
    fig.update_layout(
        title=f"Every run: swept fields and final {bench}", height=420,
        margin=dict(l=60, r=40, t=100, b=30), uirevision=f"parcoords:{bench}",
    )  # fmt: skip
    return fig
