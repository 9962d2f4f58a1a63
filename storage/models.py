"""SQLAlchemy 2 ORM rows of the run store. They stay inside `storage`; callers get entities.

Tables: runs, run_tags, metrics, metric_latest, evaluations, events, checkpoints. Every
child row references `runs.id` with ON DELETE CASCADE, so deleting a run removes its data
(SQLite needs `PRAGMA foreign_keys=ON`, which storage/db.py sets on every connection).

NaN / infinity policy (metrics.value and evaluations.score):
    The value column always holds a finite double; two boolean flags carry the rest.
    NaN is stored as value 0.0 with is_nan = true; +inf / -inf are stored as
    +/-1.7976931348623157e308 (the largest finite double) with is_inf = true. Reading
    inverts this exactly (is_nan -> float("nan"), is_inf -> copysign(inf, value)), so values
    round-trip bit-for-bit on SQLite and PostgreSQL alike (SQLite would turn a bound NaN into
    NULL). Infinities keep their place in SQL ordering (MIN/MAX and the downsampler see them
    as the extremes); NaN rows are kept but never ranked as a minimum or maximum.

The schema here is the head of the Alembic history in storage/migrations/versions/; a change
here needs a new revision there (tests/storage/test_migrations.py checks they agree).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from copd.common.tags import MAX_TAG_CHARS
from storage.entities import STATUSES, RunStatus

FLOAT_MAX = 1.7976931348623157e308

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit id.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def encode_float(x: float) -> tuple[float, bool, bool]:
    """float -> (finite value, is_nan, is_inf), per the module's NaN/inf policy."""
    x = float(x)
    if math.isnan(x):
        return 0.0, True, False
    if math.isinf(x):
        return math.copysign(FLOAT_MAX, x), False, True
    return x, False, False


