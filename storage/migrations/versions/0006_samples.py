"""Samples: recorded completions with their per-token log-probs under every peer
(copd/train/samples.py, storage/samples.py). No rows for the runs already recorded: they
logged none.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("branch", sa.String(250), nullable=False),
        sa.Column("domain", sa.String(250), nullable=False),
        sa.Column("prompt_index", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("completion", sa.Text(), nullable=False),
        sa.Column("reward", sa.Double(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("disagreement", sa.Double(), nullable=True),
        sa.Column("overlap", sa.Double(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("wall_time", sa.Double(), nullable=False),
    )  # fmt: skip
    op.create_index("ix_samples_run_id_step", "samples", ["run_id", "step"])


def downgrade() -> None:
    op.drop_index("ix_samples_run_id_step", table_name="samples")
    op.drop_table("samples")
