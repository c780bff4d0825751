"""Read the stored diagnosis: findings of snapshots, and the answer for one port of one host.

Nothing here classifies. ``collector.diagnosis`` did, when each snapshot was stored; this module
reads its findings (``findings`` table) and picks, for a port, the finding that covers it — one
that failed before one that did not, IPv4 before IPv6 — or says ``free`` / ``unknown`` where
none does. ``answer_port`` is the one place that turns findings into a port's answer, and the
wanted-ports matrix, ``explain`` and the agreement test all call it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine

from collector.diagnosis import (
    Diagnosis,
    HostState,
    PortStatus,
    absent_reason,
    describe_dynamic,
    describe_holder,
    host_state,
    serves,
    status_of,
)
from collector.store.frames import read_frame, to_ints, to_utc
from reports.model import COLUMNS

# The latest snapshot of each host is what v_latest_snapshots says, nowhere else.
_LATEST = "SELECT host_id, snapshot_id FROM v_latest_snapshots"
_META = """
SELECT s.id AS snapshot_id, s.host_id, h.name AS host, s.taken_at, s.source, s.os_build,
       s.last_boot_at, s.docker_version, s.wsl_version, s.excluded_set_id,
       s.bind_failure_set_id, s.listener_set_id, s.finding_set_id
  FROM snapshots s JOIN hosts h ON h.id = s.host_id
 WHERE s.id IN :ids"""
_FEATURES = "SELECT snapshot_id, name, state FROM features WHERE snapshot_id IN :ids"
_SERVICES = "SELECT snapshot_id, name, status FROM services WHERE snapshot_id IN :ids"
_FINDINGS = """
SELECT set_id, protocol, family, start_port AS start, end_port AS "end", diagnosis, reason,
       dynamic_start, dynamic_end, dynamic_captured, in_dynamic, error_code, administered,
       range_start, range_end, block_start, block_end, pid, process, holder, fixes
  FROM findings WHERE set_id IN :ids ORDER BY id"""
_EXCLUDED = """SELECT DISTINCT set_id, protocol, start_port AS start, end_port AS "end",
       administered FROM excluded_ranges WHERE set_id IN :ids"""
_DYNAMIC = """SELECT snapshot_id, protocol, family, start_port AS start, port_count AS count
  FROM dynamic_ranges WHERE snapshot_id IN :ids"""
# The wanted frame's columns besides the report's: what remediation and explain also need.
WANTED_EXTRAS = ("snapshot_id", "finding")
_NULLABLE = ("error_code", "range_start", "range_end", "block_start", "block_end", "pid")


@dataclass(frozen=True, slots=True)
class SnapshotState:
    """What some snapshots say; ``meta`` has one row per snapshot, the rest point at it."""

    meta: pd.DataFrame
    findings: pd.DataFrame  # one row per finding, with snapshot_id
    excluded: pd.DataFrame  # families merged, for the port map and the reserved-port count
    dynamic: pd.DataFrame


@dataclass(frozen=True, slots=True)
class PortAnswer:
    """The answer for one TCP port of one host's snapshot."""

    status: PortStatus
    classification: str
    reason: str
    evidence: tuple[str, ...]
    fixes: tuple[str, ...]
    finding: Mapping[str, Any] | None
    serving: bool = False  # held by the service the config says wants it


def latest_snapshots(connection: Connection) -> pd.DataFrame:
    """Return each host's latest snapshot id (host_id, snapshot_id)."""
    return read_frame(connection, _LATEST)


