"""Write one validated probe document into the store as a snapshot and its normalized rows."""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collector.parsers.dynamicport import parse_dynamicport
from collector.parsers.errors import ParseError
from collector.parsers.excluded import parse_excluded
from collector.parsers.hotfix import parse_hotfix
from collector.parsers.netstat import parse_netstat
from collector.store.models import (
    Base,
    BindFailure,
    BindFailureSet,
    Document,
    DynamicRange,
    ExcludedRange,
    ExcludedSet,
    Feature,
    Host,
    Listener,
    ListenerSet,
    Service,
    Snapshot,
    SnapshotError,
    Update,
)

# PID 4 is always the kernel's System process; netstat -ano prints PIDs only.
_WELL_KNOWN_PIDS = {0: "System Idle Process", 4: "System"}
_KB = re.compile(r"\bKB(\d{6,8})\b", re.IGNORECASE)

_Row = tuple[Any, ...]
_SetT = TypeVar("_SetT", ExcludedSet, BindFailureSet, ListenerSet)


@dataclass(slots=True)
class StoredSnapshot:
    """The outcome of storing one document."""

    snapshot: Snapshot
    created: bool
    problems: list[str] = field(default_factory=list)


def document_digest(body: bytes) -> str:
    """Return the SHA-256 that identifies a document's exact bytes."""
    return hashlib.sha256(body).hexdigest()


def find_snapshot(session: Session, body: bytes) -> Snapshot | None:
    """Return the snapshot already stored for these exact document bytes, if any."""
    statement = (
        select(Snapshot)
        .join(Document, Document.id == Snapshot.document_id)
        .where(Document.sha256 == document_digest(body))
    )
    return session.scalars(statement).first()


def store_snapshot(
    session: Session,
    body: bytes,
    document: dict[str, Any],
    source: str,
    received_at: datetime,
    host: Host,
) -> StoredSnapshot:
    """Store a validated document (once per content) and everything derived from it."""
    existing = find_snapshot(session, body)
    if existing is not None:
        return StoredSnapshot(existing, created=False)
    problems: list[str] = []
    errors: list[dict[str, Any]] = [dict(error) for error in document.get("errors", [])]

    def record(section: str, exc: ParseError) -> None:
        problems.append(f"{section}: {exc}")
        errors.append({"section": section, "code": "parse_error", "message": str(exc)})

    # Sets first, so the snapshot row is written once, with its pointers.
    raw: dict[str, str] = document["raw"]
    excluded_set_id = _excluded_set(session, raw, record)
    bind_failure_set_id = _bind_failure_set(session, document.get("bind_sweep"))
    listener_set_id = _listener_set(session, document.get("listeners"), raw, record)
    dynamic = _dynamic_ranges(raw, record)
    compressed = zlib.compress(body, 6)
    document_row = {"sha256": document_digest(body), "size": len(body), "body": compressed}
    document_id = (
        session.connection()
        .execute(insert(Document).returning(Document.id), document_row)
        .scalar_one()
    )
    facts = document["host"]
    os_info = facts.get("os") or {}
    bios = facts.get("bios") or {}
    versions = document.get("versions") or {}
    snapshot = Snapshot(
        host_id=host.id,
        document_id=document_id,
        source=document.get("source") or source,
        taken_at=_parse_time(document["taken_at"]),
        received_at=received_at,
        probe_version=document["probe_version"],
        os_build=_os_build(os_info),
        last_boot_at=_parse_time(facts.get("last_boot")),
        bios_version=bios.get("version"),
        bios_date=_parse_date(bios.get("release_date")),
        fast_startup=facts.get("fast_startup"),
        docker_version=versions.get("docker"),
        wsl_version=versions.get("wsl"),
        sweep_seconds=_sweep_seconds(document.get("bind_sweep")),
        excluded_set_id=excluded_set_id,
        bind_failure_set_id=bind_failure_set_id,
        listener_set_id=listener_set_id,
    )
    session.add(snapshot)
    session.flush()
    owned = {"snapshot_id": snapshot.id}
    _insert(session, DynamicRange, [owned | row for row in dynamic])
    _insert(session, Feature, [owned | item for item in document.get("features", [])])
    _insert(
        session,
        Service,
        [owned | {"start_type": None} | item for item in document.get("services", [])],
    )
    _merge_updates(session, host, snapshot, document, raw, record)
    _insert(session, SnapshotError, [owned | error for error in errors])
    session.flush()
    return StoredSnapshot(snapshot, created=True, problems=problems)


