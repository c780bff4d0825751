"""attempts by run and host: index a run's attempts by host too

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

A host's in-flight mark is dropped when its record lands, found by run and host. With the run
indexed alone, SQLite chose that index and read every attempt of the run so far for each
host, so a night cost the square of its hosts. Indexed by run and host, each look-up reads the
host's own rows; the index serves the run alone too, so it replaces the old one.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_attempts_run_id_host_id", "attempts", ["run_id", "host_id"])
    op.drop_index("ix_attempts_run_id", table_name="attempts")


def downgrade() -> None:
    op.create_index("ix_attempts_run_id", "attempts", ["run_id"])
    op.drop_index("ix_attempts_run_id_host_id", table_name="attempts")
