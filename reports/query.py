"""Ad-hoc SQL on a connection that cannot change the store.

SQLite: the file is opened read-only (``mode=ro``, so not even its journal mode changes) and an
authorizer lets through only reads (SELECT, reading tables and views, functions, recursive CTEs,
and PRAGMAs that only report), so ATTACH, writes, state-changing PRAGMAs and functions that
reach into the connection (``fts3_tokenizer``, ``load_extension``, ``changes()``…) are refused
before they run. A progress handler stops the query at its time limit or on Ctrl-C, and a heap
limit stops it at its memory limit; the error says which.
PostgreSQL: one statement (the extended protocol refuses more) inside a READ ONLY transaction
that is always rolled back, with a statement timeout.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy.engine import make_url

# PRAGMAs whose argument names what to describe (they never change state)...
_DESCRIBING_PRAGMAS = {
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
}
# ...and PRAGMAs that only report when given no value (with one, some of them write).
_READ_ONLY_PRAGMAS = {
    "database_list",
    "collation_list",
    "function_list",
    "pragma_list",
    "compile_options",
    "user_version",
    "schema_version",
    "data_version",
    "page_count",
    "page_size",
    "freelist_count",
    "encoding",
}
# Functions that read or change the connection rather than the data: fts3_tokenizer hands out
# (and with two arguments installs) a C pointer; the others report what other statements did.
_REFUSED_FUNCTIONS = {
    "fts3_tokenizer",
    "load_extension",
    "changes",
    "total_changes",
    "last_insert_rowid",
    "sqlite_offset",
}
# SQLite runs the progress handler every this many virtual machine steps (about 1 ms).
_PROGRESS_STEPS = 10_000
_ALLOWED_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}


class QueryError(Exception):
    """A query that was refused or failed; the store is unchanged."""


class StoreNotReady(QueryError):
    """No database at that place, or one whose schema is not the one the views need."""


class QueryInterrupted(QueryError):
    """The query was stopped by Ctrl-C."""


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """How long and how much memory one ad-hoc query may take."""

    seconds: float = 60.0
    memory_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Column names and rows of one query."""

    columns: tuple[str, ...]
    rows: Iterator[Sequence[Any]]


@contextmanager
def run_query(
    url: str, sql: str, limits: QueryLimits | None = None, revision: str | None = None
) -> Iterator[QueryResult]:
    """Run one read-only statement; yield its columns and a row iterator.

    ``revision``, when given, is the schema the store must be at (the views depend on it).
    """
    limits = limits or QueryLimits()
    if not sql.strip():
        raise QueryError('no SQL given; write one statement, e.g. "SELECT * FROM v_attempts"')
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with _sqlite_query(parsed.database or "", sql, limits, revision) as result:
            yield result
    elif parsed.get_backend_name() == "postgresql":
        with _postgres_query(url, sql, limits.seconds) as result:
            yield result
    else:
        raise QueryError(
            f"ad-hoc SQL supports SQLite and PostgreSQL, not {parsed.get_backend_name()}"
        )


def _authorize(
    action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None
) -> int:
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _REFUSED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    if action in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if name in _DESCRIBING_PRAGMAS or (arg2 is None and name in _READ_ONLY_PRAGMAS):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


