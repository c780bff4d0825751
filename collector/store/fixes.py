"""Fixes applied to a host's ports, and whether each held night after night.

A fix is *recorded* by an administrator (``portfleet fix HOST PORT --action …``: who, when,
what) or *detected*: an administered (``*``) excluded range that appeared between two snapshots
of a host is a fix by itself (someone ran ``netsh … add excludedportrange``). Detected fixes
are read from the stored change events, so they are derived again with them.

Each snapshot of the host taken at or after a fix is checked against the stored findings (the
diagnosis, never re-derived here), by the one rule ``check_outcome`` owns: the fix **holds**
while no run-time range, probable reservation or unexplained failure covers its ports (a port
that binds, or one that only an administered range covers); it **regressed** on a snapshot
where one does; it is **unknown** where the snapshot neither swept the ports nor captured the
excluded ranges. A listener on the port is not a regression: a reservation fix is about
reservations, and the service the port is wanted for holds it on a good night.

``derive_fixes`` derives the detected fixes and checks that a run's new snapshots bring, at the
run's end (after ``collector.store.history.derive_history``), and ``check_fixes`` checks a
fix when it is recorded; ``fix_checks`` and the view ``v_fix_checks`` are what ``explain``,
the report and ``notify`` read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, insert, or_, select

from collector import clock
from collector.store.database import Store
from collector.store.models import (
    ChangeEvent,
    Finding,
    Fix,
    FixCheck,
    Snapshot,
)
from collector.store.writer import host_named

# What ``portfleet fix --action`` takes; ``administered-range`` is only ever detected.
RECORDED_ACTIONS = ("reserve", "restart-winnat", "hyperv-cycle", "other")
# The diagnoses that block a port a fix was meant to free (a run-time reservation is
# ``reserved`` without the administered flag).
_BLOCKING = ("probably-reserved", "unexplained")
_BATCH = 5000


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What ``derive_fixes`` stored."""

    detected: int
    checks: int


@dataclass(frozen=True, slots=True)
class RecordedFix:
    """A fix ``record_fix`` stored, with the nights already stored after it."""

    id: int
    host: str
    port: int
    action: str
    applied_at: datetime
    checks: int


class UnknownHostError(LookupError):
    """No host of that name is in the store."""


def check_outcome(swept: bool, excluded_known: bool, blocking: bool) -> str:
    """Say whether a fix holds in one snapshot: ``holds``, ``regressed`` or ``unknown``."""
    if blocking:
        return "regressed"
    return "holds" if swept or excluded_known else "unknown"


def record_fix(
    store: Store,
    host: str,
    port: int,
    action: str,
    *,
    note: str | None = None,
    by: str | None = None,
    applied_at: datetime | None = None,
    now: datetime | None = None,
) -> RecordedFix:
    """Record that a fix was applied to TCP ``port`` of ``host``, and check the nights since."""
    if action not in RECORDED_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(RECORDED_ACTIONS)}, not {action!r}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1–65535")
    now = now or clock.now()
    applied_at = (applied_at or now).astimezone(UTC)
    with store.transaction() as connection:
        known = host_named(connection, host)
        if known is None:
            raise UnknownHostError(f"no host named {host!r} in the store")
        host_id, name = known
        fix_id = add_fix(connection, host_id, (port, port), action, applied_at, now, by, note)
        checks = check_fixes(connection, [fix_id])
    return RecordedFix(fix_id, name, port, action, applied_at, checks)


def add_fix(
    connection: Connection,
    host_id: int,
    ports: tuple[int, int],
    action: str,
    applied_at: datetime,
    recorded_at: datetime,
    by: str | None,
    note: str | None,
) -> int:
    """Store one recorded fix of TCP ports ``ports`` (first, last) in the caller's transaction.

    The caller checks them (``check_fixes``) once its fixes are in.
    """
    values = {
        "key": f"recorded:{uuid.uuid4().hex}", "host_id": host_id, "source": "recorded",
        "action": action, "start_port": ports[0], "end_port": ports[1],
        "applied_at": applied_at, "recorded_at": recorded_at,
        "recorded_by": (by or None) and by[:255], "note": note or None,
    }  # fmt: skip
    return int(connection.execute(insert(Fix).values(values).returning(Fix.id)).scalar_one())


