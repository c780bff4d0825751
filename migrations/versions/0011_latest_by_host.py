"""latest by host: find each host's latest snapshot from the hosts, not from every snapshot

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

``v_latest_snapshots`` kept a snapshot when it was its host's latest, asking that of every
snapshot stored: a look-up per host-night, so its time grew with the nights kept (0.9-1.3 s at
10,000 hosts x 30 nights on PostgreSQL). It now asks it once per host (0.15-0.26 s there, and
no longer growing). Same rule, same columns; the views that read it are made again unchanged.
"""

from __future__ import annotations

from importlib import import_module

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_FINDINGS = import_module("migrations.versions.0002_findings")
# The views that read v_latest_snapshots: dropped before it, made again after, unchanged.
_READERS = ("v_failing_ports", "v_excluded_ranges", "v_listeners")
# The same columns as 0002's view, each host's latest snapshot found from the host, by 0002's
# order: the newest taken, then the newest id.
_COLUMNS = _FINDINGS.VIEWS["v_latest_snapshots"].split("  FROM snapshots s\n")[0]
LATEST = f"""{_COLUMNS}  FROM hosts h
  JOIN snapshots s ON s.id = (SELECT s2.id FROM snapshots s2 WHERE s2.host_id = h.id
                               ORDER BY s2.taken_at DESC, s2.id DESC LIMIT 1)
"""


def upgrade() -> None:
    _replace(LATEST)


def downgrade() -> None:
    _replace(_FINDINGS.VIEWS["v_latest_snapshots"])


def _replace(latest: str) -> None:
    for name in _READERS:
        op.execute(f"DROP VIEW {name}")
    op.execute("DROP VIEW v_latest_snapshots")
    op.execute(f"CREATE VIEW v_latest_snapshots AS {latest}")
    for name in _READERS:
        op.execute(f"CREATE VIEW {name} AS {_FINDINGS.VIEWS[name]}")
