"""Derived data that a schema upgrade added a place for, made with today's code once at head.

A migration that adds a kind of derived data (the findings in 0002, the history in 0003) only
makes its tables: run from a migration, today's code would meet the schema of that revision,
not the one it was written for. Once every migration has run, ``derive_missing`` fills what is
missing, against the schema today's code knows: the findings of unclassified snapshots, the
change history, the detected fixes and their nightly checks (0004).
"""

from __future__ import annotations

from sqlalchemy import Connection, exists, func, select

from collector.store.models import ChangeEvent, FixCheck, Snapshot


def derive_missing(connection: Connection) -> list[str]:
    """Derive what the stored snapshots lack; return one phrase per kind derived."""
    done = []
    unclassified = connection.scalar(
        select(func.count()).select_from(Snapshot).where(Snapshot.finding_set_id.is_(None))
    )
    if unclassified:
        from collector.store.findings import reclassify  # pandas: only when needed

        reclassify(connection)
        done.append(f"findings of {unclassified} snapshots")
    stored = connection.scalar(select(exists().select_from(Snapshot)))
    derived = connection.scalar(select(exists().select_from(ChangeEvent)))
    if stored and not derived:
        from collector.store.history import refresh_history

        refresh_history(connection)
        done.append("the change history")
    checked = connection.scalar(select(exists().select_from(FixCheck)))
    if stored and not checked:
        from collector.store.fixes import refresh_fixes  # read from the history just derived

        refresh_fixes(connection)
        done.append("the fixes and their checks")
    return done
