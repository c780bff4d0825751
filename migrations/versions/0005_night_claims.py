"""night claims: collectors sharing a store collect each host once a night

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

Several collectors may write to one database. Each takes a host for the night by a lease on its
row of ``night_claims`` and marks it done with the host's last attempt; a run records who ran
it (``collector``), for which night and site.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("collection_runs", sa.Column("collector", sa.String(length=255)))
    op.add_column("collection_runs", sa.Column("night", sa.String(length=32)))
    op.add_column("collection_runs", sa.Column("site", sa.String(length=64)))
    op.create_table(
        "night_claims",
        sa.Column("night", sa.String(length=32), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_night_claims_host_id_hosts")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["collection_runs.id"], name=op.f("fk_night_claims_run_id_collection_runs")
        ),
        sa.PrimaryKeyConstraint("night", "host_id", name=op.f("pk_night_claims")),
    )
    with op.batch_alter_table("night_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_night_claims_host_id"), ["host_id"])
        batch_op.create_index(batch_op.f("ix_night_claims_run_id"), ["run_id"])


def downgrade() -> None:
    with op.batch_alter_table("night_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_night_claims_run_id"))
        batch_op.drop_index(batch_op.f("ix_night_claims_host_id"))
    op.drop_table("night_claims")
    # Not in batch: rebuilding the table on SQLite would break the views that read it;
    # SQLite (3.35 and later) drops a column in place.
    for column in ("site", "night", "collector"):
        op.drop_column("collection_runs", column)
