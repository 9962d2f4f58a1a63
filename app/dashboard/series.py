"""Pure transforms of metric series for the dashboard's charts (no Streamlit, no database).

Every function takes the long DataFrame that `RunStore.metric_series` returns
(`run_id, key, scope, step, cycle, phase, value, wall_time`, one row per point) or a
slice of it, and returns plain values or DataFrames:

    df = with_x(df, "time")                 # adds column `x`: step, or seconds since run start
    sched = schedule_of(run.config)          # None for a method without phases
    spans = schedule_spans(sched, x_max=80)  # phase bands from the schedule, not the points
    lines = schedule_cycle_lines(sched)      # x = P, 2P, ... (P = rl_steps + opd_steps)
    smooth = ema(df["value"].to_numpy(), 0.6)
    bad = nonfinite_points(df)               # NaN/inf rows, shown to the user, never dropped
    agg = aggregate_runs(df, {1: "copd", 2: "copd"})  # mean, std, min, max per arm and x
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from copd.common.names import BENCH_SUFFIX, VAL_SUFFIX

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


@dataclass(frozen=True)
class Schedule:
    """A CoPD run's phase schedule: `cycles` of `rl_steps` phase-I then `opd_steps` phase-II
    steps (config `schedule.*`). Steps are counted from 1: step s is the s-th update, so
    update s covers the interval (s-1, s] of the step axis and a cycle of P steps ends at
    x = P, 2P, ... Diagnostics taken at step 0 measure the base, before any update."""

    rl_steps: int
    opd_steps: int
    cycles: int

    @property
    def period(self) -> int:
        return self.rl_steps + self.opd_steps

    @property
    def total(self) -> int:
        return self.cycles * self.period

    def phase_index(self, step: float) -> int:
        """0, 1, 2, ...: phase I of cycle 0, its phase II, phase I of cycle 1, ... of the
        update `step` (step 0, before any update, counts with the first phase)."""
        s = max(int(math.ceil(step)) - 1, 0)
        cycle, within = divmod(s, self.period)
        return 2 * cycle + (0 if within < self.rl_steps else 1)


def phase_breaks(steps: np.ndarray, schedule: Schedule) -> np.ndarray:
    """Indexes i where a line from point i-1 to point i would cross a phase in which its
    series has no point: for a series logged in one kind of phase only (a branch's reward
    on its peer's domain and the signal balance exist in phase II only), each new phase
    starts a new segment; a series with points in both kinds is never broken (a thinned
    series that skips a phase keeps its line)."""
    if len(steps) < 2:
        return np.array([], dtype=int)
    idx = np.array([schedule.phase_index(float(x)) for x in steps])
    if len(set(idx % 2)) > 1:
        return np.array([], dtype=int)
    return np.flatnonzero(np.diff(idx) != 0) + 1


def broken_line(
    xs: np.ndarray, ys: np.ndarray, schedule: Schedule | None
) -> tuple[np.ndarray, np.ndarray]:
    """A line's drawable points (finite y), with a NaN point inserted at each phase break
    (`phase_breaks`) so the line stops there; draw it with `connectgaps=False`."""
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    keep = np.isfinite(ys)
    x, y = xs[keep], ys[keep]
    if schedule is None:
        return x, y
    at = phase_breaks(x, schedule)
    if not len(at):
        return x, y
    mid = (x[at - 1] + x[at]) / 2
    return np.insert(x, at, mid), np.insert(y, at, np.nan)


# Methods whose steps alternate phase I and phase II by the schedule (the baselines log one
# phase per stage, not the cycle, so they get no bands).
PHASED_METHODS = ("copd",)


def schedule_of(config: dict | None, method: str | None = None) -> Schedule | None:
    """The run's phase schedule from its config; None for a method without phases (or a
    config without a usable schedule)."""
    cfg = config or {}
    if (method or cfg.get("method")) not in PHASED_METHODS:
        return None
    sc = cfg.get("schedule") or {}
    try:
        out = Schedule(int(sc["rl_steps"]), int(sc["opd_steps"]), int(sc["cycles"]))
    except (KeyError, TypeError, ValueError):
        return None
    return out if out.period >= 1 and out.cycles >= 1 else None


def schedule_spans(sched: Schedule, x_max: float | None = None) -> list[PhaseSpan]:
    """Phase bands from the schedule: cycle c's phase I is [cP, cP + rl], its phase II
    [cP + rl, (c+1)P] (P = rl + opd; a phase with 0 steps has no band). With `x_max`, only
    the bands that start before it, the last one cut at it (a live run's axis ends there)."""
    spans: list[PhaseSpan] = []
    p = sched.period
    for c in range(sched.cycles):
        for x0, x1, ph in (
            (c * p, c * p + sched.rl_steps, "rl"),
            (c * p + sched.rl_steps, (c + 1) * p, "opd"),
        ):
            if x1 <= x0:
                continue
            if x_max is not None:
                if x0 >= x_max:
                    return spans
                x1 = min(x1, x_max)
            spans.append(PhaseSpan(float(x0), float(x1), ph))
    return spans


def schedule_cycle_lines(sched: Schedule, x_max: float | None = None) -> list[float]:
    """x of every cycle boundary inside the run: P, 2P, ..., (cycles-1)P (the run's ends are
    not boundaries); with `x_max`, those up to it."""
    xs = [float(c * sched.period) for c in range(1, sched.cycles)]
    return [x for x in xs if x_max is None or x <= x_max]


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


def mean_over_keys(df: pd.DataFrame, x: str = "x") -> pd.DataFrame:
    """One row per (run_id, x): the mean over the frame's keys of the finite values (e.g.
    both ordered pairs of a 2-branch run, add~rev and rev~add, as one line per run). Keeps
    the step column; NaN where no key had a finite value."""
    cols = ["run_id", x, "step", "value"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    d = df.assign(value=df["value"].where(np.isfinite(df["value"].astype(float))))
    out = d.groupby(["run_id", x], as_index=False).agg(
        step=("step", "max"), value=("value", "mean")
    )
    return out[cols]


@dataclass(frozen=True)
class Progress:
    """Where a run is: steps done of the total, and that as a fraction."""

    step: int
    total: int | None
    fraction: float


def progress_of(
    run_progress: float, points: pd.DataFrame, total_hint: int | None = None
) -> Progress:
    """A run's progress from its `run/progress` points (fraction of the schedule done,
    logged with every step), falling back to the heartbeat's `run_progress`; the larger
    wins, so a slow heartbeat never shows 0% at step 10. `total_hint` (the schedule's
    total) is used when no point gives the total."""
    frac = float(run_progress or 0.0)
    step, total = 0, total_hint
    if len(points):
        last = points.sort_values("step").iloc[-1]
        p, step = float(last["value"]), int(last["step"])
        if math.isfinite(p) and p > 0:
            frac = max(frac, p)
            total = int(round(step / p))
    elif total_hint:
        step = int(round(frac * total_hint))
    return Progress(step, total, min(max(frac, 0.0), 1.0))


def whole_percent(fraction: float | None) -> int:
    """A progress fraction as a whole percent, rounded down (`0.0233` -> 2, `0.999` -> 99:
    100 only when done): the one rounding of progress on every page."""
    f = float(fraction or 0.0)
    f = min(max(f if math.isfinite(f) else 0.0, 0.0), 1.0)
    return math.floor(f * 100 + 1e-9)


def percent(fraction: float | None) -> str:
    """`whole_percent` as text: `2%`."""
    return f"{whole_percent(fraction)}%"


def cycle_text(step: int, sched: Schedule | None) -> str:
    """Which cycle a run is in, 1-based of the schedule's: step s (counted from 1) lies in
    cycle ceil(s / P), so the last step of 8 cycles reads `8/8` and step 0 `1/8`. A method
    without cycles (experts, the baselines) gets `—`."""
    if sched is None:
        return "—"
    c = min(max(math.ceil(step / sched.period), 1), sched.cycles)
    return f"{c}/{sched.cycles}"


def benchmarks_only(evals: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """The per-domain rows of one split: drop what a trainer logged as "overall" (the
    dashboard recomputes it as the mean over the real benchmarks, so it must not count as
    one of them), and keep either the test rows or the final evaluation's validation rows
    (`<task>@val`), never both, so a mean over benchmarks never mixes the splits. The
    configured benchmarks (`<name>@bench`) are not domains: they are left out here and laid
    out by capability in their own table (app/dashboard/bench_data.py)."""
    if evals.empty:
        return evals
    bench = evals["benchmark"].astype(str)
    val = bench.str.endswith(VAL_SUFFIX)
    keep = ~bench.str.lower().str.startswith("overall") & (val if split == "validation" else ~val)
    keep &= ~bench.str.endswith(BENCH_SUFFIX)  # configured benchmarks: their own table
    return evals[keep]


def overall_scores(evals: pd.DataFrame) -> pd.DataFrame:
    """Mean score over benchmarks per (model, step): columns model, step, score."""
    evals = benchmarks_only(evals)
    if evals.empty:
        return pd.DataFrame(columns=["model", "step", "score"])
    return evals.groupby(["model", "step"], as_index=False)["score"].mean()
