"""pending history: mark the snapshots the derived history has not taken in yet

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

A run's end derived the change events, candidate causes and fix checks of every host again
from every night: its time grew with the nights kept. Each snapshot now says whether the
derived history already holds it (``history_pending`` NULL), so a run's end extends the
history with the new snapshots alone (``collector.store.pending``). Until now every run's end
derived everything, so the stored snapshots are all derived already.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Not in batch: rebuilding the table on SQLite would break the views that read it. The
    # default marks the snapshots stored from now on; those stored before are derived.
    op.add_column("snapshots", sa.Column("history_pending", sa.SmallInteger(), server_default="1"))
    op.execute("UPDATE snapshots SET history_pending = NULL")
    op.create_index(
        "ix_snapshots_history_pending",
        "snapshots",
        ["host_id"],
        sqlite_where=sa.text("history_pending IS NOT NULL"),
        postgresql_where=sa.text("history_pending IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_snapshots_history_pending", table_name="snapshots")
    op.drop_column("snapshots", "history_pending")
