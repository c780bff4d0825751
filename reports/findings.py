"""Read the stored diagnosis: findings of snapshots, and the answer for one port of one host.

Nothing here classifies. ``collector.diagnosis`` did, when each snapshot was stored; this module
reads its findings (``findings`` table) and picks, for a port, the finding that covers it — one
that failed before one that did not, IPv4 before IPv6 — or says ``free`` / ``unknown`` where
none does. ``answer_ports`` is the one place that turns findings into a port's answer, and the
wanted-ports matrix, ``explain`` and the agreement test all call it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection

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
    word,
)
from collector.store.database import Store
from reports import tables
from reports.model import COLUMNS

# The wanted frame's columns besides the report's: what remediation and explain also need.
WANTED_EXTRAS = ("snapshot_id", "finding")


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


def unbroken_since(covered: Sequence[bool]) -> int | None:
    """Return where the unbroken run of True that ends the sequence begins, None if it ends False.

    The one rule of "since when" for a state that holds now: ``explain`` and the report's
    protected ports both ask it of a port's nights, oldest first.
    """
    if not covered or not covered[-1]:
        return None
    first = len(covered) - 1
    while first > 0 and covered[first - 1]:
        first -= 1
    return first


def latest_snapshots(connection: Connection) -> pd.DataFrame:
    """Return each host's latest snapshot id (host_id, snapshot_id)."""
    return tables.read(connection, "latest_snapshots")


def load_state(connection: Connection, snapshot_ids: Sequence[int]) -> SnapshotState:
    """Read the findings, excluded ranges and dynamic ranges of some snapshots."""
    meta = tables.read(connection, "snapshot_meta", snapshot_ids)
    meta["excluded_known"] = meta["excluded_set_id"].notna()
    meta["swept"] = meta["bind_failure_set_id"].notna()
    meta["host_state"] = pd.Series(_host_states(connection, meta), index=meta.index, dtype=object)
    meta["hyperv"] = [state.hyperv for state in meta["host_state"]]
    meta["winnat"] = [state.winnat for state in meta["host_state"]]

    def by_set(query: str, column: str) -> pd.DataFrame:
        pointers = meta[["snapshot_id", column]].dropna().astype("int64")
        rows = tables.read(connection, query, pointers[column].tolist())
        found = pointers.merge(rows, left_on=column, right_on="set_id")
        return found.drop(columns=[column, "set_id"])

    findings = by_set("findings", "finding_set_id")
    known = meta.set_index("snapshot_id")["excluded_known"]
    findings["excluded_known"] = findings["snapshot_id"].map(known).astype(bool)
    excluded = by_set("excluded_ranges", "excluded_set_id")
    excluded = excluded.sort_values(["snapshot_id", "protocol", "start"], ignore_index=True)
    return SnapshotState(
        meta=meta,
        findings=findings.sort_values(["snapshot_id", "protocol", "family", "start"],
                                      ignore_index=True, kind="stable"),
        excluded=excluded,
        dynamic=tables.read(connection, "dynamic_ranges", snapshot_ids),
    )  # fmt: skip


def port_history(connection: Connection, host_id: int, port: int) -> pd.DataFrame:
    """Return every snapshot of a host, oldest first, with the status TCP ``port`` had in it."""
    snapshots = tables.read(connection, "host_snapshots", host_id=host_id)
    pointers = snapshots[["snapshot_id", "finding_set_id"]].dropna().astype("int64")
    ids = pointers["finding_set_id"].tolist()
    rows = tables.read(connection, "port_findings", ids, port=port)
    found = pointers.merge(rows, left_on="finding_set_id", right_on="set_id")
    known = snapshots.set_index("snapshot_id")["excluded_known"]
    found["excluded_known"] = found["snapshot_id"].map(known)
    cells = snapshots.assign(port=port)
    answers = answer_ports(found.drop(columns=["finding_set_id", "set_id"]), cells)
    return snapshots.assign(status=[answer.status.value for answer in answers])


