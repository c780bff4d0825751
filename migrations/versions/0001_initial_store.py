"""initial store

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# The views are part of this revision: a later change to a view is a new revision.
VIEWS: dict[str, str] = {
    "v_latest_snapshots": """
SELECT h.name AS host, s.id AS snapshot_id, s.taken_at, s.received_at, s.source,
       s.probe_version, s.os_build, s.last_boot_at, s.bios_version, s.fast_startup,
       s.docker_version, s.wsl_version,
       CASE WHEN s.excluded_set_id IS NULL THEN 0 ELSE 1 END AS excluded_known,
       (SELECT COUNT(*) FROM excluded_ranges r WHERE r.set_id = s.excluded_set_id)
           AS excluded_ranges,
       (SELECT COALESCE(SUM(b.end_port - b.start_port + 1), 0) FROM bind_failures b
         WHERE b.set_id = s.bind_failure_set_id) AS failing_ports,
       (SELECT COUNT(*) FROM snapshot_errors e WHERE e.snapshot_id = s.id) AS errors
  FROM snapshots s
  JOIN hosts h ON h.id = s.host_id
 WHERE s.id = (SELECT s2.id FROM snapshots s2 WHERE s2.host_id = s.host_id
                ORDER BY s2.taken_at DESC, s2.id DESC LIMIT 1)
""",
    "v_failing_ports": """
SELECT l.host, l.snapshot_id, l.taken_at, b.protocol, b.family, p.port, b.error_code,
       b.start_port AS failure_start, b.end_port AS failure_end,
       CASE WHEN x.id IS NOT NULL AND x.administered THEN 'excluded-administered'
            WHEN x.id IS NOT NULL THEN 'excluded'
            WHEN li.id IS NOT NULL THEN 'in-use'
            ELSE 'unexplained' END AS classification,
       x.start_port AS excluded_start, x.end_port AS excluded_end,
       li.pid, li.process, l.excluded_known,
       CASE WHEN d.id IS NULL THEN NULL
            WHEN p.port BETWEEN d.start_port AND d.start_port + d.port_count - 1 THEN 1
            ELSE 0 END AS in_dynamic_range
  FROM v_latest_snapshots l
  JOIN snapshots s ON s.id = l.snapshot_id
  JOIN bind_failures b ON b.set_id = s.bind_failure_set_id
  JOIN ports p ON p.port BETWEEN b.start_port AND b.end_port
  LEFT JOIN excluded_ranges x ON x.id = (
       SELECT x2.id FROM excluded_ranges x2
        WHERE x2.set_id = s.excluded_set_id AND x2.protocol = b.protocol
          AND p.port BETWEEN x2.start_port AND x2.end_port
        ORDER BY x2.administered DESC, x2.start_port LIMIT 1)
  LEFT JOIN listeners li ON li.id = (
       SELECT MIN(l2.id) FROM listeners l2
        WHERE l2.set_id = s.listener_set_id AND l2.protocol = b.protocol AND l2.port = p.port)
  LEFT JOIN dynamic_ranges d ON d.snapshot_id = s.id AND d.protocol = b.protocol
       AND d.family = b.family
""",
    "v_excluded_ranges": """
SELECT l.host, l.snapshot_id, l.taken_at, r.protocol, r.family, r.start_port, r.end_port,
       r.end_port - r.start_port + 1 AS port_count, r.administered
  FROM v_latest_snapshots l
  JOIN snapshots s ON s.id = l.snapshot_id
  JOIN excluded_ranges r ON r.set_id = s.excluded_set_id
""",
    "v_listeners": """
SELECT l.host, l.snapshot_id, l.taken_at, li.protocol, li.address, li.port, li.pid, li.process
  FROM v_latest_snapshots l
  JOIN snapshots s ON s.id = l.snapshot_id
  JOIN listeners li ON li.set_id = s.listener_set_id
""",
    "v_updates": """
SELECT h.name AS host, u.kb, u.title, u.description, u.installed_by, u.installed_on,
       u.installed_at, u.result_code, s.taken_at AS first_seen_at,
       u.first_snapshot_id
  FROM updates u
  JOIN hosts h ON h.id = u.host_id
  JOIN snapshots s ON s.id = u.first_snapshot_id
""",
    "v_attempts": """
SELECT a.id AS attempt_id, a.run_id, r.kind AS run_kind, h.name AS host, a.source,
       a.started_at, a.finished_at, a.status, a.error_class, a.message, a.snapshot_id
  FROM attempts a
  JOIN collection_runs r ON r.id = a.run_id
  LEFT JOIN hosts h ON h.id = a.host_id
