"""Answer "why can't this port bind on that host, since when, and what do I do?".

``explain(engine, host, port)`` reads the host's latest snapshot and classifies the TCP port as
``reports.classify`` does, then says it as a ``status``: ``free``, ``reserved`` (an excluded
range, administered or not, with *since*: the first snapshot of the unbroken run of the host's
snapshots that show that range — a snapshot that did not capture the ranges breaks the run),
``in-use`` (which process), ``probably-reserved`` (no excluded ranges captured; a block of
10013 failures in the dynamic range — *since* then follows that block), ``unexplained``
(including ``dynamic-unreserved``), or ``unknown`` (no bind sweep). ``classification`` keeps the
finer class (``at-risk`` for a free port that the next reboot may take).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, text

from reports.classify import (
    DEFAULT_DYNAMIC,
    WSAEACCES,
    SnapshotState,
    build_wanted_matrix,
    classify_segments,
    describe_code,
    describe_dynamic,
    load_state,
    read_frame,
    tcp4_dynamic,
    to_utc,
)
from reports.remediation import Remedy, hyperv_owns, suggest_remedies

STATUSES = ("free", "reserved", "in-use", "probably-reserved", "unexplained", "unknown")
_STATUS = {
    "excluded-administered": "reserved",
    "excluded": "reserved",
    "in-use": "in-use",
    "probably-reserved": "probably-reserved",
    "dynamic-unreserved": "unexplained",
    "unexplained": "unexplained",
    "free": "free",
    "at-risk": "free",
    "unknown": "unknown",
}
_LATEST = """SELECT id FROM snapshots WHERE host_id = :host_id
 ORDER BY taken_at DESC, id DESC LIMIT 1"""
_RANGE_RUN = """
SELECT s.id AS snapshot_id, s.taken_at,
       CASE WHEN EXISTS (SELECT 1 FROM excluded_ranges r WHERE r.set_id = s.excluded_set_id
                            AND r.protocol = :protocol AND r.start_port = :start
                            AND r.end_port = :end AND r.administered = :administered)
            THEN 1 ELSE 0 END AS present
  FROM snapshots s WHERE s.host_id = :host_id ORDER BY s.taken_at DESC, s.id DESC"""
_BLOCK_RUN = """
SELECT s.id AS snapshot_id, s.taken_at,
       CASE WHEN EXISTS (SELECT 1 FROM bind_failures b WHERE b.set_id = s.bind_failure_set_id
                            AND b.protocol = :protocol AND b.error_code = :code
                            AND b.start_port <= :start AND b.end_port >= :end)
            THEN 1 ELSE 0 END AS present
  FROM snapshots s WHERE s.host_id = :host_id ORDER BY s.taken_at DESC, s.id DESC"""


class UnknownHostError(LookupError):
    """No host of that name is in the store; the message names the closest ones."""

    def __init__(self, host: str, close: tuple[str, ...]) -> None:
        """Keep the name asked for and the close names, and say both."""
        self.host, self.close = host, close
        hint = f"; did you mean {', '.join(close)}?" if close else "; no host has a close name"
        super().__init__(f"no host named {host!r} in the store{hint}")


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why one TCP port of one host binds or not, with the evidence and the fixes."""

    host: str
    port: int
    status: str
    classification: str
    reason: str
    snapshot_id: int | None = None
    taken_at: datetime | None = None
    source: str | None = None
    error_code: int | None = None
    families: tuple[str, ...] = ()
    pid: int | None = None
    process: str | None = None
    range_start: int | None = None
    range_end: int | None = None
    administered: bool | None = None
    block_start: int | None = None
    block_end: int | None = None
    since: datetime | None = None
    since_snapshot_id: int | None = None
    dynamic_start: int | None = None
    dynamic_end: int | None = None
    dynamic_captured: bool | None = None
    excluded_known: bool | None = None
    evidence: tuple[str, ...] = ()
    fixes: tuple[Remedy, ...] = field(default=())

    @property
    def blocked(self) -> bool:
        """Tell whether binding the port fails (or would, for a reserved one)."""
        return self.status not in ("free", "unknown")

    def to_json(self) -> dict[str, Any]:
        """Return the answer as JSON-ready data."""

        def when(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "host": self.host, "port": self.port, "protocol": "tcp", "status": self.status,
            "classification": self.classification, "blocked": self.blocked,
            "reason": self.reason, "error_code": self.error_code, "families": list(self.families),
            "snapshot": {"id": self.snapshot_id, "taken_at": when(self.taken_at),
                         "source": self.source},
            "listener": None if self.pid is None else {"pid": self.pid, "process": self.process},
            "range": None if self.range_start is None else {
                "start": self.range_start, "end": self.range_end,
                "administered": self.administered},
            "block": None if self.block_start is None else {
                "start": self.block_start, "end": self.block_end,
                "ports": (self.block_end or 0) - self.block_start + 1},
            "since": {"at": when(self.since), "snapshot_id": self.since_snapshot_id}
            if self.since is not None else None,
            "dynamic_range": None if self.dynamic_start is None else {
                "start": self.dynamic_start, "end": self.dynamic_end,
                "captured": self.dynamic_captured},
            "excluded_known": self.excluded_known,
            "evidence": list(self.evidence),
            "fixes": [{"action": f.action, "commands": list(f.commands), "why": f.why,
                       "caveats": list(f.caveats)} for f in self.fixes],
        }  # fmt: skip

    def to_text(self) -> str:
        """Return the answer for a person, in a few lines."""
        lines = [f"{self.host} TCP {self.port}: {self._headline()}", self.reason]
        if self.evidence:
            lines.append("Evidence:")
            lines += [f"  - {item}" for item in self.evidence]
        for fix in self.fixes:
            lines.append(f"Fix ({fix.action}; elevated Command Prompt, portfleet never runs it):")
            lines += [f"  {command}" for command in fix.commands]
            lines.append(f"  Why: {fix.why}")
            lines += [f"  Caveat: {caveat}" for caveat in fix.caveats]
        return "\n".join(lines)

    def _headline(self) -> str:
        code = "" if self.error_code is None else f" (bind fails with {self.error_code})"
        if self.status == "reserved":
            kind = "administered '*'" if self.administered else "run-time, WinNAT/HNS/Hyper-V"
            since = "" if self.since is None else f", since {self.since:%Y-%m-%d %H:%M} UTC"
            return (
                f"reserved{code}: excluded range {self.range_start}–{self.range_end} "
                f"({kind}){since}"
            )
        if self.status == "in-use":
            return f"in use{code} by {self.process or 'PID ' + str(self.pid)}"
        if self.status == "probably-reserved":
            return f"blocked{code}, probably reserved by WinNAT/Hyper-V"
        if self.status == "unexplained":
            return f"blocked{code}, cause unexplained ({self.classification})"
        if self.classification == "at-risk":
            return "free now, but at risk at the next reboot"
        return "free" if self.status == "free" else "unknown: no bind sweep recorded"


