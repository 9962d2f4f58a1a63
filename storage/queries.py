"""Metric read queries of the run store: downsampled series and latest values, in SQL.

Downsampling (`series_frame`), per (run, key) series with more than `max_points` rows:
    - the steps are cut into buckets of W steps aligned to step 0, bucket = floor(step / W),
      W the smallest of 8, 16, 32, ..., 8192 that makes at most nb buckets over the series'
      step range (storage/rollup.py `bucket_width`), so a series gets between nb / 2 and nb
      buckets and runs drawn together are bucketed alike;
    - each bucket keeps its minimum-value row and its maximum-value row (infinities rank as
      the extremes, NaN rows never do), plus its first NaN row so the UI can show gaps;
    - the first and last row of the series are always kept;
    - nb = (max_points - 2) // 2, or (max_points - 2) // 3 when the series holds a NaN, so the
      result never exceeds max_points rows.
Shorter series come back whole, from a plain indexed select (the per-series counts of the
rollup decide which is which). The long ones are read from the min/max rollup's blocks
(storage/rollup.py), never from their rows: at most nb blocks per series whatever the
run's length. A long series with fewer distinct steps than buckets (e.g. every point logged
at step 0) is bucketed by position instead, by the windowed SQL below over its rows
(SQLite >= 3.28, PostgreSQL), as is one too long for the pyramid. Either way only kept rows
leave the database.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from storage import rollup
from storage.entities import MetricPoint
from storage.models import decode_float

SERIES_COLUMNS = ["run_id", "key", "scope", "step", "cycle", "phase", "value", "wall_time"]

_SERIES_SQL = """
WITH base AS (
  SELECT id, run_id, key, scope, step, cycle, phase, value, is_nan, is_inf, wall_time,
         COUNT(*) OVER w AS n,
         MIN(step) OVER w AS s0,
         MAX(step) OVER w AS s1,
         MAX(CASE WHEN is_nan THEN 1 ELSE 0 END) OVER w AS has_nan,
         ROW_NUMBER() OVER (PARTITION BY run_id, key ORDER BY step, id) AS rn_first
  FROM metrics
  WHERE run_id IN :run_ids AND key IN :keys
  WINDOW w AS (PARTITION BY run_id, key)
),
sized AS (
  SELECT *, CASE WHEN has_nan = 1 THEN :nb_nan ELSE :nb END AS nb FROM base
),
bucketed AS (
  SELECT *,
         CASE WHEN n <= :max_points THEN rn_first
              WHEN s1 - s0 + 1 >= nb THEN CAST(step - s0 AS BIGINT) * nb / (s1 - s0 + 1)
              ELSE CAST(rn_first - 1 AS BIGINT) * nb / n
         END AS bucket
  FROM sized
),
ranked AS (
  SELECT *,
         ROW_NUMBER() OVER (PARTITION BY run_id, key, bucket
                            ORDER BY is_nan, value, step, id) AS r_min,
         ROW_NUMBER() OVER (PARTITION BY run_id, key, bucket
                            ORDER BY is_nan, value DESC, step, id) AS r_max,
         ROW_NUMBER() OVER (PARTITION BY run_id, key, bucket, is_nan
                            ORDER BY step, id) AS r_nan
  FROM bucketed
)
SELECT run_id, key, scope, step, cycle, phase, value, is_nan, is_inf, wall_time
FROM ranked
WHERE n <= :max_points OR rn_first = 1 OR rn_first = n OR r_min = 1 OR r_max = 1
   OR (is_nan AND r_nan = 1)
ORDER BY run_id, key, step, id
"""

_PLAIN_SQL = """
SELECT run_id, key, scope, step, cycle, phase, value, is_nan, is_inf, wall_time
FROM metrics WHERE run_id IN :run_ids AND key IN :keys
ORDER BY run_id, key, step, id
"""

_LATEST_SQL = """
SELECT key, scope, step, cycle, phase, value, is_nan, is_inf, wall_time
FROM metric_latest WHERE run_id = :run_id {key_filter}
ORDER BY key
"""

# The latest row of every key of one run, recomputed from its metrics (after a resume has
# deleted the rows past its checkpoint): the highest step, the last written on ties.
REFILL_LATEST_SQL = """
INSERT INTO metric_latest
    (run_id, key, step, cycle, phase, scope, value, is_nan, is_inf, wall_time)
