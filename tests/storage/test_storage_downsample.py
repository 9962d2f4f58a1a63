"""metric_series downsampling keeps every bucket's true min and max, and NaN rows (SQLite and
PostgreSQL: the same SQL runs on both).

Buckets are the documented ones (storage/queries.py): W steps from step 0, bucket = step // W,
W = 8 * 2^i the smallest that makes at most nb = (max_points - 2) // 2 buckets over the range."""

from __future__ import annotations

import numpy as np
import pandas as pd

from storage import MetricPoint, RunStore
from storage.queries import bucket_count


def _spiky_walk(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.cumsum(rng.normal(0, 1, n))
    spikes = rng.choice(n, 8, replace=False)
    y[spikes[:4]] += 1e4  # huge one-point spikes...
    y[spikes[4:]] -= 1e4  # ...and dips, which a naive stride sampler would drop
    return y


def _log(store: RunStore, run_id: int, key: str, steps: np.ndarray, values: np.ndarray) -> None:
    store.log_metrics(
        run_id,
        [
            MetricPoint(key, float(v), int(s), wall_time=0.0)
            for s, v in zip(steps, values, strict=True)
        ],
    )


def test_downsampling_keeps_bucket_extremes(any_store: RunStore):
    n, max_points = 10_000, 200
    run = any_store.create_run("a", "copd", {})
    steps = np.arange(n) * 3 + 7  # uneven origin and stride
    values = _spiky_walk(n, seed=0)
    _log(any_store, run.id, "loss", steps, values)
    _log(any_store, run.id, "short", steps[:50], values[:50])

    df = any_store.metric_series(run.id, ["loss", "short"], max_points=max_points)
    loss = df[df["key"] == "loss"]
    assert len(loss) <= max_points
    assert len(loss) >= max_points // 2  # at least half the budget is used
    assert loss["step"].is_monotonic_increasing
    assert loss["value"].max() == values.max() and loss["value"].min() == values.min()
    assert loss["step"].iloc[0] == steps[0] and loss["step"].iloc[-1] == steps[-1]

    nb = bucket_count(max_points, has_nan=False)
    full = pd.DataFrame({"step": steps, "value": values})
    width = 8
    while steps[-1] // width - steps[0] // width + 1 > nb:
        width *= 2
    full["bucket"] = full["step"] // width
    kept = set(zip(loss["step"], loss["value"], strict=True))
    for _, grp in full.groupby("bucket"):
        lo, hi = grp.loc[grp["value"].idxmin()], grp.loc[grp["value"].idxmax()]
        assert (lo["step"], lo["value"]) in kept
        assert (hi["step"], hi["value"]) in kept
    # a series shorter than max_points comes back whole
    short = df[df["key"] == "short"]
    assert short["value"].tolist() == values[:50].tolist()


def test_downsampling_keeps_nan_and_inf(any_store: RunStore):
    n, max_points = 5_000, 100
    run = any_store.create_run("a", "copd", {})
    values = _spiky_walk(n, seed=1)
    values[1000:1010] = np.nan
    values[3000] = np.inf
    values[4000] = -np.inf
    _log(any_store, run.id, "kl", np.arange(n), values)
    df = any_store.metric_series(run.id, "kl", max_points=max_points)
    assert len(df) <= max_points
    got = df["value"].to_numpy()
    assert np.isnan(got).any()
    assert np.isposinf(got).sum() == 1 and np.isneginf(got).sum() == 1
    finite = values[np.isfinite(values)]
    assert np.nanmax(got[np.isfinite(got)]) == finite.max()
    assert np.nanmin(got[np.isfinite(got)]) == finite.min()


def test_downsampling_same_step_and_many_runs(any_store: RunStore):
    # every point at step 0 (a pitfall of step-based samplers): rows are bucketed by position
    a = any_store.create_run("a", "copd", {})
    b = any_store.create_run("b", "copd", {})
    values = _spiky_walk(3_000, seed=2)
    _log(any_store, a.id, "x", np.zeros(3_000, dtype=int), values)
    _log(any_store, b.id, "x", np.arange(3_000), -values)
    df = any_store.metric_series([a.id, b.id], ["x"], max_points=50)
    for rid, sign in ((a.id, 1), (b.id, -1)):
        part = df[df["run_id"] == rid]
        assert 10 < len(part) <= 50
        assert part["value"].max() == (sign * values).max()
        assert part["value"].min() == (sign * values).min()
    assert df["run_id"].is_monotonic_increasing
    assert any_store.metric_series(a.id, ["missing"]).empty
