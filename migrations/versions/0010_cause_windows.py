"""cause windows: index a host's candidate causes by when they were first seen

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

``v_event_causes`` gives each change event the causes its host first saw between the event's
two snapshots: with an index on the host alone, each event read every cause of its host, and
the view took 3 s at 1,000 hosts x 365 nights on SQLite. Indexed by host and time, each event
reads its window's causes (0.5 s). The new index serves the host alone too, so it replaces the
old one.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_candidate_causes_host_id_seen_at", "candidate_causes", ["host_id", "seen_at"]
    )
    op.drop_index("ix_candidate_causes_host_id", table_name="candidate_causes")


def downgrade() -> None:
    op.create_index("ix_candidate_causes_host_id", "candidate_causes", ["host_id"])
    op.drop_index("ix_candidate_causes_host_id_seen_at", table_name="candidate_causes")
