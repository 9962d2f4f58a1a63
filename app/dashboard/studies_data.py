"""The Studies page's data (no Streamlit here): the pilot study's points and fit (paper Fig.
2a/b) and drift series of overlap and symmetric KL (Fig. 2c/d, 4a/b); the figures are in
app/dashboard/figures/studies.py.

    pts = pilot_points(store, run_ids)                  # list of dicts, one per student
    fig = figures.pilot_figure(pts, fit_of(pts))        # scatter + line + r annotation
    df = drift_series(store, run_ids)                   # [run, method, key, step, value]
    fig = figures.drift_figure(df.to_dict("records"))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

import pandas as pd

from copd.common import names as N
from copd.common.stats import fit_line

if TYPE_CHECKING:
    from storage import Run, RunStore

PILOT_KEYS = ("pilot/overlap", "pilot/gain", "pilot/temperature", "pilot/pre", "pilot/post")
DRIFT_QTY = (N.overlap_key(10), N.SYM_KL)


def pilot_runs(runs: Sequence[Run]) -> list[Run]:
    """The runs that hold a pilot study (method "pilot")."""
    return [r for r in runs if r.method == "pilot"]


def pilot_points(store: RunStore, run_ids: Sequence[int]) -> list[dict[str, float]]:
    """One record per student across `run_ids`: overlap, gain, temperature, pre, post, seed."""
    if not run_ids:
        return []
    df = store.metric_series(list(run_ids), list(PILOT_KEYS), max_points=10_000)
    if df.empty:
        return []
    wide = df.pivot_table(index=["run_id", "step"], columns="key", values="value")
    out = []
    for (run_id, step), row in wide.iterrows():
        if pd.isna(row.get("pilot/overlap")) or pd.isna(row.get("pilot/gain")):
            continue
        rec = {k.split("/", 1)[1]: float(row[k]) for k in PILOT_KEYS if k in row}
        out.append({**rec, "run_id": int(run_id), "student": int(step)})
    return out


def fit_of(points: Sequence[dict[str, float]]) -> dict[str, float]:
    """The least-squares line and Pearson r of gain on overlap (copd.common.stats.fit_line)."""
    return asdict(fit_line([p["overlap"] for p in points], [p["gain"] for p in points]))


def drift_keys(keys: Sequence[str]) -> list[str]:
    """The overlap / symmetric-KL diagnostics among a run's metric keys."""
    return [k for k in keys if N.parse(k).kind in ("base", "pair") and N.parse(k).key in DRIFT_QTY]


def drift_series(store: RunStore, runs: Sequence[Run]) -> pd.DataFrame:
    """[run, method, key, step, value] of the drift diagnostics of `runs`."""
    frames = []
    for r in runs:
        keys = drift_keys(store.metric_keys(r.id))
        if not keys:
            continue
        df = store.metric_series(r.id, keys, max_points=2000)
        frames.append(
            pd.DataFrame(
                {
                    "run": f"#{r.id} {r.name}",
                    "method": r.method,
                    "key": df["key"],
                    "step": df["step"],
                    "value": df["value"],
                }
            )
        )
    cols = ["run", "method", "key", "step", "value"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