def _host_states(connection: Connection, meta: pd.DataFrame) -> list[HostState]:
    """Return each snapshot's host state, as the diagnosis saw it when it was stored."""
    ids = meta["snapshot_id"].tolist()
    # Column by column into plain lists: a sub-frame per snapshot cost seconds at 10,000 hosts.
    found_features: dict[int, list[tuple[str, str]]] = {}
    features = tables.read(connection, "features", ids)
    for snapshot_id, name, state in zip(
        features["snapshot_id"].tolist(), features["name"], features["state"], strict=True
    ):
        found_features.setdefault(snapshot_id, []).append((name, state))
    found_services: dict[int, list[tuple[str, str]]] = {}
    services = tables.read(connection, "services", ids)
    for snapshot_id, name, status in zip(
        services["snapshot_id"].tolist(), services["name"], services["status"], strict=True
    ):
        found_services.setdefault(snapshot_id, []).append((name, status))
    return [
        host_state(found_features.get(snapshot_id, []), found_services.get(snapshot_id, []),
                   isinstance(wsl, str))
        for snapshot_id, wsl in zip(meta["snapshot_id"].tolist(), meta["wsl_version"],
                                    strict=True)
    ]  # fmt: skip


def tcp4_dynamic(state: SnapshotState) -> pd.DataFrame:
    """Return the TCP/IPv4 dynamic port ranges captured, one row per snapshot."""
    dynamic = state.dynamic
    return dynamic[(dynamic["protocol"] == "tcp") & (dynamic["family"] == "ipv4")]


def failing(state: SnapshotState) -> pd.DataFrame:
    """Return the findings of ports that failed to bind, with each snapshot's host and time."""
    found = state.findings[state.findings["error_code"].notna()]
    return found.merge(state.meta[["snapshot_id", "host", "taken_at"]], on="snapshot_id")


def failure_ranges(findings: pd.DataFrame) -> pd.DataFrame:
    """Return the ``failures`` frame from failing findings: one row per range, as stored.

    A failing finding covers a range of ports that share one answer; spreading it into one row
    per port would cost millions of rows on a large fleet and tell nothing more.
    """
    findings = findings.assign(reason=_words(findings))
    frame = findings.rename(
        columns={"diagnosis": "classification", "block_start": "failure_start",
                 "block_end": "failure_end", "range_start": "excluded_start",
                 "range_end": "excluded_end"}
    )  # fmt: skip
    # NULL where the dynamic range was not captured: the assumed default proves nothing.
    frame["in_dynamic_range"] = frame["in_dynamic"].astype("boolean").mask(
        ~frame["dynamic_captured"]
    )  # fmt: skip
    frame["ports"] = (frame["end"] - frame["start"] + 1).astype("int64")
    return frame.loc[:, list(COLUMNS["failures"])].reset_index(drop=True)


def _words(findings: pd.DataFrame) -> list[str]:
    """Word each finding (``collector.diagnosis.word``); alike findings are worded once."""
    if findings.empty:
        return []
    fields = [c for c in findings.columns if c not in ("snapshot_id", "host", "taken_at")]
    # Numbered in order of first appearance; NA groups with NA, as equal for the words.
    group = findings.groupby(fields, dropna=False, sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(findings))).groupby(group).first().to_numpy()
    alike = findings[fields].iloc[first]
    alike = alike.astype(object).where(alike.notna(), None)
    rows = [dict(zip(fields, values, strict=True))
            for values in alike.itertuples(index=False, name=None)]  # fmt: skip
    said = [word(row, bool(row["excluded_known"])) for row in rows]
    return [said[number] for number in group.tolist()]


def findings_of(store: Store, snapshot_id: int) -> pd.DataFrame:
    """Return the failing port ranges of one snapshot (any snapshot, not only the latest)."""
    with store.connect() as connection:
        return failure_ranges(failing(load_state(connection, [snapshot_id])))


def answer_ports(
    findings: pd.DataFrame, cells: pd.DataFrame, services: Mapping[int, str] | None = None
) -> list[PortAnswer]:
    """Answer for each TCP port of ``cells`` (``snapshot_id``, ``port``, ``swept``), in order.

    ``findings`` are those of the cells' snapshots; ``services`` names the process that serves
    a wanted port. A port shows the finding that covers it, one that failed before one that did
    not and IPv4 before IPv6; where none does it is free (``swept``) or unknown.
    """
    services = services or {}
    pairs = _covering(findings, cells)
    failed = pairs[pairs["error_code"].notna()].groupby(["snapshot_id", "port"])["family"]
    families = {key: tuple(sorted(set(group))) for key, group in failed}
    chosen = {
        (int(row["snapshot_id"]), int(row["port"])): row
        for row in pairs.drop_duplicates(["snapshot_id", "port"]).to_dict("records")
    }  # fmt: skip
    answers = []
    for snapshot_id, port, swept in zip(cells["snapshot_id"], cells["port"], cells["swept"],
                                        strict=True):  # fmt: skip
        key = (int(snapshot_id), int(port))
        found = chosen.get(key)
        finding = None if found is None else _plain(found)
        answers.append(_answer(finding, families.get(key, ()), bool(swept), services.get(key[1])))
    return answers


