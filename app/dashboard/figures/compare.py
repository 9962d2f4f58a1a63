"""Compare's overlay of one metric across runs: a line per run, or per arm (method) a mean
line with a shaded band (+-std or min-max) and, if asked, each seed's own thin line.

    fig = compare_figure(df, labels, arms={1: "copd", 2: "copd"}, band="std", seed_lines=True)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.dashboard.figures.base import base_layout, color, hex_rgba, log_axis
from app.dashboard.figures.run import series_figure
from app.dashboard.series import aggregate_runs, ema


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
