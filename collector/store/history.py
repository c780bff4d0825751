"""Change events between consecutive snapshots of each host, and their candidate causes.

Derived once per snapshot, at the end of the run that stored it (``derive_history``, for the
snapshots ``collector.store.pending`` marks), into ``change_events`` and ``candidate_causes``;
the views ``v_change_events`` and ``v_event_causes``, ``explain`` and the report read those
tables. This module uses pandas: ``collect`` imports it only at its end.

Event kinds: ``range-appeared``, ``range-disappeared``, ``range-moved`` (a disappeared and an
appeared range of the same size, protocol and ``*`` flag in the same window, paired in port
order) and ``dynamic-changed``. Range events compare consecutive snapshots of a host whose
excluded ranges are known; dynamic events consecutive snapshots with that dynamic range known.
A night without a snapshot, or one that could not read those ranges, widens the window.
IPv4 and IPv6 print the same exclusions (facts C), so ranges are compared with families merged.

``causes`` is a **list of dicts**, oldest first, each ``{"kind", "cause", "detail", "at"}``:
``kind`` is ``update``, ``reboot``, ``fast-startup``, ``feature``, ``service``, ``docker``,
``wsl``, ``bios`` or ``dynamic-range``; ``cause`` names it as the fleet correlation does (a KB,
``Docker 4.44.0``, ``Microsoft-Hyper-V Enabled``, ``BIOS update``…); ``at`` is an ISO time when
the host said when it happened (install time, boot time), else None. A window's causes are what
was first seen in it: updates whose install time falls in it (or, without one, whose
``first_snapshot_id`` ends it), boots (``last_boot_at`` changed by more than a minute), fast
startup, feature, service, Docker, WSL, BIOS and dynamic range changes. Updates a host already
had at its first snapshot are its baseline, never a cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, delete, insert, select, text

from collector.store.frames import read_frame, to_utc
from collector.store.models import CandidateCause, ChangeEvent, Snapshot

# The columns the report's events frame shows (reports.model takes them from here)...
REPORT_EVENT_COLUMNS = (
    "host", "kind", "at", "previous_at", "protocol", "start", "end", "previous_start",
    "previous_end", "ports", "causes",
)  # fmt: skip
# ...then what explain, the correlation and SQL also need.
EVENT_COLUMNS = (
    *REPORT_EVENT_COLUMNS, "family", "administered", "snapshot_id", "previous_snapshot_id",
)  # fmt: skip
CAUSE_COLUMNS = (
    "host_id", "host", "snapshot_id", "seen_at", "window_start", "cause_at", "kind", "cause",
    "detail", "at", "exposure",
)  # fmt: skip
_BOOT_JITTER = timedelta(minutes=1)
_FAILED_RESULTS = (4, 5)

# The snapshots to derive, and before each host's first of them its latest derived snapshot
# and its latest derived one that captured each compared set: every comparison's previous side.
_COLUMNS = """s.id AS snapshot_id, s.host_id, h.name AS host, s.taken_at, s.last_boot_at,
       s.fast_startup, s.bios_version, s.docker_version, s.wsl_version, s.excluded_set_id,
       s.dynamic_set_id, s.feature_set_id, s.service_set_id"""
_PENDING = f"""
SELECT {_COLUMNS}, 1 AS pending
  FROM snapshots s JOIN hosts h ON h.id = s.host_id
 WHERE s.history_pending IS NOT NULL"""
_LATEST = """(SELECT d.{select} FROM snapshots d
           WHERE d.host_id = p.host_id AND d.history_pending IS NULL{known}
           ORDER BY d.taken_at DESC, d.id DESC LIMIT 1)"""
_KNOWN = ("", "excluded_set_id", "dynamic_set_id", "feature_set_id", "service_set_id")
_DUE = """(SELECT DISTINCT host_id FROM snapshots WHERE history_pending IS NOT NULL) p"""
_CONTEXT = f"""
SELECT {_COLUMNS}, 0 AS pending
  FROM snapshots s JOIN hosts h ON h.id = s.host_id
 WHERE s.id IN ({
    " UNION ".join(
        f"SELECT {_LATEST.format(select='id', known=f' AND d.{k} IS NOT NULL' if k else '')} "
        f"FROM {_DUE}"
        for k in _KNOWN
    )
})"""
_FIRST = f"""
SELECT p.host_id, (SELECT MIN(f.taken_at) FROM snapshots f WHERE f.host_id = p.host_id)
       AS first_at
  FROM {_DUE}"""
_RANGES = """SELECT DISTINCT set_id, protocol, start_port AS start, end_port AS "end", administered
  FROM excluded_ranges WHERE set_id IN :ids"""
_DYNAMIC = """SELECT set_id, protocol, family, start_port AS start, port_count AS count
  FROM dynamic_ranges WHERE set_id IN :ids"""
_FEATURES = "SELECT set_id, name, state AS value FROM features WHERE set_id IN :ids"
_SERVICES = "SELECT set_id, name, status AS value FROM services WHERE set_id IN :ids"
# The updates first listed by a snapshot being derived: each is a candidate cause once.
_UPDATES = """SELECT u.host_id, u.kb, u.title, u.installed_at, u.installed_on, u.result_code,
       u.first_snapshot_id
  FROM updates u JOIN snapshots s ON s.id = u.first_snapshot_id
 WHERE s.history_pending IS NOT NULL"""


_BATCH = 5000


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What ``derive_history`` stored."""

    events: int
    causes: int


