"""Classify stored snapshots again: after a schema upgrade, or after a diagnosis rule changed.

The findings of a snapshot are a content set like its excluded ranges: ``reclassify`` rebuilds
each snapshot's facts from the stored rows, diagnoses them with ``collector.diagnosis`` (the same
call the write path makes), and points the snapshot at the set of findings it gets, creating
sets as needed and removing the ones no snapshot uses any more, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from collector.store.locks import content_lock
from collector.store.models import FindingSet, Snapshot
from collector.store.rows import HOST_SET_COLUMNS, ContentSet, content_rows, finding_set
from collector.store.snapshots import SETS, drop_unused_sets, store_set

_CHUNK = 500
_REPOINT = (
    update(Snapshot)
    .where(Snapshot.id == bindparam("snapshot"))
    .values(finding_set_id=bindparam("findings"))
)
_SOURCES = (
    "excluded_set_id", "bind_failure_set_id", "listener_set_id", *HOST_SET_COLUMNS,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reclassified:
    """What ``reclassify`` did."""

    snapshots: int
    changed: int
    sets_created: int
    sets_removed: int

    def describe(self) -> str:
        """Say it in one line for the operator."""
        if not self.changed:
            return f"{self.snapshots} snapshots classified; nothing changed"
        return (
            f"{self.snapshots} snapshots classified; {self.changed} got new findings "
            f"({self.sets_created} finding sets created, {self.sets_removed} removed)"
        )


def reclassify(connection: Connection) -> Reclassified:
    """Diagnose every stored snapshot again and store what changed."""
    content_lock(connection)  # the finding sets it reuses stay; exclusive when it drops some
    snapshots = connection.execute(
        select(Snapshot.id, Snapshot.wsl_version, Snapshot.finding_set_id,
               *(getattr(Snapshot, column) for column in _SOURCES)).order_by(Snapshot.id)
    ).all()  # fmt: skip
    known = {digest: set_id for set_id, digest in connection.execute(
        select(FindingSet.id, FindingSet.sha256))}  # fmt: skip
    before = set(known.values())
    set_rows: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    digests: dict[tuple[Any, ...], str] = {}
    moves: list[dict[str, int]] = []
    for start in range(0, len(snapshots), _CHUNK):
        chunk = snapshots[start : start + _CHUNK]
        _load_sets(connection, chunk, set_rows)
        for row in chunk:
            # Unchanged nights share their inputs: diagnose each distinct set of inputs once.
            key = (tuple(getattr(row, column) for column in _SOURCES), row.wsl_version is not None)
            digest = digests.get(key)
            if digest is None:
                sets: dict[str, ContentSet | None] = {}
                for column in _SOURCES:
                    set_id = getattr(row, column)
                    rows = None if set_id is None else set_rows[(column, set_id)]
                    sets[column] = None if rows is None else content_rows(rows)
                dynamic, features, services = (
                    [dict(zip(HOST_SET_COLUMNS[column], values, strict=True))
                     for values in set_rows.get((column, getattr(row, column)), [])]
                    for column in HOST_SET_COLUMNS
                )  # fmt: skip
                content = finding_set(sets, dynamic, features, services, key[-1])
                digest = digests[key] = content.digest
                if digest not in known:
                    known[digest] = store_set(connection, "finding_set_id", content)
            if known[digest] != row.finding_set_id:
                moves.append({"snapshot": row.id, "findings": known[digest]})
    changed = len(moves)
    for start in range(0, len(moves), _CHUNK):
        connection.execute(_REPOINT, moves[start : start + _CHUNK])
    removed = drop_unused_sets(connection, "finding_set_id", known.values())
    created = len(set(known.values()) - before)
    return Reclassified(len(snapshots), changed, created, removed)


def _load_sets(
    connection: Connection,
    snapshots: Iterable[Any],
    cache: dict[tuple[str, int], list[tuple[Any, ...]]],
) -> None:
    """Read the rows of the content sets these snapshots point at and the cache lacks."""
    for column in _SOURCES:
        model: Any = SETS[column][1]
        columns = SETS[column][2]
        wanted = {getattr(row, column) for row in snapshots} - {None}
        missing = sorted(set_id for set_id in wanted if (column, set_id) not in cache)
        for set_id in missing:
            cache[(column, set_id)] = []
        if not missing:
            continue
        query = select(model.set_id, *(getattr(model, c) for c in columns)).where(
            model.set_id.in_(bindparam("ids", expanding=True))
        ).order_by(model.id)  # fmt: skip
        for row in connection.execute(query, {"ids": missing}):
            cache[(column, row[0])].append(tuple(row[1:]))
