"""What the analysis hands the report: one dataclass of pandas DataFrames, typed here.

The analysis (``reports.analysis`` and friends) fills it from the store; the HTML report only
renders it. ``FRAMES`` declares each frame's columns with their kinds (``reports.tables.Kind``:
which may be missing, which hold lists), ``conform`` gives an analysis frame those dtypes
(an empty frame has none of its own), and ``validate`` checks them, so the two halves cannot
drift apart silently and the page never guesses at a shape. Any frame may be empty — a new
store has no host — and every section of the page says so in words.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import pandas as pd

from collector.store.history import REPORT_EVENT_COLUMNS
from reports.tables import (
    BOOL,
    FLOAT,
    INT,
    LIST,
    NULLABLE_BOOL,
    NULLABLE_INT,
    NULLABLE_STR,
    STR,
    UTC,
    Kind,
    conform,
    holds,
)

# The events frame's columns are collector.store.history's; a column added there fails here.
_EVENT_KINDS: dict[str, Kind] = {
    "host": STR, "kind": STR, "at": UTC, "previous_at": UTC, "protocol": STR,
    "start": NULLABLE_INT, "end": NULLABLE_INT, "previous_start": NULLABLE_INT,
    "previous_end": NULLABLE_INT, "ports": NULLABLE_INT, "causes": LIST,
}  # fmt: skip
_EVENT_KINDS = {column: _EVENT_KINDS[column] for column in REPORT_EVENT_COLUMNS}
_EVENT_KINDS["event_id"] = INT  # what the needs-attention lines link to

# fmt: off
FRAMES: dict[str, dict[str, Kind]] = {
    # one row per host: its latest snapshot, freshness, and attempt record; a host never
    # collected has no snapshot and no facts, one whose ranges were not read no reserved_ports
    "hosts": {
        "host": STR, "snapshot_id": NULLABLE_INT, "taken_at": UTC, "last_attempt_at": UTC,
        "last_status": NULLABLE_STR, "last_error_class": NULLABLE_STR,
        "last_message": NULLABLE_STR, "failed_attempts": INT, "days_since_snapshot": FLOAT,
        "stale": BOOL, "os_build": NULLABLE_STR, "last_boot_at": UTC, "hyperv": NULLABLE_STR,
        "wsl": NULLABLE_STR, "docker_version": NULLABLE_STR, "dynamic_start": NULLABLE_INT,
        "dynamic_count": NULLABLE_INT, "excluded_known": NULLABLE_BOOL,
        "failing_ports": NULLABLE_INT, "reserved_ports": NULLABLE_INT,
    },
    # failed attempts of the recent past, newest first (an input that named no host has none)
    "failed_attempts": {
        "host": NULLABLE_STR, "started_at": UTC, "error_class": NULLABLE_STR,
        "message": NULLABLE_STR,
    },
    # the failing ports of every host's latest snapshot, classified: one row per range of
    # ports that share a finding (start..end, ``ports`` of them), never one row per port
    "failures": {
        "host": STR, "snapshot_id": INT, "taken_at": UTC, "protocol": STR, "family": STR,
        "start": INT, "end": INT, "ports": INT, "error_code": NULLABLE_INT,
        "failure_start": NULLABLE_INT, "failure_end": NULLABLE_INT, "classification": STR,
        "reason": STR,
        "excluded_start": NULLABLE_INT, "excluded_end": NULLABLE_INT,
        "administered": NULLABLE_BOOL, "pid": NULLABLE_INT, "process": NULLABLE_STR,
        "in_dynamic_range": NULLABLE_BOOL,
    },
    # the wanted ports (config) x every host: one row per cell; status is a PortStatus, serving
    # says the configured service holds it, fixes lists the fix kinds (collector.diagnosis.Fix)
    "wanted": {
        "host": STR, "port": INT, "status": STR, "classification": STR, "reason": STR,
        "evidence": STR, "taken_at": UTC, "serving": BOOL, "fixes": LIST,
    },
    # the port map: one row per reserved/blocked range of each host's latest snapshot
    "port_map": {"host": STR, "start": INT, "end": INT, "kind": STR, "label": STR},
    # change events between consecutive snapshots of a host; causes are dicts
    # {"kind", "cause", "detail", "at"} (reports.events)
    "events": _EVENT_KINDS,
    # fleet correlation: one row per candidate cause, ranked ones first, best first
    "correlation": {
        "cause": STR, "cause_kind": STR, "exposed_with_event": INT,
        "exposed_without_event": INT, "unexposed_with_event": INT,
        "unexposed_without_event": INT, "p_value": FLOAT, "odds_ratio": FLOAT,
        "median_lag_days": FLOAT, "hosts_with_event": LIST, "hosts_without_event": LIST,
        "enough_hosts": BOOL, "rank": NULLABLE_INT,
    },
    # needs attention: one line per thing to act on, grouped by kind (reports.attention.KINDS),
    # each with what it points at: a host, a port, the change event that brought it
    "attention": {
        "kind": STR, "host": NULLABLE_STR, "port": NULLABLE_INT, "at": UTC, "text": STR,
        "causes": LIST, "fix": NULLABLE_STR, "fix_commands": NULLABLE_STR,
        "event_id": NULLABLE_INT,
    },
    # remediation: copyable commands per host, with why and the caveats (one per line)
    "remediation": {"host": STR, "action": STR, "commands": STR, "why": STR, "caveats": STR},
}
# fmt: on
COLUMNS: dict[str, tuple[str, ...]] = {name: tuple(kinds) for name, kinds in FRAMES.items()}
# Where the report's wanted ports came from, as the page says it.
WANTED_SOURCES = ("command line", "config", "store", "none")  # store: the last collection's


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the HTML report shows; built by the analysis, never by the template."""

    generated_at: datetime
    database: str
    wanted_ports: tuple[int, ...]
    hosts: pd.DataFrame
    failed_attempts: pd.DataFrame
    failures: pd.DataFrame
    wanted: pd.DataFrame
    port_map: pd.DataFrame
    events: pd.DataFrame
    correlation: pd.DataFrame
    remediation: pd.DataFrame
    attention: pd.DataFrame
    fixes: tuple[Any, ...] = ()  # reports.fixes.FixRecord: fixes applied, and how each held
    wanted_source: str = "none"  # where the wanted ports came from: WANTED_SOURCES
    stale_days: float = 3.0  # report.stale_days: older snapshots are "not seen lately"
    safe_ports: Any = None  # reports.safeports.SafePorts, None when nothing backs an answer
    odds: tuple[Any, ...] = ()  # reports.odds.Odds of each wanted port at risk somewhere

    def validate(self) -> None:
        """Raise ValueError when a frame lacks a column the report relies on, or its kind."""
        for item in fields(self):
            frame = getattr(self, item.name)
            if not isinstance(frame, pd.DataFrame):
                continue
            missing = [c for c in COLUMNS[item.name] if c not in frame.columns]
            if missing:
                raise ValueError(f"report data '{item.name}' lacks columns {missing}")
            wrong = [
                f"{c} ({frame[c].dtype}, not {kind})"
                for c, kind in FRAMES[item.name].items()
                if not holds(kind, frame[c])
            ]
            if wrong:
                raise ValueError(f"report data '{item.name}' has {', '.join(wrong)}")


def typed(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Return an analysis frame with the dtypes ``FRAMES`` declares for ``name``."""
    return conform(frame, FRAMES[name])


def empty_frame(name: str) -> pd.DataFrame:
    """Return an empty frame with the columns and dtypes of ``name``."""
    return typed(name, pd.DataFrame({column: [] for column in COLUMNS[name]}))
