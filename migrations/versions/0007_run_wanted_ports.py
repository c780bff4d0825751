"""run wanted ports: the wanted ports a collection ran with, for a report without a config

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

``collect`` records the wanted ports of its config (and the process serving each) on its run, so
a report made where the config is not (another machine, an IT colleague) uses the list the
fleet was last collected with, and says so.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("collection_runs", sa.Column("wanted_ports", sa.Text()))


def downgrade() -> None:
    # Not in batch: rebuilding the table on SQLite would break the views and foreign keys that
    # read it; SQLite (3.35 and later) drops a column in place.
    op.drop_column("collection_runs", "wanted_ports")
