"""Runs record their CPU slots and the code revision they were launched from.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: on SQLite, Alembic uses ALTER TABLE ADD COLUMN where it can and rebuilds the
    # table otherwise; existing rows get cpu_slots=1 from the server default.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("cpu_slots", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("code_revision", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("code_revision")
        batch.drop_column("cpu_slots")
