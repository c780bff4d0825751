"""Turn one validated probe document into the typed rows it is stored as: no database here.

Parsing, hashing and the diagnosis happen in this step, outside any transaction, so the
writer (``collector.store.snapshots``) only has to insert what it is handed.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from collector.diagnosis import FINDING_COLUMNS, Facts, diagnose, host_state
from collector.document import read_time
from collector.parsers.dynamicport import parse_dynamicport
from collector.parsers.errors import ParseError
from collector.parsers.excluded import parse_excluded
from collector.parsers.hotfix import parse_hotfix
from collector.parsers.netstat import parse_netstat
from collector.windows import process_name

_KB = re.compile(r"\bKB(\d{6,8})\b", re.IGNORECASE)


Row = tuple[Any, ...]


# A finding's fields as the findings table names them.
FINDING_ROW_COLUMNS = tuple(
    {"start": "start_port", "end": "end_port"}.get(c, c) for c in FINDING_COLUMNS
)


@dataclass(slots=True)
class ContentSet:
    """Rows stored once however many snapshots share them, named by their digest."""

    digest: str
    rows: list[Row]


@dataclass(slots=True)
class PreparedSnapshot:
    """Everything one document yields, worked out before the database is touched.

    Parsing and hashing happen here, outside the writer's lock, so the transaction itself
    is a handful of statements.
    """

    digest: str
    document_row: dict[str, Any]
    snapshot_row: dict[str, Any]
    sets: dict[str, ContentSet | None]
    dynamic: list[dict[str, Any]]
    features: list[dict[str, Any]]
    services: list[dict[str, Any]]
    updates: dict[str, dict[str, Any]]
    errors: list[dict[str, Any]]
    problems: list[str]
    # The parsed document itself, for the writer's patch; None: the writer reads the body.
    document: dict[str, Any] | None = None


def document_digest(body: bytes) -> str:
    """Return the SHA-256 that identifies a document's exact bytes."""
    return hashlib.sha256(body).hexdigest()


def prepare_snapshot(
    body: bytes, document: dict[str, Any], source: str, diagnosed: Diagnosed | None = None
) -> PreparedSnapshot:
    """Parse a validated document into the rows it will be stored as; no database needed.

    ``diagnosed`` remembers the findings of inputs seen before, across the documents of one
    import (``Diagnosed``).
    """
    problems: list[str] = []
    errors: list[dict[str, Any]] = [dict(error) for error in document.get("errors", [])]

    def record(section: str, exc: ParseError) -> None:
        problems.append(f"{section}: {exc}")
        errors.append({"section": section, "code": "parse_error", "message": str(exc)})

    raw: dict[str, str] = document["raw"]
    dynamic = _dynamic_ranges(raw, record)
    features = list(document.get("features", []))
    services = [{"start_type": None} | item for item in document.get("services", [])]
    sets = {
        "excluded_set_id": _excluded_set(raw, record),
        "bind_failure_set_id": _bind_failure_set(document.get("bind_sweep")),
        "listener_set_id": _listener_set(document.get("listeners"), raw, record),
    } | host_sets(dynamic, features, services)
    digest = document_digest(body)
    facts = document["host"]
    os_info = facts.get("os") or {}
    bios = facts.get("bios") or {}
    versions = document.get("versions") or {}
    snapshot_row = {
        "source": document.get("source") or source,
        "taken_at": _parse_time(document["taken_at"]),
        "probe_version": document["probe_version"],
        "os_build": _os_build(os_info),
        "last_boot_at": _parse_time(facts.get("last_boot")),
        "bios_version": bios.get("version"),
        "bios_date": _parse_date(bios.get("release_date")),
        "fast_startup": facts.get("fast_startup"),
        "docker_version": versions.get("docker"),
        "wsl_version": versions.get("wsl"),
        "sweep_seconds": _sweep_seconds(document.get("bind_sweep")),
    }
    wsl = snapshot_row["wsl_version"] is not None
    if diagnosed is None:
        sets["finding_set_id"] = finding_set(sets, dynamic, features, services, wsl)
    else:
        sets["finding_set_id"] = diagnosed.findings(sets, dynamic, features, services, wsl)
    return PreparedSnapshot(
        digest=digest,
        document_row={"sha256": digest, "size": len(body), "body": zlib.compress(body, 6)},
        snapshot_row=snapshot_row,
        sets=sets,
        dynamic=dynamic,
        features=features,
        services=services,
        updates=_updates(document, raw, record),
        errors=errors,
        problems=problems,
        document=document,
    )


