"""Write prepared snapshots into the store: each content set once, rows in few statements.

A snapshot's document is stored as a patch on the host's latest base document when that patch
is small (``collector.store.documents``), so an unchanged night adds no document.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    Insert,
    String,
    bindparam,
    delete,
    insert,
    literal,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from collector.store.documents import small_patch
from collector.store.locks import content_lock
from collector.store.models import (
    Base,
    BindFailure,
    BindFailureSet,
    Document,
    DynamicRange,
    DynamicSet,
    ExcludedRange,
    ExcludedSet,
    Feature,
    FeatureSet,
    Finding,
    FindingSet,
    Listener,
    ListenerSet,
    Service,
    ServiceSet,
    Snapshot,
    SnapshotError,
    Update,
)
from collector.store.pending import REBUILD
from collector.store.rows import (
    FINDING_ROW_COLUMNS,
    HOST_SET_COLUMNS,
    ContentSet,
    PreparedSnapshot,
    with_host_sets,
)

_SetModel = (
    type[ExcludedSet]
    | type[BindFailureSet]
    | type[ListenerSet]
    | type[FindingSet]
    | type[DynamicSet]
    | type[FeatureSet]
    | type[ServiceSet]
)


# Each content set: the snapshot column that points at it, its table, and its rows' table.
SETS: dict[str, tuple[_SetModel, type[Base], tuple[str, ...]]] = {
    "excluded_set_id": (
        ExcludedSet,
        ExcludedRange,
        ("protocol", "family", "start_port", "end_port", "administered"),
    ),
    "bind_failure_set_id": (
        BindFailureSet,
        BindFailure,
        ("protocol", "family", "start_port", "end_port", "error_code"),
    ),
    "listener_set_id": (ListenerSet, Listener, ("protocol", "address", "port", "pid", "process")),
    "finding_set_id": (FindingSet, Finding, FINDING_ROW_COLUMNS),
    "dynamic_set_id": (DynamicSet, DynamicRange, HOST_SET_COLUMNS["dynamic_set_id"]),
    "feature_set_id": (FeatureSet, Feature, HOST_SET_COLUMNS["feature_set_id"]),
    "service_set_id": (ServiceSet, Service, HOST_SET_COLUMNS["service_set_id"]),
}


_UPDATE_COLUMNS = (
    "kb",
    "title",
    "description",
    "installed_by",
    "installed_on",
    "installed_at",
    "result_code",
)


# Statements are built once: SQLAlchemy then reuses their compiled form without deriving a
# cache key again on every execution, which counts when 32 collector threads share one GIL.
_LOOK_UP = union_all(
    select(literal("document", String), Snapshot.id).where(
        Snapshot.document_sha256 == bindparam("document")
    ),
    *(
        select(literal(column, String), model.id).where(model.sha256 == bindparam(column))
        for column, (model, _, _) in SETS.items()
    ),
)


_NEW_DOCUMENT = insert(Document).returning(Document.id)


_NEW_SNAPSHOT = insert(Snapshot).returning(Snapshot.id)


_NEW_SET = {model: insert(model).returning(model.id) for model, _, _ in SETS.values()}


_NEW_SET_OR_NONE = {
    model: postgresql.insert(model)
    .on_conflict_do_nothing(index_elements=["sha256"])
    .returning(model.id)
    for model, _, _ in SETS.values()
}


_SET_NAMED = {
    model: select(model.id).where(model.sha256 == bindparam("sha256"))
    for model, _, _ in SETS.values()
}


# The base document of each host's newest snapshot that has one, the one a new night patches.
_BASES = text(
    "SELECT s.host_id, s.document_id, d.body FROM snapshots s "
    "JOIN documents d ON d.id = s.document_id "
    "WHERE s.id IN (SELECT (SELECT s2.id FROM snapshots s2 "
    "WHERE s2.host_id = h.id AND s2.document_id IS NOT NULL "
    "ORDER BY s2.taken_at DESC, s2.id DESC LIMIT 1) FROM hosts h WHERE h.id IN :hosts)"
).bindparams(bindparam("hosts", expanding=True))


_KNOWN_UPDATES = (
    select(
        Update.id,
        Update.update_key,
        *(getattr(Update, c) for c in _UPDATE_COLUMNS),
        Snapshot.taken_at,
    )
    .join(Snapshot, Snapshot.id == Update.first_snapshot_id)
    .where(
        Update.host_id == bindparam("host_id"),
        Update.update_key.in_(bindparam("keys", expanding=True)),
    )
)


@cache
def _inserting(model: type[Base]) -> Insert:
    """Return the one INSERT statement used for ``model``'s rows."""
    return insert(model)


