"""Import probe documents and capture folders: in batches, each input whole or not at all.

Reading, validating and parsing happen outside any transaction; a batch of documents is then
stored in one transaction, each under a savepoint of its own (``store_batch``), so a document
the database refuses is rolled back alone and reported, and the others are kept. Every try is
recorded: each input is marked in flight before it is read, and gets its attempt with its data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
from collector.store.fixes import add_fix, refresh_fixes
from collector.store.rows import prepare_snapshot
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
    try:
        results: list[ImportResult] = []
        for chunk in _chunks(paths, batch):
            results += _import_batch(store, run_id, chunk, host_name, taken_at, codepage)
        return results
    finally:
        finish_run(store, run_id)


def _chunks(paths: Iterable[Path], size: int) -> Iterator[list[Path]]:
    items = iter(paths)
    while chunk := list(islice(items, max(1, size))):
        yield chunk


def _import_batch(
    store: Store,
    run_id: int,
    paths: list[Path],
    host_name: str | None,
    taken_at: datetime | None,
    codepage: str,
) -> list[ImportResult]:
    """Mark a batch in flight, read each input, store the documents in one transaction."""
    with store.transaction() as connection:
        in_flight_many(connection, run_id, [(None, str(path), now()) for path in paths])
    done: dict[int, ImportResult] = {}
    waiting: list[tuple[int, Ready | Refused]] = []
    for position, path in enumerate(paths):
        read = _read_input(store, run_id, path, host_name, taken_at, codepage)
        if isinstance(read, ImportResult):
            done[position] = read
        else:
            waiting.append((position, read))
    stored = store_batch(store, run_id, [item for _, item in waiting])
    done.update((position, result) for (position, _), result in zip(waiting, stored, strict=True))
    return [done[position] for position in range(len(paths))]


def _read_input(
    store: Store,
    run_id: int,
    path: Path,
    host_name: str | None,
    taken_at: datetime | None,
    codepage: str,
) -> Ready | Refused | ImportResult:
    """Read, validate and parse one input; a prevent script's result is stored at once."""
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
                return _import_prevent(store, run_id, body, source, started_at, host_name)
        document = load_document(body, source)
        prepared = prepare_snapshot(body, document, "file")
    except DocumentError as exc:
        return Refused(source, started_at, str(exc), host_name, skipped)
    except Exception as exc:  # whatever one input raises is that input's failure
        return Refused(source, started_at, refused_message(source, exc), host_name, skipped)
    return Ready(source, started_at, body, document, prepared, host_name, skipped)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read: {exc.strerror}") from exc


def _import_prevent(
    store: Store,
    run_id: int,
    body: bytes,
    source: str,
    started_at: datetime,
    host_name: str | None,
) -> ImportResult:
    """Store what a prevent script reserved as fixes, with the import's attempt, at once."""
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
        for outcome in result.reserved():
            add_fix(connection, host_id, (outcome.start, outcome.end), "reserve",
                    result.taken_at, now(), by, outcome.reason)  # fmt: skip
        if result.reserved():
            refresh_fixes(connection)
        add_attempt(connection, run_id, host_id, source, started_at, "ok", None, result.summary())
    return ImportResult(source, "stored", host=result.host, message=result.summary())
