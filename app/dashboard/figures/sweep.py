"""Compare's grid-view figures: score against a swept field with a seed band, and a
two-field heatmap (data: app/dashboard/sweep_data.py)."""

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