def decode_float(value: float, is_nan: bool, is_inf: bool) -> float:
    """Inverse of encode_float."""
    if is_nan:
        return math.nan
    if is_inf:
        return math.copysign(math.inf, value)
    return float(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        # the statuses of storage/entities.py (migration 0001 wrote the same list)
        CheckConstraint("status IN (" + ",".join(f"'{s}'" for s in STATUSES) + ")", name="status"),
        Index("ix_runs_status", "status"),
        Index("ix_runs_run_group", "run_group"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(250))
    method: Mapped[str] = mapped_column(String(100))
    # "group" is an SQL keyword; the column is run_group, the attribute and entity field group.
    group: Mapped[str | None] = mapped_column("run_group", String(250), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.QUEUED.value)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pid_start_time: Mapped[float | None] = mapped_column(Double, nullable=True)
    host: Mapped[str | None] = mapped_column(String(250), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    progress: Mapped[float] = mapped_column(Double, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    code_revision: Mapped[str | None] = mapped_column(String(64), nullable=True)
    run_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    requested_gpus: Mapped[int] = mapped_column(Integer, default=0)
    assigned_gpus: Mapped[str | None] = mapped_column(String(250), nullable=True)
    cpu_slots: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    notes: Mapped[str] = mapped_column(Text, default="", server_default="")


def _run_fk() -> Any:
    return ForeignKey("runs.id", ondelete="CASCADE")


class RunTagRow(Base):
    """One tag of one run (copd/common/tags.py says what a tag may hold)."""

    __tablename__ = "run_tags"
    __table_args__ = (Index("ix_run_tags_tag", "tag"),)

    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    tag: Mapped[str] = mapped_column(String(MAX_TAG_CHARS), primary_key=True)


class MetricRow(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_id_key_step", "run_id", "key", "step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer, _run_fk())
    step: Mapped[int] = mapped_column(Integer)
    cycle: Mapped[int] = mapped_column(Integer, default=0)
    phase: Mapped[str] = mapped_column(String(32), default="")
    scope: Mapped[str] = mapped_column(String(250), default="")
    key: Mapped[str] = mapped_column(String(250))
    value: Mapped[float] = mapped_column(Double)
    is_nan: Mapped[bool] = mapped_column(Boolean, default=False)
    is_inf: Mapped[bool] = mapped_column(Boolean, default=False)
    wall_time: Mapped[float] = mapped_column(Double)


class MetricLatestRow(Base):
    """The latest point of each (run, key): the highest step, the last written on ties. Kept
    up to date in the transaction that writes the metrics (RunStore.log_metric_rows), so
    reading a run's latest values costs one row per key however long the run is."""

    __tablename__ = "metric_latest"

    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    step: Mapped[int] = mapped_column(Integer)
    cycle: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(250))
    value: Mapped[float] = mapped_column(Double)
    is_nan: Mapped[bool] = mapped_column(Boolean)
    is_inf: Mapped[bool] = mapped_column(Boolean)
    wall_time: Mapped[float] = mapped_column(Double)


class MetricRollupRow(Base):
    """Per (run, key, width, block of `width` steps): the block's row count, step range, and
    its minimum, maximum and first NaN row (storage/rollup.py). Kept up to date in the
    transaction that writes the metrics, so a long series is downsampled from its blocks."""

    __tablename__ = "metric_rollup"
    # On SQLite the rows are stored in key order (no rowid), so a series' blocks are one
    # contiguous range: reading them is half the work of index lookups into a rowid table.
    __table_args__ = {"sqlite_with_rowid": False}

    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    width: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    block: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
    nan_n: Mapped[int] = mapped_column(Integer)
    smin: Mapped[int] = mapped_column(Integer)
    smax: Mapped[int] = mapped_column(Integer)
    lo_step: Mapped[int] = mapped_column(Integer)
    lo_cycle: Mapped[int] = mapped_column(Integer)
    lo_phase: Mapped[str] = mapped_column(String(32))
    lo_scope: Mapped[str] = mapped_column(String(250))
    lo_value: Mapped[float] = mapped_column(Double)
    lo_is_nan: Mapped[bool] = mapped_column(Boolean)
    lo_is_inf: Mapped[bool] = mapped_column(Boolean)
    lo_wall_time: Mapped[float] = mapped_column(Double)
    hi_step: Mapped[int] = mapped_column(Integer)
    hi_cycle: Mapped[int] = mapped_column(Integer)
    hi_phase: Mapped[str] = mapped_column(String(32))
    hi_scope: Mapped[str] = mapped_column(String(250))
    hi_value: Mapped[float] = mapped_column(Double)
    hi_is_nan: Mapped[bool] = mapped_column(Boolean)
    hi_is_inf: Mapped[bool] = mapped_column(Boolean)
    hi_wall_time: Mapped[float] = mapped_column(Double)
    # the block's first NaN row; NULL when the block has none
    nan_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    nan_cycle: Mapped[int | None] = mapped_column(Integer, nullable=True)
    nan_phase: Mapped[str | None] = mapped_column(String(32), nullable=True)
    nan_scope: Mapped[str | None] = mapped_column(String(250), nullable=True)
    nan_value: Mapped[float | None] = mapped_column(Double, nullable=True)
    nan_is_nan: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    nan_is_inf: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    nan_wall_time: Mapped[float | None] = mapped_column(Double, nullable=True)


class EvaluationRow(Base):
    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_run_id_step", "run_id", "step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer, _run_fk())
    model: Mapped[str] = mapped_column(String(250))
    benchmark: Mapped[str] = mapped_column(String(250))
    score: Mapped[float] = mapped_column(Double)
    is_nan: Mapped[bool] = mapped_column(Boolean, default=False)
    is_inf: Mapped[bool] = mapped_column(Boolean, default=False)
    n: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    wall_time: Mapped[float] = mapped_column(Double)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer, _run_fk())
    message: Mapped[str] = mapped_column(Text)
    level: Mapped[str] = mapped_column(String(16), default="info")
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    wall_time: Mapped[float] = mapped_column(Double)


class CheckpointRow(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_run_id_step", "run_id", "step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer, _run_fk())
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    wall_time: Mapped[float] = mapped_column(Double)


class SampleRow(Base):
    """One recorded completion with its per-token log-probs (storage/samples.py). The token
    arrays live in `detail` (JSON: tokens, logp, peers); the columns are what the samples
    view filters and sorts by. At most `diagnostics.samples_cap` rows per run."""

    __tablename__ = "samples"
    __table_args__ = (Index("ix_samples_run_id_step", "run_id", "step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer, _run_fk())
    step: Mapped[int] = mapped_column(Integer)
    cycle: Mapped[int] = mapped_column(Integer, default=0)
    phase: Mapped[str] = mapped_column(String(32), default="")
    kind: Mapped[str] = mapped_column(String(16))
    branch: Mapped[str] = mapped_column(String(250))
    domain: Mapped[str] = mapped_column(String(250))
    prompt_index: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    completion: Mapped[str] = mapped_column(Text)
    reward: Mapped[float] = mapped_column(Double)
    correct: Mapped[bool] = mapped_column(Boolean)
    disagreement: Mapped[float | None] = mapped_column(Double, nullable=True)
    overlap: Mapped[float | None] = mapped_column(Double, nullable=True)
    detail: Mapped[Any] = mapped_column(JSON)
    wall_time: Mapped[float] = mapped_column(Double)