def _excluded_set(
    raw: dict[str, str], record: Callable[[str, ParseError], None]
) -> ContentSet | None:
    """Return the set of all excluded ranges captured, or None when none was captured."""
    rows: list[Row] = []
    captured = False
    for key in sorted(k for k in raw if k.startswith("excluded_")):
        _, family, protocol = key.split("_")
        try:
            rows.extend(_excluded_rows(raw[key], protocol, family))
        except ParseError as exc:
            record(key, exc)
            continue
        captured = True
    if not captured:
        return None
    return content_rows(sorted(set(rows)))


def _bind_failure_set(sweeps: list[dict[str, Any]] | None) -> ContentSet | None:
    if sweeps is None or not sweeps:
        return None
    rows = sorted(
        {(s["protocol"], s["family"], f[0], f[1], f[2]) for s in sweeps for f in s["failures"]}
    )
    return content_rows(rows)


def _listener_set(
    listeners: list[dict[str, Any]] | None,
    raw: dict[str, str],
    record: Callable[[str, ParseError], None],
) -> ContentSet | None:
    """Use the probe's structured listeners, else the ones read from netstat's text."""
    rows: list[Row]
    if listeners is not None:
        rows = [
            (
                i["protocol"],
                i["address"],
                i["port"],
                i.get("pid"),
                process_name(i.get("pid"), i.get("process")),
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
                process_name(c.pid, c.process),
            )
            for c in connections
            if c.is_listener
        ]
    else:
        return None
    return content_rows(sorted(set(rows), key=lambda r: (r[0], r[2], r[1], r[3] or 0, r[4] or "")))


# The rows of the sets a snapshot's own facts make, in the order of their tables' columns.
HOST_SET_COLUMNS: dict[str, tuple[str, ...]] = {
    "dynamic_set_id": ("protocol", "family", "start_port", "port_count"),
    "feature_set_id": ("name", "state"),
    "service_set_id": ("name", "status", "start_type"),
}


def host_sets(
    dynamic: Sequence[dict[str, Any]],
    features: Sequence[dict[str, Any]],
    services: Sequence[dict[str, Any]],
) -> dict[str, ContentSet | None]:
    """Return the dynamic range, feature and service sets of a snapshot, sorted and named.

    Always a set, empty when nothing was captured: the tables never told "none" from
    "unknown" for these, and the diagnosis reads both the same.
    """
    found = {"dynamic_set_id": dynamic, "feature_set_id": features, "service_set_id": services}
    return {
        column: content_rows(sorted(
            (tuple(item.get(name) for name in HOST_SET_COLUMNS[column]) for item in items),
            key=_none_first,
        ))
        for column, items in found.items()
    }  # fmt: skip


def _none_first(row: Row) -> tuple[tuple[bool, Any], ...]:
    """Sort rows whose columns may be NULL (a service's start type) without comparing None."""
    return tuple((value is not None, "" if value is None else value) for value in row)


def with_host_sets(prepared: PreparedSnapshot) -> dict[str, ContentSet | None]:
    """Return every content set of a prepared snapshot, its host sets made when it lacks them."""
    if all(column in prepared.sets for column in HOST_SET_COLUMNS):
        return prepared.sets
    return host_sets(prepared.dynamic, prepared.features, prepared.services) | prepared.sets


def finding_set(
    sets: dict[str, ContentSet | None],
    dynamic: Sequence[dict[str, Any]],
    features: Sequence[dict[str, Any]],
    services: Sequence[dict[str, Any]],
    wsl: bool,
) -> ContentSet:
    """Diagnose a snapshot from its rows (as stored, or about to be) into its set of findings."""

    def rows(column: str) -> list[Row] | None:
        content = sets.get(column)
        return None if content is None else content.rows

    facts = Facts(
        failures=rows("bind_failure_set_id"),
        excluded=rows("excluded_set_id"),
        listeners=rows("listener_set_id"),
        dynamic=[(d["protocol"], d["family"], d["start_port"], d["port_count"]) for d in dynamic],
        host=host_state(
            [(f["name"], f["state"]) for f in features],
            [(s["name"], s["status"]) for s in services],
            wsl,
        ),
    )
    return content_rows([finding.row() for finding in diagnose(facts)])


