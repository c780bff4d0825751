"""shared nights: dynamic ranges, features, services and documents kept once per content

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

A night where nothing changed on a host still cost about 7.5 KB: its document and its own rows
of dynamic ranges, features and services. These rows become content sets like excluded ranges
(``dynamic_sets``, ``feature_sets``, ``service_sets``; the rows hang off a set, snapshots point
at sets), and a snapshot's document may be a small patch on a base document that snapshots
share (``snapshots.document_delta``), its own digest kept on the snapshot
(``document_sha256``) so that importing the same file twice is still recognised. The stored
rows move into sets here; the stored documents stay whole (each is its snapshot's base). Every
column naming a snapshot gets an index, for ``portfleet db prune``.
"""

from __future__ import annotations

import json
import zlib
from importlib import import_module
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_CHUNK = 500
# Every view, in an order where each comes after the ones it reads: the snapshots table is
# rebuilt on SQLite, which a view reading it would not survive.
_VIEWS: dict[str, str] = {
    **import_module("migrations.versions.0002_findings").VIEWS,
    "v_attempts": import_module("migrations.versions.0001_initial_store").VIEWS["v_attempts"],
    **import_module("migrations.versions.0003_history").VIEWS,
    **import_module("migrations.versions.0004_watch").VIEWS,
}
# Each moved table: its set table, the snapshot column pointing at a set, its value columns.
_MOVED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "dynamic_ranges": (
        "dynamic_sets",
        "dynamic_set_id",
        ("protocol", "family", "start_port", "port_count"),
    ),
    "features": ("feature_sets", "feature_set_id", ("name", "state")),
    "services": ("service_sets", "service_set_id", ("name", "status", "start_type")),
}
# Every column naming a snapshot gets an index: `db prune` deletes snapshots, and the database
# looks up each deleted one in these (a scan of the table each, without).
_REFERRING = (
    ("attempts", "snapshot_id"),
    ("updates", "first_snapshot_id"),
    ("change_events", "previous_snapshot_id"),
    ("fixes", "snapshot_id"),
    ("fix_checks", "snapshot_id"),
)
_UNIQUE = {"dynamic_ranges": ("protocol", "family"), "features": ("name",), "services": ("name",)}


def _value_columns(table: str) -> list[sa.Column[Any]]:
    if table == "dynamic_ranges":
        return [
            sa.Column("protocol", sa.String(length=3), nullable=False),
            sa.Column("family", sa.String(length=4), nullable=False),
            sa.Column("start_port", sa.Integer(), nullable=False),
            sa.Column("port_count", sa.Integer(), nullable=False),
        ]
    if table == "features":
        return [
            sa.Column("name", sa.String(length=128), nullable=False),
            sa.Column("state", sa.String(length=32), nullable=False),
        ]
    return [
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("start_type", sa.String(length=32), nullable=True),
    ]