def load_state(connection: Connection, snapshot_ids: Sequence[int]) -> SnapshotState:
    """Read the findings, excluded ranges and dynamic ranges of some snapshots."""
    meta = read_frame(connection, _META, snapshot_ids)
    for column in ("taken_at", "last_boot_at"):
        meta[column] = to_utc(meta[column])
    meta["excluded_known"] = meta["excluded_set_id"].notna()
    meta["swept"] = meta["bind_failure_set_id"].notna()
    meta["host_state"] = pd.Series(_host_states(connection, meta), index=meta.index, dtype=object)
    meta["hyperv"] = [state.hyperv for state in meta["host_state"]]
    meta["winnat"] = [state.winnat for state in meta["host_state"]]

    def by_set(sql: str, column: str) -> pd.DataFrame:
        pointers = meta[["snapshot_id", column]].dropna().astype("int64")
        rows = read_frame(connection, sql, pointers[column].tolist())
        found = pointers.merge(rows, left_on=column, right_on="set_id")
        return found.drop(columns=[column, "set_id"])

    findings = by_set(_FINDINGS, "finding_set_id")
    findings = findings.astype(dict.fromkeys(_NULLABLE, "Int64") | {"administered": "boolean"})
    for column in ("dynamic_captured", "in_dynamic"):
        findings[column] = findings[column].astype(bool)
    excluded = by_set(_EXCLUDED, "excluded_set_id")
    excluded["administered"] = excluded["administered"].astype(bool)
    excluded = excluded.sort_values(["snapshot_id", "protocol", "start"], ignore_index=True)
    return SnapshotState(
        meta=meta,
        findings=findings.sort_values(["snapshot_id", "protocol", "family", "start"],
                                      ignore_index=True, kind="stable"),
        excluded=excluded,
        dynamic=read_frame(connection, _DYNAMIC, snapshot_ids),
    )  # fmt: skip


def _host_states(connection: Connection, meta: pd.DataFrame) -> list[HostState]:
    """Return each snapshot's host state, as the diagnosis saw it when it was stored."""
    ids = meta["snapshot_id"].tolist()
    features = read_frame(connection, _FEATURES, ids).groupby("snapshot_id")
    services = read_frame(connection, _SERVICES, ids).groupby("snapshot_id")
    found_features, found_services = dict(iter(features)), dict(iter(services))
    states = []
    for snapshot_id, wsl in zip(meta["snapshot_id"], meta["wsl_version"], strict=True):
        mine = found_features.get(snapshot_id)
        theirs = found_services.get(snapshot_id)
        states.append(
            host_state(
                [] if mine is None else list(zip(mine["name"], mine["state"], strict=True)),
                [] if theirs is None else list(zip(theirs["name"], theirs["status"], strict=True)),
                isinstance(wsl, str),
            )
        )
    return states


def tcp4_dynamic(state: SnapshotState) -> pd.DataFrame:
    """Return the TCP/IPv4 dynamic port ranges captured, one row per snapshot."""
    dynamic = state.dynamic
    return dynamic[(dynamic["protocol"] == "tcp") & (dynamic["family"] == "ipv4")]


def failing(state: SnapshotState) -> pd.DataFrame:
    """Return the findings of ports that failed to bind, with each snapshot's host and time."""
    found = state.findings[state.findings["error_code"].notna()]
    meta = state.meta[["snapshot_id", "host", "taken_at", "excluded_known"]]
    return found.merge(meta, on="snapshot_id")


def expand_failures(findings: pd.DataFrame) -> pd.DataFrame:
    """Return one row per failing port (the ``failures`` frame) from failing findings."""
    frame = findings.rename(
        columns={"diagnosis": "classification", "block_start": "failure_start",
                 "block_end": "failure_end", "range_start": "excluded_start",
                 "range_end": "excluded_end"}
    )  # fmt: skip
    # NULL where the dynamic range was not captured: the assumed default proves nothing.
    frame["in_dynamic_range"] = frame["in_dynamic"].astype("boolean").mask(
        ~frame["dynamic_captured"]
    )  # fmt: skip
    columns = [c for c in COLUMNS["failures"] if c != "port"]
    lengths = to_ints(frame["end"] - frame["start"] + 1)
    rows = np.repeat(np.arange(len(frame), dtype=np.int64), lengths)
    ports = frame[columns].take(rows).reset_index(drop=True)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    ports["port"] = to_ints(frame["start"])[rows] + np.arange(lengths.sum()) - starts
    return ports.loc[:, list(COLUMNS["failures"])]