@dataclass(frozen=True, slots=True)
class BaseDocument:
    """A host's latest base document: its id and what it holds."""

    id: int
    document: dict[str, Any]


def load_bases(connection: Connection, host_ids: Iterable[int]) -> dict[int, BaseDocument | None]:
    """Return the base document each host's next night is patched against (None: it has none)."""
    wanted = sorted(set(host_ids))
    found: dict[int, BaseDocument | None] = dict.fromkeys(wanted)
    for start in range(0, len(wanted), 500):
        rows = connection.execute(_BASES, {"hosts": wanted[start : start + 500]})
        for host_id, document_id, body in rows:
            found[int(host_id)] = BaseDocument(int(document_id), json.loads(zlib.decompress(body)))
    return found


@dataclass(slots=True)
class StoredSnapshot:
    """The outcome of storing one document."""

    snapshot_id: int
    created: bool
    problems: list[str] = field(default_factory=list)


class KnownContent:
    """What a batch of documents found stored already, and made itself: one look-up a batch.

    ``load`` reads, in one statement per kind, the snapshots of the batch's documents and the
    content sets they name; each document then looks here instead of asking the database. What
    a document adds is staged until its savepoint is released (``keep``) and dropped when it is
    rolled back (``forget``), so no id of rolled-back rows is ever handed out.

    With ``defer_rows``, the rows that hang off a snapshot or a new set (ranges, features,
    services, listeners, findings…) are staged the same way and inserted for the whole batch
    at its end (``flush``), one statement per table instead of one per document.
    """

    def __init__(self, defer_rows: bool = False) -> None:
        self._found: dict[str, dict[str, int]] = {kind: {} for kind in ("document", *SETS)}
        self._staged: list[tuple[str, str, int]] = []
        self._updates: dict[int, list[Any]] = {}
        self.defer_rows = defer_rows
        self._rows: dict[type[Base], list[dict[str, Any]]] = {}
        self._staged_rows: list[tuple[type[Base], list[dict[str, Any]]]] = []
        self._bases: dict[int, BaseDocument | None] = {}
        self._staged_base: tuple[int, BaseDocument] | None = None

    def load_bases(self, connection: Connection, host_ids: Iterable[int]) -> None:
        """Read the base documents of the batch's known hosts, in one statement."""
        self._bases.update(load_bases(connection, host_ids))

    def base_of(self, connection: Connection, host_id: int) -> BaseDocument | None:
        """Return the host's base document, as the batch left it; asks for a host not read."""
        if host_id not in self._bases:
            self._bases.update(load_bases(connection, [host_id]))
        return self._bases[host_id]

    def new_host(self, host_id: int) -> None:
        """Know that a host this transaction has just created has no base and no update.

        No other writer can have stored a snapshot of a host row not yet committed.
        """
        self._bases.setdefault(host_id, None)
        self._updates.setdefault(host_id, [])

    def stage_base(self, host_id: int, base: BaseDocument) -> None:
        """Make a new base the host's, once the current document is kept."""
        self._staged_base = (host_id, base)

    def defer(self, model: type[Base], rows: list[dict[str, Any]]) -> None:
        """Stage rows of the current document for the batch's end."""
        if rows:
            self._staged_rows.append((model, rows))

    def flush(self, connection: Connection) -> None:
        """Insert the rows of every document kept, one executemany per table."""
        rows, self._rows = self._rows, {}
        for model, items in rows.items():
            if connection.dialect.name == "sqlite":
                _insert_plain(connection, model, items)
            elif connection.dialect.name == "postgresql":
                _copy_plain(connection, model, items)
            else:
                _insert(connection, model, items)

    def load_updates(self, connection: Connection, host_ids: Iterable[int]) -> None:
        """Read the known updates of hosts that have one document in the batch, in one statement.

        Each list is handed out once (``updates_of``): a host with several documents in the
        batch is asked about each time, so it sees what its earlier documents added.
        """
        wanted = sorted(set(host_ids))
        if not wanted:
            return
        self._updates = {host_id: [] for host_id in wanted}
        for row in connection.execute(_BATCH_UPDATES, {"hosts": wanted}):
            self._updates[row.host_id].append(row)

    def updates_of(self, host_id: int) -> list[Any] | None:
        """Return the host's known updates read for the batch, once; None when not read."""
        return self._updates.pop(host_id, None)

    @classmethod
    def load(
        cls, connection: Connection, batch: Sequence[PreparedSnapshot], defer_rows: bool = False
    ) -> KnownContent:
        """Read what the database holds of the batch's documents and content sets."""
        known = cls(defer_rows)
        wanted: dict[str, set[str]] = {kind: set() for kind in known._found}
        for prepared in batch:
            wanted["document"].add(prepared.digest)
            for column, content in with_host_sets(prepared).items():
                if content is not None:
                    wanted[column].add(content.digest)
        for kind, digests in wanted.items():
            if digests:
                query = _DOCUMENTS_KNOWN if kind == "document" else _SETS_KNOWN[kind]
                rows = connection.execute(query, {"digests": sorted(digests)})
                known._found[kind].update((str(d), int(i)) for d, i in rows)
        return known

    def look_up(self, prepared: PreparedSnapshot) -> dict[str, int]:
        """Return what ``look_up`` would: the document's snapshot and the sets kept, by kind."""
        digests = {"document": prepared.digest} | {
            column: content.digest
            for column, content in with_host_sets(prepared).items()
            if content is not None
        }
        return {
            kind: self._found[kind][digest]
            for kind, digest in digests.items()
            if digest in self._found[kind]
        }

    def store_new_sets(self, connection: Connection, batch: Sequence[PreparedSnapshot]) -> None:
        """Create the batch's sets not stored yet, by kind in ``SETS`` order, then by digest.

        Two writers on PostgreSQL that create the same new set wait one for the other; taken
        in one order by every writer (``write_snapshot`` goes through a document's sets in
        the same order), those waits never form a cycle, which PostgreSQL would break by
        failing one writer whole as a deadlock. Host by host, two batches could take two
        new sets in opposite orders.
        """
        rank = {column: index for index, column in enumerate(SETS)}
        new: dict[tuple[int, str], tuple[str, ContentSet]] = {}
        for prepared in batch:
            stored = self.look_up(prepared)
            if "document" in stored:
                continue  # stored already: the writer makes nothing of it
            for column, content in with_host_sets(prepared).items():
                if content is not None and column not in stored:
                    new[rank[column], content.digest] = (column, content)
        for key in sorted(new):
            column, content = new[key]
            self.stage(column, content.digest, store_set(connection, column, content, self))
        self.keep()

    def stage(self, kind: str, digest: str, key: int) -> None:
        """Remember what the current document stored, until it is kept or forgotten."""
        self._staged.append((kind, digest, key))

    def keep(self) -> None:
        """Keep what the current document made, for the next ones (it is stored)."""
        for kind, digest, key in self._staged:
            self._found[kind][digest] = key
        self._staged.clear()
        for model, rows in self._staged_rows:
            self._rows.setdefault(model, []).extend(rows)
        self._staged_rows.clear()
        if self._staged_base is not None:
            host_id, base = self._staged_base
            self._bases[host_id] = base
            self._staged_base = None

    def forget(self) -> None:
        """Drop what the current document made (it was rolled back)."""
        self._staged.clear()
        self._staged_rows.clear()
        self._staged_base = None


