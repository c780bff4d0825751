"""State spans: each host's runs of consecutive snapshots that hold the same content sets.

The report asks of every host's history what its sets said and for how many nights; read one
row per night, that grows with the nights. A span is a maximal run of a host's snapshots
(ordered by ``taken_at``, then id) equal in ``SPAN_COLUMNS``, with its first and last snapshot,
their times and its number of nights. An unchanged night extends the host's last span (an
UPDATE); a change starts a new span. ``refresh_spans`` does that for what a run stored
(``collector.store.pending.Pending``), ``rebuild_spans`` derives the whole fleet again: after a
change of the rules that made a snapshot's sets (``reclassify``, ``reparse``).

``db prune`` only removes a snapshot whose neighbours hold the same state in every column
``STATE_COLUMNS`` names, a superset of ``SPAN_COLUMNS``: a span's first and last snapshots stay,
and a span keeps counting the nights removed inside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, bindparam, delete, func, insert, select, update

from collector.store.models import Snapshot, StateSpan
from collector.store.pending import Pending

# What a span's state is: the content sets the report reads of each night.
SPAN_COLUMNS = (
    "finding_set_id", "excluded_set_id", "bind_failure_set_id", "listener_set_id",
    "dynamic_set_id",
)  # fmt: skip
# A span keeps the times of its nights this close to its last one: a window of at most this many
# days that ends after the span (the at-risk odds' 7 and 30 days) can count its nights exactly.
TAIL_DAYS = 30
_TAIL = timedelta(days=TAIL_DAYS)
_MICROSECOND = timedelta(microseconds=1)
_CHUNK = 500
_BATCH = 5000


@dataclass(slots=True)
class _Span:
    """A span being folded: the stored one it extends (``id``), or a new one (``id`` None)."""

    host_id: int
    state: tuple[int | None, ...]
    first_snapshot_id: int
    first_at: datetime
    last_snapshot_id: int
    last_at: datetime
    nights: int = 1
    times: list[datetime] = field(default_factory=list)  # the nights within _TAIL of last_at
    id: int | None = None

    def extend(self, snapshot_id: int, taken_at: datetime) -> None:
        """Add a night of the same state after the span's last one."""
        self.last_snapshot_id, self.last_at = snapshot_id, taken_at
        self.nights += 1
        self.times.append(taken_at)
        self.times = [t for t in self.times if taken_at - t <= _TAIL]

    def row(self) -> dict[str, Any]:
        """Return the span as the values of its row."""
        offsets = (str((self.last_at - t) // _MICROSECOND) for t in self.times)
        return {
            "host_id": self.host_id, "first_snapshot_id": self.first_snapshot_id,
            "first_at": self.first_at, "last_snapshot_id": self.last_snapshot_id,
            "last_at": self.last_at, "nights": self.nights, "tail": ",".join(offsets),
            **dict(zip(SPAN_COLUMNS, self.state, strict=True)),
        }  # fmt: skip


def refresh_spans(connection: Connection, pending: Pending) -> int:
    """Extend or derive again the spans of what ``pending`` names; return the spans written.

    Hosts in ``pending.rebuild`` lose their spans and get them from all their snapshots; the
    others' new snapshots (each newer than every span of its host) extend their last span or
    start new ones, in a few batched statements whatever the number of hosts.
    """
    rebuilt = sorted(pending.rebuild)
    written = _rebuild_hosts(connection, rebuilt) if rebuilt else 0
    extended = {h: ids for h, ids in pending.extend.items() if h not in pending.rebuild}
    if extended:
        written += _extend_hosts(connection, extended)
    return written


def rebuild_spans(connection: Connection) -> int:
    """Derive every host's spans again from all its snapshots; return the spans written."""
    connection.execute(delete(StateSpan))
    return _store_new(connection, _fold({}, _stream(connection, _snapshots())))


def read_tail(span: StateSpan | Any) -> list[datetime]:
    """Return the times of a span row's nights within ``TAIL_DAYS`` of its last, oldest first."""
    return tail_times(span.last_at, span.tail)


def tail_times(last_at: datetime, tail: str) -> list[datetime]:
    """Return the times a stored ``tail`` holds, from its span's ``last_at``."""
    return [last_at - int(offset) * _MICROSECOND for offset in tail.split(",") if offset]


def _snapshots() -> Select[Any]:
    """Select snapshots in the order spans are folded: by host, then time, then id."""
    columns = [getattr(Snapshot, column) for column in SPAN_COLUMNS]
    return select(Snapshot.id, Snapshot.host_id, Snapshot.taken_at, *columns).order_by(
        Snapshot.host_id, Snapshot.taken_at, Snapshot.id
    )


def _stream(connection: Connection, query: Select[Any]) -> Iterator[Any]:
    """Yield the rows of ``query`` a batch at a time: the fleet's nights are never all held."""
    yield from connection.execute(query.execution_options(yield_per=_BATCH))


def _rebuild_hosts(connection: Connection, host_ids: Sequence[int]) -> int:
    """Delete some hosts' spans and derive them again from all their snapshots."""
    written = 0
    for start in range(0, len(host_ids), _CHUNK):
        chunk = list(host_ids[start : start + _CHUNK])
        connection.execute(delete(StateSpan).where(StateSpan.host_id.in_(chunk)))
        rows = _stream(connection, _snapshots().where(Snapshot.host_id.in_(chunk)))
        written += _store_new(connection, _fold({}, rows))
    return written


def _extend_hosts(connection: Connection, extend: dict[int, tuple[int, ...]]) -> int:
    """Extend the last span of each host with its new snapshots, or start new spans."""
    hosts = sorted(extend)
    last: dict[int, _Span] = {}
    for start in range(0, len(hosts), _CHUNK):
        last.update(_last_spans(connection, hosts[start : start + _CHUNK]))
    ids = sorted({i for snapshot_ids in extend.values() for i in snapshot_ids})
    rows: list[Any] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows += connection.execute(_snapshots().where(Snapshot.id.in_(chunk))).all()
    rows.sort(key=lambda row: (row.host_id, row.taken_at, row.id))
    before = {host_id: span.nights for host_id, span in last.items()}
    spans = list(_fold(last, rows))
    kept = [span for span in spans if span.id is not None and span.nights != before[span.host_id]]
    if kept:
        moved = ("last_snapshot_id", "last_at", "nights", "tail")
        # executemany binds under other names: a column's own name is SQLAlchemy's, in SET.
        values = [{"span_id": span.id, **{f"new_{k}": span.row()[k] for k in moved}}
                  for span in kept]  # fmt: skip
        connection.execute(
            update(StateSpan)
            .where(StateSpan.id == bindparam("span_id"))
            .values({column: bindparam(f"new_{column}") for column in moved}),
            values,
        )
    return len(kept) + _store_new(connection, (span for span in spans if span.id is None))


def _last_spans(connection: Connection, host_ids: Sequence[int]) -> dict[int, _Span]:
    """Return the latest stored span of each of these hosts that has one."""
    latest = (
        select(func.max(StateSpan.id))
        .where(StateSpan.host_id.in_(host_ids))
        .group_by(StateSpan.host_id)
    )
    found = {}
    for row in connection.execute(select(StateSpan).where(StateSpan.id.in_(latest))):
        found[int(row.host_id)] = _Span(
            host_id=int(row.host_id),
            state=tuple(getattr(row, column) for column in SPAN_COLUMNS),
            first_snapshot_id=int(row.first_snapshot_id), first_at=row.first_at,
            last_snapshot_id=int(row.last_snapshot_id), last_at=row.last_at,
            nights=int(row.nights), times=read_tail(row), id=int(row.id),
        )  # fmt: skip
    return found


def _fold(current: dict[int, _Span], rows: Iterable[Any]) -> Iterator[_Span]:
    """Fold snapshot rows (by host, oldest first) into spans, from each host's ``current`` one.

    Yields every span it finished or touched, ``current`` ones included (extended or not).
    """
    for row in rows:
        state = tuple(getattr(row, column) for column in SPAN_COLUMNS)
        span = current.get(row.host_id)
        if span is not None and span.state == state:
            span.extend(row.id, row.taken_at)
            continue
        if span is not None:
            yield span
        current[row.host_id] = _Span(row.host_id, state, row.id, row.taken_at, row.id,
                                     row.taken_at, times=[row.taken_at])  # fmt: skip
    yield from current.values()
    current.clear()


def _store_new(connection: Connection, spans: Iterable[_Span]) -> int:
    """Insert new spans, a batch at a time, oldest first per host (ids follow time)."""
    stored = 0
    batch: list[dict[str, Any]] = []
    for span in spans:
        batch.append(span.row())
        if len(batch) >= _BATCH:
            stored += _insert(connection, batch)
            batch = []
    return stored + (_insert(connection, batch) if batch else 0)


def _insert(connection: Connection, rows: list[dict[str, Any]]) -> int:
    rows.sort(key=lambda row: (row["host_id"], row["first_at"], row["first_snapshot_id"]))
    connection.execute(insert(StateSpan), rows)
    return len(rows)