SELECT m.run_id, m.key, m.step, m.cycle, m.phase, m.scope, m.value, m.is_nan, m.is_inf,
       m.wall_time
FROM metrics m
JOIN (SELECT key, MAX(id) AS id FROM metrics m2
      WHERE run_id = :run_id
        AND step = (SELECT MAX(step) FROM metrics m3 WHERE m3.run_id = :run_id AND m3.key = m2.key)
      GROUP BY key) t
  ON m.id = t.id
"""

_LATEST_COLS = ("run_id", "key", "step", "cycle", "phase", "scope", "value", "is_nan", "is_inf",
                "wall_time")  # fmt: skip


def upsert_latest_sql(marks: list[str]) -> str:
    """Insert or move forward the latest point of (run, key): an existing row is replaced
    only by a point at the same or a later step (SQLite >= 3.24 and PostgreSQL)."""
    cols = ", ".join(_LATEST_COLS)
    sets = ", ".join(f"{c} = excluded.{c}" for c in _LATEST_COLS[2:])
    return (
        f"INSERT INTO metric_latest ({cols}) VALUES ({', '.join(marks)}) "
        f"ON CONFLICT (run_id, key) DO UPDATE SET {sets} "
        "WHERE excluded.step >= metric_latest.step"
    )


def latest_of_batch(params: list[tuple]) -> list[tuple]:
    """Per key, the metric row (as written: run_id, step, cycle, phase, scope, key, value,
    is_nan, is_inf, wall_time) of the highest step in one batch, the later one on ties,
    reordered to `_LATEST_COLS`."""
    best: dict[str, tuple] = {}
    for row in params:
        key, step = row[5], row[1]
        if key not in best or step >= best[key][1]:
            best[key] = row
    return [(r[0], r[5], r[1], r[2], r[3], r[4], r[6], r[7], r[8], r[9]) for r in best.values()]


def bucket_count(max_points: int, has_nan: bool) -> int:
    """Buckets per downsampled series: each keeps up to 2 rows (3 with a NaN marker), plus the
    series' first and last row, so the total stays <= max_points."""
    return max(1, (max_points - 2) // (3 if has_nan else 2))


def decode_values(value: np.ndarray, is_nan: np.ndarray, is_inf: np.ndarray) -> np.ndarray:
    """Vectorised decode_float over columns of equal length N -> float64[N]."""
    value = value.astype(np.float64)
    out = np.where(is_inf.astype(bool), np.copysign(np.inf, value), value)
    return np.where(is_nan.astype(bool), np.nan, out)


def series_frame(s: Session, run_ids: list[int], keys: list[str], max_points: int) -> pd.DataFrame:
    if max_points < 4:
        raise ValueError(f"max_points={max_points} is too small; use at least 4")
    if not run_ids or not keys:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in SERIES_COLUMNS})
    # Per series its row count, step range and NaN count, from the coarsest rollup blocks
    # (storage/rollup.py): short series are read whole by a plain indexed select, long ones
    # from the blocks of their bucket width, the rare long series with fewer distinct steps
    # than buckets by the windowed downsampler over their rows.
    stats = s.execute(
        _expanding(rollup.SERIES_STATS_SQL),
        {"run_ids": list(run_ids), "keys": list(keys), "w": rollup.WIDTHS[-1]},
    ).all()
    short: list[tuple[int, str]] = []
    by_width: dict[tuple[int, bool], set[tuple[int, str]]] = {}  # (W, any NaN) -> series
    scan: set[tuple[int, str]] = set()
    for run_id, key, n, s0, s1, nans in stats:
        if n <= max_points:
            short.append((run_id, key))
            continue
        nb = bucket_count(max_points, bool(nans))
        width = rollup.bucket_width(s0, s1, nb) if s1 - s0 + 1 >= nb else None
        if width is None:
            scan.add((run_id, key))
        else:
            by_width.setdefault((width, bool(nans)), set()).add((run_id, key))
    cols = [*SERIES_COLUMNS[:6], "value", "is_nan", "is_inf", "wall_time"]
    rows = _plain_rows(s, short)
    if scan:
        rows += windowed_rows(s, scan, max_points)
    parts = [pd.DataFrame(rows, columns=cols)]
    parts += [_rollup_frame(s, w, pairs, cols, nan) for (w, nan), pairs in by_width.items()]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in SERIES_COLUMNS})
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    df = df.sort_values(["run_id", "key", "step"], kind="stable")
    df["value"] = decode_values(
        df["value"].to_numpy(), df["is_nan"].to_numpy(), df["is_inf"].to_numpy()
    )
    df = df.drop(columns=["is_nan", "is_inf"])
    for c in SERIES_COLUMNS:
        df[c] = df[c].astype(_dtype(c))
    return df[SERIES_COLUMNS].reset_index(drop=True)


