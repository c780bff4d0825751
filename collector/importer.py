"""Import probe documents and capture folders: in batches, each input whole or not at all.

Reading, validating and parsing happen outside any transaction; a batch of documents is then
stored in one transaction, each under a savepoint of its own (``store_batch``), so a document
the database refuses is rolled back alone and reported, and the others are kept. Every try is
recorded: each input is marked in flight before it is read, and gets its attempt with its data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path

from collector.clock import now
from collector.document import (
    DocumentError,
    build_capture_document,
    extract_document,
    load_document,
)
from collector.parsers.text import DEFAULT_CODEPAGE
from collector.prevent import is_prevent_result, read_prevent_result
from collector.runs import finish_run, in_flight_many, landed, start_run
from collector.store.database import Store
from collector.store.fixes import add_fix, check_fixes
from collector.store.rows import Diagnosed, prepare_snapshot
from collector.store.writer import (
    ImportResult,
    Ready,
    Refused,
    add_attempt,
    ensure_host,
    host_named,
    record_failure,
    refused_message,
    store_batch,
)

# Documents a transaction: enough that a commit and the look-ups are shared by many, few
# enough that a SQLite writer holds the write lock a fraction of a second.
BATCH = 100


@dataclass(frozen=True, slots=True)
class _Prevent:
    """A prevent script's result, stored apart from probe documents (``_import_prevent``)."""

    body: bytes
    source: str
    started_at: datetime


_Read = Ready | Refused | _Prevent


def import_paths(
    store: Store,
    paths: Iterable[Path],
    host_name: str | None = None,
    taken_at: datetime | None = None,
    codepage: str = DEFAULT_CODEPAGE,
    batch: int = BATCH,
) -> list[ImportResult]:
    """Import each file (a probe document) or folder (raw captures), ``batch`` per transaction.

    Each input is stored whole or not at all, and has its attempt; one refused input is
    reported with what to do, and the others are kept.
    """
    run_id = start_run(store, "import")
    diagnosed = Diagnosed()
    try:
        results: list[ImportResult] = []
        for chunk in _chunks(paths, batch):
            with store.transaction() as connection:
                in_flight_many(connection, run_id, [(None, str(p), now()) for p in chunk])
            read = [_read_input(p, host_name, taken_at, codepage, diagnosed) for p in chunk]
            results += _store_chunk(store, run_id, read, host_name)
        return results
    finally:
        finish_run(store, run_id)


def _store_chunk(
    store: Store, run_id: int, read: list[_Read], host_name: str | None
) -> list[ImportResult]:
    """Store a chunk's inputs (marked in flight already); return a result per input."""
    done: dict[int, ImportResult] = {}
    waiting: list[tuple[int, Ready | Refused]] = []
    for position, item in enumerate(read):
        if isinstance(item, _Prevent):
            done[position] = _import_prevent(store, run_id, item, host_name)
        else:
            waiting.append((position, item))
    stored = store_batch(store, run_id, [item for _, item in waiting])
    done.update((position, result) for (position, _), result in zip(waiting, stored, strict=True))
    return [done[position] for position in range(len(read))]


def _chunks(paths: Iterable[Path], size: int) -> Iterator[list[Path]]:
    items = iter(paths)
    while chunk := list(islice(items, max(1, size))):
        yield chunk


def _read_input(
    path: Path,
    host_name: str | None,
    taken_at: datetime | None,
    codepage: str,
    diagnosed: Diagnosed,
) -> _Read:
    """Read, validate and parse one input (no database); what it raises is its refusal."""
    started_at = now()
    source = str(path)
    skipped: tuple[str, ...] = ()
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
            if is_prevent_result(body):
                return _Prevent(body, source, started_at)
        document = load_document(body, source)
        prepared = prepare_snapshot(body, document, "file", diagnosed)
    except DocumentError as exc:
        return Refused(source, started_at, str(exc), host_name, skipped)
    except Exception as exc:  # whatever one input raises is that input's failure
        return Refused(source, started_at, refused_message(source, exc), host_name, skipped)
    name, errors = str(document["host"]["name"]), bool(document.get("errors"))
    return Ready(source, started_at, name, errors, prepared, host_name, skipped)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read: {exc.strerror}") from exc


def _import_prevent(
    store: Store, run_id: int, read: _Prevent, host_name: str | None
) -> ImportResult:
    """Store what a prevent script reserved as fixes, with the import's attempt, at once."""
    body, source, started_at = read.body, read.source, read.started_at
    landing = (None, source)
    try:
        result = read_prevent_result(body, source)
    except ValueError as exc:
        message = str(exc)
        record_failure(
            store, run_id, source, started_at, "bad_document", message, host_name, None, landing
        )
        return ImportResult(source, "failed", host=host_name, message=message)
    with store.transaction() as connection:
        landed(connection, run_id, *landing)
        known = host_named(connection, result.host)
        host_id = known[0] if known else ensure_host(connection, result.host)
        by = f"prevent script ({result.mode})"
        recorded = [
            add_fix(connection, host_id, (outcome.start, outcome.end), "reserve",
                    result.taken_at, now(), by, outcome.reason)
            for outcome in result.reserved()
        ]  # fmt: skip
        check_fixes(connection, recorded)
        add_attempt(connection, run_id, host_id, source, started_at, "ok", None, result.summary())
    return ImportResult(source, "stored", host=result.host, message=result.summary())
