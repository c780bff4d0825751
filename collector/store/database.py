"""The store: find the database, open it for a command, bring its schema to head with Alembic.

Every command reaches the database through one ``Store``: ``Store.open`` for commands that write
(it migrates to head first), ``Store.reader`` for commands that only read (it never creates,
migrates or alters anything), ``Store.unmigrated`` for the ``db`` commands that look at the
revision before deciding.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.pool import ConnectionPoolEntry

import migrations

DB_ENV = "PORTFLEET_DB"
_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


class Store:
    """One database, open for one command: its engine, schema revision and transactions."""

    def __init__(self, engine: Engine, *, readonly: bool = False) -> None:
        self.engine = engine
        self.readonly = readonly

    @classmethod
    def open(cls, url: str) -> Store:
        """Open the store at ``url`` for writing, migrated to head (created when absent)."""
        return cls(open_store(url))

    @classmethod
    def reader(cls, url: str) -> Store:
        """Open the store for reading only; ``StoreNotReadable`` when absent or not at head."""
        return cls(open_reader(url), readonly=True)

    @classmethod
    def unmigrated(cls, url: str, *, writer: bool = True) -> Store:
        """Open the store as it is, at whatever revision (for ``db status`` and ``db upgrade``)."""
        return cls(create_store_engine(url, writer=writer), readonly=not writer)

    @property
    def name(self) -> str:
        """The database's URL with any password hidden, for messages."""
        return describe_url(self.engine.url.render_as_string(hide_password=False))

    @property
    def path(self) -> Path | None:
        """The SQLite file, None for a server database."""
        return sqlite_path(self.engine.url.render_as_string(hide_password=False))

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return str(self.engine.dialect.name)

    def connect(self) -> AbstractContextManager[Connection]:
        """Return a connection for reading (closed on leaving the ``with``)."""
        return self.engine.connect()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Write in one transaction, queued behind this process's other writers (SQLite)."""
        if self.readonly:
            raise PermissionError(f"{self.name} is open for reading only")
        with write_lock(self.engine), self.engine.begin() as connection:
            yield connection

    def revision(self) -> str | None:
        """Return the schema revision the database is at (None when never migrated)."""
        return current_revision(self.engine)

    def upgrade(self) -> bool:
        """Migrate to head; return True when anything was applied."""
        return upgrade_to_head(self.engine)

    def close(self) -> None:
        """Close every connection of the store."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def default_database_path() -> Path:
    """Return the SQLite file used when nothing names a database."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "portfleet" / "portfleet.db"


def resolve_database_url(cli_url: str | None, config_url: str | None) -> str:
    """Pick the database: ``--db``, else ``$PORTFLEET_DB``, else the config's, else the default."""
    for candidate in (cli_url, os.environ.get(DB_ENV), config_url):
        if candidate:
            return _normalise_url(candidate)
    return f"sqlite:///{default_database_path()}"


def describe_url(url: str) -> str:
    """Return the URL with any password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def create_store_engine(url: str, *, writer: bool = True) -> Engine:
    """Create an engine; for SQLite, create the folder, enforce foreign keys, use WAL.

    A SQLite writer starts every transaction with BEGIN IMMEDIATE: concurrent collectors then
    queue for the write lock (busy timeout) instead of failing when a read turns into a write.
    Readers (``writer=False``) begin deferred and never wait for a writer.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _make_sqlite_parent(parsed)
        engine = _create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_on_connect)
        begin = "BEGIN IMMEDIATE" if writer else "BEGIN"
        event.listen(engine, "begin", lambda connection: connection.exec_driver_sql(begin))
        # Many rows go in as one multi-row INSERT, not one sqlite3_step per row: each step lets
        # go of the GIL, and with 32 collector threads getting it back is what the lock waits on.
        engine.dialect.use_insertmanyvalues_wo_returning = True
        return engine
    return _create_engine(parsed, pool_pre_ping=True)


class StoreNotReadable(Exception):
    """A store a reading command cannot read as it is: absent, or not at this schema."""


def open_reader(url: str) -> Engine:
    """Open the store for reading only: never create, migrate or alter it (not even its journal).

    SQLite is opened read-only (``mode=ro``) with writes refused on the connection; PostgreSQL
    sessions are read-only by default. The store must be at this portfleet's schema revision,
    else ``StoreNotReadable`` says to run ``portfleet db upgrade``.
    """
    parsed = make_url(url)
    path = sqlite_path(url)
    if path is not None:
        if not path.is_file():
            raise StoreNotReadable(f"no database at {path}")
        readonly = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
        engine = _create_engine(make_url(readonly), connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_reader_on_connect)
        event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN"))
    elif parsed.get_backend_name() == "postgresql":
        options = {"options": "-c default_transaction_read_only=on"}
        engine = _create_engine(parsed, pool_pre_ping=True, connect_args=options)
    else:
        engine = _create_engine(parsed, pool_pre_ping=True)
    try:
        current = current_revision(engine)
    except Exception:
        engine.dispose()
        raise
    if current != head_revision():
        engine.dispose()
        raise StoreNotReadable(
            f"{describe_url(url)} is at schema revision {current or '(none)'}, this portfleet "
            f"needs {head_revision()}; run `portfleet db upgrade` (reading commands never "
            "change the database)"
        )
    return engine