@dataclass(frozen=True, slots=True)
class History:
    """The snapshots being derived, the ones each is compared with, and what they hold."""

    # sorted by host and time, with previous_snapshot_id / previous_at; ``pending`` marks the
    # snapshots being derived, the others are the derived ones they are compared with
    snapshots: pd.DataFrame
    first_at: pd.Series  # host_id -> the host's first snapshot's time
    ranges: pd.DataFrame  # set_id, protocol, start, end, administered (families merged)
    dynamic: pd.DataFrame  # dynamic range changes
    features: pd.DataFrame  # feature state changes
    services: pd.DataFrame  # service status changes
    updates: pd.DataFrame


def load_history(connection: Connection) -> History:
    """Read the pending snapshots and what they are compared with, in a handful of queries."""
    snapshots = pd.concat(
        [read_frame(connection, _PENDING), read_frame(connection, _CONTEXT)], ignore_index=True
    ).astype({"snapshot_id": "int64", "host_id": "int64"})
    for column in ("taken_at", "last_boot_at"):
        snapshots[column] = to_utc(snapshots[column])
    snapshots["fast_startup"] = snapshots["fast_startup"].astype("boolean")
    snapshots["pending"] = snapshots["pending"].astype(bool)
    snapshots = snapshots.sort_values(["host_id", "taken_at", "snapshot_id"], ignore_index=True)
    grouped = snapshots.groupby("host_id", sort=False)
    snapshots["previous_snapshot_id"] = grouped["snapshot_id"].shift().astype("Int64")
    snapshots["previous_at"] = grouped["taken_at"].shift()
    first = read_frame(connection, _FIRST)
    first_at = pd.Series(to_utc(first["first_at"]).to_numpy(), index=first["host_id"])
    ranges = read_frame(connection, _RANGES, _set_ids(snapshots, "excluded_set_id"))
    ranges["administered"] = ranges["administered"].astype(bool)
    updates = read_frame(connection, _UPDATES)
    updates["installed_at"] = to_utc(updates["installed_at"])
    changed = {
        column: _set_changes(
            snapshots, column, read_frame(connection, sql, _set_ids(snapshots, column)), keys,
            values,
        )
        for column, sql, keys, values in (
            ("dynamic_set_id", _DYNAMIC, ("protocol", "family"), ("start", "count")),
            ("feature_set_id", _FEATURES, ("name",), ("value",)),
            ("service_set_id", _SERVICES, ("name",), ("value",)),
        )
    }  # fmt: skip
    dynamic, features, services = changed.values()
    return History(snapshots, first_at, ranges, dynamic, features, services, updates)


