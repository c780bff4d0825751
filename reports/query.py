"""Ad-hoc SQL on a connection that cannot change the store.

SQLite: the file is opened read-only (``mode=ro``) and an authorizer lets through only reads
(SELECT, reading tables and views, functions, recursive CTEs, and PRAGMAs that only report), so
ATTACH, writes and state-changing PRAGMAs are refused before they run.
PostgreSQL: one statement (the extended protocol refuses more) inside a READ ONLY transaction
that is always rolled back, with a statement timeout.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
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
_ALLOWED_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}


class QueryError(Exception):
    """A query that was refused or failed; the store is unchanged."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Column names and rows of one query."""

    columns: tuple[str, ...]
    rows: Iterator[Sequence[Any]]


@contextmanager
def run_query(url: str, sql: str, timeout_seconds: int = 60) -> Iterator[QueryResult]:
    """Run one read-only statement; yield its columns and a row iterator."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with _sqlite_query(parsed.database or "", sql) as result:
            yield result
    elif parsed.get_backend_name() == "postgresql":
        with _postgres_query(url, sql, timeout_seconds) as result:
            yield result
    else:
        raise QueryError(
            f"ad-hoc SQL supports SQLite and PostgreSQL, not {parsed.get_backend_name()}"
        )


def _authorize(
    action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None
) -> int:
    if action in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if name in _DESCRIBING_PRAGMAS or (arg2 is None and name in _READ_ONLY_PRAGMAS):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


@contextmanager
def _sqlite_query(database: str, sql: str) -> Iterator[QueryResult]:
    path = Path(database)
    if not path.is_file():
        raise QueryError(f"no database at {path}; run `portfleet import` or `portfleet demo` first")
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        connection.set_authorizer(_authorize)
        try:
            cursor = connection.execute(sql)
        except sqlite3.ProgrammingError as exc:
            raise QueryError(f"{exc} Send one statement per call.") from exc
        except sqlite3.DatabaseError as exc:
            raise QueryError(_sqlite_message(exc)) from exc
        columns = tuple(d[0] for d in cursor.description or ())
        yield QueryResult(columns, _sqlite_rows(cursor))
    finally:
        connection.close()


def _sqlite_rows(cursor: sqlite3.Cursor) -> Iterator[Sequence[Any]]:
    try:
        yield from cursor
    except sqlite3.DatabaseError as exc:
        raise QueryError(_sqlite_message(exc)) from exc


def _sqlite_message(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "not authorized" in text or "readonly" in text:
        return (
            f"refused: ad-hoc SQL is read-only (SELECT, WITH … SELECT, reporting PRAGMAs): {text}"
        )
    return text


@contextmanager
def _postgres_query(url: str, sql: str, timeout_seconds: int) -> Iterator[QueryResult]:
    import psycopg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        connection = psycopg.connect(dsn)
    except psycopg.Error as exc:
        raise QueryError(f"cannot connect to PostgreSQL: {type(exc).__name__}") from exc
    try:
        with connection.transaction(force_rollback=True):
            connection.execute("SET TRANSACTION READ ONLY")
            connection.execute(f"SET LOCAL statement_timeout = {int(timeout_seconds) * 1000}")
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
    return text