def derive_fixes(connection: Connection) -> Refreshed:
    """Derive the detected fixes and the checks that the pending snapshots bring.

    Run after the change events of those snapshots are stored (``derive_pending``); a host
    derived again (every snapshot pending) loses its detected fixes and checks first.
    """
    pending = select(Snapshot.id).where(Snapshot.history_pending.is_not(None))
    redone = select(Fix.id).where(Fix.source == "detected", Fix.snapshot_id.in_(pending))
    connection.execute(delete(FixCheck).where(FixCheck.snapshot_id.in_(pending)))
    connection.execute(delete(FixCheck).where(FixCheck.fix_id.in_(redone)))
    connection.execute(delete(Fix).where(Fix.id.in_(redone)))
    detected = _detect(connection, ChangeEvent.snapshot_id.in_(pending))
    for start in range(0, len(detected), _BATCH):
        connection.execute(insert(Fix), detected[start : start + _BATCH])
    checks = list(_checks(connection, Snapshot.history_pending.is_not(None)))
    for start in range(0, len(checks), _BATCH):
        connection.execute(insert(FixCheck), checks[start : start + _BATCH])
    return Refreshed(len(detected), len(checks))


def check_fixes(connection: Connection, fix_ids: Sequence[int]) -> int:
    """Check newly recorded fixes against every snapshot of their host since; return how many."""
    checks = list(_checks(connection, Fix.id.in_(list(fix_ids))))
    for start in range(0, len(checks), _BATCH):
        connection.execute(insert(FixCheck), checks[start : start + _BATCH])
    return len(checks)


def _detect(connection: Connection, where: ColumnElement[bool]) -> list[dict[str, Any]]:
    """Return a fix for every administered TCP range that appeared where ``where`` holds."""
    appeared = (
        select(
            ChangeEvent.host_id,
            ChangeEvent.snapshot_id,
            ChangeEvent.start_port,
            ChangeEvent.end_port,
            Snapshot.taken_at,
        )
        .join(Snapshot, Snapshot.id == ChangeEvent.snapshot_id)
        .where(
            ChangeEvent.kind == "range-appeared",
            ChangeEvent.protocol == "tcp",
            ChangeEvent.administered.is_(True),
            where,
        )
        .order_by(ChangeEvent.id)
    )
    fixes: dict[str, dict[str, Any]] = {}
    for row in connection.execute(appeared):
        if row.start_port is None or row.end_port is None:
            continue
        key = f"detected:{row.host_id}:{row.snapshot_id}:{row.start_port}-{row.end_port}"
        fixes[key] = {
            "key": key, "host_id": row.host_id, "source": "detected",
            "action": "administered-range", "start_port": max(1, row.start_port),
            "end_port": row.end_port, "applied_at": row.taken_at, "recorded_at": row.taken_at,
            "recorded_by": None, "note": None, "snapshot_id": row.snapshot_id,
        }  # fmt: skip
    return list(fixes.values())


def _checks(connection: Connection, where: ColumnElement[bool]) -> Iterable[dict[str, Any]]:
    """Check fixes against each snapshot of their host taken at or after them, where ``where``."""
    after = and_(Snapshot.host_id == Fix.host_id, Snapshot.taken_at >= Fix.applied_at)
    nights = connection.execute(
        select(
            Fix.id.label("fix_id"),
            Snapshot.id.label("snapshot_id"),
            Snapshot.taken_at,
            Snapshot.bind_failure_set_id,
            Snapshot.excluded_set_id,
        )
        .join(Snapshot, after)
        .where(where)
        .order_by(Fix.id, Snapshot.taken_at, Snapshot.id)
    ).all()
    blocking = or_(
        Finding.diagnosis.in_(_BLOCKING),
        and_(Finding.diagnosis == "reserved", Finding.administered.is_not(True)),
    )
    blocked = connection.execute(
        select(
            Fix.id.label("fix_id"),
            Snapshot.id.label("snapshot_id"),
            Fix.start_port.label("fix_start"),
            Finding.start_port,
            Finding.diagnosis,
        )
        .join(Snapshot, after)
        .join(Finding, Finding.set_id == Snapshot.finding_set_id)
        .where(
            where,
            Finding.protocol == "tcp",
            Finding.start_port <= Fix.end_port,
            Finding.end_port >= Fix.start_port,
            blocking,
        )
        .order_by(Finding.start_port, Finding.id)
    ).all()
    first: dict[tuple[int, int], tuple[int, str]] = {}
    for row in blocked:
        first.setdefault(
            (row.fix_id, row.snapshot_id), (max(row.fix_start, row.start_port), row.diagnosis)
        )
    for night in nights:
        hit = first.get((night.fix_id, night.snapshot_id))
        outcome = check_outcome(
            night.bind_failure_set_id is not None, night.excluded_set_id is not None, bool(hit)
        )
        yield {
            "fix_id": night.fix_id, "snapshot_id": night.snapshot_id,
            "taken_at": night.taken_at, "outcome": outcome,
            "port": hit[0] if hit else None, "diagnosis": hit[1] if hit else None,
        }  # fmt: skip
