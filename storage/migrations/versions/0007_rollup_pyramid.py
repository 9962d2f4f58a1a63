"""The rollup as a pyramid of widths 8, 16, 32, ..., 8192 steps (each twice the one below)
instead of 8 and 64, so a series of any length is read as one block per bucket
(storage/rollup.py). The new widths are filled from the metric rows of the runs already
recorded (one pass per width). On SQLite the table is rebuilt WITHOUT ROWID, so a series'
blocks are stored together in key order and read as one contiguous range.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.rollup import refill_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BEFORE = (8, 64)
AFTER = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


def _rewidth(drop: tuple[int, ...], fill: tuple[int, ...]) -> None:
    bind = op.get_bind()
    for w in drop:
        bind.execute(sa.text("DELETE FROM metric_rollup WHERE width = :w"), {"w": w})
    for w in fill:
        bind.execute(sa.text(refill_sql("1 = 1")), {"w": w})


def _without_rowid() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    ddl = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'metric_rollup'")
    ).scalar_one()
    if "WITHOUT ROWID" in ddl.upper():
        return
    bind.execute(sa.text("ALTER TABLE metric_rollup RENAME TO metric_rollup_old"))
    bind.execute(sa.text(ddl.rstrip().rstrip(";") + " WITHOUT ROWID"))
    bind.execute(sa.text("INSERT INTO metric_rollup SELECT * FROM metric_rollup_old"))
    bind.execute(sa.text("DROP TABLE metric_rollup_old"))


def upgrade() -> None:
    _without_rowid()
    _rewidth(tuple(w for w in BEFORE if w not in AFTER), tuple(w for w in AFTER if w not in BEFORE))


def downgrade() -> None:
    _rewidth(tuple(w for w in AFTER if w not in BEFORE), tuple(w for w in BEFORE if w not in AFTER))