_BATCH_UPDATES = (
    select(
        Update.host_id,
        Update.id,
        Update.update_key,
        *(getattr(Update, c) for c in _UPDATE_COLUMNS),
        Snapshot.taken_at,
    )
    .join(Snapshot, Snapshot.id == Update.first_snapshot_id)
    .where(Update.host_id.in_(bindparam("hosts", expanding=True)))
)


_DOCUMENTS_KNOWN = select(Snapshot.document_sha256, Snapshot.id).where(
    Snapshot.document_sha256.in_(bindparam("digests", expanding=True))
)


_SETS_KNOWN = {
    column: select(model.sha256, model.id).where(
        model.sha256.in_(bindparam("digests", expanding=True))
    )
    for column, (model, _, _) in SETS.items()
}


def write_snapshot(
    connection: Connection,
    prepared: PreparedSnapshot,
    host_id: int,
    received_at: datetime,
    known: KnownContent | None = None,
) -> StoredSnapshot:
    """Store a prepared document once per content, with its rows, in the caller's transaction.

    ``known`` is its batch's look-up (``KnownContent``); without it, one statement asks.
    """
    found = known.look_up(prepared) if known is not None else look_up(connection, prepared)
    if "document" in found:
        return StoredSnapshot(found["document"], created=False)
    if known is not None:
        base = known.base_of(connection, host_id)
    else:
        base = load_bases(connection, [host_id])[host_id]
    body = prepared.document_row["body"]
    document = prepared.document
    if document is None:
        document = json.loads(zlib.decompress(body))
    delta = None if base is None else small_patch(base.document, document, len(body))
    if delta is not None and base is not None:
        document_id = base.id
    else:
        document_id = connection.execute(_NEW_DOCUMENT, prepared.document_row).scalar_one()
        if known is not None:
            known.stage_base(host_id, BaseDocument(document_id, document))
    pointers = {}
    sets = with_host_sets(prepared)
    for column in SETS:  # in the order every writer creates sets (``store_new_sets``)
        content = sets.get(column)
        if content is None:
            continue
        if column in found:
            pointers[column] = found[column]
            continue
        pointers[column] = store_set(connection, column, content, known)
        if known is not None:
            known.stage(column, content.digest, pointers[column])
    snapshot_id: int = connection.execute(
        _NEW_SNAPSHOT,
        prepared.snapshot_row
        | pointers
        | {
            "host_id": host_id,
            "document_id": document_id,
            "document_delta": delta,
            "document_sha256": prepared.digest,
            "received_at": received_at,
        },
    ).scalar_one()
    owned = {"snapshot_id": snapshot_id}
    _put(connection, known, SnapshotError, [owned | row for row in prepared.errors])
    read = known.updates_of(host_id) if known is not None else None
    merge_updates(connection, host_id, snapshot_id, prepared, read)
    if known is not None:
        known.stage("document", prepared.digest, snapshot_id)
    return StoredSnapshot(snapshot_id, created=True, problems=prepared.problems)


