"""The snapshots stored since the history was last derived, host by host.

Derived data (change events, candidate causes, fix checks, state spans) is extended at a run's
end with what was stored since, rather than derived again from every night of every host. A
host whose new snapshots all come after the ones already derived is extended from its last
derived snapshot; a host with a snapshot older than those (a backfilled capture, a re-import)
or without any derived snapshot yet is derived again from its first snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, ScalarSelect, select, update
from sqlalchemy.orm import aliased

from collector.store.models import Snapshot, Update


@dataclass(frozen=True, slots=True)
class Pending:
    """What to derive: per host, the new snapshots to extend with, or the whole host again."""

    # host id -> ids of its new snapshots, each taken after every derived snapshot of the host.
    extend: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    # host ids to derive again from their first snapshot.
    rebuild: Set[int] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.extend or self.rebuild)


# ``snapshots.history_pending``: extend the host's history with the snapshot, or derive the
# host's history again (an update already stored changed with it).
EXTEND = 1
REBUILD = 2
_CHUNK = 5000


def _derived_at() -> ScalarSelect[datetime]:
    """Select the time of the host's latest derived snapshot (NULL when none is), per row."""
    derived = aliased(Snapshot)
    return (
        select(derived.taken_at)
        .where(derived.host_id == Snapshot.host_id, derived.history_pending.is_(None))
        .order_by(derived.taken_at.desc())
        .limit(1)
        .scalar_subquery()
    )


def find_pending(connection: Connection) -> Pending:
    """Return the snapshots not yet derived, and which hosts must be derived again whole.

    A host is derived again when it has nothing derived yet, when a new snapshot is not later
    than its latest derived one (a backfill), when a stored update changed (``REBUILD``), or
    when an update first listed now says it was installed before the latest derived snapshot:
    its window lies in the derived history.
    """
    rows = connection.execute(
        select(
            Snapshot.id,
            Snapshot.host_id,
            Snapshot.taken_at,
            Snapshot.history_pending,
            _derived_at().label("derived_at"),
        ).where(Snapshot.history_pending.is_not(None))
    ).all()
    derived_at: dict[int, datetime | None] = {}
    rebuild: set[int] = set()
    extend: dict[int, list[tuple[datetime, int]]] = {}
    for row in rows:
        derived_at[row.host_id] = row.derived_at
        if (
            row.derived_at is None
            or row.taken_at <= row.derived_at
            or row.history_pending == REBUILD
        ):
            rebuild.add(row.host_id)
        extend.setdefault(row.host_id, []).append((row.taken_at, row.id))
    late = connection.execute(
        select(Update.host_id, Update.installed_at)
        .join(Snapshot, Snapshot.id == Update.first_snapshot_id)
        .where(Snapshot.history_pending.is_not(None), Update.installed_at.is_not(None))
    ).all()
    for host_id, installed_at in late:
        mark = derived_at.get(host_id)
        if mark is not None and installed_at is not None and installed_at <= mark:
            rebuild.add(host_id)
    return Pending(
        extend={
            host_id: tuple(snapshot_id for _, snapshot_id in sorted(found))
            for host_id, found in extend.items()
            if host_id not in rebuild
        },
        rebuild=frozenset(rebuild),
    )


def mark_everything(connection: Connection) -> None:
    """Have the next derivation derive every host again from its first snapshot."""
    connection.execute(update(Snapshot).values(history_pending=REBUILD))


def mark_rebuild(connection: Connection, hosts: Iterable[int]) -> None:
    """Mark every snapshot of ``hosts`` pending, so the derivation reads them all."""
    for chunk in _chunks(hosts):
        connection.execute(
            update(Snapshot).where(Snapshot.host_id.in_(chunk)).values(history_pending=REBUILD)
        )


def settle(connection: Connection, pending: Pending) -> None:
    """Mark what ``pending`` named as derived (the hosts derived again: all their snapshots).

    By id, not by flag: on PostgreSQL another collector may have stored a snapshot since,
    which the next run's end derives.
    """
    ids = [snapshot_id for found in pending.extend.values() for snapshot_id in found]
    for chunk in _chunks(ids):
        connection.execute(
            update(Snapshot).where(Snapshot.id.in_(chunk)).values(history_pending=None)
        )
    for chunk in _chunks(pending.rebuild):
        connection.execute(
            update(Snapshot).where(Snapshot.host_id.in_(chunk)).values(history_pending=None)
        )


def _chunks(values: Iterable[int]) -> Iterator[list[int]]:
    unique = sorted(set(values))
    for start in range(0, len(unique), _CHUNK):
        yield unique[start : start + _CHUNK]
