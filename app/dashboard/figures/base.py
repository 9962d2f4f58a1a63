"""What every figure shares: the palette, the layout (constant uirevision, so a live refresh
keeps zoom and legend), log axes fitted to the data, and the run's phase bands and cycle
lines (`shade`): a constant number of path shapes per subplot whatever the number of cycles."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from app.dashboard.series import Schedule, schedule_cycle_lines, schedule_spans

PALETTE = qualitative.Plotly + qualitative.D3

# Bands behind the curves: phase I (GRPO) blue, phase II (mutual OPD) orange.
PHASE_STYLE = {
    "rl": ("phase I · RL", "rgba(31,119,180,0.10)", "rgb(31,119,180)"),
    "opd": ("phase II · OPD", "rgba(255,127,14,0.13)", "rgb(255,127,14)"),
    "warmup": ("warm-up", "rgba(127,127,127,0.10)", "rgb(127,127,127)"),
    "train": ("training", "rgba(44,160,44,0.08)", "rgb(44,160,44)"),
    "eval": ("evaluation", "rgba(44,160,44,0.12)", "rgb(44,160,44)"),
    "merge": ("merge", "rgba(148,103,189,0.12)", "rgb(148,103,189)"),
}

X_TITLES = {"step": "step", "time": "wall time since start (s)"}


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def base_layout(fig: go.Figure, title: str, y_title: str, x: str, revision: str) -> go.Figure:
    """Shared look: title, axis titles, legend below, constant uirevision (zoom survives)."""
    fig.update_layout(
        title=title,
        xaxis_title=X_TITLES.get(x, x),
        yaxis_title=y_title,
        uirevision=revision,
        margin=dict(l=50, r=20, t=50, b=40),
        legend=dict(orientation="h", yanchor="top", y=-0.18),
        hovermode="x unified",
        height=380,
    )
    return fig


def _subplot_refs(fig: go.Figure) -> list[tuple[str, str]]:
    """(x axis, y axis) of every subplot that holds a trace, in order; the one plot's axes
    when the figure has none yet (as plotly's `add_vrect` skips empty subplots)."""
    refs: list[tuple[str, str]] = []
    for tr in fig.data:
        ref = (getattr(tr, "xaxis", None) or "x", getattr(tr, "yaxis", None) or "y")
        if ref not in refs:
            refs.append(ref)
    return refs or [("x", "y")]


def _num(x: float) -> str:
    return f"{x:.10g}"


def shade(fig: go.Figure, schedule: Schedule, x_max: float | None = None) -> go.Figure:
    """Phase bands and dashed cycle lines placed from the run's schedule (never from where
    the diagnostics happened to be measured), up to `x_max`, with a legend entry per phase
    so the colours explain themselves.

    Per subplot, all the bands of one phase are one path shape (a rectangle per band, x in
    data units, y over the subplot's height) and all the cycle lines one more, set in one
    layout update: the figure holds subplots x (phases + 1) shapes whatever the number of
    cycles, so plotly validates as many (adding them one at a time with `add_vrect` /
    `add_vline` re-validated every shape already there: 40 of 42 s of a Live view)."""
    spans = schedule_spans(schedule, x_max)
    refs = _subplot_refs(fig)
    paths: dict[str, list[str]] = {}
    for s in spans:
        if s.phase in PHASE_STYLE and s.x1 > s.x0:
            x0, x1 = _num(s.x0), _num(s.x1)
            paths.setdefault(s.phase, []).append(f"M{x0},0H{x1}V1H{x0}Z")
    lines = "".join(f"M{_num(x)},0V1" for x in schedule_cycle_lines(schedule, x_max))
    shapes: list[dict] = []
    for xa, ya in refs:
        shapes += [
            dict(type="path", xref=xa, yref=f"{ya} domain", path="".join(parts),
                 fillcolor=PHASE_STYLE[ph][1], line=dict(width=0), layer="below",
                 name=f"phase:{ph}")
            for ph, parts in paths.items()
        ]  # fmt: skip
        if lines:
            shapes.append(
                dict(type="path", xref=xa, yref=f"{ya} domain", path=lines,
                     line=dict(dash="dash", width=1, color="rgba(90,90,90,0.55)"),
                     name="cycle lines")
            )  # fmt: skip
    for ph in dict.fromkeys(s.phase for s in spans):
        if ph in PHASE_STYLE:
            name, _, solid = PHASE_STYLE[ph]
            fig.add_trace(
                go.Scatter(
                    x=[None],
                    y=[None],
                    mode="markers",
                    marker=dict(symbol="square", size=12, color=solid, opacity=0.4),
                    name=name,
                    legendgroup="phases",
                    hoverinfo="skip",
                )
            )
    if shapes:
        fig.update_layout(shapes=[*fig.layout.shapes, *shapes])
    return fig


def shaded(fig: go.Figure) -> tuple[list[tuple[str, float, float, str]], list[tuple[float, str]]]:
    """What `shade` drew, read back from its path shapes: the bands as (phase, x0, x1, x
    axis) and the cycle lines as (x, x axis), sorted."""
    bands, lines = [], []
    for sh in fig.layout.shapes:
        name = sh.name or ""
        if sh.type != "path" or not (name.startswith("phase:") or name == "cycle lines"):
            continue
        for seg in sh.path.split("M")[1:]:
            x0 = float(seg.split(",")[0])
            if name == "cycle lines":
                lines.append((x0, sh.xref))
            else:
                bands.append(
                    (name[len("phase:") :], x0, float(seg.split("H")[1].split("V")[0]), sh.xref)
                )
    return sorted(bands), sorted(lines)


def log_range(values: np.ndarray, pad_decades: float = 0.15) -> list[float] | None:
    """The log10 y range [lo, hi] spanning the positive finite values only (plus a small
    pad), so an exact 0 (e.g. symmetric KL at step 0, before the branches differ) does not
    stretch the axis over empty decades; None when there is nothing positive to draw."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return None
    lo, hi = math.log10(float(v.min())), math.log10(float(v.max()))
    pad = max(pad_decades, 0.0) if hi - lo >= 0.3 else 0.3  # a flat line still gets an axis
    return [lo - pad, hi + pad]


def log_ticks(lo: float, hi: float, most: int = 8) -> tuple[list[float], list[str]]:
    """Ticks of a log axis over 10^lo..10^hi, each labelled in full (`2e-3`, `1e-2`): at
    1..9, else 1, 2 and 5 x 10^k where that gives at most `most`, else at every decade
    (every n-th when there are many). Plotly's own minor ticks are bare digits ("2", "5"), which read
    as a scale (9 > 1)."""
    k0, k1 = math.floor(lo), math.ceil(hi)
    for mantissas in (range(1, 10), (1, 2, 5), (1,)):
        at = [(m, k) for k in range(k0, k1 + 1) for m in mantissas if lo <= math.log10(m) + k <= hi]
        if len(at) <= most:
            break
    else:
        stride = math.ceil(len(at) / most)
        at = at[::stride]
    vals = [m * 10.0**k for m, k in at]
    return vals, [
        f"{v:g}" if 1e-2 <= v < 1e3 else f"{m}e{k}" for v, (m, k) in zip(vals, at, strict=True)
    ]


def log_axis(fig: go.Figure, df: pd.DataFrame) -> None:
    """A log y axis over the data's positive decades after step 0, with a note on what it
    leaves out: points <= 0 (not drawable) and step-0 values below the axis. At step 0 the
    branches are copies of one model, so their symmetric KL is a numerical zero (~1e-13)
    that would otherwise stretch the axis over twelve empty decades."""
    vals = df["value"].to_numpy(dtype=float)
    later = vals[df["step"].to_numpy() > 0] if "step" in df else vals
    rng = log_range(later) or log_range(vals)
    fig.update_yaxes(type="log", range=rng)
    if rng is not None:
        vals_at, text = log_ticks(rng[0], rng[1])
        if len(vals_at) >= 2:
            fig.update_yaxes(tickmode="array", tickvals=vals_at, ticktext=text)
    notes = []
    hidden = int((np.isfinite(vals) & (vals <= 0)).sum())
    if hidden:  # say so, rather than leave an empty-looking chart unexplained
        notes.append(f"{hidden} point(s) ≤ 0 not drawn on the log axis")
    if rng is not None and "step" in df:
        first = vals[(df["step"].to_numpy() == 0) & np.isfinite(vals) & (vals > 0)]
        below = first[np.log10(first) < rng[0]]
        if below.size:
            notes.append(f"step 0: {float(below.max()):.1e} (identical branches), below the axis")
    if notes:
        fig.add_annotation(
            text="; ".join(notes), xref="paper", yref="paper", x=0.01, y=0.98,
            showarrow=False, font=dict(size=11, color="gray"),
        )  # fmt: skip


def hex_rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
