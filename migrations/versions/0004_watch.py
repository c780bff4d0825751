"""watch: fixes and their nightly checks, and the notifications told once

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Adds ``fixes`` (recorded by ``portfleet fix``, or detected: an administered range that
appeared), ``fix_checks`` (whether each fix held in each later snapshot, derived when a run
ends) and ``notifications`` (what ``portfleet notify`` queued and sent, per channel), with the
view ``v_fix_checks``. The upgrade derives the detected fixes and the checks of stored nights.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

VIEWS: dict[str, str] = {
    "v_fix_checks": """
SELECT h.name AS host, x.id AS fix_id, x.source, x.action, x.start_port, x.end_port,
       x.applied_at, x.recorded_by, x.note, c.snapshot_id, c.taken_at, c.outcome,
       c.port AS blocked_port, c.diagnosis
  FROM fixes x
  JOIN hosts h ON h.id = x.host_id
  LEFT JOIN fix_checks c ON c.fix_id = x.id
""",
}


def upgrade() -> None:
    op.create_table(
        "fixes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("start_port", sa.Integer(), nullable=False),
        sa.Column("end_port", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.DateTime(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(length=255), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("snapshot_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("source IN ('recorded', 'detected')", name=op.f("ck_fixes_source")),
        sa.CheckConstraint(
            "action IN ('reserve', 'restart-winnat', 'hyperv-cycle', 'other', "
            "'administered-range')",
            name=op.f("ck_fixes_action"),
        ),
        sa.CheckConstraint(
            "start_port BETWEEN 1 AND 65535 AND end_port BETWEEN 1 AND 65535",
            name=op.f("ck_fixes_ports"),
        ),
        sa.CheckConstraint("start_port <= end_port", name=op.f("ck_fixes_order")),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_fixes_host_id_hosts")),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_fixes_snapshot_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fixes")),
        sa.UniqueConstraint("key", name=op.f("uq_fixes_key")),
    )
    with op.batch_alter_table("fixes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fixes_host_id"), ["host_id"])
    op.create_table(
        "fix_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fix_id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("taken_at", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("diagnosis", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('holds', 'regressed', 'unknown')", name=op.f("ck_fix_checks_outcome")
        ),
        sa.ForeignKeyConstraint(["fix_id"], ["fixes.id"], name=op.f("fk_fix_checks_fix_id_fixes")),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_fix_checks_snapshot_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fix_checks")),
        sa.UniqueConstraint("fix_id", "snapshot_id", name=op.f("uq_fix_checks_fix_id_snapshot_id")),
    )
    with op.batch_alter_table("fix_checks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fix_checks_fix_id"), ["fix_id"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_key", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("queued_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("last_tried_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint(
            "event_key", "channel", name=op.f("uq_notifications_event_key_channel")
        ),
    )
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")
    # The administered ranges that appeared in the stored nights, and how each held since, are
    # derived once the store is at head (collector.store.derived).


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
    op.drop_table("notifications")
    with op.batch_alter_table("fix_checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fix_checks_fix_id"))
    op.drop_table("fix_checks")
    with op.batch_alter_table("fixes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fixes_host_id"))
    op.drop_table("fixes")
