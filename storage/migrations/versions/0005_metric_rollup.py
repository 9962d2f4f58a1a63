"""The min/max rollup of the metrics (storage/rollup.py): per (run, key) and block of 8 and
of 64 steps, the block's count, step range, minimum, maximum and first NaN row, so the
downsampler reads blocks instead of every row of a long run. Filled for the runs already
recorded from their metric rows (one pass per width: minutes on a store of tens of millions
of rows, once).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.rollup import refill_sql

# the widths of this revision (0007 changed them); frozen, so the history replays alike
WIDTHS = (8, 64)

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _kept(prefix: str, nullable: bool) -> list[sa.Column]:
    return [
        sa.Column(f"{prefix}_step", sa.Integer(), nullable=nullable),
        sa.Column(f"{prefix}_cycle", sa.Integer(), nullable=nullable),
        sa.Column(f"{prefix}_phase", sa.String(32), nullable=nullable),
        sa.Column(f"{prefix}_scope", sa.String(250), nullable=nullable),
        sa.Column(f"{prefix}_value", sa.Double(), nullable=nullable),
        sa.Column(f"{prefix}_is_nan", sa.Boolean(), nullable=nullable),
        sa.Column(f"{prefix}_is_inf", sa.Boolean(), nullable=nullable),
        sa.Column(f"{prefix}_wall_time", sa.Double(), nullable=nullable),
    ]


def upgrade() -> None:
    op.create_table(
        "metric_rollup",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("width", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("block", sa.Integer(), primary_key=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("nan_n", sa.Integer(), nullable=False),
        sa.Column("smin", sa.Integer(), nullable=False),
        sa.Column("smax", sa.Integer(), nullable=False),
        *_kept("lo", False),
        *_kept("hi", False),
        *_kept("nan", True),
    )  # fmt: skip
    for w in WIDTHS:  # the blocks of every run already recorded
        op.get_bind().execute(sa.text(refill_sql("1 = 1")), {"w": w})


def downgrade() -> None:
    op.drop_table("metric_rollup")