def explain(engine: Engine, host: str, port: int) -> Explanation:
    """Explain TCP ``port`` on ``host`` from the host's latest snapshot."""
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1–65535")
    with engine.connect() as connection:
        host_id, name = _find_host(connection, host)
        latest = connection.execute(text(_LATEST), {"host_id": host_id}).scalar()
        if latest is None:
            reason = "No snapshot of this host is stored yet (see its collection attempts)."
            return Explanation(name, port, "unknown", "unknown", reason)
        state = load_state(connection, [int(latest)])
        segments = classify_segments(state)
        cell = build_wanted_matrix(state, segments, [port]).iloc[0]
        meta = state.meta.iloc[0]
        hits = segments[(segments["protocol"] == "tcp") & (segments["start"] <= port)
                        & (segments["end"] >= port)].sort_values("family")  # fmt: skip
        details = _details(state, hits, port)
        since = _since(connection, host_id, details)
    classification = str(cell["classification"])
    evidence = _evidence(meta, hits, port, details, since)
    fixes = suggest_remedies(
        classification,
        port,
        hyperv_owner=hyperv_owns(meta.get("hyperv"), meta.get("winnat")),
        wsl=isinstance(meta.get("wsl_version"), str),
    )
    return Explanation(
        host=name, port=port, status=_STATUS[classification], classification=classification,
        reason=str(cell["reason"]), snapshot_id=int(meta["snapshot_id"]),
        taken_at=meta["taken_at"].to_pydatetime(), source=str(meta["source"]),
        families=tuple(hits["family"]), evidence=evidence, fixes=fixes,
        since=None if since is None else since[1], since_snapshot_id=None if since is None
        else since[0], excluded_known=bool(meta["excluded_known"]), **details,
    )  # fmt: skip


def _find_host(connection: Connection, host: str) -> tuple[int, str]:
    names = read_frame(connection, "SELECT id, name FROM hosts")
    exact = names[names["name"] == host]
    if exact.empty:  # Windows host names ignore case
        exact = names[names["name"].str.casefold() == host.casefold()]
    if len(exact) == 1:
        return int(exact["id"].iloc[0]), str(exact["name"].iloc[0])
    known = sorted(names["name"])
    folded = {n.casefold(): n for n in known}
    close = [n for n in known if host.casefold() in n.casefold() or n.casefold() in host.casefold()]
    close += [folded[n] for n in difflib.get_close_matches(host.casefold(), folded, 5, 0.5)]
    raise UnknownHostError(host, tuple(dict.fromkeys(close))[:5])


