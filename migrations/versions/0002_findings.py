"""findings: the diagnosis stored once per snapshot, and the views read it

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

Adds the finding sets (``collector.diagnosis``), points every snapshot at its set, classifies the
snapshots already stored, and rewrites the views so that none of them classifies a port itself.
"""

from __future__ import annotations

from importlib import import_module

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_INITIAL = import_module("migrations.versions.0001_initial_store")
# The latest snapshot of each host, in one place: the views below and the reports use it.
_LATEST = """SELECT s2.id FROM snapshots s2 WHERE s2.host_id = s.host_id
                ORDER BY s2.taken_at DESC, s2.id DESC LIMIT 1"""

VIEWS: dict[str, str] = {
    "v_latest_snapshots": f"""
SELECT h.name AS host, s.id AS snapshot_id, s.taken_at, s.received_at, s.source,
       s.probe_version, s.os_build, s.last_boot_at, s.bios_version, s.fast_startup,
       s.docker_version, s.wsl_version,
       CASE WHEN s.excluded_set_id IS NULL THEN 0 ELSE 1 END AS excluded_known,
       CASE WHEN s.bind_failure_set_id IS NULL THEN 0 ELSE 1 END AS swept,
       (SELECT COUNT(*) FROM excluded_ranges r WHERE r.set_id = s.excluded_set_id)
           AS excluded_ranges,
       (SELECT COALESCE(SUM(b.end_port - b.start_port + 1), 0) FROM bind_failures b
         WHERE b.set_id = s.bind_failure_set_id) AS failing_ports,
       (SELECT COUNT(*) FROM snapshot_errors e WHERE e.snapshot_id = s.id) AS errors,
       s.host_id
  FROM snapshots s
  JOIN hosts h ON h.id = s.host_id
 WHERE s.id = ({_LATEST})
""",
    "v_findings": f"""
SELECT h.name AS host, s.id AS snapshot_id, s.taken_at, f.protocol, f.family,
       f.start_port, f.end_port, f.end_port - f.start_port + 1 AS ports,
       f.diagnosis AS classification, f.error_code, f.administered,
       f.range_start AS excluded_start, f.range_end AS excluded_end,
       f.block_start AS failure_start, f.block_end AS failure_end,
       f.pid, f.process, f.holder, f.dynamic_start, f.dynamic_end, f.dynamic_captured,
       f.in_dynamic, f.fixes,
       CASE WHEN s.id = ({_LATEST}) THEN 1 ELSE 0 END AS latest
  FROM snapshots s
  JOIN hosts h ON h.id = s.host_id
  JOIN findings f ON f.set_id = s.finding_set_id
""",
    "v_failing_ports": """
SELECT l.host, l.snapshot_id, l.taken_at, f.protocol, f.family, p.port, f.error_code,
       f.block_start AS failure_start, f.block_end AS failure_end,
       f.diagnosis AS classification,
       f.range_start AS excluded_start, f.range_end AS excluded_end, f.administered,
       f.pid, f.process, f.holder, l.excluded_known,
       CASE WHEN f.dynamic_captured THEN f.in_dynamic END AS in_dynamic_range, f.fixes
  FROM v_latest_snapshots l
  JOIN snapshots s ON s.id = l.snapshot_id
  JOIN findings f ON f.set_id = s.finding_set_id AND f.error_code IS NOT NULL
  JOIN ports p ON p.port BETWEEN f.start_port AND f.end_port
""",
    "v_excluded_ranges": """
SELECT l.host, l.snapshot_id, l.taken_at, r.protocol, r.family, r.start_port, r.end_port,
       r.end_port - r.start_port + 1 AS port_count, r.administered
  FROM v_latest_snapshots l
  JOIN snapshots s ON s.id = l.snapshot_id
  JOIN excluded_ranges r ON r.set_id = s.excluded_set_id
""",
    # Unchanged; dropped and made again because it reads the snapshots table.
    "v_updates": _INITIAL.VIEWS["v_updates"],
    "v_listeners": """
SELECT l.host, l.snapshot_id, l.taken_at, li.protocol, li.address, li.port, li.pid, li.process
  FROM v_latest_snapshots l
  JOIN snapshots s ON s.id = l.snapshot_id
  JOIN listeners li ON li.set_id = s.listener_set_id
""",
}
# 0001's views that read the snapshots table, dropped in dependency order.
_REPLACED = (
    "v_failing_ports", "v_excluded_ranges", "v_listeners", "v_updates", "v_latest_snapshots"
)  # fmt: skip
_FK = "fk_snapshots_finding_set_id_finding_sets"


def upgrade() -> None:
    op.create_table(
        "finding_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finding_sets")),
        sa.UniqueConstraint("sha256", name=op.f("uq_finding_sets_sha256")),
    )
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(length=3), nullable=False),
        sa.Column("family", sa.String(length=4), nullable=False),
        sa.Column("start_port", sa.Integer(), nullable=False),
        sa.Column("end_port", sa.Integer(), nullable=False),
        sa.Column("diagnosis", sa.String(length=32), nullable=False),
        sa.Column("dynamic_start", sa.Integer(), nullable=False),
        sa.Column("dynamic_end", sa.Integer(), nullable=False),
        sa.Column("dynamic_captured", sa.Boolean(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("administered", sa.Boolean(), nullable=True),
        sa.Column("range_start", sa.Integer(), nullable=True),
        sa.Column("range_end", sa.Integer(), nullable=True),
        sa.Column("block_start", sa.Integer(), nullable=True),
        sa.Column("block_end", sa.Integer(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("process", sa.String(length=255), nullable=True),
        sa.Column("holder", sa.String(length=16), nullable=True),
        sa.Column("fixes", sa.String(length=255), nullable=False),
        sa.Column("in_dynamic", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "diagnosis IN ('reserved', 'probably-reserved', 'in-use', 'unexplained', 'at-risk')",
            name=op.f("ck_findings_diagnosis"),
        ),
        sa.CheckConstraint("start_port <= end_port", name=op.f("ck_findings_order")),
        sa.CheckConstraint(
            "start_port BETWEEN 0 AND 65535 AND end_port BETWEEN 0 AND 65535",
            name=op.f("ck_findings_ports"),
        ),
        sa.ForeignKeyConstraint(
            ["set_id"], ["finding_sets.id"], name=op.f("fk_findings_set_id_finding_sets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
    )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_findings_set_id"), ["set_id"], unique=False)
    for name in _REPLACED:
        op.execute(f"DROP VIEW {name}")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with its reference in place; batch mode would copy the table,
        # which foreign keys that are on forbid while other tables point at its rows.
        op.execute(
            f"ALTER TABLE snapshots ADD COLUMN finding_set_id INTEGER CONSTRAINT {_FK} "
            "REFERENCES finding_sets (id)"
        )
    else:
        op.add_column("snapshots", sa.Column("finding_set_id", sa.Integer(), nullable=True))
        op.create_foreign_key(_FK, "snapshots", "finding_sets", ["finding_set_id"], ["id"])
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")
    # The snapshots stored before this revision get their findings once the store is at head
    # (collector.store.derived): run from here, today's code would meet this revision's schema.


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
    # On SQLite this copies the table: with rows that others point at, turn foreign keys off.
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        if op.get_bind().dialect.name != "sqlite":
            batch_op.drop_constraint(_FK, type_="foreignkey")
        batch_op.drop_column("finding_set_id")
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_findings_set_id"))
    op.drop_table("findings")
    op.drop_table("finding_sets")
    for name in reversed(_REPLACED):
        op.execute(f"CREATE VIEW {name} AS {_INITIAL.VIEWS[name]}")