def _create_rows_table(table: str, owner: str, owner_table: str) -> None:
    """Create a moved table whose rows hang off ``owner`` (``set_id`` or ``snapshot_id``)."""
    op.create_table(
        table,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(owner, sa.Integer(), nullable=False),
        *_value_columns(table),
        sa.ForeignKeyConstraint(
            [owner], [f"{owner_table}.id"], name=op.f(f"fk_{table}_{owner}_{owner_table}")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint(
            owner, *_UNIQUE[table], name=op.f(f"uq_{table}_{owner}_{'_'.join(_UNIQUE[table])}")
        ),
    )
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{table}_{owner}"), [owner], unique=False)


def _drop_rows_table(table: str, owner: str) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_index(batch_op.f(f"ix_{table}_{owner}"))
    op.drop_table(table)


def _digest(rows: list[tuple[Any, ...]]) -> str:
    # collector.store.rows.content_digest, which never changes: written out so that this
    # revision does the same thing whatever later code does.
    import hashlib

    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def _sort_key(row: tuple[Any, ...]) -> tuple[tuple[bool, Any], ...]:
    # As collector.store.rows sorts a set's rows: NULL first, never compared with a value.
    return tuple((value is not None, "" if value is None else value) for value in row)


def _collect_sets(
    bind: sa.Connection, table: str, columns: tuple[str, ...], snapshot_ids: list[int]
) -> tuple[dict[str, list[tuple[Any, ...]]], dict[int, str]]:
    """Read a table's rows snapshot by snapshot; return the distinct sets and each one's digest."""
    sets: dict[str, list[tuple[Any, ...]]] = {}
    pointers: dict[int, str] = {}
    query = sa.text(
        f"SELECT snapshot_id, {', '.join(columns)} FROM {table} WHERE snapshot_id IN :ids"
    ).bindparams(sa.bindparam("ids", expanding=True))
    for start in range(0, len(snapshot_ids), _CHUNK):
        chunk = snapshot_ids[start : start + _CHUNK]
        found: dict[int, list[tuple[Any, ...]]] = {snapshot_id: [] for snapshot_id in chunk}
        for row in bind.execute(query, {"ids": chunk}):
            found[int(row[0])].append(tuple(row[1:]))
        for snapshot_id, rows in found.items():
            rows.sort(key=_sort_key)
            digest = _digest(rows)
            sets.setdefault(digest, rows)
            pointers[snapshot_id] = digest
    return sets, pointers


def _drop_views() -> None:
    for name in reversed(_VIEWS):
        op.execute(f"DROP VIEW {name}")


def _create_views() -> None:
    for name, body in _VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def _defer_foreign_keys(bind: sa.Connection) -> None:
    # The snapshots table is rebuilt on SQLite while other rows point at it: checked at commit.
    if bind.dialect.name == "sqlite":
        bind.exec_driver_sql("PRAGMA defer_foreign_keys = ON")


_KEPT_COLUMNS = (
    "id", "host_id", "document_id", "source", "taken_at", "received_at", "probe_version",
    "os_build", "last_boot_at", "bios_version", "bios_date", "fast_startup", "docker_version",
    "wsl_version", "sweep_seconds", "excluded_set_id", "bind_failure_set_id", "listener_set_id",
    "finding_set_id",
)  # fmt: skip


def _snapshots_table(shared: bool) -> None:
    """Create the snapshots table as 0005 left it, or ``shared`` as this revision makes it."""
    pointers = [
        ("excluded_set_id", "excluded_sets"),
        ("bind_failure_set_id", "bind_failure_sets"),
        ("listener_set_id", "listener_sets"),
        ("finding_set_id", "finding_sets"),
    ]
    extra: list[sa.Column[Any]] = []
    if shared:
        pointers += [(column, set_table) for set_table, column, _ in _MOVED.values()]
        extra = [
            sa.Column("document_delta", sa.LargeBinary(), nullable=True),
            sa.Column("document_sha256", sa.String(length=64), nullable=False),
        ]
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=shared),
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
        *(sa.Column(column, sa.Integer(), nullable=True) for column, _ in pointers),
        *extra,
        sa.CheckConstraint(
            "source IN ('winrm', 'file', 'capture')", name=op.f("ck_snapshots_source")
        ),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name=op.f("fk_snapshots_document_id_documents")
        ),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_snapshots_host_id_hosts")),
        *(
            sa.ForeignKeyConstraint(
                [column], [f"{table}.id"], name=op.f(f"fk_snapshots_{column}_{table}")
            )
            for column, table in pointers
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
        sa.UniqueConstraint(
            "document_sha256" if shared else "document_id",
            name=op.f("uq_snapshots_document_sha256" if shared else "uq_snapshots_document_id"),
        ),
    )
    op.create_index("ix_snapshots_host_id_taken_at", "snapshots", ["host_id", "taken_at"])
    if shared:
        op.create_index(op.f("ix_snapshots_document_id"), "snapshots", ["document_id"])


