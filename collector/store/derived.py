"""Derived data: what a run's end adds for its new snapshots, and what an upgrade fills in.

The change events, candidate causes, detected fixes, fix checks and state spans are derived
from the snapshots and stored, and every output reads them. A run's end (``derive_pending``) derives
them for the snapshots stored since the last derivation (``collector.store.pending``), so its
time grows with the new nights, not with the history kept; ``everything=True`` derives the
whole store again, after the rules or the stored sets changed (``db reclassify``, ``db
reparse``).

A migration that adds a kind of derived data (the findings in 0002, the history in 0003) only
makes its tables: run from a migration, today's code would meet the schema of that revision,
not the one it was written for. Once every migration has run, ``derive_missing`` fills what is
missing, against the schema today's code knows.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, exists, func, select

from collector.store.models import ChangeEvent, Fix, Snapshot
from collector.store.pending import find_pending, mark_everything, mark_rebuild, settle


@dataclass(frozen=True, slots=True)
class Derived:
    """What ``derive_pending`` took in and stored."""

    extended: int  # hosts whose history was extended with new snapshots
    rebuilt: int  # hosts whose history was derived again from their first snapshot
    events: int
    causes: int
    detected: int
    checks: int

    def describe(self) -> str:
        """Say it in one line for the operator."""
        return (
            f"history: {self.events} change events, {self.causes} candidate causes, "
            f"{self.detected} detected fixes, {self.checks} fix checks "
            f"({self.extended} hosts extended, {self.rebuilt} derived again)"
        )


def derive_pending(connection: Connection, everything: bool = False) -> Derived:
    """Derive and store what the snapshots not yet derived bring (all of them: ``everything``).

    One transaction, the caller's, under the lock ``db prune`` takes too.
    """
    # pandas: only once a run is over
    from collector.store.fixes import derive_fixes
    from collector.store.history import derive_history, history_lock
    from collector.store.spans import rebuild_spans, refresh_spans

    history_lock(connection)
    if everything:
        mark_everything(connection)
    pending = find_pending(connection)
    if not pending:
        return Derived(0, 0, 0, 0, 0, 0)
    if not everything:
        mark_rebuild(connection, pending.rebuild)
    history = derive_history(connection)
    fixes = derive_fixes(connection)  # detected fixes come from the change events
    if everything:  # new findings, or reparsed sets: every span may change
        rebuild_spans(connection)
    else:
        refresh_spans(connection, pending)
    settle(connection, pending)
    return Derived(
        len(pending.extend), len(pending.rebuild), history.events, history.causes,
        fixes.detected, fixes.checks,
    )  # fmt: skip


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
    # An administered range that appeared is a detected fix: none stored beside one means the
    # store is from before fixes were kept (0004).
    fixing = exists().where(
        ChangeEvent.kind == "range-appeared",
        ChangeEvent.protocol == "tcp",
        ChangeEvent.administered.is_(True),
    )
    undetected = connection.scalar(select(fixing)) and not connection.scalar(
        select(exists().where(Fix.source == "detected"))
    )
    # New findings change the fixes' checks and the spans; a store that never had its history
    # derived, or its fixes detected, gets them now. Anything else was derived when stored.
    if stored and (unclassified or not derived or undetected):
        derive_pending(connection, everything=True)
        done.append("the change history, the fixes and their checks")
    return done
