"""Drop old snapshots and raw documents, keeping every state's first and last night, and events.

A snapshot older than the cut-off goes when the host's snapshots just before and just after it
hold the same state (the same sets, boot, BIOS, versions: ``STATE_COLUMNS``) and nothing points
at it or at the one after it (a change event, a candidate cause, an update first seen there, a
fix, a section error: the night before such a one is the last without it). What stays is, for
every run of equal nights, its first and last night: each change event still lies between the
same two snapshots, "since when" and "first seen" read the same nights, and the history derived
again (``db reclassify``) is the same. The host's latest snapshot always stays. The kept
snapshots older than the cut-off lose their raw document (not the latest), then documents and
content sets nothing points at any more go.

It runs beside collection: each batch of hosts is one short transaction, under the lock the
history's derivation takes (``history_lock``), so a run's end never derives from a snapshot
this removes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from collector.clock import now as clock_now
from collector.store.database import Store
from collector.store.history import history_lock
from collector.store.locks import content_lock
from collector.store.models import (
    Attempt,
    CandidateCause,
    ChangeEvent,
    Document,
    Fix,
    FixCheck,
    Host,
    Snapshot,
    SnapshotError,
    Update,
)
from collector.store.snapshots import SETS, drop_unused_sets

# What a night's state is: two neighbours equal in all of these say the same about the host.
STATE_COLUMNS = (
    *SETS, "os_build", "last_boot_at", "bios_version", "bios_date", "fast_startup",
    "docker_version", "wsl_version",
)  # fmt: skip
_HOSTS_PER_BATCH = 20
_CHUNK = 500
# Everything that names a snapshot and is kept: a snapshot one of these names stays.
_REFERENCES: tuple[Any, ...] = (
    ChangeEvent.snapshot_id,
    ChangeEvent.previous_snapshot_id,
    CandidateCause.snapshot_id,
    Update.first_snapshot_id,
    Fix.snapshot_id,
    SnapshotError.snapshot_id,
)


@dataclass(frozen=True, slots=True)
class Pruned:
    """What ``prune`` removed, and what it kept of the old nights."""

    snapshots: int = 0
    stripped: int = 0
    documents: int = 0
    sets: int = 0
    kept: int = 0

    def describe(self, days: int) -> str:
        """Say it in one line for the operator."""
        return (
            f"{self.snapshots} snapshots older than {days} days removed, {self.kept} kept (the "
            f"first and last night of each state); {self.stripped} kept snapshots lost their "
            f"raw document; {self.documents} documents and {self.sets} content sets removed"
        )


def prune(store: Store, keep_days: int, now: datetime | None = None) -> Pruned:
    """Drop what the module doc says, in short transactions; return what was removed."""
    cutoff = (now or clock_now()) - timedelta(days=keep_days)
    with store.connect() as connection:
        host_ids = list(connection.scalars(select(Host.id).order_by(Host.id)))
        sets_before = {column: _set_ids(connection, column) for column in SETS}
    removed = stripped = kept = 0
    documents: set[int] = set()
    for start in range(0, len(host_ids), _HOSTS_PER_BATCH):
        with store.transaction() as connection:
            history_lock(connection)
            batch = _prune_hosts(connection, host_ids[start : start + _HOSTS_PER_BATCH], cutoff)
        removed += batch.snapshots
        stripped += batch.stripped
        kept += batch.kept
        documents |= batch.documents
    dropped_documents = _drop_unused_documents(store, sorted(documents))
    with store.transaction() as connection:
        content_lock(connection, exclusive=True)  # taken before the history lock, always
        history_lock(connection)
        dropped_sets = sum(
            drop_unused_sets(connection, column, ids) for column, ids in sets_before.items()
        )
    return Pruned(removed, stripped, dropped_documents, dropped_sets, kept)


@dataclass(slots=True)
class _Batch:
    snapshots: int
    stripped: int
    kept: int
    documents: set[int]


def _prune_hosts(connection: Connection, host_ids: list[int], cutoff: datetime) -> _Batch:
    """Prune the snapshots of some hosts in the caller's transaction."""
    columns = [getattr(Snapshot, column) for column in STATE_COLUMNS]
    rows = connection.execute(
        select(Snapshot.id, Snapshot.host_id, Snapshot.taken_at, Snapshot.document_id, *columns)
        .where(Snapshot.host_id.in_(host_ids))
        .order_by(Snapshot.host_id, Snapshot.taken_at, Snapshot.id)
    ).all()
    named = _referenced(connection, [row.id for row in rows])
    doomed: list[int] = []
    strip: list[int] = []
    documents: set[int] = set()
    kept = 0
    for host_rows in _by_host(rows):
        for index, row in enumerate(host_rows):
            if row.taken_at >= cutoff or index == len(host_rows) - 1:
                continue  # recent, or the host's latest: kept whole
            if row.document_id is not None:
                documents.add(row.document_id)
            after = host_rows[index + 1]
            # A named snapshot ends a window (an update first seen there, a cause): the one
            # before it is the last night without what it names, so it stays too.
            if (
                index > 0
                and row.id not in named
                and after.id not in named
                and _state(host_rows[index - 1]) == _state(row) == _state(after)
            ):
                doomed.append(row.id)
                continue
            kept += 1
            if row.document_id is not None:
                strip.append(row.id)
    for start in range(0, len(doomed), _CHUNK):
        chunk = doomed[start : start + _CHUNK]
        # A removed night's fix checks go with it; the attempt stays, as a try made.
        connection.execute(delete(FixCheck).where(FixCheck.snapshot_id.in_(chunk)))
        connection.execute(
            update(Attempt).where(Attempt.snapshot_id.in_(chunk)).values(snapshot_id=None)
        )
        connection.execute(delete(Snapshot).where(Snapshot.id.in_(chunk)))
    for start in range(0, len(strip), _CHUNK):
        connection.execute(
            update(Snapshot)
            .where(Snapshot.id.in_(strip[start : start + _CHUNK]))
            .values(document_id=None, document_delta=None)
        )
    return _Batch(len(doomed), len(strip), kept, documents)


