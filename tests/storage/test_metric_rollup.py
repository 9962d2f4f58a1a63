"""The min/max rollup (storage/rollup.py) that long series are downsampled from: what it keeps
equals what an independent pandas reading of every row keeps under the documented buckets
(storage/queries.py: W steps from step 0, W = 8 * 2^i, the smallest with at most nb buckets),
after out-of-order batches, repeated steps, ties, NaN/inf, a
resume's truncation and a migration of a store written before the rollup existed; and the
blocks the write path keeps equal the blocks computed from the rows afterwards."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from storage import MetricPoint, RunStore
from storage.migrate import upgrade_database
from storage.queries import bucket_count
from storage.rollup import COLUMNS, WIDTHS, refill_sql

ROLLUP_REVISION = "0005"
PYRAMID_REVISION_BEFORE = "0006"  # 0007 made the widths a pyramid


def _raw(store: RunStore, run_ids: list[int]) -> pd.DataFrame:
    ids = ",".join(str(int(r)) for r in run_ids)
    with store.db.engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT id, run_id, key, step, value, is_nan, is_inf FROM metrics "
                f"WHERE run_id IN ({ids})"
            )  # fmt: skip
        ).all()
    df = pd.DataFrame(rows, columns=["id", "run_id", "key", "step", "value", "is_nan", "is_inf"])
    df["is_nan"] = df["is_nan"].astype(bool)
    return df


def _expected(raw: pd.DataFrame, max_points: int) -> dict[tuple[int, str], list]:
    """Per series, the sorted (step, value) rows the documented downsampler keeps."""
    out = {}
    for (run_id, key), g in raw.groupby(["run_id", "key"]):
        g = g.sort_values(["step", "id"]).reset_index(drop=True)
        n = len(g)
        if n <= max_points:
            keep = set(range(n))
        else:
            nb = bucket_count(max_points, bool(g["is_nan"].any()))
            s0, s1 = int(g["step"].min()), int(g["step"].max())
            if s1 - s0 + 1 >= nb:  # buckets of W steps from step 0, W = 8 * 2^i, <= nb of them
                width = 8
                while s1 // width - s0 // width + 1 > nb:
                    width *= 2
                bucket = g["step"] // width
                span = s1 // width - s0 // width + 1  # buckets over the range, at least nb / 2
                assert span <= nb and (width == 8 or 2 * span >= nb - 1)
            else:
                bucket = pd.Series(np.arange(n) * nb // n)
            g = g.assign(bucket=bucket, neg=-g["value"])
            keep = {0, n - 1}
            for order, rows in (
                (["is_nan", "value", "step", "id"], g),  # each bucket's least
                (["is_nan", "neg", "step", "id"], g),  # greatest
                (["step", "id"], g[g["is_nan"]]),  # first NaN
            ):
                keep |= set(rows.sort_values(order).groupby("bucket").head(1).index)
        out[(run_id, key)] = sorted(_point(g.loc[i]) for i in keep)
    return out


def _point(row) -> tuple[int, str]:
    if row["is_nan"]:
        return int(row["step"]), "nan"
    v = math.copysign(math.inf, row["value"]) if row["is_inf"] else float(row["value"])
    return int(row["step"]), repr(v)


def _got(store: RunStore, run_ids: list[int], keys: list[str], max_points: int) -> dict:
    df = store.metric_series(run_ids, keys, max_points=max_points)
    out = {}
    for (run_id, key), g in df.groupby(["run_id", "key"]):
        out[(run_id, key)] = sorted(
            (int(s), "nan" if math.isnan(v) else repr(float(v)))
            for s, v in zip(g["step"], g["value"], strict=True)
        )
    return out


def _write_random(store: RunStore, run_id: int, rng: random.Random, batches: int) -> None:
    specials = [math.nan, math.inf, -math.inf]
    for _ in range(batches):
        base = rng.randrange(4000)
        points = []
        for _ in range(rng.randrange(1, 400)):
            key = rng.choice(["loss", "kl", "reward", "flat"])
            step = 7 if key == "flat" else base + rng.randrange(-30, 60)  # repeats, any order
            r = rng.random()
            value = rng.choice(specials) if r < 0.01 else float(round(rng.gauss(0, 3)))  # ties
            points.append(MetricPoint(key, value, step=step, wall_time=0.0))
        store.log_metrics(run_id, points)


def _rollup_rows(store: RunStore) -> list[tuple]:
    cols = ", ".join(COLUMNS)
    with store.db.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {cols} FROM metric_rollup")).all()
    return sorted(tuple(r) for r in rows)


def _recomputed(store: RunStore) -> list[tuple]:
    """The rollup computed afresh from the metric rows."""
    with store.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM metric_rollup"))
        for w in WIDTHS:
            conn.execute(text(refill_sql("1 = 1")), {"w": w})
    return _rollup_rows(store)


@pytest.mark.parametrize("seed", [0, 1])
def test_rollup_keeps_what_a_scan_keeps(any_store: RunStore, seed: int):
    rng = random.Random(seed)
    a = any_store.create_run("a", "copd", {})
    b = any_store.create_run("b", "copd", {})
    _write_random(any_store, a.id, rng, 40)
    _write_random(any_store, b.id, rng, 20)
    keys = ["loss", "kl", "reward", "flat"]
    for max_points in (12, 50, 200, 500):
        expected = _expected(_raw(any_store, [a.id, b.id]), max_points)
        assert _got(any_store, [a.id, b.id], keys, max_points) == expected, max_points

    # a resume from step 2500, then more rows: the blocks past the checkpoint are rebuilt
    any_store.truncate_after(a.id, 2500)
    _write_random(any_store, a.id, rng, 10)
    for max_points in (50, 500):
        expected = _expected(_raw(any_store, [a.id, b.id]), max_points)
        assert _got(any_store, [a.id, b.id], keys, max_points) == expected, max_points

    written = _rollup_rows(any_store)
    assert written == _recomputed(any_store)  # the write path's blocks are the rows' blocks


def test_truncating_everything_empties_the_rollup(store: RunStore):
    run = store.create_run("r", "copd", {})
    store.log_metrics(run.id, [MetricPoint("x", float(s), step=s) for s in range(-20, 300)])
    store.truncate_after(run.id, 130)
    assert _rollup_rows(store) == _recomputed(store)
    store.truncate_after(run.id, -1)
    with store.db.engine.connect() as conn:
        left = conn.execute(text("SELECT MIN(smin), MAX(smax) FROM metric_rollup")).one()
    assert tuple(left) == (-20, -1)  # the negative steps (none past -1) keep their blocks
    store.delete_run(run.id)
    assert _rollup_rows(store) == []


@pytest.mark.parametrize("start", ["before the rollup", "rollup of widths 8 and 64"])
def test_migration_fills_the_rollup_of_an_older_store(db_url: str, start: str):
    from alembic.script import ScriptDirectory

    from storage.migrate import alembic_config

    before = ScriptDirectory.from_config(alembic_config(db_url)).get_revision(ROLLUP_REVISION)
    old = before.down_revision if start == "before the rollup" else PYRAMID_REVISION_BEFORE
    upgrade_database(db_url, revision=old)
    from storage.db import make_engine

    eng = make_engine(db_url)
    rng = np.random.default_rng(0)
    with eng.begin() as conn:  # a run written by the previous schema (no rollup)
        conn.exec_driver_sql(
            "INSERT INTO runs (id, name, method, status, config, seed, created_at, progress,"
            " requested_gpus) VALUES (1, 'old', 'copd', 'finished', '{}', 0,"
            " '2026-01-02 03:04:05.000000', 1.0, 0)"
        )
        rows = [
            (1, int(s), 0, "rl", "", "loss", float(v), False, False, 1.0)
            for s, v in zip(range(3000), rng.normal(size=3000).round(1), strict=True)
        ]
        rows.append((1, 1500, 0, "rl", "", "loss", 0.0, True, False, 1.0))  # a NaN
        conn.exec_driver_sql(
            "INSERT INTO metrics (run_id, step, cycle, phase, scope, key, value, is_nan,"
            " is_inf, wall_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.exec_driver_sql(
            "INSERT INTO metric_latest (run_id, key, step, cycle, phase, scope, value, is_nan,"
            " is_inf, wall_time) VALUES (1, 'loss', 2999, 0, 'rl', '', ?, 0, 0, 1.0)",
            (rows[2999][6],),
        )
        if start != "before the rollup":  # the blocks revision 0006's write path kept
            for w in (8, 64):
                conn.execute(text(refill_sql("1 = 1")), {"w": w})
    eng.dispose()
    store = RunStore.from_url(db_url)  # upgrades to head, filling the rollup
    with store.db.engine.connect() as conn:  # 0005 filled widths 8 and 64, 0007 the pyramid
        n = conn.execute(text("SELECT SUM(n) FROM metric_rollup WHERE width = 8192")).scalar()
        widths = conn.execute(text("SELECT DISTINCT width FROM metric_rollup")).scalars().all()
    assert n == 3001 and sorted(widths) == list(WIDTHS)
    if db_url.startswith("sqlite"):  # rebuilt without rowid: a series' blocks lie together
        with store.db.engine.connect() as conn:
            ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'metric_rollup'"))
            assert ddl.scalar_one().upper().endswith("WITHOUT ROWID")
    assert _got(store, [1], ["loss"], 100) == _expected(_raw(store, [1]), 100)
    store.log_metrics(1, [MetricPoint("loss", 99.0, step=3000)])  # and it keeps up after
    assert _got(store, [1], ["loss"], 100) == _expected(_raw(store, [1]), 100)
    assert _rollup_rows(store) == _recomputed(store)
    store.close()