class Diagnosed:
    """The findings of each distinct set of inputs, worked out once (the diagnosis is pure).

    An import of many nights gives a host's unchanged inputs night after night; hosts of one
    night rarely share theirs (their failing ports differ), so one night gains nothing. Bounded:
    the oldest entry goes first.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._known: dict[tuple[Any, ...], ContentSet] = {}

    def findings(
        self,
        sets: dict[str, ContentSet | None],
        dynamic: Sequence[dict[str, Any]],
        features: Sequence[dict[str, Any]],
        services: Sequence[dict[str, Any]],
        wsl: bool,
    ) -> ContentSet:
        """Return ``finding_set`` of these inputs, diagnosing them only when new."""
        key = (
            tuple((column, None if content is None else content.digest)
                  for column, content in sorted(sets.items())),
            *(tuple(tuple(sorted(row.items())) for row in rows)
              for rows in (dynamic, features, services)),
            wsl,
        )  # fmt: skip
        found = self._known.get(key)
        if found is None:
            found = finding_set(sets, dynamic, features, services, wsl)
            if len(self._known) >= self._size:
                self._known.pop(next(iter(self._known)))
            self._known[key] = found
        return found


def content_rows(rows: list[Row]) -> ContentSet:
    """Return rows, in the order they are stored, as a content set named by their digest."""
    return ContentSet(content_digest(rows), rows)


def content_digest(rows: Sequence[Row]) -> str:
    """Return the digest that names a content set of sorted rows.

    It must never change, or stores made by earlier versions would stop sharing sets with new
    ones.
    """
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def _dynamic_ranges(
    raw: dict[str, str], record: Callable[[str, ParseError], None]
) -> list[dict[str, Any]]:
    """Return the dynamic port range rows of every captured protocol and family."""
    rows = []
    for key in sorted(k for k in raw if k.startswith("dynamicport_")):
        _, family, protocol = key.split("_")
        try:
            found, start, count = _dynamic_range(raw[key])
        except ParseError as exc:
            record(key, exc)
            continue
        rows.append(
            {
                "protocol": found or protocol,
                "family": family,
                "start_port": start,
                "port_count": count,
            }
        )
    return rows


# Most hosts of a fleet print the same netsh text (the same defaults, the same language), so
# each distinct text is parsed once per process. Errors are not cached: they are rare.
@lru_cache(maxsize=4096)
def _excluded_rows(text: str, protocol: str, family: str) -> tuple[Row, ...]:
    return tuple(
        (table.protocol or protocol, family, item.start, item.end, item.administered)
        for table in parse_excluded(text)
        for item in table.ranges
    )


@lru_cache(maxsize=4096)
def _dynamic_range(text: str) -> tuple[str | None, int, int]:
    # A transcript may hold several blocks; the last one is the state when the probe ran.
    last = parse_dynamicport(text)[-1]
    return last.protocol, last.start, last.count


def _updates(
    document: dict[str, Any], raw: dict[str, str], record: Callable[[str, ParseError], None]
) -> dict[str, dict[str, Any]]:
    """Return one entry per update the document knows, keyed as the updates table keys it."""
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
        entry = found.setdefault(update_key(item["kb"], None), {"kb": item["kb"]})
        entry.update(
            description=item.get("description"),
            installed_by=item.get("installed_by"),
            installed_on=_parse_date(item.get("installed_on")),
        )
    for item in sorted(document.get("update_history", []), key=lambda i: str(i["date"])):
        kb = item.get("kb") or _kb_in(item["title"])
        entry = found.setdefault(update_key(kb, item["title"]), {"kb": kb})
        entry["title"] = item["title"]
        entry["result_code"] = item["result_code"]
        # Succeeded (2) or succeeded with errors (3) installs date the update.
        if item["operation"] == 1 and item["result_code"] in (2, 3):
            entry.setdefault("installed_at", _parse_time(item["date"]))
    return found


def update_key(kb: str | None, title: str | None) -> str:
    """Return how the updates table keys an update: its KB, else a digest of its title."""
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
    return None if value is None else read_time(value)


def _parse_date(value: str | date | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value[:10])