def _excluded_set(
    session: Session, raw: dict[str, str], record: Callable[[str, ParseError], None]
) -> int | None:
    """Return the set of all excluded ranges captured, or None when none was captured."""
    rows: list[_Row] = []
    captured = False
    for key in sorted(k for k in raw if k.startswith("excluded_")):
        _, family, protocol = key.split("_")
        try:
            tables = parse_excluded(raw[key])
        except ParseError as exc:
            record(key, exc)
            continue
        captured = True
        for table in tables:
            for item in table.ranges:
                rows.append(
                    (table.protocol or protocol, family, item.start, item.end, item.administered)
                )
    if not captured:
        return None
    unique = sorted(set(rows))
    columns = ("protocol", "family", "start_port", "end_port", "administered")
    return _set_id(session, ExcludedSet, ExcludedRange, columns, unique)


def _bind_failure_set(session: Session, sweeps: list[dict[str, Any]] | None) -> int | None:
    if sweeps is None or not sweeps:
        return None
    rows = sorted(
        {(s["protocol"], s["family"], f[0], f[1], f[2]) for s in sweeps for f in s["failures"]}
    )
    columns = ("protocol", "family", "start_port", "end_port", "error_code")
    return _set_id(session, BindFailureSet, BindFailure, columns, rows)


def _listener_set(
    session: Session,
    listeners: list[dict[str, Any]] | None,
    raw: dict[str, str],
    record: Callable[[str, ParseError], None],
) -> int | None:
    """Use the probe's structured listeners, else the ones read from netstat's text."""
    rows: list[_Row]
    if listeners is not None:
        rows = [
            (
                i["protocol"],
                i["address"],
                i["port"],
                i.get("pid"),
                _process_name(i.get("pid"), i.get("process")),
            )
            for i in listeners
        ]
    elif "netstat" in raw:
        try:
            connections = parse_netstat(raw["netstat"])
        except ParseError as exc:
            record("netstat", exc)
            return None
        rows = [
            (
                c.proto.lower(),
                c.local_address,
                c.local_port,
                c.pid,
                _process_name(c.pid, c.process),
            )
            for c in connections
            if c.is_listener
        ]
    else:
        return None
    unique = sorted(set(rows), key=lambda r: (r[0], r[2], r[1], r[3] or 0, r[4] or ""))
    columns = ("protocol", "address", "port", "pid", "process")
    return _set_id(session, ListenerSet, Listener, columns, unique)


def _dynamic_ranges(
    raw: dict[str, str], record: Callable[[str, ParseError], None]
) -> list[dict[str, Any]]:
    """Return the dynamic port range rows of every captured protocol and family."""
    rows = []
    for key in sorted(k for k in raw if k.startswith("dynamicport_")):
        _, family, protocol = key.split("_")
        try:
            blocks = parse_dynamicport(raw[key])
        except ParseError as exc:
            record(key, exc)
            continue
        # A transcript may hold several blocks; the last one is the state when the probe ran.
        last = blocks[-1]
        rows.append(
            {
                "protocol": last.protocol or protocol,
                "family": family,
                "start_port": last.start,
                "port_count": last.count,
            }
        )
    return rows


