"""Read every stored document again with today's parsers, and rewrite what they now read.

The store keeps each probe document (whole, or as a patch on a base), so a parser that improved
can be run over the raw text already collected. ``reparse`` prepares each stored document again
(the same ``prepare_snapshot`` a new one goes through, findings included), points the snapshot
at the content sets it now yields (dynamic ranges, features and services too), replaces its
section errors where they differ, adds updates it now reads (updates are never removed: another
snapshot may know them), removes the sets nothing points at any more, and derives the history
again. A snapshot whose document ``db prune`` dropped keeps what it holds, and is counted apart.

Each snapshot is rewritten in a transaction of its own, so a long reparse never holds the store
from a nightly ``collect``, and one stopped half-way leaves every snapshot whole (read either
way); the clean-up and the history come last, in one more transaction.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from collector.store.database import Store
from collector.store.derived import derive_pending
from collector.store.documents import stored_document
from collector.store.locks import content_lock
from collector.store.models import Document, Snapshot, SnapshotError
from collector.store.rows import prepare_snapshot
from collector.store.snapshots import SETS, drop_unused_sets, look_up, merge_updates, store_set

_CHUNK = 200
_PARTS = {
    "excluded_set_id": "excluded ranges",
    "bind_failure_set_id": "bind failures",
    "listener_set_id": "listeners",
    "finding_set_id": "findings",
    "dynamic_set_id": "dynamic ranges",
    "feature_set_id": "features",
    "service_set_id": "services",
}


@dataclass(frozen=True, slots=True)
class Reparsed:
    """What ``reparse`` rewrote: how many snapshots, and which parts of how many of them."""

    snapshots: int
    changed: int
    parts: Counter[str] = field(default_factory=Counter)
    pruned: int = 0

    def describe(self) -> str:
        """Say it in one line for the operator."""
        kept = f" ({self.pruned} older ones kept as they are: db prune dropped their documents)"
        tail = kept if self.pruned else ""
        if not self.changed:
            return f"{self.snapshots} snapshots read again; nothing changed{tail}"
        parts = ", ".join(f"{part} of {count}" for part, count in sorted(self.parts.items()))
        return f"{self.snapshots} snapshots read again; {self.changed} changed: {parts}{tail}"


def reparse(store: Store) -> Reparsed:
    """Parse every stored document again and store what changed (see the module doc)."""
    query = select(
        Snapshot.id, Snapshot.host_id, Snapshot.source, Document.body, Snapshot.document_delta,
        *(getattr(Snapshot, column) for column in SETS),
    ).join(Document, Document.id == Snapshot.document_id).order_by(Snapshot.id)  # fmt: skip
    with store.connect() as connection:
        ids = list(connection.scalars(
            select(Snapshot.id).where(Snapshot.document_id.is_not(None)).order_by(Snapshot.id)
        ))  # fmt: skip
        pruned = connection.scalar(
            select(func.count()).select_from(Snapshot).where(Snapshot.document_id.is_(None))
        )
        before = {column: _set_ids(connection, column) for column in SETS}
    parts: Counter[str] = Counter()
    changed = 0
    for start in range(0, len(ids), _CHUNK):
        with store.connect() as connection:
            rows = connection.execute(query.where(Snapshot.id.in_(ids[start : start + _CHUNK])))
            chunk = rows.all()
        for row in chunk:
            with store.transaction() as connection:
                content_lock(connection)  # it may reuse a set
                touched = _reparse_one(connection, row)
            parts.update(touched)
            changed += bool(touched)
    with store.transaction() as connection:
        content_lock(connection, exclusive=True)  # before the history lock, as prune does
        for column in SETS:
            drop_unused_sets(connection, column, before[column])
        derive_pending(connection, everything=True)
    return Reparsed(len(ids), changed, parts, int(pruned or 0))


def _set_ids(connection: Connection, column: str) -> list[int]:
    model = SETS[column][0]
    return list(connection.scalars(select(model.id)))


def _reparse_one(connection: Connection, row: Any) -> list[str]:
    """Prepare one stored document again and rewrite what differs; return the parts changed."""
    document = stored_document(row.body, row.document_delta)
    assert document is not None  # the query joins the document
    prepared = prepare_snapshot(json.dumps(document).encode(), document, row.source)
    touched = []
    pointers: dict[str, int | None] = {}
    found = look_up(connection, prepared)
    for column, content in prepared.sets.items():
        new: int | None = None
        if content is not None:
            new = found.get(column) or store_set(connection, column, content)
        if new != getattr(row, column):
            pointers[column] = new
            touched.append(_PARTS[column])
    if pointers:
        connection.execute(update(Snapshot).where(Snapshot.id == row.id).values(**pointers))
    keys = ("section", "code", "message")
    stored = connection.execute(
        select(*(getattr(SnapshotError, key) for key in keys))
        .where(SnapshotError.snapshot_id == row.id)
    ).all()  # fmt: skip
    errors = prepared.errors
    if sorted(map(tuple, stored)) != sorted(tuple(item[key] for key in keys) for item in errors):
        connection.execute(delete(SnapshotError).where(SnapshotError.snapshot_id == row.id))
        if errors:
            owned = {"snapshot_id": row.id}
            connection.execute(insert(SnapshotError), [owned | item for item in errors])
        touched.append("section errors")
    if merge_updates(connection, row.host_id, row.id, prepared):
        touched.append("updates")
    return touched