def _covering(findings: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """Return the TCP findings covering each cell's port, the one a port shows first.

    The order is the rule: a finding that failed before one that did not, IPv4 before IPv6.
    """
    tcp = findings[findings["protocol"] == "tcp"]
    pairs = cells[["snapshot_id", "port"]].drop_duplicates().merge(tcp, on="snapshot_id")
    pairs = pairs[(pairs["start"] <= pairs["port"]) & (pairs["port"] <= pairs["end"])]
    pairs = pairs.assign(_unfailed=pairs["error_code"].isna())
    pairs = pairs.sort_values(["snapshot_id", "port", "_unfailed", "family"], kind="stable")
    return pairs.drop(columns=["_unfailed"])


def port_statuses(findings: pd.DataFrame, cells: pd.DataFrame) -> pd.Series:
    """Return each cell's ``PortStatus`` value, as ``answer_ports`` gives it, for many cells.

    ``cells`` has ``snapshot_id``, ``port`` and ``swept``; the result is aligned with it. The
    same finding is chosen as for ``answer_ports``; only the words and the fixes are left out,
    so a fleet's whole history of a few ports is read at once.
    """
    shown = _covering(findings, cells).drop_duplicates(["snapshot_id", "port"])
    kinds = shown.set_index(["snapshot_id", "port"])["diagnosis"]
    statuses = {kind: status_of(kind).value for kind in kinds.unique()}
    keys = pd.MultiIndex.from_frame(cells[["snapshot_id", "port"]])
    found = pd.Series(kinds.reindex(keys).to_numpy(), index=cells.index, dtype=object)
    absent = np.where(cells["swept"].astype(bool), PortStatus.FREE.value,
                      PortStatus.UNKNOWN.value)  # fmt: skip
    status = [absent[i] if kind is None or kind is pd.NA or kind != kind else statuses[kind]
              for i, kind in enumerate(found)]  # fmt: skip
    return pd.Series(status, index=cells.index, dtype=object)


def _plain(row: Mapping[Any, Any]) -> dict[str, Any]:
    """Return a finding with its gaps as None, not NaN or NA, so it reads like the row it was."""
    return {
        str(key): None if value is pd.NA or (isinstance(value, float) and np.isnan(value))
        else value
        for key, value in row.items()
        if key not in ("snapshot_id", "port")
    }  # fmt: skip


def _answer(
    finding: dict[str, Any] | None, families: tuple[str, ...], swept: bool, wanted: str | None
) -> PortAnswer:
    """Turn the finding a port shows (or none) into its answer."""
    if finding is None:
        status = PortStatus.FREE if swept else PortStatus.UNKNOWN
        evidence = ("bind sweep passed",) if swept else ("no bind sweep",)
        return PortAnswer(status, status.value, absent_reason(swept), evidence, (), None)
    kind = str(finding["diagnosis"])
    serving = kind == Diagnosis.IN_USE and serves(finding["process"], wanted)
    fixes = () if serving else tuple(str(finding["fixes"]).split())
    reason = word(finding, bool(finding["excluded_known"]))
    if serving:
        reason += f" It is the service this port is wanted for ({wanted}): fine."
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
    """Return one row per host and wanted TCP port, as ``answer_ports`` gives it."""
    wanted = pd.DataFrame({"port": sorted({int(p) for p in ports})}, dtype="int64")
    hosts = state.meta.sort_values("host", kind="stable")
    cells = hosts[["snapshot_id", "host", "taken_at", "swept"]].merge(wanted, how="cross")
    answers = answer_ports(state.findings, cells, services)
    rows = []
    for cell, answer in zip(cells.to_dict("records"), answers, strict=True):
        when = f"snapshot of {cell['taken_at']:%Y-%m-%d %H:%M} UTC"
        evidence = "; ".join((*answer.evidence, when))
        rows.append((cell["host"], cell["port"], answer.status.value, answer.classification,
                     answer.reason, evidence, cell["taken_at"], answer.serving,
                     list(answer.fixes), int(cell["snapshot_id"]), answer.finding))  # fmt: skip
    columns = [*COLUMNS["wanted"], *WANTED_EXTRAS]
    return pd.DataFrame(rows, columns=columns)
