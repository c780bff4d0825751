"""The lock that keeps content sets and base documents alive while a writer reuses them.

A writer looks a set (or its host's base document) up by content and then inserts a snapshot
that points at it; ``db prune``, ``db reparse`` and ``db reclassify`` delete the sets and
documents no snapshot points at. On PostgreSQL the two can interleave: a set found by the
writer, then deleted as unused before the writer's snapshot is committed, makes the writer's
insert fail its foreign key, and that host's night would be refused. So every writing
transaction holds this lock shared (writers never wait for one another), and whoever deletes
unused content holds it exclusively for the short transaction that decides and deletes.
SQLite needs none: its one writer at a time serialises them already.

Take it before the history lock when a transaction needs both, so two maintenance commands
never wait for each other crosswise.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

# Advisory lock key of content reuse against its removal ("pf" 4), on PostgreSQL.
_PG_CONTENT_LOCK = {"space": 0x70660004, "key": 0}


def content_lock(connection: Connection, exclusive: bool = False) -> None:
    """Hold the content lock till the transaction ends: shared to reuse, exclusive to delete."""
    if connection.dialect.name != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    connection.execute(text(f"SELECT {function}(:space, :key)"), _PG_CONTENT_LOCK)