@contextmanager
def _sqlite_query(
    database: str, sql: str, limits: QueryLimits, revision: str | None
) -> Iterator[QueryResult]:
    path = Path(database)
    if not path.is_file():
        raise StoreNotReady(
            f"no database at {path}; check --db, or create one with `portfleet collect`, "
            "`portfleet import` or `portfleet demo`"
        )
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    stop = _Stop(limits)
    try:
        if revision is not None:
            _check_revision(connection, path, revision)
        # A value may not outgrow the memory limit; whole strings and blobs count against it.
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(1_000_000, limits.memory_bytes // 4))
        connection.set_progress_handler(stop.check, _PROGRESS_STEPS)
        connection.set_authorizer(_authorize)
        with _heap_limit(limits.memory_bytes), stop.on_interrupt():
            try:
                cursor = connection.execute(sql)
            except sqlite3.ProgrammingError as exc:
                raise QueryError(f"{exc} Send one statement per call.") from exc
            except (sqlite3.DatabaseError, MemoryError) as exc:
                raise stop.explain(exc) from exc
            columns = tuple(d[0] for d in cursor.description or ())
            yield QueryResult(columns, _sqlite_rows(cursor, stop))
    finally:
        connection.close()


def _check_revision(connection: sqlite3.Connection, path: Path, revision: str) -> None:
    """Refuse a file that is not a portfleet store at the schema the views need."""
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        row = None
    if row is None:
        raise StoreNotReady(f"{path} is not a portfleet database (it has no schema revision)")
    if row[0] != revision:
        raise StoreNotReady(
            f"{path} is at schema revision {row[0]}, this portfleet needs {revision}; "
            "run `portfleet db upgrade` (sql never changes the database)"
        )


class _Stop:
    """Decide, from SQLite's progress handler, when a query must stop, and say why."""

    def __init__(self, limits: QueryLimits) -> None:
        self._limits = limits
        self._deadline = time.monotonic() + limits.seconds
        self.reason: str | None = None
        self.interrupted = False

    def check(self) -> int:
        """Return non-zero to make SQLite abandon the statement."""
        if self.interrupted:
            return 1
        if time.monotonic() > self._deadline:
            self.reason = "time"
            return 1
        return 0

    @contextmanager
    def on_interrupt(self) -> Iterator[None]:
        """Turn Ctrl-C into a stop the progress handler sees (the query runs in C)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(_signum: int, _frame: FrameType | None) -> None:
            self.interrupted = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        if self.interrupted:
            raise QueryInterrupted("interrupted (Ctrl-C); the query was stopped")

    def explain(self, exc: BaseException) -> QueryError:
        """Turn SQLite's error into one that names the limit that stopped the query."""
        if self.interrupted:
            return QueryInterrupted("interrupted (Ctrl-C); the query was stopped")
        if self.reason == "time":
            return QueryError(
                f"stopped: the query ran past its time limit of {self._limits.seconds:g} s "
                "(--timeout SECONDS gives it more)"
            )
        text = str(exc)
        if isinstance(exc, MemoryError) or "out of memory" in text or "too big" in text:
            return QueryError(
                f"stopped: the query needed more than its memory limit of "
                f"{self._limits.memory_bytes // (1024 * 1024)} MB (--max-memory MB gives it more)"
            )
        return QueryError(_sqlite_message(exc))


@contextmanager
def _heap_limit(limit: int) -> Iterator[None]:
    """Cap SQLite's heap while the query runs (a process-wide setting, restored after)."""
    holder = sqlite3.connect(":memory:")
    try:
        previous = holder.execute("PRAGMA hard_heap_limit").fetchone()[0]
        holder.execute(f"PRAGMA hard_heap_limit = {int(limit)}")
        try:
            yield
        finally:
            holder.execute(f"PRAGMA hard_heap_limit = {int(previous)}")
    finally:
        holder.close()


def _sqlite_rows(cursor: sqlite3.Cursor, stop: _Stop) -> Iterator[Sequence[Any]]:
    try:
        yield from cursor
    except (sqlite3.DatabaseError, MemoryError) as exc:
        raise stop.explain(exc) from exc


def _sqlite_message(exc: BaseException) -> str:
    text = str(exc)
    if "not authorized" in text or "readonly" in text:
        return (
            f"refused: ad-hoc SQL is read-only (SELECT, WITH … SELECT, reporting PRAGMAs): {text}"
        )
    return text


@contextmanager
def _postgres_query(url: str, sql: str, timeout_seconds: float) -> Iterator[QueryResult]:
    import psycopg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        connection = psycopg.connect(dsn)
    except psycopg.Error as exc:
        raise QueryError(f"cannot connect to PostgreSQL: {type(exc).__name__}") from exc
    try:
        with connection.transaction(force_rollback=True):
            connection.execute("SET TRANSACTION READ ONLY")
            connection.execute(f"SET LOCAL statement_timeout = {int(timeout_seconds * 1000)}")
            # A raw cursor sends the text unparsed over the extended protocol: '%' needs no
            # escaping, and a second statement smuggled after ';' is refused by the server.
            cursor = psycopg.RawCursor(connection)
            try:
                cursor.execute(sql, ())
            except psycopg.Error as exc:
                raise QueryError(_postgres_message(exc)) from exc
            columns = tuple(d.name for d in cursor.description or ())
            yield QueryResult(columns, _postgres_rows(cursor))
    finally:
        connection.close()


def _postgres_rows(cursor: Any) -> Iterator[Sequence[Any]]:
    import psycopg

    try:
        while batch := cursor.fetchmany(1000):
            yield from batch
    except psycopg.Error as exc:
        raise QueryError(_postgres_message(exc)) from exc


def _postgres_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "read-only transaction" in text or "multiple commands" in text:
        return f"refused: ad-hoc SQL is read-only, one statement: {text}"
    if "statement timeout" in text:
        return f"stopped: the query ran past its time limit (--timeout SECONDS): {text}"
    return text
