"""Build everything the report shows from the store, read-only, in one transaction.

``build_report_data`` fills every frame of ``reports.model``. Besides the contract's columns some
frames carry extras: ``hosts`` has ``winnat`` (the service status) and ``hyperv`` is the feature
state as read (``Enabled``, ``Disabled``…, empty when not read) while ``wsl`` is the WSL version;
``reserved_ports`` counts the TCP ports in excluded ranges ('*' or not), empty when the ranges
were not captured. ``port_map`` has ``protocol``; ``failed_attempts`` has ``source`` and covers
the ``RECENT_DAYS`` before ``now``. The work reads whole tables a few times (no query per host)
and stays on ranges: ``failures`` too has one row per failing range, not per port.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from collector.diagnosis import Diagnosis, PortStatus, describe_holder
from collector.store.database import Store
from collector.windows import RUNTIME_OWNER
from reports import tables
from reports.attention import PortHistory, build_attention, port_runs, protected_ports
from reports.correlation import correlate_fleet, load_reservations
from reports.events import load_causes, load_events
from reports.findings import (
    SnapshotState,
    build_wanted_matrix,
    failing,
    failure_ranges,
    latest_snapshots,
    load_state,
    tcp4_dynamic,
)
from reports.fixes import fix_history
from reports.model import COLUMNS, WANTED_SOURCES, ReportData, typed
from reports.odds import at_risk_odds
from reports.remediation import plan_remediation
from reports.safeports import find_safe_ports

RECENT_DAYS = 7.0
DEFAULT_STALE_DAYS = 3.0


def build_report_data(
    store: Store,
    wanted_ports: Sequence[int],
    now: datetime | None = None,
    stale_after_days: float = DEFAULT_STALE_DAYS,
    wanted_services: Mapping[int, str] | None = None,
    wanted_source: str = "config",
) -> ReportData:
    """Read the store and return every frame the report renders (``now`` naive means UTC).

    ``wanted_services`` names the process that serves a wanted port: a port it holds is fine;
    ``wanted_source`` says where the wanted ports came from (``reports.model.WANTED_SOURCES``).
    """
    if wanted_source not in WANTED_SOURCES:
        raise ValueError(f"wanted ports come from one of {WANTED_SOURCES}, not {wanted_source!r}")
    now = now or datetime.now(UTC)
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    ports = tuple(sorted({int(p) for p in wanted_ports}))
    with store.connect() as connection:
        causes = load_causes(connection)
        reservations = load_reservations(connection)
        correlation = correlate_fleet(connection, causes, reservations=reservations)
        events = load_events(connection)
        latest = latest_snapshots(connection)
        state = load_state(connection, latest["snapshot_id"].tolist())
        attempts = tables.read(connection, "attempts")
        names = tables.read(connection, "hosts")
        fixes = tuple(fix_history(connection))
        history = PortHistory.read(connection, ports)
        protected = protected_ports(reservations, ports)
    runs = port_runs(history)
    hosts = _hosts(names, state, attempts, now, stale_after_days)
    wanted = build_wanted_matrix(state, ports, wanted_services)
    wanted = _with_unseen(wanted, hosts, ports)
    segments = failing(state)
    remediation = plan_remediation(wanted, hosts)
    risky = sorted({int(p) for p in wanted.loc[wanted["status"] == PortStatus.AT_RISK, "port"]})
    odds = at_risk_odds(store, risky, history) if risky else {}
    safe = find_safe_ports(store, None, ports) if not latest.empty else None
    ranked = correlation[correlation["rank"].notna()]
    ranks = {
        (str(kind), str(cause)): int(rank)
        for kind, cause, rank in zip(ranked["cause_kind"], ranked["cause"], ranked["rank"],
                                     strict=True)
    }  # fmt: skip
    attention = build_attention(runs, wanted, hosts, events, causes, ranks, remediation, odds,
                                stale_after_days, protected)  # fmt: skip
    return ReportData(
        generated_at=now,
        database=store.name,
        wanted_ports=ports,
        wanted_source=wanted_source,
        stale_days=stale_after_days,
        safe_ports=safe if safe is not None and safe.host_nights else None,
        odds=tuple(item for port in risky for item in odds[port]),
        attention=typed("attention", attention),
        hosts=typed("hosts", hosts.loc[:, [*COLUMNS["hosts"], "winnat", "host_state"]]),
        failed_attempts=typed("failed_attempts", _failed_attempts(attempts, now)),
        failures=typed("failures", failure_ranges(segments).sort_values(
            ["host", "protocol", "family", "start"], ignore_index=True)),
        wanted=typed("wanted", wanted.sort_values(["host", "port"], ignore_index=True)),
        port_map=typed("port_map", _port_map(state, segments)),
        events=typed("events", events),
        correlation=typed("correlation", correlation),
        remediation=typed("remediation", remediation),
        fixes=fixes,
    )  # fmt: skip


def _hosts(
    names: pd.DataFrame,
    state: SnapshotState,
    attempts: pd.DataFrame,
    now: datetime,
    stale_after_days: float,
) -> pd.DataFrame:
    """One row per known host: latest snapshot facts, freshness and attempt record."""
    meta = state.meta
    frame = names.merge(
        meta[["host_id", "snapshot_id", "taken_at", "os_build", "last_boot_at", "hyperv",
              "wsl_version", "docker_version", "excluded_known", "winnat", "swept",
              "host_state"]],
        on="host_id", how="left",
    ).rename(columns={"wsl_version": "wsl"})  # fmt: skip
    dynamic = tcp4_dynamic(state).rename(
        columns={"start": "dynamic_start", "count": "dynamic_count"}
    )
    frame = frame.merge(
        dynamic[["snapshot_id", "dynamic_start", "dynamic_count"]], on="snapshot_id", how="left"
    )
    fails = state.findings[state.findings["error_code"].notna()]
    failing = (fails["end"] - fails["start"] + 1).groupby(fails["snapshot_id"]).sum()
    tcp = state.excluded[state.excluded["protocol"] == "tcp"]
    reserved = (tcp["end"] - tcp["start"] + 1).groupby(tcp["snapshot_id"]).sum()
    frame["failing_ports"] = frame["snapshot_id"].map(failing)
    swept = frame["swept"].eq(True)
    frame.loc[swept, "failing_ports"] = frame.loc[swept, "failing_ports"].fillna(0)
    frame["reserved_ports"] = frame["snapshot_id"].map(reserved)
    known = frame["excluded_known"].eq(True)
    frame.loc[known, "reserved_ports"] = frame.loc[known, "reserved_ports"].fillna(0)
    counts = ("snapshot_id", "dynamic_start", "dynamic_count", "failing_ports", "reserved_ports")
    frame = frame.astype(dict.fromkeys(counts, "Int64"))
    frame["excluded_known"] = frame["excluded_known"].astype("boolean")
    age = pd.Timestamp(now) - frame["taken_at"]
    frame["days_since_snapshot"] = age.dt.total_seconds() / 86400
    frame["stale"] = ~(frame["days_since_snapshot"] <= stale_after_days)
    ordered = attempts.sort_values(["started_at", "id"])
    last = ordered.groupby("host_id").tail(1).set_index("host_id")
    # reindex, not map: map refuses an empty frame of times (a store with no attempt yet).
    last = last.reindex(frame["host_id"].to_numpy())
    for column, source in (
        ("last_attempt_at", "started_at"),
        ("last_status", "status"),
        ("last_error_class", "error_class"),
        ("last_message", "message"),
    ):
        frame[column] = last[source].array  # fmt: skip
    # Failures in a row since the last attempt that got something.
    good = ordered["status"] != "failed"
    streak = good.groupby(ordered["host_id"]).cumsum()
    trailing = ordered[streak == streak.groupby(ordered["host_id"]).transform("max")]
    failed = (trailing["status"] == "failed").groupby(trailing["host_id"]).sum()
    frame["failed_attempts"] = frame["host_id"].map(failed).fillna(0).astype("int64")
    return frame.sort_values("host", ignore_index=True)


def _with_unseen(wanted: pd.DataFrame, hosts: pd.DataFrame, ports: Sequence[int]) -> pd.DataFrame:
    """Add ``unknown`` cells for the hosts that have no snapshot at all."""
    unseen = hosts.loc[hosts["snapshot_id"].isna(), "host"]
    cells = pd.DataFrame(
        [(host, int(port)) for host in unseen for port in sorted(set(ports))],
        columns=["host", "port"],
    )
    if cells.empty:
        return wanted
    cells = cells.assign(
        status="unknown",
        classification="unknown",
        evidence="no snapshot",
        reason="No snapshot of this host is stored yet.",
        serving=False,
        finding=None,
    )
    cells["fixes"] = [[] for _ in range(len(cells))]
    cells["snapshot_id"] = pd.Series(pd.NA, index=cells.index, dtype="Int64")
    cells["taken_at"] = pd.Series(pd.NaT, index=cells.index, dtype="datetime64[us, UTC]")
    return pd.concat([wanted, cells], ignore_index=True)


def _failed_attempts(attempts: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """Failed attempts of the last ``RECENT_DAYS``, newest first."""
    since = pd.Timestamp(now - timedelta(days=RECENT_DAYS))
    failed = attempts[(attempts["status"] == "failed") & (attempts["started_at"] >= since)]
    failed = failed.sort_values(["started_at", "id"], ascending=False)
    return failed.loc[:, [*COLUMNS["failed_attempts"], "source"]].reset_index(drop=True)


def _port_map(state: SnapshotState, segments: pd.DataFrame) -> pd.DataFrame:
    """One row per reserved or blocked range of each host's latest snapshot."""
    hosts = state.meta.set_index("snapshot_id")["host"]
    excluded = state.excluded.assign(host=state.excluded["snapshot_id"].map(hosts))
    ports = excluded["end"] - excluded["start"] + 1
    excluded["kind"] = np.where(excluded["administered"], "excluded-administered", "excluded")
    excluded["label"] = [
        f"{s}–{e} ({n} ports) reserved by an administrator ('*')" if admin
        else f"{s}–{e} ({n} ports) reserved at run time by {RUNTIME_OWNER}"
        for s, e, n, admin in zip(excluded["start"], excluded["end"], ports,
                                  excluded["administered"], strict=True)
    ]  # fmt: skip
    blocked = segments[segments["diagnosis"] != Diagnosis.RESERVED]
    blocked = blocked.drop_duplicates(["host", "protocol", "start", "end", "diagnosis"])
    labels = []
    for row in blocked[["start", "end", "diagnosis", "pid", "process"]].to_dict("records"):
        span = f"{row['start']}–{row['end']} ({row['end'] - row['start'] + 1} ports)"
        if row["diagnosis"] == Diagnosis.IN_USE:
            process = None if pd.isna(row["process"]) else row["process"]
            labels.append(f"{row['start']} held by {describe_holder(row['pid'], process)}")
        elif row["diagnosis"] == Diagnosis.PROBABLY_RESERVED:
            labels.append(f"{span} probably reserved (10013, no excluded ranges captured)")
        else:
            labels.append(f"{span} failing: {row['diagnosis']}")
    blocked = blocked.assign(kind=blocked["diagnosis"], label=labels)
    columns = [*COLUMNS["port_map"], "protocol"]
    parts = [frame.loc[:, columns] for frame in (excluded, blocked) if not frame.empty]
    if not parts:
        return pd.DataFrame({column: [] for column in columns})
    frame = pd.concat(parts, ignore_index=True)
    return frame.sort_values(["host", "protocol", "start"], ignore_index=True)
