"""The writer of attempts and snapshots: each try recorded, each document stored with its attempt.

The rows come from ``collector.store.rows`` (no database there); this module writes them,
with the host and the attempt, in one transaction. Runs are opened and closed by
``collector.runs``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError

from collector.clock import now
from collector.runs import IN_FLIGHT, landed
from collector.store.database import Store
from collector.store.leases import lost_to
from collector.store.locks import content_lock
from collector.store.models import Attempt, Host
from collector.store.rows import PreparedSnapshot, prepare_snapshot
from collector.store.snapshots import KnownContent, StoredSnapshot, write_snapshot

Outcome = Literal["stored", "duplicate", "failed"]


# Built once, so each execution reuses the compiled statement (see store.snapshots).
_HOST_NAMED = select(Host.id, Host.address, Host.groups).where(Host.name == bindparam("name"))


_NEW_HOST = insert(Host).returning(Host.id)


_NEW_ATTEMPT = insert(Attempt)


@dataclass(slots=True)
class ImportResult:
    """What happened to one input."""

    source: str
    outcome: Outcome
    host: str | None = None
    snapshot_id: int | None = None
    message: str = ""
    skipped: tuple[str, ...] = field(default_factory=tuple)
    problems: list[str] = field(default_factory=list)


def ensure_host(
    connection: Connection, name: str, address: str | None = None, groups: Iterable[str] = ()
) -> int:
    """Return the id of the host called ``name``, creating it if new; an address updates it."""
    return _ensure_host(connection, name, address, groups)[0]


def _ensure_host(
    connection: Connection, name: str, address: str | None = None, groups: Iterable[str] = ()
) -> tuple[int, bool]:
    """Return the id of the host called ``name`` and whether this call created it."""
    wanted = list(groups)
    row = connection.execute(_HOST_NAMED, {"name": name}).first()
    if row is None:
        values = {"name": name, "address": address, "groups": wanted, "created_at": now()}
        return int(connection.execute(_NEW_HOST, values).scalar_one()), True
    if address is not None and (row.address, row.groups) != (address, wanted):
        connection.execute(
            update(Host).where(Host.id == row.id).values(address=address, groups=wanted)
        )
    return int(row.id), False


def host_named(connection: Connection, name: str) -> tuple[int, str] | None:
    """Return the id and stored name of the host ``name`` means, or None.

    Windows host names ignore case: an exact match wins, else the one match that differs only
    in case; two such matches and none are ambiguous (None).
    """
    rows = connection.execute(select(Host.id, Host.name)).all()
    same = [row for row in rows if row.name.casefold() == name.casefold()]
    chosen = [row for row in same if row.name == name] or same
    return (int(chosen[0].id), str(chosen[0].name)) if len(chosen) == 1 else None


def register_hosts(
    store: Store, hosts: Iterable[tuple[str, str | None, Iterable[str]]]
) -> dict[str, int]:
    """Create or update every (name, address, groups) in one transaction; return ids by name.

    A collection registers its hosts once, up front: a host never reached still shows its
    address, and each store then skips the look-up inside the write lock.
    """
    with store.transaction() as connection:
        return {
            name: ensure_host(connection, name, address, groups) for name, address, groups in hosts
        }


def record_failure(
    store: Store,
    run_id: int,
    source: str,
    started_at: datetime,
    error_class: str,
    message: str,
    host_name: str | None,
    host_id: int | None = None,
    landing: tuple[int | None, str] | None = None,
) -> None:
    """Record a failed attempt in a transaction of its own (the data one was rolled back).

    ``landing`` names the in-flight mark (host id, or input source) this last try replaces.
    """
    with store.transaction() as connection:
        if landing is not None:
            landed(connection, run_id, *landing)
        if host_id is None and host_name:
            host_id = ensure_host(connection, host_name)
        add_attempt(connection, run_id, host_id, source, started_at, "failed", error_class, message)


def store_document(
    store: Store,
    run_id: int,
    body: bytes,
    document: dict[str, Any],
    source: str,
    transport: str,
    started_at: datetime,
    host_name: str | None = None,
    host_id: int | None = None,
    landing: tuple[int | None, str] | None = None,
    prepared: PreparedSnapshot | None = None,
) -> ImportResult:
    """Store a validated document and its attempt together, all or nothing.

    ``host_name`` (a configured host) wins over the name the document gives itself; a
    ``host_id`` from ``register_hosts`` names it already. ``landing`` names the in-flight mark
    (host id, or input source) the attempt replaces, in the same transaction.
    """
    name = host_name or document["host"]["name"]
    # Parsed by the caller already (collect does it within the host's deadline), or now.
    prepared = prepared or prepare_snapshot(body, document, transport)
    with store.transaction() as connection:
        content_lock(connection)  # the sets this document reuses stay until it is stored
        holder = lost_to(connection, run_id, landing[0]) if landing and landing[0] else None
        if landing is not None:
            landed(connection, run_id, *landing)
        if host_id is None:
            host_id = ensure_host(connection, name)
        if holder is not None:
            # Stalled past its lease, and another run took the host tonight: that run stores
            # the night's snapshot. This try is kept as what it was, not stored a second time.
            lost = (
                f"lease lost: {name} was taken over by run {holder} (this run's lease ran out "
                "before its document was stored); not stored, so the host has one snapshot "
                "tonight"
            )
            add_attempt(connection, run_id, host_id, source, started_at, "failed", "timeout", lost)
            return ImportResult(source, "failed", host=name, message=lost)
        stored = write_snapshot(connection, prepared, host_id, now())
        partial = bool(stored.problems or document.get("errors"))
        if stored.created:
            message = "; ".join(stored.problems) or None
        else:
            message = f"already stored as snapshot {stored.snapshot_id}"
        status = "partial" if partial else "ok"
        add_attempt(
            connection,
            run_id,
            host_id,
            source,
            started_at,
            status,
            None,
            message,
            stored.snapshot_id,
        )
    return ImportResult(
        source,
        "stored" if stored.created else "duplicate",
        host=name,
        snapshot_id=stored.snapshot_id,
        message=message or "",
        problems=stored.problems,
    )


@dataclass(slots=True)
class Ready:
    """An input read, validated and parsed, waiting for its batch's transaction.

    It holds the rows, not the parsed document: it is small to hand from a reader process.
    """

    source: str
    started_at: datetime
    name: str  # the host the document names
    section_errors: bool  # the probe reported sections it could not read
    prepared: PreparedSnapshot
    host_name: str | None = None  # --host, kept with a failure as with a refusal
    skipped: tuple[str, ...] = ()


@dataclass(slots=True)
class Refused:
    """An input refused before the database saw it (unreadable, not a probe document)."""

    source: str
    started_at: datetime
    message: str
    host_name: str | None = None
    skipped: tuple[str, ...] = ()


def store_batch(store: Store, run_id: int, inputs: Sequence[Ready | Refused]) -> list[ImportResult]:
    """Store a batch of inputs in one transaction, each document whole or not at all.

    Each document is written under a savepoint of its own: one the database refuses is rolled
    back alone, recorded as a failed attempt naming it, and the others are kept. Every input
    gets its attempt, and its in-flight mark (``collector.runs.in_flight``, keyed by source)
    is dropped, in the same transaction; a database that fails (down, locked) fails the batch
    whole and leaves the marks, so the run's end tells the inputs were interrupted.

    The rows hanging off each snapshot and new set go in at the batch's end, one statement
    per table. Should the database refuse one of those, which document held it is unknown: the
    batch is rolled back and stored again with each document's rows under its own savepoint.

    Most batches hold no document the database refuses, so the batch is first stored without
    the savepoints (two statements a document, a round trip each on PostgreSQL); should any
    document fail, that try is rolled back whole and the batch stored as above.
    """
    with store.transaction() as connection:
        content_lock(connection)  # the sets and bases the batch reuses stay until it is stored
        for alone in (False, True):
            try:
                with connection.begin_nested():
                    results, attempts = _store_all(
                        connection, run_id, inputs, defer_rows=True, alone=alone
                    )
                break
            except Exception as exc:
                if is_database_fault(exc):
                    raise
        else:
            results, attempts = _store_all(connection, run_id, inputs, defer_rows=False)
        sources = sorted({item.source[:255] for item in inputs})
        connection.execute(
            delete(Attempt).where(
                Attempt.run_id == run_id,
                Attempt.message.like(f"{IN_FLIGHT}%"),
                Attempt.host_id.is_(None),
                Attempt.source.in_(sources),
            )
        )
        if attempts:
            connection.execute(_NEW_ATTEMPT, attempts)
    return results


def _store_all(
    connection: Connection,
    run_id: int,
    inputs: Sequence[Ready | Refused],
    defer_rows: bool,
    alone: bool = True,
) -> tuple[list[ImportResult], list[dict[str, Any]]]:
    """Store a batch's documents in the caller's transaction; return results and attempts.

    ``alone``: each document under its savepoint, refused alone; else the first refusal raises.
    """
    results: list[ImportResult] = []
    attempts: list[dict[str, Any]] = []
    ready = [item for item in inputs if isinstance(item, Ready)]
    known = KnownContent.load(connection, [item.prepared for item in ready], defer_rows)
    if not alone:  # under a savepoint each, a document's sets are its own (refused with it)
        known.store_new_sets(connection, [item.prepared for item in ready])
    names = Counter(item.name for item in ready)
    hosts = _hosts_named(connection, names)
    known.load_bases(connection, (hosts[name] for name in names if name in hosts))
    known.load_updates(connection, (hosts[n] for n, count in names.items()
                                    if count == 1 and n in hosts))  # fmt: skip
    for item in inputs:
        if isinstance(item, Refused):
            host_id = _host_id(connection, hosts, item.host_name) if item.host_name else None
            row = attempt_row(run_id, host_id, item.source, item.started_at,
                              "failed", "bad_document", item.message)  # fmt: skip
            attempts.append(row)
            results.append(
                ImportResult(item.source, "failed", host=item.host_name,
                             message=item.message, skipped=item.skipped)
            )  # fmt: skip
            continue
        store_one = _store_one if alone else _store_one_trusted
        result, attempt = store_one(connection, run_id, item, known, hosts)
        results.append(result)
        attempts.append(attempt)
    known.flush(connection)
    return results, attempts


def _store_one(
    connection: Connection, run_id: int, item: Ready, known: KnownContent, hosts: dict[str, int]
) -> tuple[ImportResult, dict[str, Any]]:
    """Store one document of a batch under its savepoint; a refusal rolls back it alone."""
    name = item.name
    new_host = name not in hosts
    try:
        with connection.begin_nested():
            host_id = _host_id(connection, hosts, name, known)
            stored = write_snapshot(connection, item.prepared, host_id, now(), known)
    except Exception as exc:  # whatever the database refuses of one document is its failure
        known.forget()
        if new_host:
            hosts.pop(name, None)  # created under the savepoint, so gone with it
        if is_database_fault(exc):
            raise
        refused = refused_message(item.source, exc)
        named = _host_id(connection, hosts, item.host_name) if item.host_name else None
        attempt = attempt_row(run_id, named, item.source, item.started_at,
                              "failed", "bad_document", refused)  # fmt: skip
        result = ImportResult(item.source, "failed", host=item.host_name, message=refused,
                              skipped=item.skipped)  # fmt: skip
        return result, attempt
    return _kept(run_id, item, known, host_id, stored)


def _store_one_trusted(
    connection: Connection, run_id: int, item: Ready, known: KnownContent, hosts: dict[str, int]
) -> tuple[ImportResult, dict[str, Any]]:
    """Store one document of a batch without a savepoint: whatever it raises fails the try."""
    host_id = _host_id(connection, hosts, item.name, known)
    stored = write_snapshot(connection, item.prepared, host_id, now(), known)
    return _kept(run_id, item, known, host_id, stored)


def _kept(
    run_id: int, item: Ready, known: KnownContent, host_id: int, stored: StoredSnapshot
) -> tuple[ImportResult, dict[str, Any]]:
    """Keep what a stored document made for the batch; return its result and attempt."""
    name = item.name
    known.keep()
    partial = bool(stored.problems or item.section_errors)
    if stored.created:
        message = "; ".join(stored.problems) or None
    else:
        message = f"already stored as snapshot {stored.snapshot_id}"
    attempt = attempt_row(run_id, host_id, item.source, item.started_at,
                          "partial" if partial else "ok", None, message,
                          stored.snapshot_id)  # fmt: skip
    result = ImportResult(
        item.source,
        "stored" if stored.created else "duplicate",
        host=name,
        snapshot_id=stored.snapshot_id,
        message=message or "",
        skipped=item.skipped,
        problems=stored.problems,
    )
    return result, attempt


def _hosts_named(connection: Connection, names: Iterable[str]) -> dict[str, int]:
    """Return the ids of the stored hosts among ``names``, in one statement."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    query = select(Host.name, Host.id).where(Host.name.in_(bindparam("names", expanding=True)))
    return {str(name): int(key) for name, key in connection.execute(query, {"names": wanted})}


