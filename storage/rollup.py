"""The min/max rollup of the metrics: per (run, key) and block of `width` steps, the block's
row count, step range, minimum row, maximum row and first NaN row, kept up to date in the
transaction that writes the metrics (RunStore.log_metric_rows), so a long series is
downsampled from its blocks instead of from every row it holds.

Blocks: block = floor(step / width), for each width in WIDTHS (8, 16, 32, ..., 8192 steps:
a pyramid, each level twice the one below). The minimum row is the least (is_nan, value, step),
the maximum the least (is_nan, -value, step), ties kept by the earlier write (the lower id),
the first NaN row the least step: the orders the downsampler ranks rows by, so the extremes
of a union of blocks are the extremes of their blocks' extremes.

Reading a long series (storage/queries.py) takes buckets of W steps aligned to step 0,
bucket = floor(step / W), W the smallest width of the pyramid whose buckets over the series'
step range number at most nb (`bucket_width`): so the buckets number between nb / 2 and nb
(the budget is at least half used) and the same bucket holds the same steps in every run
(runs overlaid on one chart are downsampled alike). A bucket is a block of width W, so a
series is read as at most nb blocks, one indexed range, whatever the run's length: each
block's least and greatest row and first NaN row (`blocks_sql`, each row once). No
metric row is read but each series' first (`FIRST_ROWS_SQL`) and last (`metric_latest`).

A resume's truncation rebuilds the blocks from the checkpoint's block on (`truncate_sql`);
migrations 0005 and 0007 fill the table for a store written before it (`refill_sql`).
"""

from __future__ import annotations

WIDTHS = tuple(8 << i for i in range(11))  # 8 ... 8192 steps per block; the coarsest: counts

_KEPT = ("step", "cycle", "phase", "scope", "value", "is_nan", "is_inf", "wall_time")
# Column names of a kept row in the table: lo_step, lo_cycle, ..., lo_wall_time.
COLUMNS = (
    ("run_id", "key", "width", "block", "n", "nan_n", "smin", "smax")
    + tuple(f"lo_{c}" for c in _KEPT)
    + tuple(f"hi_{c}" for c in _KEPT)
    + tuple(f"nan_{c}" for c in _KEPT)
)


def block_of(step: int, width: int) -> int:
    """floor(step / width), the same in Python and in the SQL below."""
    return step // width


def block_sql(width_expr: str) -> str:
    """floor(step / width) in SQL on SQLite and PostgreSQL, whose integer division truncates
    towards zero: subtract the non-negative remainder first."""
    return f"((step - ((step % {width_expr}) + {width_expr}) % {width_expr}) / {width_expr})"


def _kept(row: tuple) -> tuple:
    # a metric row as written (run_id, step, cycle, phase, scope, key, value, is_nan, is_inf,
    # wall_time) -> the kept columns in _KEPT order
    return (row[1], row[2], row[3], row[4], row[6], row[7], row[8], row[9])


_NO_NAN = (None,) * len(_KEPT)


