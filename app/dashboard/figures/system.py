"""A run's System panels: one small chart per `system/*` key the platform provides (process
and host CPU/RAM, each sampled GPU), each axis from 0 in its unit.

    fig = system_figure(df)             # df: RunStore.metric_series of the system/* keys
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.dashboard.figures.base import base_layout, color
from copd.common import names as N

# Units of the process metrics: their axes start at 0 so a few MB of wobble on a GB-sized
# process reads as the flat line it is; CPU percent spans at least one full core.
SYSTEM_AXES = {
    N.SYSTEM_RSS_MB: "MB",
    N.SYSTEM_GPU_MEM_MB: "MB",
    N.SYSTEM_CPU_PERCENT: "% of one core",
    N.SYSTEM_HOST_CPU_PERCENT: "% of all cores",
    N.SYSTEM_HOST_RAM_MB: "MB",
    N.SYSTEM_HOST_RAM_PERCENT: "%",
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
        if N.parse(str(k)).kind != "system":
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
    if key == N.SYSTEM_CPU_PERCENT or unit in ("%", "% of all cores"):
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