def _pair_params(pairs) -> dict:
    return {"run_ids": sorted({r for r, _ in pairs}), "keys": sorted({k for _, k in pairs})}


def _plain_rows(s: Session, pairs: list[tuple[int, str]]) -> list:
    """Every row of these series: one select per set of keys shared by some runs."""
    keys_of: dict[int, list[str]] = {}
    for run_id, key in pairs:
        keys_of.setdefault(run_id, []).append(key)
    runs_of: dict[tuple[str, ...], list[int]] = {}
    for run_id, ks in keys_of.items():
        runs_of.setdefault(tuple(sorted(ks)), []).append(run_id)
    rows: list = []
    for ks, ids in runs_of.items():
        params = {"run_ids": ids, "keys": list(ks)}
        rows += s.execute(_expanding(_PLAIN_SQL), params).all()
    return rows


def _rollup_frame(
    s: Session, width: int, pairs: set[tuple[int, str]], cols: list[str], has_nan: bool
) -> pd.DataFrame:
    """The kept rows of long series from their blocks of `width` steps (one block per
    bucket, read in one pass: its least, greatest and first NaN row side by side), plus each
    series' first and last row, as a frame of `cols`; a row kept for two reasons once."""
    params = {**_pair_params(pairs), "w": width}
    roles = ("lo", "hi", "nan") if has_nan else ("lo", "hi")
    kept = list(rollup.ROLE_COLS)
    blocks = pd.DataFrame(
        [tuple(r) for r in s.execute(_expanding(rollup.blocks_sql(roles)), params)],  # not Row
        columns=["run_id", "key", *(f"{r}_{c}" for r in roles for c in kept)],
    )
    blocks = blocks[_in_pairs(blocks, pairs)]
    same = lambda r: (  # noqa: E731  (one row holds the least (is_nan, value, step))
        (blocks[f"{r}_step"] == blocks["lo_step"])
        & (blocks[f"{r}_is_nan"].astype(bool) == blocks["lo_is_nan"].astype(bool))
        & (blocks[f"{r}_value"] == blocks["lo_value"])
    )
    masks = {"lo": None, "hi": ~same("hi")}
    if has_nan:
        nan_is_hi = (blocks["nan_step"] == blocks["hi_step"]) & blocks["hi_is_nan"].astype(bool)
        masks["nan"] = blocks["nan_step"].notna() & ~same("nan") & ~nan_is_hi
    parts = []
    for r in roles:
        part = blocks if masks[r] is None else blocks[masks[r]]
        part = part[["run_id", "key", *(f"{r}_{c}" for c in kept)]]
        part.columns = ["run_id", "key", *kept]
        parts.append(part[cols])
    ends = []
    for sql in (rollup.FIRST_ROWS_SQL, rollup.LAST_ROWS_SQL):
        ends += [tuple(r) for r in s.execute(_expanding(sql), params) if (r[0], r[1]) in pairs]
    parts.append(pd.DataFrame(ends, columns=cols))
    out = pd.concat(parts, ignore_index=True)
    for c in ("step", "cycle"):
        out[c] = out[c].astype("int64")
    for c in ("is_nan", "is_inf"):
        out[c] = out[c].astype(bool)
    return out.drop_duplicates(ignore_index=True)


def _in_pairs(df: pd.DataFrame, pairs: set[tuple[int, str]]) -> np.ndarray:
    """Rows of df whose (run_id, key) is one of `pairs` (a select by run ids x keys reads
    their cross product)."""
    if len(pairs) == len({r for r, _ in pairs}) * len({k for _, k in pairs}):
        return np.ones(len(df), dtype=bool)  # the pairs are the whole cross product
    return pd.MultiIndex.from_arrays([df["run_id"], df["key"]]).isin(list(pairs))


