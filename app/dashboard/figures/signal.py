"""The Live view's instrument figures: the signal balance per branch (GRPO against each
teacher's OPD term) and overlap at several k (data: app/dashboard/signal_data.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.dashboard.figures.base import X_TITLES, color, shade
from app.dashboard.series import Schedule, broken_line
from app.dashboard.signal_data import GRPO, SIGNAL_PANELS, signal_keys, term_label
from copd.common import names as N


def share_range(df: pd.DataFrame) -> list[float]:
    """A y range for shares: from 0 to a little above the largest finite value (at least
    0.05, at most 1.05)."""
    v = pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    top = float(v.max()) if v.size else 0.0
    return [0.0, min(max(top * 1.1, 0.05), 1.05)]


def signal_figure(
    df: pd.DataFrame,
    branch: str,
    *,
    schedule: Schedule | None = None,
    x: str = "step",
    revision: str | None = None,
) -> go.Figure:
    """One branch's signal balance: a panel per SIGNAL_PANELS kind (those with data), one
    line per term (GRPO and each teacher's OPD term, same colour in every panel), the
    run's phases shaded from `schedule`. `df`: the store's long series frame (with `x`)."""
    parsed = {k: p for k, p in signal_keys(list(dict.fromkeys(df["key"]))).items()}
    mine = {k: (kind, term) for k, (b, kind, term) in parsed.items() if b == branch}
    kinds = [p for p in SIGNAL_PANELS if any(kind == p[0] for kind, _ in mine.values())]
    terms = sorted({t for _, t in mine.values()}, key=lambda t: (t != GRPO, t))
    colours = {t: color(i) for i, t in enumerate(terms)}
    if "x" not in df:
        df = df.assign(x=df["step"].astype(float))
    rows = max(1, (len(kinds) + 1) // 2)
    fig = make_subplots(
        rows=rows,
        cols=2,
        subplot_titles=[title for _, title, _ in kinds] or ["no signal-balance metrics"],
        vertical_spacing=0.22 / rows * 2 if rows > 1 else 0.1,
        horizontal_spacing=0.09,
    )
    shown: set[str] = set()
    for i, (kind, _, y_title) in enumerate(kinds):
        r, c = i // 2 + 1, i % 2 + 1
        panel_keys = [k for k, (k2, _) in mine.items() if k2 == kind]
        for key, (k2, term) in sorted(mine.items(), key=lambda kv: terms.index(kv[1][1])):
            if k2 != kind:
                continue
            g = df[df["key"] == key].sort_values("x")
            line_x, line_y = broken_line(g["x"], g["value"], schedule if x == "step" else None)
            fig.add_trace(
                go.Scatter(
                    x=line_x, y=line_y, mode="lines+markers", marker=dict(size=5),
                    connectgaps=False,
                    line=dict(color=colours[term], width=2), name=term_label(term),
                    legendgroup=term, showlegend=term not in shown,
                ),
                row=r, col=c,
            )  # fmt: skip
            shown.add(term)
        fig.update_yaxes(title_text=y_title, row=r, col=c)
        if y_title == "share":  # a share lies in [0, 1]: not plotly's -1..1 around a flat 0
            fig.update_yaxes(range=share_range(df[df["key"].isin(panel_keys)]), row=r, col=c)
        if kind in ("cos", "cos_peer_rl"):
            fig.add_hline(y=0.0, line_width=1, line_color="rgba(90,90,90,0.6)", row=r, col=c)
        fig.update_xaxes(title_text=X_TITLES.get(x, x), row=r, col=c)
    if schedule is not None and x == "step" and len(df):
        shade(fig, schedule, x_max=float(df["x"].max()))
    fig.update_layout(
        title=f"Signal balance · branch {branch}",
        uirevision=revision or f"signal:{branch}",
        height=260 * rows + 120,
        margin=dict(l=50, r=20, t=70, b=40),
        legend=dict(orientation="h", yanchor="top", y=-0.08),
        hovermode="x unified",
    )
    return fig


def overlap_k_figure(
    df: pd.DataFrame,
    panels: dict[str, list[str]],
    *,
    schedule: Schedule | None = None,
    x: str = "step",
    vocab: int | None = None,
    revision: str = "overlap-k",
) -> go.Figure:
    """A panel per k (and overlap mass), side by side on a shared 0..1 axis, one line per
    pair (same colour in every panel). With `vocab`, each top-k title says k / vocabulary."""
    if "x" not in df:
        df = df.assign(x=df["step"].astype(float))
    names = list(panels)
    titles = []
    for name in names:
        k = int(name.split("-")[1]) if name.startswith("top-") else None
        share = f" · k/V = {k / vocab:.0%}" if k and vocab else ""
        titles.append(("overlap mass" if name == "mass" else f"{name} overlap") + share)
    fig = make_subplots(
        rows=1, cols=max(1, len(names)), shared_yaxes=True, subplot_titles=titles or ["—"]
    )
    scopes = sorted({N.scope_of(k) for ks in panels.values() for k in ks})
    colours = {s: color(i) for i, s in enumerate(scopes)}
    for j, name in enumerate(names):
        for key in panels[name]:
            scope = N.scope_of(key)
            g = df[df["key"] == key].sort_values("x")
            fig.add_trace(
                go.Scatter(
                    x=g["x"], y=g["value"], mode="lines+markers", marker=dict(size=4),
                    line=dict(color=colours[scope], width=2), name=scope, legendgroup=scope,
                    showlegend=j == 0,
                ),
                row=1, col=j + 1,
            )  # fmt: skip
        fig.update_xaxes(title_text=X_TITLES.get(x, x), row=1, col=j + 1)
    fig.update_yaxes(range=[0, 1.02], title_text="overlap", row=1, col=1)
    if schedule is not None and x == "step" and len(df):
        shade(fig, schedule, x_max=float(df["x"].max()))
    fig.update_layout(
        title="Overlap at several k (student~teacher)",
        uirevision=revision,
        height=360,
        margin=dict(l=50, r=20, t=70, b=40),
        legend=dict(orientation="h", yanchor="top", y=-0.2),
        hovermode="x unified",
    )
    return fig