def rollup_of_batch(params: list[tuple], widths: tuple[int, ...] = WIDTHS) -> list[tuple]:
    """The blocks one batch of metric rows (in write order, as RunStore inserts them) adds
    to, one tuple per (key, width, block) in COLUMNS order; the upsert merges them with the
    blocks already stored."""
    acc: dict[tuple, list] = {}
    for row in params:
        step, value, is_nan = row[1], row[6], row[7]
        for w in widths:
            k = (row[5], w, step // w)
            a = acc.get(k)
            if a is None:
                acc[k] = [1, int(is_nan), step, step, row, row, row if is_nan else None]
                continue
            a[0] += 1
            a[1] += int(is_nan)
            a[2] = min(a[2], step)
            a[3] = max(a[3], step)
            lo, hi = a[4], a[5]
            if (is_nan, value, step) < (lo[7], lo[6], lo[1]):
                a[4] = row
            if (is_nan, -value, step) < (hi[7], -hi[6], hi[1]):
                a[5] = row
            if is_nan and (a[6] is None or step < a[6][1]):
                a[6] = row
    run_id = params[0][0] if params else 0
    return [
        (run_id, key, w, b, a[0], a[1], a[2], a[3], *_kept(a[4]), *_kept(a[5]),
         *(_NO_NAN if a[6] is None else _kept(a[6])))
        for (key, w, b), a in acc.items()
    ]  # fmt: skip


def _replace_if(cond: str, prefix: str) -> list[str]:
    return [
        f"{prefix}{c} = CASE WHEN {cond} THEN excluded.{prefix}{c} ELSE metric_rollup.{prefix}{c} END"
        for c in _KEPT
    ]


def upsert_sql(marks: list[str]) -> str:
    """Insert a batch's blocks, or merge each into the stored block: counts add, the step
    range widens, a kept row is replaced only by a strictly smaller one in its order (ties:
    the stored, earlier row stays). Every SET reads the stored row as it was."""
    t, x = "metric_rollup", "excluded"
    sets = [
        f"n = {t}.n + {x}.n",
        f"nan_n = {t}.nan_n + {x}.nan_n",
        f"smin = CASE WHEN {x}.smin < {t}.smin THEN {x}.smin ELSE {t}.smin END",
        f"smax = CASE WHEN {x}.smax > {t}.smax THEN {x}.smax ELSE {t}.smax END",
    ]
    sets += _replace_if(
        f"({x}.lo_is_nan, {x}.lo_value, {x}.lo_step) < ({t}.lo_is_nan, {t}.lo_value, {t}.lo_step)",
        "lo_",
    )
    sets += _replace_if(
        f"({x}.hi_is_nan, -{x}.hi_value, {x}.hi_step)"
        f" < ({t}.hi_is_nan, -{t}.hi_value, {t}.hi_step)",
        "hi_",
    )
    sets += _replace_if(
        f"{x}.nan_step IS NOT NULL AND ({t}.nan_step IS NULL OR {x}.nan_step < {t}.nan_step)",
        "nan_",
    )
    return (
        f"INSERT INTO metric_rollup ({', '.join(COLUMNS)}) VALUES ({', '.join(marks)}) "
        f"ON CONFLICT (run_id, width, key, block) DO UPDATE SET {', '.join(sets)}"
    )


def _pick(flag: str, col: str) -> str:
    return f"MAX(CASE WHEN {flag} THEN {col} END)"


def refill_sql(where: str) -> str:
    """INSERT the blocks of width :w of the metric rows matching `where` (an SQL condition on
    the metrics table), computed from the rows themselves."""
    kept = []
    for prefix, flag in (("lo", "r_lo = 1"), ("hi", "r_hi = 1"), ("nan", "r_nan = 1 AND is_nan")):
        for c in _KEPT:
            if c in ("is_nan", "is_inf"):  # a boolean, portably: a comparison, not MAX(bool)
                expr = f"MAX(CASE WHEN {flag} AND {c} THEN 1 ELSE 0 END) = 1"
                if prefix == "nan":
                    expr = f"CASE WHEN MAX(CASE WHEN {flag} THEN 1 ELSE 0 END) = 1 THEN {expr} END"
                kept.append(expr)
            else:
                kept.append(_pick(flag, c))
    return f"""
INSERT INTO metric_rollup ({", ".join(COLUMNS)})
SELECT run_id, key, :w, block, COUNT(*), SUM(CASE WHEN is_nan THEN 1 ELSE 0 END),
       MIN(step), MAX(step), {", ".join(kept)}
FROM (
  SELECT src.*,
         ROW_NUMBER() OVER (PARTITION BY run_id, key, block ORDER BY is_nan, value, step, id) AS r_lo,
         ROW_NUMBER() OVER (PARTITION BY run_id, key, block
                            ORDER BY is_nan, value DESC, step, id) AS r_hi,
         ROW_NUMBER() OVER (PARTITION BY run_id, key, block
                            ORDER BY is_nan DESC, step, id) AS r_nan
  FROM (SELECT m.*, {block_sql(":w")} AS block FROM metrics m WHERE {where}) src
) ranked
GROUP BY run_id, key, block
"""


# A resume from step :s: the blocks from the one holding :s on are deleted and rebuilt from
# the rows left (steps [block start, :s]); earlier blocks hold no row past :s.
TRUNCATE_DELETE_SQL = "DELETE FROM metric_rollup WHERE run_id = :r AND width = :w AND block >= :b"
TRUNCATE_REFILL_SQL = refill_sql("m.run_id = :r AND m.step >= :start AND m.step <= :s")

# Per series, from the coarsest blocks: rows, step range and NaN rows.
SERIES_STATS_SQL = """
SELECT run_id, key, SUM(n), MIN(smin), MAX(smax), SUM(nan_n) FROM metric_rollup
WHERE run_id IN :run_ids AND key IN :keys AND width = :w GROUP BY run_id, key
"""


# A kept row's columns in the order of a series row (storage/queries.py SERIES_COLUMNS).
ROLE_COLS = ("scope", "step", "cycle", "phase", "value", "is_nan", "is_inf", "wall_time")


def blocks_sql(roles: tuple[str, ...] = ("lo", "hi", "nan")) -> str:
    """The blocks of width :w of some series, each with its kept rows of `roles` side by
    side (storage/queries.py splits them; one row holds the least (is_nan, value, step),
    so equal step, value and NaN-ness in two roles is the same row, kept once). Series
    without a NaN row need no "nan" role: its columns are NULL in every block."""
    cols = ", ".join(f"{r}_{c}" for r in roles for c in ROLE_COLS)
    return (
        f"SELECT run_id, key, {cols} FROM metric_rollup"
        " WHERE run_id IN :run_ids AND key IN :keys AND width = :w"
    )


def bucket_width(s0: int, s1: int, nb: int) -> int | None:
    """W, the smallest width of the pyramid whose buckets floor(step / W) over [s0, s1]
    number at most nb; None past the coarsest (a run of millions of steps)."""
    for w in WIDTHS:
        if s1 // w - s0 // w + 1 <= nb:
            return w
    return None


# The first row of each series (lowest step, then lowest id); its last is metric_latest's.
FIRST_ROWS_SQL = """
SELECT m.run_id, m.key, m.scope, m.step, m.cycle, m.phase, m.value, m.is_nan, m.is_inf,
       m.wall_time
FROM metrics m
JOIN (SELECT run_id, key, MIN(smin) AS s0 FROM metric_rollup
      WHERE run_id IN :run_ids AND key IN :keys AND width = :w GROUP BY run_id, key) f
  ON m.run_id = f.run_id AND m.key = f.key AND m.step = f.s0
WHERE m.id = (SELECT MIN(id) FROM metrics m2
              WHERE m2.run_id = m.run_id AND m2.key = m.key AND m2.step = f.s0)
"""

LAST_ROWS_SQL = """
SELECT run_id, key, scope, step, cycle, phase, value, is_nan, is_inf, wall_time
FROM metric_latest WHERE run_id IN :run_ids AND key IN :keys
"""