def _set_ids(snapshots: pd.DataFrame, column: str) -> list[int]:
    return [int(value) for value in snapshots[column].dropna().unique()]


def _windows(snapshots: pd.DataFrame, column: str) -> pd.DataFrame:
    """Pair each pending snapshot that captured ``column`` with the host's previous such one.

    Only pairs whose set changed: an unchanged set holds no change.
    """
    frame = snapshots.loc[
        snapshots[column].notna(), ["host_id", "host", "snapshot_id", "taken_at", column, "pending"]
    ]
    grouped = frame.groupby("host_id", sort=False)
    frame["previous_snapshot_id"] = grouped["snapshot_id"].shift()
    frame["previous_at"] = grouped["taken_at"].shift()
    frame["previous_set_id"] = grouped[column].shift()
    changed = frame["pending"] & frame["previous_set_id"].notna()
    changed &= frame["previous_set_id"] != frame[column]
    frame = frame[changed].drop(columns="pending").rename(columns={"taken_at": "at"})
    return frame.astype({"previous_snapshot_id": "int64", "previous_set_id": "int64",
                         column: "int64"}).reset_index(drop=True)  # fmt: skip


def _set_changes(
    snapshots: pd.DataFrame,
    column: str,
    rows: pd.DataFrame,
    keys: tuple[str, ...],
    values: tuple[str, ...],
) -> pd.DataFrame:
    """Return the rows (by ``keys``) whose ``values`` differ from the host's previous capture.

    Each pending snapshot's set of ``column`` is compared with the one of the host's previous
    snapshot that captured it; a key missing from either side is not compared. The previous
    values come as ``previous_<value>``.
    """
    pairs = _windows(snapshots, column)[
        ["snapshot_id", "previous_snapshot_id", column, "previous_set_id"]
    ]
    rows = rows.astype({"set_id": "int64"})
    before = {value: f"previous_{value}" for value in values}
    now = pairs.merge(rows, left_on=column, right_on="set_id")
    both = now.merge(rows.rename(columns=before), left_on=["previous_set_id", *keys],
                     right_on=["set_id", *keys])  # fmt: skip
    changed = np.logical_or.reduce([both[value] != both[previous]
                                    for value, previous in before.items()])  # fmt: skip
    columns = ["snapshot_id", "previous_snapshot_id", *keys, *values, *before.values()]
    return both.loc[changed, columns].reset_index(drop=True)


def find_range_events(history: History) -> pd.DataFrame:
    """Return appeared, disappeared and moved ranges between consecutive known snapshots."""
    pairs = _windows(history.snapshots, "excluded_set_id")
    pairs["pair"] = np.arange(len(pairs))
    side = ["pair", "protocol", "start", "end", "administered"]

    def ranges_of(column: str) -> pd.DataFrame:
        sets = pairs[["pair", column]].astype("int64")
        return sets.merge(history.ranges, left_on=column, right_on="set_id").loc[:, side]

    both = ranges_of("excluded_set_id").merge(
        ranges_of("previous_set_id"), on=side, how="outer", indicator=True
    )
    keys = ["pair", "protocol", "administered", "ports", "rank"]

    def ranked(which: str) -> pd.DataFrame:
        frame = both.loc[both["_merge"] == which, side].copy()
        frame["ports"] = frame["end"] - frame["start"] + 1
        frame = frame.sort_values(["pair", "protocol", "administered", "ports", "start"])
        frame["rank"] = frame.groupby(keys[:-1], sort=False).cumcount()
        return frame

    new, old = ranked("left_only"), ranked("right_only")
    old = old.rename(columns={"start": "previous_start", "end": "previous_end"})
    matched = new.merge(old, on=keys, how="outer", indicator="side")
    matched["kind"] = matched["side"].map(
        {"both": "range-moved", "left_only": "range-appeared", "right_only": "range-disappeared"}
    )
    events = matched.merge(pairs.drop(columns=["excluded_set_id", "previous_set_id"]), on="pair")
    events["family"] = None
    return events.drop(columns=["pair", "rank", "side"])


