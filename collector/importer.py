"""Import probe documents and capture folders: each input one transaction, every try recorded."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError

from collector.document import (
    DocumentError,
    build_capture_document,
    extract_document,
    load_document,
)
from collector.parsers.text import DEFAULT_CODEPAGE

# start_run and finish_run are part of this module's face (tests and the demo use them here).
from collector.runs import finish_run as finish_run
from collector.runs import in_flight, landed
from collector.runs import start_run as start_run
from collector.store.database import Store
from collector.store.models import Attempt, Host
from collector.store.snapshots import PreparedSnapshot, prepare_snapshot, write_snapshot

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


def now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


def ensure_host(
    connection: Connection, name: str, address: str | None = None, groups: Iterable[str] = ()
) -> int:
    """Return the id of the host called ``name``, creating it if new; an address updates it."""
    wanted = list(groups)
    row = connection.execute(_HOST_NAMED, {"name": name}).first()
    if row is None:
        values = {"name": name, "address": address, "groups": wanted, "created_at": now()}
        return int(connection.execute(_NEW_HOST, values).scalar_one())
    if address is not None and (row.address, row.groups) != (address, wanted):
        connection.execute(
            update(Host).where(Host.id == row.id).values(address=address, groups=wanted)
        )
    return int(row.id)


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


def import_paths(
    store: Store,
    paths: Iterable[Path],
    host_name: str | None = None,
    taken_at: datetime | None = None,
    codepage: str = DEFAULT_CODEPAGE,
) -> list[ImportResult]:
    """Import each file (a probe document) or folder (raw captures) in its own transaction."""
    run_id = start_run(store, "import")
    try:
        return [_import_one(store, run_id, path, host_name, taken_at, codepage) for path in paths]
    finally:
        finish_run(store, run_id)


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
        _add_attempt(
            connection, run_id, host_id, source, started_at, "failed", error_class, message
        )


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
        if landing is not None:
            landed(connection, run_id, *landing)
        if host_id is None:
            host_id = ensure_host(connection, name)
        stored = write_snapshot(connection, prepared, host_id, now())
        partial = bool(stored.problems or document.get("errors"))
        if stored.created:
            message = "; ".join(stored.problems) or None
        else:
            message = f"already stored as snapshot {stored.snapshot_id}"
        status = "partial" if partial else "ok"
        _add_attempt(
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


def _add_attempt(
    connection: Connection,
    run_id: int,
    host_id: int | None,
    source: str,
    started_at: datetime,
    status: str,
    error_class: str | None,
    message: str | None,
    snapshot_id: int | None = None,
) -> None:
    """Record one try, ending now, in the caller's transaction."""
    values = {
        "run_id": run_id,
        "host_id": host_id,
        "source": source,
        "started_at": started_at,
        "finished_at": now(),
        "status": status,
        "error_class": error_class,
        "message": message,
        "snapshot_id": snapshot_id,
    }
    connection.execute(_NEW_ATTEMPT, values)


def _import_one(
    store: Store,
    run_id: int,
    path: Path,
    host_name: str | None,
    taken_at: datetime | None,
    codepage: str,
) -> ImportResult:
    started_at = now()
    source = str(path)
    skipped: tuple[str, ...] = ()
    landing = (None, source)
    with store.transaction() as connection:
        in_flight(connection, run_id, None, source, started_at)
    try:
        if path.is_dir():
            if not host_name or taken_at is None:
                raise DocumentError(
                    f"{path}: a capture folder needs --host NAME and --taken-at ISO-TIME "
                    "(when the commands were run, with its offset)"
                )
            capture = build_capture_document(path, host_name, taken_at, codepage)
            body, skipped = capture.document, capture.skipped
        else:
            body = extract_document(_read(path), source)
        document = load_document(body, source)
        result = store_document(
            store, run_id, body, document, source, "file", started_at, landing=landing
        )
    except DocumentError as exc:
        record_failure(
            store, run_id, source, started_at, "bad_document", str(exc), host_name, None, landing
        )
        return ImportResult(source, "failed", host=host_name, message=str(exc), skipped=skipped)
    except Exception as exc:  # whatever one input raises is that input's failure
        if is_database_fault(exc):
            raise
        message = refused_message(source, exc)
        record_failure(
            store, run_id, source, started_at, "bad_document", message, host_name, None, landing
        )
        return ImportResult(source, "failed", host=host_name, message=message, skipped=skipped)
    result.skipped = skipped
    return result


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


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read: {exc.strerror}") from exc