def _merge_updates(
    session: Session,
    host: Host,
    snapshot: Snapshot,
    document: dict[str, Any],
    raw: dict[str, str],
    record: Callable[[str, ParseError], None],
) -> None:
    """Keep one row per host and update, pointing at the earliest snapshot that saw it."""
    found: dict[str, dict[str, Any]] = {}
    hotfixes: list[dict[str, Any]] = list(document.get("hotfixes", []))
    if not hotfixes and "hotfix" in raw:
        try:
            hotfixes = [
                {
                    "kb": h.kb,
                    "description": h.description,
                    "installed_by": h.installed_by,
                    "installed_on": h.installed_on,
                }
                for h in parse_hotfix(raw["hotfix"])
            ]
        except ParseError as exc:
            record("hotfix", exc)
    for item in hotfixes:
        entry = found.setdefault(_update_key(item["kb"], None), {"kb": item["kb"]})
        entry.update(
            description=item.get("description"),
            installed_by=item.get("installed_by"),
            installed_on=_parse_date(item.get("installed_on")),
        )
    for item in sorted(document.get("update_history", []), key=lambda i: str(i["date"])):
        kb = item.get("kb") or _kb_in(item["title"])
        entry = found.setdefault(_update_key(kb, item["title"]), {"kb": kb})
        entry["title"] = item["title"]
        entry["result_code"] = item["result_code"]
        # Succeeded (2) or succeeded with errors (3) installs date the update.
        if item["operation"] == 1 and item["result_code"] in (2, 3):
            entry.setdefault("installed_at", _parse_time(item["date"]))
    if not found:
        return
    columns = (
        "kb",
        "title",
        "description",
        "installed_by",
        "installed_on",
        "installed_at",
        "result_code",
    )
    existing = session.execute(
        select(
            Update.id, Update.update_key, *(getattr(Update, c) for c in columns), Snapshot.taken_at
        )
        .join(Snapshot, Snapshot.id == Update.first_snapshot_id)
        .where(Update.host_id == host.id, Update.update_key.in_(found))
    ).all()
    for row in existing:
        values = found.pop(row.update_key)
        changes = {n: v for n, v in values.items() if v is not None and getattr(row, n) is None}
        if snapshot.taken_at < row.taken_at:
            changes["first_snapshot_id"] = snapshot.id  # an older document imported later
        if changes:
            session.execute(update(Update).where(Update.id == row.id).values(**changes))
    new = [
        {c: None for c in columns}
        | values
        | {"host_id": host.id, "update_key": key, "first_snapshot_id": snapshot.id}
        for key, values in found.items()
    ]
    _insert(session, Update, new)


def _set_id(
    session: Session,
    model: type[_SetT],
    row_model: type[Base],
    columns: Sequence[str],
    rows: Sequence[_Row],
) -> int:
    """Return the id of the set holding exactly ``rows``, creating it the first time."""
    digest = hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()
    found = session.scalar(select(model.id).where(model.sha256 == digest))
    if found is not None:
        return found
    if session.get_bind().dialect.name == "sqlite":
        # SQLite writers hold the database's write lock (BEGIN IMMEDIATE) from the start: no
        # other writer can create this set between the look-up and the insert.
        return _create_set(session, model, row_model, columns, rows, digest)
    try:
        # Another host may store the same content at the same moment: its commit wins, and
        # this transaction then uses that set instead of failing whole.
        with session.begin_nested():
            return _create_set(session, model, row_model, columns, rows, digest)
    except IntegrityError:
        found = session.scalar(select(model.id).where(model.sha256 == digest))
        if found is None:
            raise
        return found


def _create_set(
    session: Session,
    model: type[_SetT],
    row_model: type[Base],
    columns: Sequence[str],
    rows: Sequence[_Row],
    digest: str,
) -> int:
    statement = insert(model).values(sha256=digest).returning(model.id)
    set_id = int(session.connection().execute(statement).scalar_one())
    _insert(
        session, row_model, [{"set_id": set_id, **dict(zip(columns, r, strict=True))} for r in rows]
    )
    return set_id


def _insert(session: Session, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """Insert many rows in one executemany (the ORM's per-object work is not needed here)."""
    if rows:
        session.connection().execute(insert(model), rows)


def _process_name(pid: int | None, process: str | None) -> str | None:
    """Return the process name as reported, else the name a well-known PID always has."""
    if process or pid is None:
        return process
    return _WELL_KNOWN_PIDS.get(pid)


def _update_key(kb: str | None, title: str | None) -> str:
    if kb:
        return kb.upper()
    return "title:" + hashlib.sha256((title or "").encode()).hexdigest()[:32]


def _kb_in(title: str) -> str | None:
    match = _KB.search(title)
    return f"KB{match.group(1)}" if match else None


def _os_build(info: dict[str, Any]) -> str | None:
    build, ubr = info.get("build"), info.get("ubr")
    if build is None:
        return None
    return f"10.0.{build}.{ubr}" if ubr is not None else f"10.0.{build}"


def _sweep_seconds(sweeps: list[dict[str, Any]] | None) -> float | None:
    durations = [s["duration_ms"] for s in sweeps or [] if s.get("duration_ms") is not None]
    return sum(durations) / 1000 if durations else None


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    # A host time without offset is taken as UTC; the probe always writes the offset.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_date(value: str | date | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value[:10])