def find_dynamic_events(history: History) -> pd.DataFrame:
    """Return dynamic range changes between consecutive snapshots that captured that range."""
    changes = history.dynamic.merge(
        history.snapshots[["snapshot_id", "host_id", "host", "taken_at"]], on="snapshot_id"
    )
    previous = history.snapshots[["snapshot_id", "taken_at"]].rename(
        columns={"snapshot_id": "previous_snapshot_id", "taken_at": "previous_at"}
    )
    changes = changes.merge(previous, on="previous_snapshot_id").rename(columns={"taken_at": "at"})
    changes["end"] = changes["start"] + changes["count"] - 1
    changes["previous_end"] = changes["previous_start"] + changes["previous_count"] - 1
    # IPv6 usually mirrors IPv4: one event when both moved the same way.
    same = ["snapshot_id", "protocol", "start", "count", "previous_start", "previous_count"]
    changes = changes.sort_values("family").drop_duplicates(same)
    changes = changes.assign(kind="dynamic-changed", ports=changes["count"], administered=None)
    return changes.drop(columns=["count", "previous_count"])


def list_causes(history: History) -> pd.DataFrame:
    """Return every candidate cause, with the snapshot that first shows it (see module doc)."""
    snapshots = history.snapshots
    parts = [_update_causes(history), _snapshot_causes(snapshots)]
    for frame, kind in ((history.features, "feature"), (history.services, "service")):
        turned = frame["previous_value"] + " → " + frame["value"]
        parts.append(
            pd.DataFrame(
                {
                    "snapshot_id": frame["snapshot_id"],
                    "kind": kind,
                    "cause": frame["name"] + " " + frame["value"],
                    "detail": frame["name"] + ": " + turned,
                    "at": pd.NaT,
                }
            )
        )
    dynamic = history.dynamic
    parts.append(
        pd.DataFrame(
            {
                "snapshot_id": dynamic["snapshot_id"],
                "kind": "dynamic-range",
                "cause": "dynamic range changed",
                "detail": [
                    f"{r['protocol']} {r['family']}: {r['previous_start']}+{r['previous_count']} "
                    f"→ {r['start']}+{r['count']}"
                    for r in dynamic.to_dict("records")
                ],
                "at": pd.NaT,
            }
        )
    )
    causes = pd.concat([p for p in parts if not p.empty] or parts[:1], ignore_index=True)
    causes["at"] = pd.to_datetime(causes["at"], utc=True)
    if "exposure" not in causes:
        causes["exposure"] = True
    causes["exposure"] = causes["exposure"].fillna(True).astype(bool)
    pending = snapshots[snapshots["pending"]]
    window = pending[["snapshot_id", "host_id", "host", "taken_at", "previous_at"]]
    causes = causes.merge(window, on="snapshot_id").rename(
        columns={"taken_at": "seen_at", "previous_at": "window_start"}
    )
    causes = causes[causes["window_start"].notna()]
    causes["cause_at"] = causes["at"].fillna(causes["window_start"])
    return causes.loc[:, list(CAUSE_COLUMNS)].reset_index(drop=True)


