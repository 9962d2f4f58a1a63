"""The Live run view's charts for one run (Streamlit): called inside an auto-refreshing
fragment by pages/live.py. Each chart has a stable key and a constant uirevision, so
zoom survives refreshes; data comes downsampled from the store.

    draw_run(run, url, smoothing=0.6, x="step", max_points=500)
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app import charts
from app.queries import status_label
from app.series import describe_nonfinite, nonfinite_points, relabel_keys, with_x
from app.widgets import cached_evals, cached_keys, cached_series, csv_button, plot


def select_keys(keys: list[str]) -> dict[str, list[str]]:
    """Split a run's metric keys into the live view's chart groups."""
    groups: dict[str, list[str]] = {
        "overlap": [],
        "overlap_base": [],
        "sym_kl": [],
        "reward": [],
        "signal": [],
        "time": [],
        "system": [],
    }
    for k in keys:
        if k.startswith("pair/") and k.endswith("/overlap_top10"):
            groups["overlap"].append(k)
        elif k.startswith("base/") and k.endswith("/overlap_top10"):
            groups["overlap_base"].append(k)
        elif k.startswith("pair/") and k.endswith("/sym_kl"):
            groups["sym_kl"].append(k)
        elif k.startswith("branch/") and ("/reward/mean" in k or "/reward_on/" in k):
            groups["reward"].append(k)
        elif k.startswith("branch/") and k.endswith("/signal_frac"):
            groups["signal"].append(k)
        elif k.startswith("time/"):
            groups["time"].append(k)
        elif k.startswith("system/"):
            groups["system"].append(k)
    return groups


def reward_label(key: str) -> str:
    """`branch/add/reward/mean` -> `add · own batch`; `branch/add/reward_on/rev` -> `add · on rev`."""
    parts = key.split("/")
    b = parts[1]
    if parts[2] == "reward_on":
        return f"{b} · on {parts[3]}"
    return f"{b} · reward/mean"


def _labelled(df: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    d = df[df["key"].isin(labels)]
    return d.assign(label=d["key"].map(labels))


def draw_run(run: Any, url: str, *, smoothing: float, x: str, max_points: int, fmt: str) -> None:
    """Header, NaN warning and every chart of one run."""
    groups = select_keys(cached_keys(url, (run.id,)))
    wanted = tuple(k for g in groups.values() for k in g)
    df = with_x(cached_series(url, (run.id,), wanted, max_points), x)
    run_header(run, df)
    if df.empty:
        st.info(
            "No metrics logged yet. The trainer writes its first points after the first "
            "step; this view refreshes by itself."
        )
        return
    rid = run.id
    line_charts(df, groups, rid, x=x, smoothing=smoothing, fmt=fmt)
    evals = cached_evals(url, (rid,))
    if len(evals):
        plot(charts.eval_figure(evals, revision=f"eval:{rid}"), f"live:{rid}:eval", fmt)
    left, right = st.columns(2)
    with left:
        if groups["time"]:
            plot(charts.timing_figure(df, revision=f"time:{rid}"), f"live:{rid}:time", fmt)
    with right:
        if groups["system"]:
            fig = charts.system_figure(df, x=x, revision=f"sys:{rid}")
            plot(fig, f"live:{rid}:system", fmt)
    downloads(df, evals, rid)


def run_header(run: Any, df: pd.DataFrame) -> None:
    """Status, progress, last step and cycle; the run's error; a list of NaN/inf points."""
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("status", status_label(run.status))
    c2.metric("progress", f"{run.progress:.0%}")
    c3.metric("last step", int(df["step"].max()) if len(df) else 0)
    c4.metric("cycle", int(df["cycle"].max()) if len(df) else 0)
    st.progress(min(max(float(run.progress), 0.0), 1.0))
    if run.status in ("failed", "crashed") and run.error:
        st.error(f"{run.status}: {run.error.splitlines()[0]}")
    bad = nonfinite_points(df)
    if len(bad):
        st.warning(
            "Non-finite values (marked ✕ on the charts):\n\n"
            + "\n".join(f"- `{line}`" for line in describe_nonfinite(bad))
        )


# (group, title, y axis, log y, key -> legend label): one line chart each, phases shaded.
LINE_CHARTS = [
    ("overlap", "Top-10 overlap between branches (student~teacher)", "overlap@10", False,
     lambda ks: relabel_keys(ks, "pair/", "/overlap_top10")),
    ("overlap_base", "Overlap vs base model", "overlap@10", False,
     lambda ks: relabel_keys(ks, "base/", "/overlap_top10")),
    ("sym_kl", "Symmetric KL between branches", "KL(p‖q)+KL(q‖p)", True,
     lambda ks: relabel_keys(ks, "pair/", "/sym_kl")),
    ("reward", "Reward per branch per domain", "mean reward", False,
     lambda ks: {k: reward_label(k) for k in ks}),
    # GRPO learns only from groups whose rewards differ; the rest are skipped.
    ("signal", "Prompt groups with a reward signal (rewards not all equal)",
     "share of groups", False, lambda ks: relabel_keys(ks, "branch/", "/signal_frac")),
]  # fmt: skip


def line_charts(
    df: pd.DataFrame, groups: dict[str, list[str]], rid: int, *, x: str, smoothing: float, fmt: str
) -> None:
    """The line charts of LINE_CHARTS whose group has keys, in that order."""
    for group, title, y_title, log_y, label in LINE_CHARTS:
        if groups[group]:
            fig = charts.series_figure(
                _labelled(df, label(groups[group])),
                title=title,
                y_title=y_title,
                x=x,
                smoothing=smoothing,
                log_y=log_y,
                revision=f"{group}:{rid}",
            )
            plot(fig, f"live:{rid}:{group}", fmt)


def downloads(df: pd.DataFrame, evals: pd.DataFrame, rid: int) -> None:
    """CSV buttons for the series and (when there are any) the evaluations."""
    d1, d2 = st.columns(2)
    with d1:
        csv_button(
            df.drop(columns=["x"]),
            "Download series (CSV)",
            f"run{rid}-series.csv",
            f"live:{rid}:csv",
        )
    with d2:
        if len(evals):
            csv_button(
                evals, "Download evaluations (CSV)", f"run{rid}-evals.csv", f"live:{rid}:evcsv"
            )