def _details(state: SnapshotState, hits: pd.DataFrame, port: int) -> dict[str, Any]:
    """Pick the numbers the answer shows: code, listener, range, block, dynamic range."""
    details: dict[str, Any] = {}
    excluded = state.excluded[state.excluded["protocol"] == "tcp"]
    excluded = excluded[(excluded["start"] <= port) & (excluded["end"] >= port)]
    if not hits.empty:
        row = hits.iloc[0]
        details["error_code"] = int(row["error_code"])
        if not pd.isna(row["pid"]):
            details["pid"] = int(row["pid"])
            details["process"] = None if pd.isna(row["process"]) else str(row["process"])
        if row["classification"] not in ("excluded", "excluded-administered", "in-use"):
            details["block_start"], details["block_end"] = (
                int(row["failure_start"]), int(row["failure_end"]))  # fmt: skip
        low, high, captured = row["dynamic_start"], row["dynamic_end"], row["dynamic_captured"]
    else:
        held = state.listeners[
            (state.listeners["protocol"] == "tcp") & (state.listeners["port"] == port)
        ]
        if not held.empty:
            details["pid"] = int(held["pid"].iloc[0])
            details["process"] = (
                None if pd.isna(held["process"].iloc[0]) else str(held["process"].iloc[0])
            )
        dynamic = tcp4_dynamic(state)
        captured = not dynamic.empty
        low, count = (
            (int(dynamic["start"].iloc[0]), int(dynamic["count"].iloc[0]))
            if captured
            else DEFAULT_DYNAMIC
        )
        high = low + count - 1
    if not excluded.empty:
        span = excluded.iloc[0]
        details["range_start"], details["range_end"] = int(span["start"]), int(span["end"])
        details["administered"] = bool(span["administered"])
    details.update(dynamic_start=int(low), dynamic_end=int(high), dynamic_captured=bool(captured))
    return details


def _since(
    connection: Connection, host_id: int, details: dict[str, Any]
) -> tuple[int, datetime] | None:
    """Return the first snapshot of the unbroken run showing the range (or failing block)."""
    if "range_start" in details:
        sql, params = _RANGE_RUN, {"start": details["range_start"], "end": details["range_end"],
                                   "administered": details["administered"]}  # fmt: skip
    elif "block_start" in details and details.get("error_code") == WSAEACCES:
        sql, params = _BLOCK_RUN, {"start": details["block_start"], "end": details["block_end"],
                                   "code": WSAEACCES}  # fmt: skip
    else:
        return None
    rows = read_frame(connection, sql, host_id=host_id, protocol="tcp", **params)
    rows["taken_at"] = to_utc(rows["taken_at"])
    broken = rows["present"].to_numpy() == 0
    run = rows.iloc[: int(broken.argmax()) if broken.any() else len(rows)]
    if run.empty:
        return None
    return int(run["snapshot_id"].iloc[-1]), run["taken_at"].iloc[-1].to_pydatetime()


def _evidence(
    meta: pd.Series,
    hits: pd.DataFrame,
    port: int,
    details: dict[str, Any],
    since: tuple[int, datetime] | None,
) -> tuple[str, ...]:
    lines = [f"snapshot {meta['snapshot_id']} taken {meta['taken_at']:%Y-%m-%d %H:%M} UTC "
             f"(source: {meta['source']})"]  # fmt: skip
    if not hits.empty:
        families = " and ".join(hits["family"])
        lines.append(f"binding TCP {port} failed with {describe_code(details['error_code'])} "
                     f"on {families}")  # fmt: skip
    elif meta["swept"]:
        lines.append(f"the bind sweep bound TCP {port} without error")
    else:
        lines.append("no bind sweep was recorded in this snapshot")
    if "pid" in details:
        who = details.get("process") or "a process with no captured name"
        lines.append(f"{who} (PID {details['pid']}) listens on TCP {port}")
    elif pd.isna(meta["listener_set_id"]):
        lines.append("listeners were not captured")
    else:
        lines.append(f"nothing listens on TCP {port}")
    when = (
        ""
        if since is None
        else f", present since {since[1]:%Y-%m-%d %H:%M} UTC (snapshot {since[0]})"
    )
    if "range_start" in details:
        kind = "administered '*'" if details["administered"] else "run-time, no '*'"
        lines.append(
            f"excluded range {details['range_start']}–{details['range_end']} ({kind}){when}"
        )
    elif meta["excluded_known"]:
        lines.append("no captured excluded range covers it")
    else:
        lines.append("no excludedportrange output was captured")
    if "block_start" in details:
        size = details["block_end"] - details["block_start"] + 1
        lines.append(f"it lies in the contiguous block {details['block_start']}–"
                     f"{details['block_end']} ({size} failing ports){when}")  # fmt: skip
    low, high, captured = (
        details["dynamic_start"],
        details["dynamic_end"],
        details["dynamic_captured"],
    )
    inside = "inside" if low <= port <= high else "outside"
    lines.append(f"it is {inside} {describe_dynamic(low, high, captured)}")
    return tuple(lines)
