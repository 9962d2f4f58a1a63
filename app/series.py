"""Pure transforms of metric series for the dashboard's charts (no Streamlit, no database).

Every function takes the long DataFrame that `RunStore.metric_series` returns
(`run_id, key, scope, step, cycle, phase, value, wall_time`, one row per point) or a
slice of it, and returns plain values or DataFrames:

    df = with_x(df, "time")                 # adds column `x`: step, or seconds since run start
    spans = phase_spans(df)                  # contiguous "rl"/"opd" stretches -> shaded bands
    lines = cycle_boundaries(df)             # x where `cycle` changes -> dashed lines
    smooth = ema(df["value"].to_numpy(), 0.6)
    bad = nonfinite_points(df)               # NaN/inf rows, shown to the user, never dropped
    agg = aggregate_runs(df, {1: "copd", 2: "copd"})  # mean, std, min, max per arm and x
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

SERIES_COLUMNS = ["run_id", "key", "scope", "step", "cycle", "phase", "value", "wall_time"]


@dataclass(frozen=True)
class PhaseSpan:
    """One contiguous stretch of a phase on the x axis, [x0, x1]."""

    x0: float
    x1: float
    phase: str


def empty_series() -> pd.DataFrame:
    """An empty frame with the store's series columns (for pages with nothing logged)."""
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in SERIES_COLUMNS})


def with_x(df: pd.DataFrame, x: str = "step") -> pd.DataFrame:
    """Copy of `df` with an `x` column: the step (`x="step"`) or wall time in seconds since
    the first point of the same run (`x="time"`), so runs started at different times
    overlay on one axis."""
    out = df.copy()
    if x == "time" and len(out):
        start = out.groupby("run_id")["wall_time"].transform("min")
        out["x"] = out["wall_time"].astype(float) - start.astype(float)
    else:
        out["x"] = out["step"].astype(float)
    return out


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing), shape (T,) -> (T,).

    `weight` in [0, 1): 0 returns the input. Non-finite inputs do not enter the average
    (one NaN must not blank the rest of the curve); their output slot is NaN so the
    caller still knows where they were.
    """
    vals = np.asarray(values, dtype=float)
    if weight <= 0 or len(vals) == 0:
        return vals.copy()
    out = np.full_like(vals, np.nan)
    last, num = 0.0, 0
    for i, v in enumerate(vals):
        if not math.isfinite(v):
            continue
        last = last * weight + (1 - weight) * v
        num += 1
        out[i] = last / (1 - weight**num)  # debias the zero start
    return out


def phase_spans(df: pd.DataFrame, x: str = "x") -> list[PhaseSpan]:
    """Contiguous stretches of equal `phase` along x (rows of any keys; empty phases are
    skipped). Each span ends where the next begins, so the bands tile the axis."""
    if df.empty or "phase" not in df:
        return []
    pts = (
        df[df["phase"].astype(str) != ""]
        .groupby(x, sort=True)["phase"]
        .agg(lambda s: s.mode().iat[0])
        .reset_index()
    )
    spans: list[PhaseSpan] = []
    for xv, ph in zip(pts[x].astype(float), pts["phase"].astype(str), strict=True):
        if spans and spans[-1].phase == ph:
            spans[-1] = PhaseSpan(spans[-1].x0, xv, ph)
        else:
            if spans:  # close the previous span where this one starts
                spans[-1] = PhaseSpan(spans[-1].x0, xv, spans[-1].phase)
            spans.append(PhaseSpan(xv, xv, ph))
    return spans


def cycle_boundaries(df: pd.DataFrame, x: str = "x") -> list[float]:
    """x positions where the `cycle` column changes (first x of each new cycle)."""
    if df.empty or "cycle" not in df:
        return []
    pts = df.groupby(x, sort=True)["cycle"].max().reset_index()
    cyc = pts["cycle"].to_numpy()
    xs = pts[x].to_numpy(dtype=float)
    return [float(xs[i]) for i in range(1, len(cyc)) if cyc[i] != cyc[i - 1]]


def nonfinite_points(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose value is NaN or +-inf: columns run_id, key, step, value."""
    if df.empty:
        return df[["run_id", "key", "step", "value"]].copy() if len(df.columns) else df
    vals = df["value"].astype(float)
    bad = df[~np.isfinite(vals)]
    return bad[["run_id", "key", "step", "value"]].reset_index(drop=True)


def describe_nonfinite(bad: pd.DataFrame, max_steps: int = 8) -> list[str]:
    """One human line per key: `key: NaN at steps 3, 7; inf at step 12`."""
    lines = []
    for key, g in bad.groupby("key", sort=True):
        parts = []
        for label, mask in (("NaN", g["value"].isna()), ("inf", ~g["value"].isna())):
            steps = sorted({int(s) for s in g.loc[mask, "step"]})
            if steps:
                shown = ", ".join(str(s) for s in steps[:max_steps])
                more = f" (+{len(steps) - max_steps} more)" if len(steps) > max_steps else ""
                word = "step" if len(steps) == 1 else "steps"
                parts.append(f"{label} at {word} {shown}{more}")
        lines.append(f"{key}: " + "; ".join(parts))
    return lines


def aggregate_runs(df: pd.DataFrame, arms: dict[int, str], x: str = "x") -> pd.DataFrame:
    """Mean and spread across runs of the same arm (e.g. seeds of one method).

    `df` holds one key; `arms` maps run_id -> arm label. Returns columns
    arm, x, mean, std, min, max, n (runs with a finite value at that x). Runs are
    aligned on x exactly (same logging schedule across seeds), as W&B grouping does.
    """
    cols = ["arm", "x", "mean", "std", "min", "max", "n"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    d = df[df["run_id"].isin(arms)].copy()
    d["arm"] = d["run_id"].map(arms)
    d = d[np.isfinite(d["value"].astype(float))]
    g = d.groupby(["arm", x])["value"]
    out = g.agg(["mean", "std", "min", "max", "count"]).reset_index()
    out = out.rename(columns={x: "x", "count": "n"})
    out["std"] = out["std"].fillna(0.0)
    return out[cols]


def relabel_keys(keys: list[str], prefix: str, suffix: str) -> dict[str, str]:
    """`pair/add~rev/overlap_top10` -> `add~rev` for keys `prefix<label>suffix`."""
    out = {}
    for k in keys:
        if k.startswith(prefix) and k.endswith(suffix):
            out[k] = k[len(prefix) : len(k) - len(suffix)] if suffix else k[len(prefix) :]
    return out