def look_up(connection: Connection, prepared: PreparedSnapshot) -> dict[str, int]:
    """Find, in one statement, the snapshot of these bytes and the content sets already kept."""
    digests = {"document": prepared.digest} | {
        column: content.digest if content is not None else ""
        for column, content in with_host_sets(prepared).items()
    }
    return {str(kind): int(key) for kind, key in connection.execute(_LOOK_UP, digests)}


def merge_updates(
    connection: Connection,
    host_id: int,
    snapshot_id: int,
    prepared: PreparedSnapshot,
    known: Sequence[Any] | None = None,
) -> bool:
    """Keep one row per host and update, pointing at the earliest snapshot that saw it.

    ``known`` holds the host's stored updates when its batch read them already. Return whether
    any row was added or changed.
    """
    found = dict(prepared.updates)
    if not found:
        return False
    touched = False
    taken_at = prepared.snapshot_row["taken_at"]
    if known is None:
        keys = {"host_id": host_id, "keys": list(found)}
        existing: Sequence[Any] = connection.execute(_KNOWN_UPDATES, keys).all()
    else:
        existing = [row for row in known if row.update_key in found]
    for row in existing:
        values = found.pop(row.update_key)
        changes = {n: v for n, v in values.items() if v is not None and getattr(row, n) is None}
        if taken_at < row.taken_at:
            changes["first_snapshot_id"] = snapshot_id  # an older document imported later
        if changes:
            connection.execute(update(Update).where(Update.id == row.id).values(**changes))
            touched = True
    if touched:
        # A stored update changed: its cause may belong to a window already derived.
        connection.execute(
            update(Snapshot).where(Snapshot.id == snapshot_id).values(history_pending=REBUILD)
        )
    new = [
        dict.fromkeys(_UPDATE_COLUMNS)
        | values
        | {"host_id": host_id, "update_key": key, "first_snapshot_id": snapshot_id}
        for key, values in found.items()
    ]
    _insert(connection, Update, new)
    return touched or bool(new)