def _update_causes(history: History) -> pd.DataFrame:
    snapshots = history.snapshots
    first = history.first_at.rename("first_at")
    updates = history.updates.merge(first, left_on="host_id", right_index=True)
    listed = snapshots[["snapshot_id", "taken_at"]].rename(
        columns={"snapshot_id": "first_snapshot_id", "taken_at": "listed_at"}
    )
    updates = updates.merge(listed, on="first_snapshot_id").reset_index(drop=True)
    updates["row"] = np.arange(len(updates))
    # With an install time after the first snapshot, the window is the first snapshot at or
    # after it, never later than the one that first listed it; otherwise that one. (The
    # listing snapshot bounds it, so a new night never moves a cause already derived.)
    timed = updates[
        (updates["installed_at"] > updates["first_at"])
        & (updates["installed_at"] <= updates["listed_at"])
    ].sort_values("installed_at")
    # An empty selection comes back with object columns, which merge_asof refuses to match.
    timed = timed.astype({"host_id": "int64", "installed_at": "datetime64[us, UTC]"})
    located = pd.merge_asof(
        timed[["row", "host_id", "installed_at"]],
        snapshots[["host_id", "taken_at", "snapshot_id"]].sort_values("taken_at"),
        left_on="installed_at",
        right_on="taken_at",
        by="host_id",
        direction="forward",
    ).dropna(subset=["snapshot_id"])
    window = pd.Series(located["snapshot_id"].to_numpy(), index=located["row"].to_numpy())
    updates["snapshot_id"] = updates["row"].map(window).fillna(updates["first_snapshot_id"])
    failed = updates["installed_at"].isna() & updates["result_code"].isin(_FAILED_RESULTS)
    name = updates["kb"].fillna(updates["title"]).fillna("update without KB or title")
    detail = updates["title"].fillna(updates["kb"]).fillna("")
    return pd.DataFrame(
        {
            "snapshot_id": updates["snapshot_id"].astype("int64"),
            "kind": "update",
            "cause": name,
            "detail": detail.where(~failed, detail + " (install failed)"),
            "at": updates["installed_at"],
            "exposure": ~failed,
        }
    )


def _snapshot_causes(snapshots: pd.DataFrame) -> pd.DataFrame:
    """Boots, fast startup, BIOS, Docker and WSL changes between consecutive snapshots."""
    grouped = snapshots.groupby("host_id", sort=False)
    rows: list[dict[str, Any]] = []
    boot, previous_boot = snapshots["last_boot_at"], grouped["last_boot_at"].shift()
    rebooted = ((boot - previous_boot).abs() > _BOOT_JITTER).fillna(False)
    for row in snapshots[rebooted].to_dict("records"):
        fast = {True: "on", False: "off"}.get(row["fast_startup"], "unknown")
        detail = f"booted {row['last_boot_at']:%Y-%m-%d %H:%M} UTC; fast startup {fast}"
        rows.append({"snapshot_id": row["snapshot_id"], "kind": "reboot", "cause": "reboot",
                     "detail": detail, "at": row["last_boot_at"]})  # fmt: skip
    kinds = {"fast_startup": "fast-startup", "bios_version": "bios", "docker_version": "docker",
             "wsl_version": "wsl"}  # fmt: skip
    for column, kind in kinds.items():
        old = grouped[column].shift()
        changed = (snapshots[column].notna() & old.notna() & (snapshots[column] != old)).fillna(
            False
        )
        for snapshot_id, before, after in zip(
            snapshots.loc[changed, "snapshot_id"], old[changed], snapshots.loc[changed, column],
            strict=True,
        ):  # fmt: skip
            rows.append({"snapshot_id": snapshot_id, "kind": kind, "cause": _name(kind, after),
                         "detail": f"{before} → {after}", "at": pd.NaT})  # fmt: skip
    return pd.DataFrame(rows, columns=["snapshot_id", "kind", "cause", "detail", "at"])


def _name(kind: str, value: Any) -> str:
    """Name a change of a snapshot fact as the correlation counts it."""
    if kind == "fast-startup":
        return f"fast startup turned {'on' if value else 'off'}"
    return {"bios": "BIOS update", "docker": f"Docker {value}", "wsl": f"WSL {value}"}[kind]


def _fold_moves(events: pd.DataFrame) -> pd.DataFrame:
    """Merge the blocks one reboot moved on one host into one event spanning them.

    Every full boot moves every WinNAT block: listed one by one, a fleet of 1,000 hosts over
    90 nights gives hundreds of thousands of moves that say one thing each: "it rebooted".
    """
    moved = events["kind"] == "range-moved"
    if not moved.any():
        return events
    spans = {
        "start": "min", "end": "max", "previous_start": "min", "previous_end": "max", "ports": "sum"
    }  # fmt: skip
    keys = [c for c in events.columns if c not in spans]
    folded = events[moved].groupby(keys, dropna=False, sort=False, as_index=False).agg(spans)
    return pd.concat([events[~moved], folded.loc[:, list(events.columns)]], ignore_index=True)