""",
}

FILL_PORTS = """
INSERT INTO ports (port)
WITH RECURSIVE n(p) AS (SELECT 1 UNION ALL SELECT p + 1 FROM n WHERE p < 65535)
SELECT p FROM n
"""


def upgrade() -> None:
    op.create_table(
        "bind_failure_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bind_failure_sets")),
        sa.UniqueConstraint("sha256", name=op.f("uq_bind_failure_sets_sha256")),
    )
    op.create_table(
        "collection_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("portfleet_version", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "kind IN ('collect', 'import', 'demo')", name=op.f("ck_collection_runs_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_runs")),
    )
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("sha256", name=op.f("uq_documents_sha256")),
    )
    op.create_table(
        "excluded_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_excluded_sets")),
        sa.UniqueConstraint("sha256", name=op.f("uq_excluded_sets_sha256")),
    )
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=True),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hosts")),
        sa.UniqueConstraint("name", name=op.f("uq_hosts_name")),
    )
    op.create_table(
        "listener_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_listener_sets")),
        sa.UniqueConstraint("sha256", name=op.f("uq_listener_sets_sha256")),
    )
    op.create_table(
        "ports",
        sa.Column("port", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("port", name=op.f("pk_ports")),
    )
    op.create_table(
        "bind_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(length=3), nullable=False),
        sa.Column("family", sa.String(length=4), nullable=False),
        sa.Column("start_port", sa.Integer(), nullable=False),
        sa.Column("end_port", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=False),
        sa.CheckConstraint("start_port <= end_port", name=op.f("ck_bind_failures_order")),
        sa.CheckConstraint(
            "start_port BETWEEN 1 AND 65535 AND end_port BETWEEN 1 AND 65535",
            name=op.f("ck_bind_failures_ports"),
        ),
        sa.ForeignKeyConstraint(
            ["set_id"],
            ["bind_failure_sets.id"],
            name=op.f("fk_bind_failures_set_id_bind_failure_sets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bind_failures")),
    )
    with op.batch_alter_table("bind_failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bind_failures_set_id"), ["set_id"], unique=False)

    op.create_table(
        "excluded_ranges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(length=3), nullable=False),
        sa.Column("family", sa.String(length=4), nullable=False),
        sa.Column("start_port", sa.Integer(), nullable=False),
        sa.Column("end_port", sa.Integer(), nullable=False),
        sa.Column("administered", sa.Boolean(), nullable=False),
        sa.CheckConstraint("start_port <= end_port", name=op.f("ck_excluded_ranges_order")),
        sa.CheckConstraint(
            "start_port BETWEEN 0 AND 65535 AND end_port BETWEEN 0 AND 65535",
            name=op.f("ck_excluded_ranges_ports"),
        ),
        sa.ForeignKeyConstraint(
            ["set_id"], ["excluded_sets.id"], name=op.f("fk_excluded_ranges_set_id_excluded_sets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_excluded_ranges")),
    )
    with op.batch_alter_table("excluded_ranges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_excluded_ranges_set_id"), ["set_id"], unique=False)

    op.create_table(
        "listeners",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(length=3), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("process", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["set_id"], ["listener_sets.id"], name=op.f("fk_listeners_set_id_listener_sets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_listeners")),
    )
    with op.batch_alter_table("listeners", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_listeners_set_id"), ["set_id"], unique=False)

    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("taken_at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("probe_version", sa.String(length=32), nullable=True),
        sa.Column("os_build", sa.String(length=32), nullable=True),
        sa.Column("last_boot_at", sa.DateTime(), nullable=True),
        sa.Column("bios_version", sa.String(length=255), nullable=True),
        sa.Column("bios_date", sa.Date(), nullable=True),
        sa.Column("fast_startup", sa.Boolean(), nullable=True),
        sa.Column("docker_version", sa.String(length=64), nullable=True),
        sa.Column("wsl_version", sa.String(length=64), nullable=True),
        sa.Column("sweep_seconds", sa.Double(), nullable=True),
        sa.Column("excluded_set_id", sa.Integer(), nullable=True),
        sa.Column("bind_failure_set_id", sa.Integer(), nullable=True),
        sa.Column("listener_set_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "source IN ('winrm', 'file', 'capture')", name=op.f("ck_snapshots_source")
        ),
        sa.ForeignKeyConstraint(
            ["bind_failure_set_id"],
            ["bind_failure_sets.id"],
            name=op.f("fk_snapshots_bind_failure_set_id_bind_failure_sets"),
        ),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name=op.f("fk_snapshots_document_id_documents")
        ),
        sa.ForeignKeyConstraint(
            ["excluded_set_id"],
            ["excluded_sets.id"],
            name=op.f("fk_snapshots_excluded_set_id_excluded_sets"),
        ),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_snapshots_host_id_hosts")),
        sa.ForeignKeyConstraint(
            ["listener_set_id"],
            ["listener_sets.id"],
            name=op.f("fk_snapshots_listener_set_id_listener_sets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
        sa.UniqueConstraint("document_id", name=op.f("uq_snapshots_document_id")),
    )
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_snapshots_host_id_taken_at", ["host_id", "taken_at"], unique=False
        )

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_class", sa.String(length=32), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("snapshot_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "error_class IS NULL OR error_class IN "
            "('auth', 'unreachable', 'timeout', 'protocol', 'probe_error', 'bad_document')",
            name=op.f("ck_attempts_error_class"),
        ),
        sa.CheckConstraint(
            "status IN ('ok', 'partial', 'failed')", name=op.f("ck_attempts_status")
        ),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_attempts_host_id_hosts")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["collection_runs.id"], name=op.f("fk_attempts_run_id_collection_runs")
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_attempts_snapshot_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
    )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attempts_host_id"), ["host_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_attempts_run_id"), ["run_id"], unique=False)

    op.create_table(
        "dynamic_ranges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(length=3), nullable=False),
        sa.Column("family", sa.String(length=4), nullable=False),
        sa.Column("start_port", sa.Integer(), nullable=False),
        sa.Column("port_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_dynamic_ranges_snapshot_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dynamic_ranges")),
        sa.UniqueConstraint(
            "snapshot_id",
            "protocol",
            "family",
            name=op.f("uq_dynamic_ranges_snapshot_id_protocol_family"),
        ),
    )
    with op.batch_alter_table("dynamic_ranges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dynamic_ranges_snapshot_id"), ["snapshot_id"], unique=False
        )

    op.create_table(
        "features",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_features_snapshot_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_features")),
        sa.UniqueConstraint("snapshot_id", "name", name=op.f("uq_features_snapshot_id_name")),
    )
    with op.batch_alter_table("features", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_features_snapshot_id"), ["snapshot_id"], unique=False)

    op.create_table(
        "services",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("start_type", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_services_snapshot_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
        sa.UniqueConstraint("snapshot_id", "name", name=op.f("uq_services_snapshot_id_name")),
    )
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_services_snapshot_id"), ["snapshot_id"], unique=False)

    op.create_table(
        "snapshot_errors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("section", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_snapshot_errors_snapshot_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshot_errors")),
    )
    with op.batch_alter_table("snapshot_errors", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_snapshot_errors_snapshot_id"), ["snapshot_id"], unique=False
        )

    op.create_table(
        "updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("update_key", sa.String(length=80), nullable=False),
        sa.Column("kb", sa.String(length=32), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("installed_by", sa.String(length=255), nullable=True),
        sa.Column("installed_on", sa.Date(), nullable=True),
        sa.Column("installed_at", sa.DateTime(), nullable=True),
        sa.Column("result_code", sa.Integer(), nullable=True),
        sa.Column("first_snapshot_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["first_snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_updates_first_snapshot_id_snapshots"),
        ),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_updates_host_id_hosts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_updates")),
        sa.UniqueConstraint("host_id", "update_key", name=op.f("uq_updates_host_id_update_key")),
    )
    op.execute(FILL_PORTS)
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
    op.drop_table("updates")
    with op.batch_alter_table("snapshot_errors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_snapshot_errors_snapshot_id"))

    op.drop_table("snapshot_errors")
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_services_snapshot_id"))

    op.drop_table("services")
    with op.batch_alter_table("features", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_features_snapshot_id"))

    op.drop_table("features")
    with op.batch_alter_table("dynamic_ranges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dynamic_ranges_snapshot_id"))

    op.drop_table("dynamic_ranges")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attempts_run_id"))
        batch_op.drop_index(batch_op.f("ix_attempts_host_id"))

    op.drop_table("attempts")
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_snapshots_host_id_taken_at")

    op.drop_table("snapshots")
    with op.batch_alter_table("listeners", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_listeners_set_id"))

    op.drop_table("listeners")
    with op.batch_alter_table("excluded_ranges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_excluded_ranges_set_id"))

    op.drop_table("excluded_ranges")
    with op.batch_alter_table("bind_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bind_failures_set_id"))

    op.drop_table("bind_failures")
    op.drop_table("ports")
    op.drop_table("listener_sets")
    op.drop_table("hosts")
    op.drop_table("excluded_sets")
    op.drop_table("documents")
    op.drop_table("collection_runs")
    op.drop_table("bind_failure_sets")