def _rebuild_sqlite_snapshots(shared: bool) -> None:
    """Rebuild the snapshots table in its other shape, its rows kept (SQLite cannot ALTER it).

    Its rows go back in after the table is made again, so that SQLite counts every row
    pointing at a snapshot as satisfied again (a renamed copy would not be).
    """
    names = ", ".join(_KEPT_COLUMNS)
    op.execute("CREATE TEMP TABLE _snapshots_copy AS SELECT * FROM snapshots")
    op.drop_table("snapshots")
    _snapshots_table(shared)
    if shared:
        op.execute(
            f"INSERT INTO snapshots ({names}, document_sha256) SELECT {names}, "
            "(SELECT d.sha256 FROM documents d WHERE d.id = c.document_id) "
            "FROM _snapshots_copy c"
        )
    else:
        op.execute(f"INSERT INTO snapshots ({names}) SELECT {names} FROM _snapshots_copy")
    op.execute("DROP TABLE _snapshots_copy")


def upgrade() -> None:
    bind = op.get_bind()
    snapshot_ids = [int(i) for i in bind.scalars(sa.text("SELECT id FROM snapshots ORDER BY id"))]
    moved = {
        table: _collect_sets(bind, table, columns, snapshot_ids)
        for table, (_, _, columns) in _MOVED.items()
    }
    _drop_views()
    _defer_foreign_keys(bind)
    # Before the rebuild: dropping the old snapshots table on SQLite looks up every row that
    # points at each of its snapshots, a scan of the table each without these (hours on a
    # year of nights).
    for table, column in _REFERRING:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column])
    for table, (set_table, _, _) in _MOVED.items():
        _drop_rows_table(table, "snapshot_id")
        op.create_table(
            set_table,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("sha256", sa.String(length=64), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{set_table}")),
            sa.UniqueConstraint("sha256", name=op.f(f"uq_{set_table}_sha256")),
        )
        _create_rows_table(table, "set_id", set_table)
    if bind.dialect.name == "sqlite":
        _rebuild_sqlite_snapshots(shared=True)
    else:
        op.add_column("snapshots", sa.Column("document_delta", sa.LargeBinary(), nullable=True))
        op.add_column("snapshots", sa.Column("document_sha256", sa.String(length=64)))
        for set_table, column, _ in _MOVED.values():
            op.add_column("snapshots", sa.Column(column, sa.Integer(), nullable=True))
            op.create_foreign_key(
                op.f(f"fk_snapshots_{column}_{set_table}"), "snapshots", set_table, [column], ["id"]
            )
        op.drop_constraint(op.f("uq_snapshots_document_id"), "snapshots", type_="unique")
        op.alter_column("snapshots", "document_id", existing_type=sa.Integer(), nullable=True)
        op.create_index(op.f("ix_snapshots_document_id"), "snapshots", ["document_id"])
        op.execute(
            "UPDATE snapshots SET document_sha256 = "
            "(SELECT d.sha256 FROM documents d WHERE d.id = snapshots.document_id)"
        )
        op.alter_column("snapshots", "document_sha256", existing_type=sa.String(length=64),
                        nullable=False)  # fmt: skip
        op.create_unique_constraint(
            op.f("uq_snapshots_document_sha256"), "snapshots", ["document_sha256"]
        )
    for table, (set_table, column, columns) in _MOVED.items():
        sets, pointers = moved[table]
        ids: dict[str, int] = {}
        for digest, rows in sets.items():
            ids[digest] = int(
                bind.execute(
                    sa.text(f"INSERT INTO {set_table} (sha256) VALUES (:d) RETURNING id"),
                    {"d": digest},
                ).scalar_one()
            )
            if rows:
                names = ", ".join(columns)
                marks = ", ".join(f":{name}" for name in columns)
                bind.execute(
                    sa.text(f"INSERT INTO {table} (set_id, {names}) VALUES (:set_id, {marks})"),
                    [{"set_id": ids[digest], **dict(zip(columns, row, strict=True))}
                     for row in rows],
                )  # fmt: skip
        moves = [{"s": ids[digest], "i": snapshot_id} for snapshot_id, digest in pointers.items()]
        for start in range(0, len(moves), _CHUNK):
            bind.execute(
                sa.text(f"UPDATE snapshots SET {column} = :s WHERE id = :i"),
                moves[start : start + _CHUNK],
            )
    _create_views()


def downgrade() -> None:
    bind = op.get_bind()
    pruned = bind.execute(
        sa.text("SELECT COUNT(*) FROM snapshots WHERE document_id IS NULL")
    ).scalar_one()
    if pruned:
        raise RuntimeError(
            f"{pruned} snapshots lost their documents to `portfleet db prune`, which the "
            "schema before 0006 cannot hold: restore a backup from before the prune instead"
        )
    _drop_views()
    _defer_foreign_keys(bind)
    # Each snapshot with a patch gets its document back whole, as earlier versions keep it.
    patched = bind.execute(
        sa.text(
            "SELECT s.id, s.document_sha256, s.document_delta, d.body FROM snapshots s "
            "JOIN documents d ON d.id = s.document_id WHERE s.document_delta IS NOT NULL"
        )
    ).all()
    from collector.store.documents import apply_patch

    for snapshot_id, digest, delta, body in patched:
        patch = json.loads(zlib.decompress(delta))
        document = apply_patch(json.loads(zlib.decompress(body)), patch)
        whole = json.dumps(document).encode()
        new_id = bind.execute(
            sa.text("INSERT INTO documents (sha256, size, body) VALUES (:d, :n, :b) RETURNING id"),
            {"d": digest, "n": len(whole), "b": zlib.compress(whole, 6)},
        ).scalar_one()
        bind.execute(
            sa.text("UPDATE snapshots SET document_id = :d WHERE id = :i"),
            {"d": new_id, "i": snapshot_id},
        )
    op.execute("DELETE FROM documents WHERE id NOT IN (SELECT document_id FROM snapshots)")
    for table, (_, column, columns) in _MOVED.items():
        names = ", ".join(columns)
        rows = bind.execute(
            sa.text(
                f"SELECT s.id, {', '.join(f'r.{c}' for c in columns)} FROM snapshots s "
                f"JOIN {table} r ON r.set_id = s.{column} ORDER BY s.id, r.id"
            )
        ).all()
        _drop_rows_table(table, "set_id")
        _create_rows_table(table, "snapshot_id", "snapshots")
        marks = ", ".join(f":{name}" for name in columns)
        for start in range(0, len(rows), _CHUNK):
            bind.execute(
                sa.text(f"INSERT INTO {table} (snapshot_id, {names}) VALUES (:i, {marks})"),
                [{"i": row[0], **dict(zip(columns, row[1:], strict=True))}
                 for row in rows[start : start + _CHUNK]],
            )  # fmt: skip
    if bind.dialect.name == "sqlite":
        _rebuild_sqlite_snapshots(shared=False)
    else:
        op.drop_constraint(op.f("uq_snapshots_document_sha256"), "snapshots", type_="unique")
        op.drop_index(op.f("ix_snapshots_document_id"), table_name="snapshots")
        op.alter_column("snapshots", "document_id", existing_type=sa.Integer(), nullable=False)
        op.create_unique_constraint(op.f("uq_snapshots_document_id"), "snapshots", ["document_id"])
        for set_table, column, _ in _MOVED.values():
            op.drop_constraint(
                op.f(f"fk_snapshots_{column}_{set_table}"), "snapshots", type_="foreignkey"
            )
            op.drop_column("snapshots", column)
        op.drop_column("snapshots", "document_sha256")
        op.drop_column("snapshots", "document_delta")
    for set_table, _, _ in _MOVED.values():
        op.drop_table(set_table)
    for table, column in _REFERRING:  # after the rebuild, which they speed up
        op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
    _create_views()
