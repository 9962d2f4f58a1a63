"""Initial schema: runs, metrics, evaluations, events, checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def _fk() -> sa.ForeignKey:
    return sa.ForeignKey("runs.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("method", sa.String(100), nullable=False),
        sa.Column("run_group", sa.String(250), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("ended_at", _TS, nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("pid_start_time", sa.Double(), nullable=True),
        sa.Column("host", sa.String(250), nullable=True),
        sa.Column("heartbeat_at", _TS, nullable=True),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("run_dir", sa.Text(), nullable=True),
        sa.Column("requested_gpus", sa.Integer(), nullable=False),
        sa.Column("assigned_gpus", sa.String(250), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued','running','finished','failed','cancelled','crashed')",
            name="ck_runs_status",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_run_group", "runs", ["run_group"])

    op.create_table(
        "metrics",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer(), _fk(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(250), nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.Column("is_inf", sa.Boolean(), nullable=False),
        sa.Column("wall_time", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metrics"),
    )
    op.create_index("ix_metrics_run_id_key_step", "metrics", ["run_id", "key", "step"])

    op.create_table(
        "evaluations",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer(), _fk(), nullable=False),
        sa.Column("model", sa.String(250), nullable=False),
        sa.Column("benchmark", sa.String(250), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.Column("is_inf", sa.Boolean(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("wall_time", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
    )
    op.create_index("ix_evaluations_run_id_step", "evaluations", ["run_id", "step"])

    op.create_table(
        "events",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer(), _fk(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("wall_time", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_run_id_id", "events", ["run_id", "id"])

    op.create_table(
        "checkpoints",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer(), _fk(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("wall_time", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_checkpoints"),
    )
    op.create_index("ix_checkpoints_run_id_step", "checkpoints", ["run_id", "step"])


def downgrade() -> None:
    for table in ("checkpoints", "events", "evaluations", "metrics", "runs"):
        op.drop_table(table)