def derive_events(history: History) -> pd.DataFrame:
    """Return every change event, oldest first (``EVENT_COLUMNS`` without ``causes``)."""
    parts = [p for p in (find_range_events(history), find_dynamic_events(history)) if not p.empty]
    columns = [c for c in EVENT_COLUMNS if c != "causes"]
    if not parts:
        return pd.DataFrame({column: [] for column in [*columns, "host_id"]})
    events = _fold_moves(pd.concat(parts, ignore_index=True))
    for column in ("start", "end", "previous_start", "previous_end", "ports", "snapshot_id",
                   "previous_snapshot_id"):  # fmt: skip
        events[column] = events[column].astype("Int64")
    order = {"range-disappeared": 0, "range-moved": 1, "range-appeared": 2, "dynamic-changed": 3}
    events["_order"] = events["kind"].map(order)
    events = events.sort_values(["host", "at", "_order", "start", "previous_start"])
    return events.loc[:, [*columns, "host_id"]].reset_index(drop=True)


# Advisory lock key of deriving the history and of ``db prune`` ("pf" 3), on PostgreSQL.
_PG_HISTORY_LOCK = {"space": 0x70660003, "key": 0}


def history_lock(connection: Connection) -> None:
    """Hold, until the caller's transaction ends, the lock deriving and pruning share.

    On PostgreSQL a run's end could otherwise derive events from snapshots ``db prune`` is
    removing; SQLite's write lock serialises them already.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:space, :key)"), _PG_HISTORY_LOCK)


def derive_history(connection: Connection) -> Refreshed:
    """Store the change events and candidate causes that the pending snapshots bring.

    They are derived data, like the findings: a run that stored snapshots calls this once at
    its end, for its new snapshots (``collector.store.derived.derive_pending``), and every
    output reads the tables. A host derived again (every snapshot pending) loses its old rows
    first.
    """
    pending = select(Snapshot.id).where(Snapshot.history_pending.is_not(None))
    connection.execute(delete(ChangeEvent).where(ChangeEvent.snapshot_id.in_(pending)))
    connection.execute(delete(CandidateCause).where(CandidateCause.snapshot_id.in_(pending)))
    history = load_history(connection)
    if not history.snapshots["pending"].any():
        return Refreshed(0, 0)
    causes = list_causes(history)
    events = derive_events(history)
    event_rows = [
        {"host_id": int(row["host_id"]), "snapshot_id": int(row["snapshot_id"]),
         "previous_snapshot_id": int(row["previous_snapshot_id"]), "kind": row["kind"],
         "protocol": row["protocol"],
         "family": None if pd.isna(row["family"]) else str(row["family"]),
         "start_port": _int(row["start"]),
         "end_port": _int(row["end"]), "previous_start": _int(row["previous_start"]),
         "previous_end": _int(row["previous_end"]), "ports": _int(row["ports"]),
         "administered": None if pd.isna(row["administered"]) else bool(row["administered"])}
        for row in events.to_dict("records")
    ]  # fmt: skip
    cause_rows = [
        {"host_id": int(row["host_id"]), "snapshot_id": int(row["snapshot_id"]),
         "kind": row["kind"], "cause": str(row["cause"])[:255], "detail": str(row["detail"]),
         "at": _moment(row["at"]), "cause_at": _moment(row["cause_at"]),
         "seen_at": _moment(row["seen_at"]), "window_start": _moment(row["window_start"]),
         "exposure": bool(row["exposure"])}
        for row in causes.to_dict("records")
    ]  # fmt: skip
    for model, rows in ((ChangeEvent, event_rows), (CandidateCause, cause_rows)):
        for start in range(0, len(rows), _BATCH):
            connection.execute(insert(model), rows[start : start + _BATCH])
    return Refreshed(len(event_rows), len(cause_rows))


def _int(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)


def _moment(value: Any) -> datetime | None:
    return None if pd.isna(value) else pd.Timestamp(value).to_pydatetime()