def store_set(
    connection: Connection, column: str, content: ContentSet, known: KnownContent | None = None
) -> int:
    """Create the set holding ``content`` and return its id (or the id a rival writer made).

    Its rows go in now, or at the batch's end when ``known`` defers them.
    """
    model, row_model, columns = SETS[column]
    if connection.dialect.name == "sqlite":
        # SQLite writers hold the database's write lock (BEGIN IMMEDIATE) from the start: no
        # other writer can create this set between the look-up and the insert.
        return _insert_set(connection, model, row_model, columns, content, known)
    # Another host may store the same content at the same moment: PostgreSQL waits for its
    # transaction, and when it committed, this one uses that set instead of failing whole.
    made = connection.execute(_NEW_SET_OR_NONE[model], {"sha256": content.digest}).scalar()
    if made is None:
        return int(connection.execute(_SET_NAMED[model], {"sha256": content.digest}).scalar_one())
    rows = [{"set_id": made, **dict(zip(columns, row, strict=True))} for row in content.rows]
    _put(connection, known, row_model, rows)
    return int(made)


def drop_unused_sets(connection: Connection, column: str, candidates: Iterable[int]) -> int:
    """Delete the sets among ``candidates`` that no snapshot points at; return how many."""
    content_lock(connection, exclusive=True)  # no writer is reusing one of them meanwhile
    model: Any = SETS[column][0]
    rows: Any = SETS[column][1]
    used = set(connection.scalars(select(getattr(Snapshot, column)).distinct()))
    unused = sorted(set(candidates) - used)
    for start in range(0, len(unused), 500):
        doomed = unused[start : start + 500]
        connection.execute(delete(rows).where(rows.set_id.in_(doomed)))
        connection.execute(delete(model).where(model.id.in_(doomed)))
    return len(unused)


def _insert_set(
    connection: Connection,
    model: _SetModel,
    row_model: type[Base],
    columns: Sequence[str],
    content: ContentSet,
    known: KnownContent | None = None,
) -> int:
    set_id = int(connection.execute(_NEW_SET[model], {"sha256": content.digest}).scalar_one())
    rows = [{"set_id": set_id, **dict(zip(columns, row, strict=True))} for row in content.rows]
    _put(connection, known, row_model, rows)
    return set_id


def _put(
    connection: Connection,
    known: KnownContent | None,
    model: type[Base],
    rows: list[dict[str, Any]],
) -> None:
    """Insert rows now, or stage them for the batch's end when it defers them."""
    if known is not None and known.defer_rows:
        known.defer(model, rows)
    else:
        _insert(connection, model, rows)


def _plain_shape(
    connection: Connection, model: type[Base], rows: list[dict[str, Any]]
) -> tuple[tuple[str, ...], str] | None:
    """Return the rows' columns and their SQL names when all rows share them.

    None when there is nothing left to send: no rows, or rows of different keys, which go
    through SQLAlchemy instead so that it says which row is wrong.
    """
    if not rows:
        return None
    first = rows[0].keys()
    if any(row.keys() != first for row in rows):
        _insert(connection, model, rows)
        return None
    columns = tuple(first)
    return columns, ", ".join(model.__table__.c[column].name for column in columns)


def _insert_plain(connection: Connection, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """Insert many rows of plain values (no type conversion) through the driver's executemany.

    For a batch's rows on SQLite: SQLAlchemy's per-row parameter building cost more than the
    inserts (0.7 s of 1,000 documents). The tables a batch defers hold integers, text and
    booleans only, which the driver takes as they are. Not for collect's threads, which want
    one multi-row statement (see ``create_store_engine``), not a step per row.
    """
    shape = _plain_shape(connection, model, rows)
    if shape is None:
        return
    columns, names = shape
    marks = ", ".join("?" for _ in columns)
    values = [tuple(row[column] for column in columns) for row in rows]
    statement = f"INSERT INTO {model.__tablename__} ({names}) VALUES ({marks})"
    connection.exec_driver_sql(statement, values)


def _copy_plain(connection: Connection, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """Send many rows of plain values with COPY, in the connection's transaction (PostgreSQL).

    An executemany of a batch's rows cost about 2 ms a document on PostgreSQL; COPY streams
    them in one exchange. Text goes as plain ``str`` (never an enum's name).
    """
    shape = _plain_shape(connection, model, rows)
    if shape is None:
        return
    columns, names = shape
    statement = f"COPY {model.__tablename__} ({names}) FROM STDIN"
    driver: Any = connection.connection.driver_connection
    dbapi: Any = connection.dialect.loaded_dbapi
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(
                    [str(v) if isinstance(v, str) else v for v in (row[c] for c in columns)]
                )
    except dbapi.Error as exc:  # as SQLAlchemy would raise it: IntegrityError, OperationalError…
        raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc


def _insert(connection: Connection, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """Insert many rows in one executemany."""
    if rows:
        connection.execute(_inserting(model), rows)