def _create_engine(url: URL, **options: object) -> Engine:
    """Create an engine; a driver that is not installed is named with what installs it."""
    try:
        return create_engine(url, **options)
    except ImportError as exc:  # SQLAlchemy imports the driver here
        raise NoSuchModuleError(driver_hint(url, exc)) from None


def driver_hint(url: URL, exc: ImportError) -> str:
    """Say which package a URL's driver is in, and how to install it."""
    missing = exc.name or str(exc)
    if url.get_backend_name() == "postgresql":
        if url.get_driver_name() == "psycopg":
            return (
                f"the PostgreSQL driver ({missing}) is not installed: "
                "pip install 'portfleet[postgres]'"
            )
        return (
            f"the driver {url.get_driver_name()!r} ({missing}) is not installed; portfleet "
            "installs psycopg: pip install 'portfleet[postgres]' and write postgresql+psycopg://…"
        )
    return (
        f"the driver for {url.drivername}:// ({missing}) is not installed; portfleet supports "
        "SQLite (a file path) and PostgreSQL (postgresql+psycopg://…, "
        "pip install 'portfleet[postgres]')"
    )


def write_lock(engine: Engine) -> AbstractContextManager[object]:
    """Return what a writer holds around its transaction: one lock per SQLite engine.

    SQLite has one writer at a time; threads that queue on a Python lock wake the moment it is
    free, where SQLite's busy handler would sleep in growing steps (up to 100 ms) between tries.
    PostgreSQL writers need no such queue.
    """
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(engine, threading.Lock())


def alembic_config(engine: Engine | None = None) -> Config:
    """Return an Alembic config pointing at the packaged ``migrations`` folder."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if engine is not None:
        config.set_main_option("sqlalchemy.url", describe_url(str(engine.url)))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """Return the newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions holds no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at (None when it was never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


# Advisory lock key of schema upgrades on PostgreSQL ("pf" 2; runs' liveness locks are "pf" 1).
_PG_MIGRATE_LOCK = (0x70660002, 0)


def upgrade_to_head(engine: Engine) -> bool:
    """Migrate the database to head; return True when anything was applied.

    Collectors that start at once on an empty database upgrade one after the other: on
    PostgreSQL the first holds a transaction advisory lock while it migrates, on SQLite the
    write lock (BEGIN IMMEDIATE); the others then find the schema at head and do nothing.
    """
    if current_revision(engine) == head_revision():
        return False
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:space, :key)"),
                dict(zip(("space", "key"), _PG_MIGRATE_LOCK, strict=True)),
            )
        if MigrationContext.configure(connection).get_current_revision() == head_revision():
            return False  # another process upgraded it while this one waited
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        # What a new revision added a place for, derived now, by today's code at today's schema.
        from collector.store.derived import derive_missing
        from collector.store.spans import rebuild_spans

        if derive_missing(connection):
            # The spans (0008) were filled from the sets stored before: findings just derived
            # for old snapshots change them.
            rebuild_spans(connection)
    return True


def open_store(url: str) -> Engine:
    """Open the store at ``url`` and bring it to head, as every command needing it does."""
    engine = create_store_engine(url)
    upgrade_to_head(engine)
    return engine


def sqlite_path(url: str) -> Path | None:
    """Return the file of a SQLite URL, None for another database or an in-memory one."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return Path(database[5:].split("?", 1)[0])
    return Path(database).expanduser()


def _normalise_url(value: str) -> str:
    """Accept a bare file path as a SQLite database."""
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def _make_sqlite_parent(url: URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_reader_on_connect(dbapi_connection: object, _record: ConnectionPoolEntry) -> None:
    # A reader changes nothing: no journal switch, and any write is refused on the connection.
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA query_only=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_connect(dbapi_connection: object, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" event, not the driver, open transactions (and savepoints work).
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets `report` and `sql` read while a nightly `collect` writes.
    _use_wal(cursor)
    # In WAL mode NORMAL never corrupts the file (a killed process loses nothing committed);
    # only a power cut may forget the last commits. It spares an fsync per collected host.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL, waiting while another connection does the same.

    The switch takes the file's exclusive lock and, unlike other statements, may fail with
    "database is locked" at once instead of waiting the busy timeout: two collectors that open
    a new file at the same moment both try it. WAL is kept in the file, so the loser usually
    finds it done on its next try.
    """
    deadline = time.monotonic() + 30
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