def _host_id(
    connection: Connection, hosts: dict[str, int], name: str, known: KnownContent | None = None
) -> int:
    """Return the host's id, asking the database once a batch.

    A host created here is new to ``known``: it has no base document and no update, which
    saves asking for them.
    """
    if name not in hosts:
        hosts[name], created = _ensure_host(connection, name)
        if created and known is not None:
            known.new_host(hosts[name])
    return hosts[name]


def attempt_row(
    run_id: int,
    host_id: int | None,
    source: str,
    started_at: datetime,
    status: str,
    error_class: str | None,
    message: str | None,
    snapshot_id: int | None = None,
    finished_at: datetime | None = None,
) -> dict[str, Any]:
    """Return one try as the attempts table takes it; it ends now unless ``finished_at`` says."""
    return {
        "run_id": run_id,
        "host_id": host_id,
        "source": source,
        "started_at": started_at,
        "finished_at": finished_at or now(),
        "status": status,
        "error_class": error_class,
        "message": message,
        "snapshot_id": snapshot_id,
    }


def add_attempt(
    connection: Connection,
    run_id: int,
    host_id: int | None,
    source: str,
    started_at: datetime,
    status: str,
    error_class: str | None,
    message: str | None,
    snapshot_id: int | None = None,
    finished_at: datetime | None = None,
) -> None:
    """Record one try in the caller's transaction; it ends now unless ``finished_at`` says."""
    values = attempt_row(run_id, host_id, source, started_at, status, error_class, message,
                         snapshot_id, finished_at)  # fmt: skip
    connection.execute(_NEW_ATTEMPT, values)


def is_database_fault(exc: BaseException) -> bool:
    """Tell a database that is down or locked (the run's problem) from a document it refuses."""
    return isinstance(exc, OperationalError | InterfaceError) and not isinstance(
        exc, DataError | IntegrityError
    )


def refused_message(source: str, exc: BaseException) -> str:
    """Explain a document that passed its schema but that the store cannot keep as a whole.

    It contradicts itself (a feature listed twice), or holds a value too long or too large
    for its column.
    """
    detail = exc.orig if isinstance(exc, DBAPIError) else exc
    first = (str(detail).strip().splitlines() or [""])[0][:200]
    who = "the database refused" if isinstance(exc, DBAPIError) else "portfleet could not store"
    return (
        f"{source}: {who} the document ({type(exc).__name__}: {first}); "
        "nothing of it was kept. Check the probe output for duplicated or oversized entries."
    )
