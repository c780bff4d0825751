"""Read the fixes and their nightly checks (``collector.store.fixes`` derived them).

``fix_history`` gives, for a host (and a port), each fix that covers it, oldest first, with how
its checks went: nights it held, the night it first regressed, where it stands now. ``explain``,
the report and the alerts read these rows; nothing here decides whether a fix holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from reports import tables


@dataclass(frozen=True, slots=True)
class FixRecord:
    """One fix and how it held, night by night."""

    id: int
    key: str
    host: str
    source: str
    action: str
    start_port: int
    end_port: int
    applied_at: datetime
    recorded_by: str | None
    note: str | None
    checks: tuple[dict[str, Any], ...]  # snapshot_id, taken_at, outcome, port, diagnosis

    @property
    def held(self) -> int:
        """Nights it held."""
        return sum(check["outcome"] == "holds" for check in self.checks)

    @property
    def state(self) -> str:
        """Where it stands: the outcome of its latest known check, or ``not checked yet``."""
        known = [c for c in self.checks if c["outcome"] != "unknown"]
        return str(known[-1]["outcome"]) if known else "not checked yet"

    @property
    def first_regressed(self) -> dict[str, Any] | None:
        """The first check in which it regressed, or None."""
        return next((c for c in self.checks if c["outcome"] == "regressed"), None)

    def ports(self) -> str:
        """Name its ports: one, or a range."""
        if self.start_port == self.end_port:
            return f"TCP {self.start_port}"
        return f"TCP {self.start_port}–{self.end_port}"

    def describe(self) -> str:
        """Say the fix and how it held, in one line."""
        who = f" by {self.recorded_by}" if self.recorded_by else ""
        what = (
            "administered range appeared"
            if self.source == "detected"
            else f"{self.action} recorded{who}"
        )
        line = f"{self.ports()}: {what}, {self.applied_at:%Y-%m-%d %H:%M} UTC"
        if self.note:
            line += f" ({self.note})"
        regressed = self.first_regressed
        line += f"; held {self.held} of {len(self.checks)} nights since"
        if regressed is not None:
            line += (
                f"; regressed {regressed['taken_at']:%Y-%m-%d %H:%M} UTC "
                f"(TCP {regressed['port']} {regressed['diagnosis']})"
            )
        return f"{line}; now: {self.state}"

    def to_json(self) -> dict[str, Any]:
        """Return the fix and its checks as JSON-ready data."""
        return {
            "id": self.id, "source": self.source, "action": self.action,
            "start_port": self.start_port, "end_port": self.end_port,
            "applied_at": self.applied_at.isoformat(), "recorded_by": self.recorded_by,
            "note": self.note, "held": self.held, "state": self.state,
            "checks": [{**c, "taken_at": c["taken_at"].isoformat()} for c in self.checks],
        }  # fmt: skip


def fix_history(
    connection: Connection, host: str | None = None, port: int | None = None
) -> list[FixRecord]:
    """Return the fixes (of a host, covering a port, when given), oldest first, with checks."""
    fixes = tables.read(connection, "fixes")
    if host is not None:
        fixes = fixes[fixes["host"] == host]
    if port is not None:
        fixes = fixes[(fixes["start_port"] <= port) & (fixes["end_port"] >= port)]
    if fixes.empty:
        return []
    checks = tables.read(connection, "fix_checks")
    checks = checks[checks["fix_id"].isin(fixes["id"])]
    by_fix: dict[int, list[dict[str, Any]]] = {}
    for row in checks.to_dict("records"):
        by_fix.setdefault(int(row["fix_id"]), []).append(
            {"snapshot_id": int(row["snapshot_id"]), "taken_at": row["taken_at"].to_pydatetime(),
             "outcome": str(row["outcome"]), "port": _int(row["port"]),
             "diagnosis": None if pd.isna(row["diagnosis"]) else str(row["diagnosis"])}
        )  # fmt: skip
    return [
        FixRecord(
            id=int(row["id"]),
            key=str(row["key"]),
            host=str(row["host"]),
            source=str(row["source"]),
            action=str(row["action"]),
            start_port=int(row["start_port"]),
            end_port=int(row["end_port"]),
            applied_at=row["applied_at"].to_pydatetime(),
            recorded_by=None if pd.isna(row["recorded_by"]) else str(row["recorded_by"]),
            note=None if pd.isna(row["note"]) else str(row["note"]),
            checks=tuple(by_fix.get(int(row["id"]), ())),
        )
        for row in fixes.to_dict("records")
    ]


def _int(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)
