"""The latest value of every (run, key), kept as rows are written: the Runs page, Home and
`copd runs` read one row per key instead of scanning a run's metrics.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_latest",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(250), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.Column("is_inf", sa.Boolean(), nullable=False),
        sa.Column("wall_time", sa.Double(), nullable=False),
    )  # fmt: skip
    # Fill it for the runs already recorded: per (run, key) the row of the highest step,
    # the last written on ties (the largest id), as the store's reads chose it before.
    op.execute(
        """
        INSERT INTO metric_latest
            (run_id, key, step, cycle, phase, scope, value, is_nan, is_inf, wall_time)
        SELECT m.run_id, m.key, m.step, m.cycle, m.phase, m.scope, m.value, m.is_nan,
               m.is_inf, m.wall_time
        FROM metrics m
        JOIN (SELECT run_id, key, MAX(id) AS id FROM metrics m2
              WHERE step = (SELECT MAX(step) FROM metrics m3
                            WHERE m3.run_id = m2.run_id AND m3.key = m2.key)
              GROUP BY run_id, key) t
          ON m.id = t.id
        """
    )


def downgrade() -> None:
    op.drop_table("metric_latest")