def findings_of(engine: Engine, snapshot_id: int) -> pd.DataFrame:
    """Return the failing ports of one snapshot (any snapshot, not only the latest), per port."""
    with engine.connect() as connection:
        return expand_failures(failing(load_state(connection, [snapshot_id])))


def answer_port(
    findings: pd.DataFrame, swept: bool, port: int, wanted_process: str | None = None
) -> PortAnswer:
    """Answer for TCP ``port`` from one snapshot's findings (``swept``: a bind sweep ran)."""
    tcp = findings[
        (findings["protocol"] == "tcp") & (findings["start"] <= port) & (findings["end"] >= port)
    ]
    if tcp.empty:
        status = PortStatus.FREE if swept else PortStatus.UNKNOWN
        evidence = ("bind sweep passed",) if swept else ("no bind sweep",)
        return PortAnswer(status, status.value, absent_reason(swept), evidence, (), None)
    order = np.lexsort((tcp["family"].to_numpy(), tcp["error_code"].isna().to_numpy()))
    # Gaps as None, not NaN or NA, so that the finding reads like the row it was.
    finding: dict[str, Any] = {
        str(k): None if v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v
        for k, v in tcp.iloc[int(order[0])].items()
    }
    kind = str(finding["diagnosis"])
    serving = kind == Diagnosis.IN_USE and serves(finding["process"], wanted_process)
    fixes = () if serving else tuple(str(finding["fixes"]).split())
    reason = str(finding["reason"])
    if serving:
        reason += f" It is the service this port is wanted for ({wanted_process}): fine."
    families = tuple(sorted(set(tcp.loc[tcp["error_code"].notna(), "family"])))
    return PortAnswer(status_of(kind), kind, reason, _evidence(finding, families), fixes,
                      finding, serving)  # fmt: skip


def _evidence(finding: Mapping[str, Any], families: tuple[str, ...]) -> tuple[str, ...]:
    """List the facts behind a finding, shortest first."""
    lines = []
    if not pd.isna(finding["error_code"]):
        lines.append(f"bind error {finding['error_code']} on {' and '.join(families)}")
    if not pd.isna(finding["range_start"]):
        star = " *" if finding["administered"] else ""
        lines.append(f"excluded range {finding['range_start']}–{finding['range_end']}{star}")
    if not pd.isna(finding["pid"]):
        process = None if pd.isna(finding["process"]) else str(finding["process"])
        lines.append(f"listener {describe_holder(int(finding['pid']), process)}")
    if finding["diagnosis"] in (Diagnosis.PROBABLY_RESERVED, Diagnosis.UNEXPLAINED):
        lines.append(f"failing block {finding['block_start']}–{finding['block_end']}")
    if finding["diagnosis"] == Diagnosis.AT_RISK:
        dynamic = describe_dynamic(finding["dynamic_start"], finding["dynamic_end"],
                                   bool(finding["dynamic_captured"]))  # fmt: skip
        lines.append(f"{dynamic}; bind sweep passed")
    return tuple(lines)


def build_wanted_matrix(
    state: SnapshotState, ports: Sequence[int], services: Mapping[int, str] | None = None
) -> pd.DataFrame:
    """Return one row per host and wanted TCP port, as ``answer_port`` gives it."""
    services = services or {}
    by_snapshot = dict(iter(state.findings.groupby("snapshot_id", sort=False)))
    empty = state.findings.iloc[:0]
    rows = []
    for meta in state.meta.sort_values("host").to_dict("records"):
        findings = by_snapshot.get(meta["snapshot_id"], empty)
        when = f"snapshot of {meta['taken_at']:%Y-%m-%d %H:%M} UTC"
        for port in sorted({int(p) for p in ports}):
            answer = answer_port(findings, bool(meta["swept"]), port, services.get(port))
            evidence = "; ".join((*answer.evidence, when))
            rows.append((meta["host"], port, answer.status.value, answer.classification,
                         answer.reason, evidence, meta["taken_at"], answer.serving,
                         list(answer.fixes), int(meta["snapshot_id"]), answer.finding))  # fmt: skip
    columns = [*COLUMNS["wanted"], *WANTED_EXTRAS]
    return pd.DataFrame(rows, columns=columns)