def _by_host(rows: Iterable[Any]) -> Iterator[list[Any]]:
    """Group rows sorted by host into one list per host."""
    current: list[Any] = []
    for row in rows:
        if current and current[-1].host_id != row.host_id:
            yield current
            current = []
        current.append(row)
    if current:
        yield current


def _state(row: Any) -> tuple[Any, ...]:
    return tuple(getattr(row, column) for column in STATE_COLUMNS)


def _referenced(connection: Connection, snapshot_ids: list[int]) -> set[int]:
    """Return the snapshots among these that a kept row names."""
    named: set[int] = set()
    for start in range(0, len(snapshot_ids), _CHUNK):
        chunk = snapshot_ids[start : start + _CHUNK]
        for column in _REFERENCES:
            query = select(column).where(column.in_(bindparam("ids", expanding=True)))
            found = connection.scalars(query, {"ids": chunk})
            named.update(int(i) for i in found if i is not None)
    return named


def _drop_unused_documents(store: Store, candidates: list[int]) -> int:
    """Delete the documents among ``candidates`` no snapshot points at, a batch a transaction.

    A batch a writer still uses (it patched one of them a moment ago) is left for next time.
    """
    dropped = 0
    for start in range(0, len(candidates), _CHUNK):
        chunk = candidates[start : start + _CHUNK]
        try:
            with store.transaction() as connection:
                # A writer patching onto one of these bases holds the lock shared till it is in.
                content_lock(connection, exclusive=True)
                used = set(
                    connection.scalars(
                        select(Snapshot.document_id).where(Snapshot.document_id.in_(chunk))
                    )
                )
                unused = [i for i in chunk if i not in used]
                if unused:
                    connection.execute(delete(Document).where(Document.id.in_(unused)))
        except IntegrityError:
            continue
        dropped += len(unused)
    return dropped


def _set_ids(connection: Connection, column: str) -> list[int]:
    model: Any = SETS[column][0]
    return list(connection.scalars(select(model.id)))
