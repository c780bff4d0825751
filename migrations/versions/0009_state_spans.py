"""state spans: each host's runs of snapshots holding the same content sets

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

The report read one row per host-night to learn what each night's sets said; the spans say it
once per change (``collector.store.spans``). The table is filled here from the stored
snapshots, by a fold of its own: this revision's schema, whatever today's code becomes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_STATE = (
    "finding_set_id", "excluded_set_id", "bind_failure_set_id", "listener_set_id",
    "dynamic_set_id",
)  # fmt: skip
_TAIL = timedelta(days=30)
_BATCH = 5000

_snapshots = sa.table(
    "snapshots",
    sa.column("id", sa.Integer),
    sa.column("host_id", sa.Integer),
    sa.column("taken_at", sa.DateTime),
    *(sa.column(name, sa.Integer) for name in _STATE),
)


def upgrade() -> None:
    spans = op.create_table(
        "state_spans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("first_snapshot_id", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(), nullable=False),
        sa.Column("last_snapshot_id", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(), nullable=False),
        sa.Column("nights", sa.Integer(), nullable=False),
        sa.Column("tail", sa.Text(), nullable=False),
        *(sa.Column(name, sa.Integer()) for name in _STATE),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_state_spans_host_id_hosts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_state_spans")),
    )
    op.create_index("ix_state_spans_host_id_first_at", "state_spans", ["host_id", "first_at"])
    bind = op.get_bind()
    query = sa.select(_snapshots).order_by(
        _snapshots.c.host_id, _snapshots.c.taken_at, _snapshots.c.id
    )
    rows = bind.execute(query.execution_options(yield_per=_BATCH))
    batch: list[dict[str, Any]] = []
    for span in _fold(rows):
        batch.append(span)
        if len(batch) >= _BATCH:
            bind.execute(sa.insert(spans), batch)
            batch = []
    if batch:
        bind.execute(sa.insert(spans), batch)


def downgrade() -> None:
    op.drop_index("ix_state_spans_host_id_first_at", table_name="state_spans")
    op.drop_table("state_spans")


def _fold(rows: Any) -> Iterator[dict[str, Any]]:
    """Fold snapshot rows (by host, oldest first) into span rows, each host's in time order."""
    span: dict[str, Any] = {}
    times: list[datetime] = []
    for row in rows:
        state = {name: getattr(row, name) for name in _STATE}
        if span.get("host_id") == row.host_id and all(span[k] == v for k, v in state.items()):
            span.update(last_snapshot_id=row.id, last_at=row.taken_at, nights=span["nights"] + 1)
            times = [t for t in (*times, row.taken_at) if row.taken_at - t <= _TAIL]
            continue
        if span:
            yield _finish(span, times)
        span = {"host_id": row.host_id, "first_snapshot_id": row.id, "first_at": row.taken_at,
                "last_snapshot_id": row.id, "last_at": row.taken_at, "nights": 1,
                **state}  # fmt: skip
        times = [row.taken_at]
    if span:
        yield _finish(span, times)


def _finish(span: dict[str, Any], times: list[datetime]) -> dict[str, Any]:
    """Add the tail: each kept night's time, as microseconds before the span's last."""
    tail = ",".join(str((span["last_at"] - t) // timedelta(microseconds=1)) for t in times)
    return {**span, "tail": tail}
