"""Import probe documents and capture folders: each input one transaction, every try recorded."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
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
from collector.runs import finish_run, in_flight, landed, start_run
from collector.store.database import Store
from collector.store.fixes import add_fix, refresh_fixes
from collector.store.writer import (
    ImportResult,
    add_attempt,
    ensure_host,
    host_named,
    is_database_fault,
    record_failure,
    refused_message,
    store_document,
)


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
            if is_prevent_result(body):
                return _import_prevent(store, run_id, body, source, started_at, landing)
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
    landing: tuple[int | None, str],
) -> ImportResult:
    """Store what a prevent script reserved as fixes, with the import's attempt, at once."""
    try:
        result = read_prevent_result(body, source)
    except ValueError as exc:
        raise DocumentError(str(exc)) from None
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
