"""Read the store into typed frames: one named query, one SQL file, one declaration of columns.

Every read of the store by ``reports`` goes through ``read``. It runs ``reports/sql/<name>.sql``
(shipped with the package), checks the frame has exactly the columns ``QUERIES`` declares, in
order, and gives each its kind once, on read — so nothing downstream converts again:

- ``INT``: never NULL, ``int64``; ``NULLABLE_INT``: ``Int64`` with ``pd.NA`` for NULL.
- ``BOOL``: never NULL, ``bool``; ``NULLABLE_BOOL``: ``boolean`` with ``pd.NA``.
- ``UTC``: aware UTC timestamps, ``NaT`` for NULL (SQLite gives text, PostgreSQL naive UTC).
- ``STR`` / ``NULLABLE_STR``: text as the driver gives it, missing for NULL.

``FLOAT`` (``float64``, NaN when missing) and ``LIST`` (a Python list per cell) are made by the
analysis, never read; ``reports.model`` declares its frames with the same kinds.

A query whose SQL has ``IN :ids`` takes the ids as a list, sent in chunks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionDtype
from sqlalchemy import Connection

from collector.store.frames import read_frame, to_utc


class Kind(StrEnum):
    """What a column holds, and so the dtype it is read into."""

    INT = "int"
    NULLABLE_INT = "nullable int"
    BOOL = "bool"
    NULLABLE_BOOL = "nullable bool"
    UTC = "UTC time"
    STR = "str"
    NULLABLE_STR = "nullable str"
    FLOAT = "float"
    LIST = "list"


INT, NULLABLE_INT, BOOL, NULLABLE_BOOL = Kind.INT, Kind.NULLABLE_INT, Kind.BOOL, Kind.NULLABLE_BOOL
UTC, STR, NULLABLE_STR = Kind.UTC, Kind.STR, Kind.NULLABLE_STR
FLOAT, LIST = Kind.FLOAT, Kind.LIST
_DTYPES: dict[Kind, np.dtype[Any] | ExtensionDtype] = {
    INT: np.dtype(np.int64),
    NULLABLE_INT: pd.Int64Dtype(),
    BOOL: np.dtype(np.bool_),
    NULLABLE_BOOL: pd.BooleanDtype(),
    FLOAT: np.dtype(np.float64),
    UTC: pd.DatetimeTZDtype("us", "UTC"),
}


@dataclass(frozen=True, slots=True)
class Query:
    """A named query: what it answers, and its columns in order with their kinds."""

    about: str
    columns: Mapping[str, Kind]


# The columns a finding has, as both finding queries give them.
_CAUSE: dict[str, Kind] = {
    "host_id": INT, "host": STR, "snapshot_id": INT, "seen_at": UTC, "window_start": UTC,
    "cause_at": UTC, "kind": STR, "cause": STR, "detail": STR, "at": UTC, "exposure": BOOL,
}  # fmt: skip
_FINDING: dict[str, Kind] = {
    "set_id": INT, "protocol": STR, "family": STR, "start": INT, "end": INT, "diagnosis": STR,
    "dynamic_start": INT, "dynamic_end": INT, "dynamic_captured": BOOL, "in_dynamic": BOOL,
    "error_code": NULLABLE_INT, "administered": NULLABLE_BOOL, "range_start": NULLABLE_INT,
    "range_end": NULLABLE_INT, "block_start": NULLABLE_INT, "block_end": NULLABLE_INT,
    "pid": NULLABLE_INT, "process": NULLABLE_STR, "holder": NULLABLE_STR, "fixes": STR,
}  # fmt: skip

# fmt: off
QUERIES: dict[str, Query] = {
    "hosts": Query("Every known host.", {"host_id": INT, "host": STR}),
    "recorded_wanted": Query(
        "The wanted ports of the latest run that recorded some (JSON: port -> its process).",
        {"run_id": INT, "started_at": UTC, "wanted_ports": STR},
    ),
    "attempts": Query(
        "Each host's attempts from its last good one, and every failed one, with its name.",
        {"id": INT, "host_id": NULLABLE_INT, "host": NULLABLE_STR, "source": STR,
         "started_at": UTC, "status": STR, "error_class": NULLABLE_STR,
         "message": NULLABLE_STR},
    ),
    "latest_snapshots": Query(
        "Each host's latest snapshot.", {"host_id": INT, "snapshot_id": INT}
    ),
    "host_latest_snapshot": Query(
        "The latest snapshot of one host (:host_id), if it has one.", {"snapshot_id": INT}
    ),
    "snapshot_meta": Query(
        "Some snapshots (:ids): their host, time, facts and content sets.",
        {"snapshot_id": INT, "host_id": INT, "host": STR, "taken_at": UTC, "source": STR,
         "os_build": NULLABLE_STR, "last_boot_at": UTC, "docker_version": NULLABLE_STR,
         "wsl_version": NULLABLE_STR, "excluded_set_id": NULLABLE_INT,
         "bind_failure_set_id": NULLABLE_INT, "listener_set_id": NULLABLE_INT,
         "finding_set_id": NULLABLE_INT},
    ),
    "features": Query(
        "The Windows features of some snapshots (:ids).",
        {"snapshot_id": INT, "name": STR, "state": STR},
    ),
    "services": Query(
        "The services of some snapshots (:ids).",
        {"snapshot_id": INT, "name": STR, "status": STR},
    ),
    "findings": Query("Every finding of some finding sets (:ids), as stored.", _FINDING),
    "port_findings": Query(
        "The TCP findings of some finding sets (:ids) that cover one :port.", _FINDING
    ),
    "host_snapshots": Query(
        "Every snapshot of one host (:host_id), oldest first.",
        {"snapshot_id": INT, "taken_at": UTC, "finding_set_id": NULLABLE_INT, "swept": BOOL,
         "excluded_known": BOOL},
    ),
    "port_protection": Query(
        "The captured snapshots of one host (:host_id), oldest first, with the administered TCP "
        "range covering :port in each, if any.",
        {"snapshot_id": INT, "taken_at": UTC, "start": NULLABLE_INT, "end": NULLABLE_INT},
    ),
    "excluded_ranges": Query(
        "The excluded ranges of some excluded sets (:ids), families merged.",
        {"set_id": INT, "protocol": STR, "start": INT, "end": INT, "administered": BOOL},
    ),
    "dynamic_ranges": Query(
        "The dynamic port ranges of some snapshots (:ids).",
        {"snapshot_id": INT, "protocol": STR, "family": STR, "start": INT, "count": INT},
    ),
    "reservation_levels": Query(
        "Per excluded set, the ports of its run-time blocks of at least :min_block ports.",
        {"set_id": INT, "ports": INT},
    ),
    "administered_tcp_ranges": Query(
        "The administered ('*') TCP excluded ranges of every set a state span holds.",
        {"set_id": INT, "start": INT, "end": INT},
    ),
    "reservation_spans": Query(
        "Every state span whose excluded ranges were captured, for the fleet correlation: its "
        "first snapshot and time, its last time and its nights.",
        {"host_id": INT, "host": STR, "snapshot_id": INT, "taken_at": UTC, "last_at": UTC,
         "nights": INT, "excluded_set_id": INT},
    ),
    "change_events": Query(
        "Every stored range change event (v_change_events), oldest first.",
        {"event_id": INT, "host": STR, "kind": STR, "at": UTC, "previous_at": UTC,
         "protocol": STR, "family": NULLABLE_STR, "start": NULLABLE_INT, "end": NULLABLE_INT,
         "previous_start": NULLABLE_INT, "previous_end": NULLABLE_INT,
         "ports": NULLABLE_INT, "administered": NULLABLE_BOOL, "snapshot_id": NULLABLE_INT,
         "previous_snapshot_id": NULLABLE_INT},
    ),
    "snapshot_changes": Query(
        "The change events of the window that ended with one snapshot (:snapshot_id).",
        {"kind": STR, "protocol": STR, "start": NULLABLE_INT, "end": NULLABLE_INT,
         "previous_start": NULLABLE_INT, "previous_end": NULLABLE_INT, "at": UTC,
         "previous_at": UTC},
    ),
    "event_causes": Query(
        "Each change event's candidate causes (v_event_causes).",
        {"event_id": INT, "kind": STR, "cause": STR, "detail": STR, "at": UTC,
         "cause_at": UTC},
    ),
    "candidate_causes": Query(
        "Every stored candidate cause, with its host's name.",
        _CAUSE,
    ),
    "host_causes": Query(
        "The stored candidate causes of one :host_id, with its name.",
        _CAUSE,
    ),
    "host_groups": Query(
        "Every host with its groups, as JSON text.",
        {"host_id": INT, "host": STR, "groups": STR},
    ),
    "evidence_spans": Query(
        "The state spans of some hosts (:ids) that read the excluded ranges or swept the ports, "
        "with the sets that say which ports were taken; snapshot_id is the span's last.",
        {"snapshot_id": INT, "host_id": INT, "first_at": UTC, "last_at": UTC, "nights": INT,
         "excluded_set_id": NULLABLE_INT, "bind_failure_set_id": NULLABLE_INT,
         "listener_set_id": NULLABLE_INT},
    ),
    "evidence_days": Query(
        "The days (UTC, YYYY-MM-DD) on which some hosts (:ids) had a snapshot that read the "
        "excluded ranges or swept the ports.",
        {"day": STR},
    ),
    "tcp_dynamic_spans": Query(
        "The distinct TCP dynamic ranges of some hosts' (:ids) evidence; no start: one missed.",
        {"family": STR, "start": NULLABLE_INT, "count": NULLABLE_INT},
    ),
    "tcp_excluded_spans": Query(
        "The TCP ports the excluded ranges of some hosts' (:ids) evidence covered.",
        {"start": INT, "end": INT},
    ),
    "tcp_failure_spans": Query(
        "The TCP ports some hosts' (:ids) evidence had failing.", {"start": INT, "end": INT}
    ),
    "tcp_listener_spans": Query(
        "The TCP ports the listeners of some hosts' (:ids) evidence held.",
        {"start": INT, "end": INT},
    ),
    "fleet_spans": Query(
        "Every state span (a host's run of nights with the same sets): its host, first "
        "snapshot, times, nights, finding set and whether it swept the ports.",
        {"span_id": INT, "host_id": INT, "host": STR, "first_snapshot_id": INT,
         "first_at": UTC, "last_at": UTC, "nights": INT, "finding_set_id": NULLABLE_INT,
         "swept": BOOL},
    ),
    "span_tails": Query(
        "Some state spans (:ids): their last night and the times of their nights within 30 "
        "days of it (microseconds before it, comma-separated).",
        {"span_id": INT, "last_at": UTC, "tail": STR},
    ),
    "fleet_ports_findings": Query(
        "The TCP findings of every finding set that cover any of up to eight ports (:p1-:p8).",
        {"set_id": INT, "protocol": STR, "family": STR, "start": INT, "end": INT,
         "diagnosis": STR, "error_code": NULLABLE_INT},
    ),
    "port_diagnoses": Query(
        "The finding sets whose IPv4 TCP findings put one :port at risk or reserve it.",
        {"set_id": INT, "diagnosis": STR},
    ),
    "fixes": Query(
        "Every fix, recorded or detected, with its host's name, oldest first.",
        {"id": INT, "key": STR, "host": STR, "host_id": INT, "source": STR, "action": STR,
         "start_port": INT, "end_port": INT, "applied_at": UTC, "recorded_by": NULLABLE_STR,
         "note": NULLABLE_STR},
    ),
    "fix_checks": Query(
        "How each fix held in each snapshot of its host taken at or after it.",
        {"fix_id": INT, "snapshot_id": INT, "taken_at": UTC, "outcome": STR,
         "port": NULLABLE_INT, "diagnosis": NULLABLE_STR},
    ),
    "failing_tries": Query(
        "The tries of each host in the collection runs since the last one that reached it.",
        {"id": INT, "run_id": INT, "host": STR, "status": STR, "error_class": NULLABLE_STR,
         "message": NULLABLE_STR, "finished_at": UTC},
    ),
}
# fmt: on


def read(
    connection: Connection, name: str, ids: Sequence[int] | None = None, **params: Any
) -> pd.DataFrame:
    """Run the named query into a frame of its declared columns and kinds."""
    query = QUERIES[name]
    frame = read_frame(connection, sql(name), ids, **params)
    if list(frame.columns) != list(query.columns):
        raise ValueError(
            f"query {name!r} gave columns {list(frame.columns)}, not {list(query.columns)}"
        )
    converted = {c: to_utc(frame[c]) for c, kind in query.columns.items() if kind == UTC}
    return conform(frame.assign(**converted) if converted else frame, query.columns)


def conform(frame: pd.DataFrame, columns: Mapping[str, Kind]) -> pd.DataFrame:
    """Give each of ``columns`` the dtype of its kind where it has another.

    SQLite's 0/1 flags, NULLs read as NaN, an empty frame's object columns: each is cast once.
    A cast that cannot hold (a NULL in an ``INT`` column) raises instead of guessing.
    """
    cast: dict[str, Any] = {
        column: _DTYPES.get(kind, object)
        for column, kind in columns.items()
        if not holds(kind, frame[column])
    }
    return frame.astype(cast) if cast else frame


def holds(kind: Kind, column: pd.Series) -> bool:
    """Tell whether ``column`` has the dtype of ``kind`` (lists: a list in every cell)."""
    dtype = column.dtype
    if kind == UTC:
        return isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"
    if kind in _DTYPES:
        return bool(dtype == _DTYPES[kind])
    if kind == LIST:
        return pd.api.types.is_object_dtype(dtype) and all(isinstance(v, list) for v in column)
    return pd.api.types.is_string_dtype(dtype)


@cache
def sql(name: str) -> str:
    """Return the SQL of a named query, from the package's ``sql`` folder."""
    if name not in QUERIES:
        raise KeyError(f"no query named {name!r}")
    return (resources.files("reports") / "sql" / f"{name}.sql").read_text(encoding="utf-8")