def windowed_rows(s: Session, pairs: set[tuple[int, str]], max_points: int) -> list:
    """The windowed downsampler over every row of these series: the path of long series
    with fewer distinct steps than buckets, and the scan the rollup replaced (the anchor
    bench/dashboard.py times it against)."""
    params = {
        **_pair_params(pairs),
        "max_points": max_points,
        "nb": bucket_count(max_points, False),
        "nb_nan": bucket_count(max_points, True),
    }
    return [r for r in s.execute(_expanding(_SERIES_SQL), params) if (r[0], r[1]) in pairs]


_VERSION_SQL = (
    "SELECT run_id, SUM(n) FROM metric_rollup WHERE run_id IN :run_ids AND width = :w"
    " GROUP BY run_id",
    "SELECT run_id, MAX(wall_time), SUM(step) FROM metric_latest WHERE run_id IN :run_ids"
    " GROUP BY run_id",
    "SELECT run_id, MAX(id) FROM events WHERE run_id IN :run_ids GROUP BY run_id",
    "SELECT run_id, MAX(id), COUNT(*) FROM evaluations WHERE run_id IN :run_ids GROUP BY run_id",
)


def data_version(s: Session, run_ids: list[int]) -> tuple:
    """RunStore.data_version: per query of _VERSION_SQL, its rows sorted by run."""
    if not run_ids:
        return ()
    params = {"run_ids": sorted(set(run_ids)), "w": rollup.WIDTHS[-1]}
    stmt = [text(q).bindparams(bindparam("run_ids", expanding=True)) for q in _VERSION_SQL]
    return tuple(tuple(sorted(tuple(r) for r in s.execute(q, params))) for q in stmt)


def _expanding(sql: str):
    return text(sql).bindparams(
        bindparam("run_ids", expanding=True), bindparam("keys", expanding=True)
    )


def _dtype(col: str) -> str:
    return {
        "run_id": "int64",
        "step": "int64",
        "cycle": "int64",
        "value": "float64",
        "wall_time": "float64",
    }.get(col, "object")


def latest_points(s: Session, run_id: int, keys: list[str] | None) -> dict[str, MetricPoint]:
    """Per key, the point with the highest step (the last written one on ties)."""
    sql = _LATEST_SQL.format(key_filter="AND key IN :keys" if keys is not None else "")
    stmt = text(sql)
    params: dict = {"run_id": run_id}
    if keys is not None:
        if not keys:
            return {}
        stmt = stmt.bindparams(bindparam("keys", expanding=True))
        params["keys"] = list(keys)
    return {r.key: _latest_point(r) for r in s.execute(stmt, params)}


def _latest_point(r) -> MetricPoint:
    return MetricPoint(
        key=r.key,
        value=decode_float(r.value, bool(r.is_nan), bool(r.is_inf)),
        step=int(r.step),
        cycle=int(r.cycle),
        phase=r.phase,
        scope=r.scope,
        wall_time=float(r.wall_time),
    )


_LATEST_OF_RUNS_SQL = """
SELECT run_id, key, scope, step, cycle, phase, value, is_nan, is_inf, wall_time
FROM metric_latest WHERE run_id IN :run_ids
"""


def latest_points_of_runs(
    s: Session, run_ids: list[int], suffixes: tuple[str, ...] | None = None
) -> dict[int, dict[str, MetricPoint]]:
    """latest_points of many runs in one query per 500 runs: run id -> key -> point (every
    run of `run_ids` present, those without metrics empty); with `suffixes`, only the keys
    ending in one of them."""
    out: dict[int, dict[str, MetricPoint]] = {int(r): {} for r in run_ids}
    sql, params = _LATEST_OF_RUNS_SQL, {}
    if suffixes is not None:
        if not suffixes:
            return out
        # LIKE's `_` matches any character: a superset, cut to the exact suffixes below
        sql += " AND (" + " OR ".join(f"key LIKE :s{i}" for i in range(len(suffixes))) + ")"
        params = {f"s{i}": "%" + x for i, x in enumerate(suffixes)}
    stmt = text(sql).bindparams(bindparam("run_ids", expanding=True))
    ids = sorted(out)
    for i in range(0, len(ids), 500):
        for r in s.execute(stmt, {"run_ids": ids[i : i + 500], **params}):
            if suffixes is None or r.key.endswith(suffixes):
                out[r.run_id][r.key] = _latest_point(r)
    return out
