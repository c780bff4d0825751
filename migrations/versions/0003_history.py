"""history: change events and their candidate causes, stored, with views over them

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

The range change events and candidate causes the report showed were computed in the report
only; now they are derived once (``collector.store.history.refresh_history``), stored, and read
by the report, ``explain`` and SQL alike. The upgrade derives them for the stored snapshots.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_EVENT = """
  FROM change_events e
  JOIN hosts h ON h.id = e.host_id
  JOIN snapshots s ON s.id = e.snapshot_id
  JOIN snapshots p ON p.id = e.previous_snapshot_id"""

VIEWS: dict[str, str] = {
    "v_change_events": f"""
SELECT e.id AS event_id, h.name AS host, e.kind, s.taken_at AS at, p.taken_at AS previous_at,
       e.protocol, e.family, e.start_port, e.end_port, e.previous_start, e.previous_end,
       e.ports, e.administered, e.snapshot_id, e.previous_snapshot_id{_EVENT}
""",
    # A cause belongs to every event of the window it was first seen in; a dynamic range change
    # is a cause of range events, not of itself.
    "v_event_causes": f"""
SELECT e.id AS event_id, h.name AS host, e.kind AS event_kind, s.taken_at AS at,
       p.taken_at AS previous_at, e.protocol, e.start_port, e.end_port,
       c.kind AS cause_kind, c.cause, c.detail, c.at AS reported_at, c.cause_at,
       c.snapshot_id AS cause_snapshot_id{_EVENT}
  JOIN candidate_causes c ON c.host_id = e.host_id AND c.seen_at > p.taken_at
       AND c.seen_at <= s.taken_at
       AND NOT (e.kind = 'dynamic-changed' AND c.kind = 'dynamic-range')
""",
}


def upgrade() -> None:
    op.create_table(
        "candidate_causes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("cause", sa.String(length=255), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=True),
        sa.Column("cause_at", sa.DateTime(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("exposure", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_candidate_causes_host_id_hosts")
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_candidate_causes_snapshot_id_snapshots"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidate_causes")),
    )
    with op.batch_alter_table("candidate_causes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_candidate_causes_host_id"), ["host_id"])
        batch_op.create_index(batch_op.f("ix_candidate_causes_snapshot_id"), ["snapshot_id"])
    op.create_table(
        "change_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("previous_snapshot_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("protocol", sa.String(length=3), nullable=False),
        sa.Column("family", sa.String(length=4), nullable=True),
        sa.Column("start_port", sa.Integer(), nullable=True),
        sa.Column("end_port", sa.Integer(), nullable=True),
        sa.Column("previous_start", sa.Integer(), nullable=True),
        sa.Column("previous_end", sa.Integer(), nullable=True),
        sa.Column("ports", sa.Integer(), nullable=True),
        sa.Column("administered", sa.Boolean(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('range-appeared', 'range-disappeared', 'range-moved', 'dynamic-changed')",
            name=op.f("ck_change_events_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_change_events_host_id_hosts")
        ),
        sa.ForeignKeyConstraint(
            ["previous_snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_change_events_previous_snapshot_id_snapshots"),
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_change_events_snapshot_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_events")),
    )
    with op.batch_alter_table("change_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_change_events_host_id"), ["host_id"])
        batch_op.create_index(batch_op.f("ix_change_events_snapshot_id"), ["snapshot_id"])
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")
    # The history of the snapshots stored before this revision is derived once the store is at
    # head (collector.store.derived).


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
    with op.batch_alter_table("change_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_change_events_snapshot_id"))
        batch_op.drop_index(batch_op.f("ix_change_events_host_id"))
    op.drop_table("change_events")
    with op.batch_alter_table("candidate_causes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_candidate_causes_snapshot_id"))
        batch_op.drop_index(batch_op.f("ix_candidate_causes_host_id"))
    op.drop_table("candidate_causes")
