"""What the analysis hands the report: one dataclass of pandas DataFrames, columns fixed here.

The analysis (``reports.analysis`` and friends) fills it from the store; the HTML report only
renders it. Each frame's columns are listed in ``COLUMNS`` and checked by ``validate``, so the
two halves cannot drift apart silently.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import pandas as pd

from collector.store.history import REPORT_EVENT_COLUMNS

# fmt: off
COLUMNS: dict[str, tuple[str, ...]] = {
    # one row per host: its latest snapshot, freshness, and attempt record
    "hosts": (
        "host",
        "snapshot_id",
        "taken_at",
        "last_attempt_at",
        "last_status",
        "last_error_class",
        "last_message",
        "failed_attempts",
        "days_since_snapshot",
        "stale",
        "os_build",
        "last_boot_at",
        "hyperv",
        "wsl",
        "docker_version",
        "dynamic_start",
        "dynamic_count",
        "excluded_known",
        "failing_ports",
        "reserved_ports",
    ),
    # failed attempts of the recent past, newest first
    "failed_attempts": ("host", "started_at", "error_class", "message"),
    # every failing port of every host's latest snapshot, classified
    "failures": (
        "host",
        "snapshot_id",
        "taken_at",
        "protocol",
        "family",
        "port",
        "error_code",
        "failure_start",
        "failure_end",
        "classification",
        "reason",
        "excluded_start",
        "excluded_end",
        "administered",
        "pid",
        "process",
        "in_dynamic_range",
    ),
    # the wanted ports (config) x hosts: one row per cell; status is a PortStatus, serving says
    # the configured service holds it, fixes lists the fix kinds (collector.diagnosis.Fix)
    "wanted": (
        "host",
        "port",
        "status",
        "classification",
        "reason",
        "evidence",
        "taken_at",
        "serving",
        "fixes",
    ),
    # the port map: one row per reserved/blocked range of each host's latest snapshot
    "port_map": ("host", "start", "end", "kind", "label"),
    # change events between consecutive snapshots of a host
    "events": REPORT_EVENT_COLUMNS,
    # fleet correlation: one row per candidate cause, best first
    "correlation": (
        "cause",
        "cause_kind",
        "exposed_with_event",
        "exposed_without_event",
        "unexposed_with_event",
        "unexposed_without_event",
        "p_value",
        "odds_ratio",
        "median_lag_days",
        "hosts_with_event",
        "hosts_without_event",
        "enough_hosts",
        "rank",
    ),
    # remediation: copyable commands per host, with why and the caveats
    "remediation": ("host", "action", "commands", "why", "caveats"),
}
# fmt: on


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
    fixes: tuple[Any, ...] = ()  # reports.fixes.FixRecord: fixes applied, and how each held

    def validate(self) -> None:
        """Raise ValueError when a frame lacks a column the report relies on."""
        for item in fields(self):
            frame = getattr(self, item.name)
            if not isinstance(frame, pd.DataFrame):
                continue
            missing = [c for c in COLUMNS[item.name] if c not in frame.columns]
            if missing:
                raise ValueError(f"report data '{item.name}' lacks columns {missing}")


def empty_frame(name: str) -> pd.DataFrame:
    """Return an empty frame with the columns of ``name``."""
    return pd.DataFrame({column: [] for column in COLUMNS[name]})
