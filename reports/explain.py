"""Answer "why can't this port bind on that host, since when, what changed, and what do I do?".

``explain(engine, host, port)`` reads the host's latest snapshot and answers for the TCP port
exactly as the wanted-ports matrix does (``reports.findings.answer_ports``), with the fixes the
diagnosis stored, worded by ``reports.remediation``. Then it tells the story: the streak of
snapshots in which the port has had its status (and the earlier streaks), the change events of
the window in which the current streak began, the candidate causes first seen in the
correlation's window (``DEFAULT_WINDOW_DAYS``) before it — an update often acts at the next boot,
nights after it was installed — each with its fleet correlation rank where it has one, and a
warning when the snapshot is older than ``stale_days``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from collector.diagnosis import (
    Diagnosis,
    PortStatus,
    describe_dynamic,
    in_dynamic_range,
)
from collector.store.database import Store
from collector.windows import (
    DEFAULT_DYNAMIC_START,
    RUNTIME_OWNER,
    default_dynamic,
    describe_code,
)
from reports import tables
from reports.analysis import DEFAULT_STALE_DAYS
from reports.correlation import DEFAULT_WINDOW_DAYS, correlate_fleet
from reports.events import causes_before, load_causes
from reports.findings import (
    SnapshotState,
    answer_ports,
    load_state,
    port_history,
    tcp4_dynamic,
    unbroken_since,
)
from reports.fixes import FixRecord, fix_history
from reports.odds import Odds, at_risk_odds
from reports.remediation import Remedy, word_fixes


class UnknownHostError(LookupError):
    """No host of that name is in the store; the message names the closest ones."""

    def __init__(self, host: str, close: tuple[str, ...]) -> None:
        """Keep the name asked for and the close names, and say both."""
        self.host, self.close = host, close
        hint = f"; did you mean {', '.join(close)}?" if close else "; no host has a close name"
        super().__init__(f"no host named {host!r} in the store{hint}")


@dataclass(frozen=True, slots=True)
class Streak:
    """Consecutive snapshots in which the port had one status."""

    status: str
    first_at: datetime
    last_at: datetime
    first_snapshot_id: int
    snapshots: int


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why one TCP port of one host binds or not, with the evidence, the story and the fixes."""

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
    serving: bool = False
    range_start: int | None = None
    range_end: int | None = None
    administered: bool | None = None
    block_start: int | None = None
    block_end: int | None = None
    since: datetime | None = None
    since_snapshot_id: int | None = None
    earlier: tuple[Streak, ...] = ()
    dynamic_start: int | None = None
    dynamic_end: int | None = None
    dynamic_captured: bool | None = None
    excluded_known: bool | None = None
    evidence: tuple[str, ...] = ()
    changes: tuple[dict[str, Any], ...] = ()  # range events of the window the streak began in
    causes: tuple[dict[str, Any], ...] = ()  # candidate causes of that window, with their rank
    warnings: tuple[str, ...] = ()
    fixes: tuple[Remedy, ...] = field(default=())
    odds: tuple[Odds, ...] = ()  # for an at-risk port: how often the fleet saw it taken
    fix_history: tuple[FixRecord, ...] = ()  # fixes applied to the port, and how each held
    # The administered ('*') range covering the port in every captured snapshot since then:
    # WinNAT/Hyper-V do not take it, and a program may still bind it (facts C).
    protected: tuple[int, int] | None = None
    protected_since: datetime | None = None

    @property
    def blocked(self) -> bool:
        """Tell whether binding the port fails (or would, for a reserved one)."""
        return self.status in (PortStatus.RESERVED, PortStatus.IN_USE, PortStatus.BLOCKED)

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
            "listener": None if self.pid is None else {"pid": self.pid, "process": self.process,
                                                       "serving": self.serving},
            "range": None if self.range_start is None else {
                "start": self.range_start, "end": self.range_end,
                "administered": self.administered},
            "block": None if self.block_start is None else {
                "start": self.block_start, "end": self.block_end,
                "ports": (self.block_end or 0) - self.block_start + 1},
            "since": {"at": when(self.since), "snapshot_id": self.since_snapshot_id}
            if self.since is not None else None,
            "earlier": [{"status": s.status, "from": when(s.first_at), "to": when(s.last_at),
                         "snapshots": s.snapshots} for s in self.earlier],
            "changes": list(self.changes),
            "causes": list(self.causes),
            "dynamic_range": None if self.dynamic_start is None else {
                "start": self.dynamic_start, "end": self.dynamic_end,
                "captured": self.dynamic_captured},
            "excluded_known": self.excluded_known,
            "evidence": list(self.evidence),
            "warnings": list(self.warnings),
            "odds": [{"days": o.days, "host_nights": o.nights, "reserved": o.reserved,
                      "rate": o.rate} for o in self.odds],
            "fixes": [{"action": f.action, "commands": list(f.commands), "why": f.why,
                       "caveats": list(f.caveats)} for f in self.fixes],
            "fix_history": [record.to_json() for record in self.fix_history],
            "protected": None if self.protected is None else {
                "start": self.protected[0], "end": self.protected[1],
                "since": when(self.protected_since)},
        }  # fmt: skip

    def to_text(self) -> str:
        """Return the answer for a person, in a few lines."""
        lines = [f"{self.host} TCP {self.port}: {self._headline()}", self.reason]
        if self.protected is not None:
            start, end = self.protected
            where = f"{start}" if start == end else f"{start}–{end}"
            since = (
                "" if self.protected_since is None else f" since {self.protected_since:%Y-%m-%d}"
            )
            lines.append(
                f"Protected{since}: the administered ('*') excluded range {where} covers it, so "
                "WinNAT/Hyper-V will not reserve it; programs can still bind it."
            )
        lines += [f"Warning: {warning}" for warning in self.warnings]
        if self.odds:
            lines.append("Odds, from the fleet's own history of this port when it was at risk:")
            lines += [f"  - {odds.describe()}" for odds in self.odds]
        if self.evidence:
            lines.append("Evidence:")
            lines += [f"  - {item}" for item in self.evidence]
        if self.changes or self.causes:
            lines.append("What changed when it began, and in the week before:")
            lines += [f"  - {_change_text(change)}" for change in self.changes]
            lines += [f"  - {_cause_text(cause)}" for cause in self.causes]
        if self.earlier:
            lines.append("Earlier:")
            lines += [
                f"  - {s.status} from {s.first_at:%Y-%m-%d %H:%M} to {s.last_at:%Y-%m-%d %H:%M} "
                f"UTC ({s.snapshots} snapshots)"
                for s in self.earlier
            ]
        for fix in self.fixes:
            lines.append(f"Fix ({fix.action}; elevated Command Prompt, portfleet never runs it):")
            lines += [f"  {command}" for command in fix.commands]
            lines.append(f"  Why: {fix.why}")
            lines += [f"  Caveat: {caveat}" for caveat in fix.caveats]
        if self.fix_history:
            lines.append("Fixes applied, and whether they held:")
            lines += [f"  - {record.describe()}" for record in self.fix_history]
        return "\n".join(lines)

    def _headline(self) -> str:
        code = "" if self.error_code is None else f" (bind fails with {self.error_code})"
        since = "" if self.since is None else f", since {self.since:%Y-%m-%d %H:%M} UTC"
        if self.classification == Diagnosis.PROBABLY_RESERVED:
            return f"blocked{code}, probably reserved by WinNAT/Hyper-V{since}"
        if self.status == PortStatus.RESERVED:
            kind = "administered '*'" if self.administered else f"run-time, {RUNTIME_OWNER}"
            return (
                f"reserved{code}: excluded range {self.range_start}–{self.range_end} "
                f"({kind}){since}"
            )
        if self.status == PortStatus.IN_USE:
            who = self.process or f"PID {self.pid}"
            own = ", the service it is wanted for" if self.serving else ""
            return f"in use{code} by {who}{own}{since}"
        if self.status == PortStatus.BLOCKED:
            return f"blocked{code}, cause unexplained{since}"
        if self.status == PortStatus.AT_RISK:
            return "free now, but at risk at the next reboot"
        return "free" if self.status == PortStatus.FREE else "unknown: no bind sweep recorded"


def explain(
    store: Store,
    host: str,
    port: int,
    *,
    wanted_process: str | None = None,
    stale_days: float = DEFAULT_STALE_DAYS,
    now: datetime | None = None,
    story: bool = True,
    ranks: Mapping[tuple[str, str], int] | None = None,
) -> Explanation:
    """Explain TCP ``port`` on ``host`` from the host's latest snapshot.

    ``wanted_process`` is the service the config says wants the port; ``now`` (for tests)
    defaults to the clock; ``story=False`` leaves out what changed (the fleet correlation),
    for callers that ask about many ports; ``ranks`` (``fleet_ranks``) spares a caller that
    explains many ports the fleet correlation each time.
    """
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1–65535")
    now = now or datetime.now(UTC)
    with store.connect() as connection:
        host_id, name = _find_host(connection, host)
        latest = tables.read(connection, "host_latest_snapshot", host_id=host_id)
        if latest.empty:
            reason = "No snapshot of this host is stored yet (see its collection attempts)."
            return Explanation(name, port, PortStatus.UNKNOWN, Diagnosis.UNKNOWN, reason)
        state = load_state(connection, [int(latest["snapshot_id"].iloc[0])])
        meta = state.meta.iloc[0]
        cell = pd.DataFrame({"snapshot_id": [meta["snapshot_id"]], "port": [port],
                             "swept": [bool(meta["swept"])]})  # fmt: skip
        services = {port: wanted_process} if wanted_process else None
        (answer,) = answer_ports(state.findings, cell, services)
        streaks = _streaks(connection, host_id, port)
        protected, protected_since = _protection(connection, host_id, port)
        applied = tuple(fix_history(connection, name, port))
        told = story and answer.status != PortStatus.FREE
        changed = _story(connection, host_id, name, streaks, ranks) if told else {}
    finding = dict(answer.finding or {})
    details = _details(state, finding, port)
    found = state.findings
    hit = (found["protocol"] == "tcp") & (found["start"] <= port) & (found["end"] >= port)
    families = tuple(sorted(set(found.loc[hit & found["error_code"].notna(), "family"])))
    fixes = word_fixes(meta["host_state"], [(port, finding)]) if answer.fixes else []
    current = streaks[-1] if streaks else None
    taken_at = meta["taken_at"].to_pydatetime()
    return Explanation(
        host=name, port=port, status=answer.status.value, classification=answer.classification,
        reason=answer.reason, snapshot_id=int(meta["snapshot_id"]), taken_at=taken_at,
        source=str(meta["source"]), serving=answer.serving,
        excluded_known=bool(meta["excluded_known"]),
        families=families,
        since=current.first_at if current is not None and answer.status != PortStatus.FREE
        else None,
        since_snapshot_id=current.first_snapshot_id if current is not None
        and answer.status != PortStatus.FREE else None,
        earlier=tuple(s for s in streaks[:-1] if s.status == answer.status.value),
        evidence=_evidence(meta, families, details, port),
        changes=tuple(changed.get("changes", ())), causes=tuple(changed.get("causes", ())),
        warnings=_warnings(taken_at, now, stale_days), fixes=tuple(fixes), fix_history=applied,
        **details,
        odds=at_risk_odds(store, [port])[port]
        if story and answer.status == PortStatus.AT_RISK else (),
        protected=protected, protected_since=protected_since,
    )  # fmt: skip


def _protection(
    connection: Connection, host_id: int, port: int
) -> tuple[tuple[int, int] | None, datetime | None]:
    """Return the administered range covering the port now, and since when it has (unbroken)."""
    rows = tables.read(connection, "port_protection", host_id=host_id, port=port)
    first = unbroken_since(rows["start"].notna().tolist())
    if first is None:
        return None, None
    last = rows.iloc[-1]
    return (int(last["start"]), int(last["end"])), rows["taken_at"].iloc[first].to_pydatetime()


def _find_host(connection: Connection, host: str) -> tuple[int, str]:
    names = tables.read(connection, "hosts")
    exact = names[names["host"] == host]
    if exact.empty:  # Windows host names ignore case
        exact = names[names["host"].str.casefold() == host.casefold()]
    if len(exact) == 1:
        return int(exact["host_id"].iloc[0]), str(exact["host"].iloc[0])
    known = sorted(names["host"])
    folded = {n.casefold(): n for n in known}
    close = [n for n in known if host.casefold() in n.casefold() or n.casefold() in host.casefold()]
    close += [folded[n] for n in difflib.get_close_matches(host.casefold(), folded, 5, 0.5)]
    raise UnknownHostError(host, tuple(dict.fromkeys(close))[:5])


def _streaks(connection: Connection, host_id: int, port: int) -> list[Streak]:
    """Return the port's status over the host's snapshots, as runs of one status, oldest first."""
    rows = port_history(connection, host_id, port)
    streaks: list[Streak] = []
    moments = zip(rows["status"], rows["snapshot_id"], rows["taken_at"], strict=True)
    for status, snapshot_id, at in moments:
        when = at.to_pydatetime()
        if streaks and streaks[-1].status == status:
            last = streaks[-1]
            streaks[-1] = Streak(status, last.first_at, when, last.first_snapshot_id,
                                 last.snapshots + 1)  # fmt: skip
        else:
            streaks.append(Streak(str(status), when, when, int(snapshot_id), 1))
    return streaks


def fleet_ranks(connection: Connection) -> dict[tuple[str, str], int]:
    """Return the fleet correlation's rank of each ranked cause, by (kind, cause)."""
    table = correlate_fleet(connection, load_causes(connection))
    ranked = table[table["rank"].notna()]
    keys = zip(ranked["cause_kind"], ranked["cause"], ranked["rank"], strict=True)
    return {(str(kind), str(cause)): int(rank) for kind, cause, rank in keys}


def _story(
    connection: Connection,
    host_id: int,
    host: str,
    streaks: list[Streak],
    known: Mapping[tuple[str, str], int] | None = None,
) -> dict[str, list[Any]]:
    """Return the range events of the window the streak began in, and the causes before it."""
    if len(streaks) < 2:
        return {}
    began, began_at = streaks[-1].first_snapshot_id, pd.Timestamp(streaks[-1].first_at)
    mine = causes_before(load_causes(connection, host_id), host, began_at, DEFAULT_WINDOW_DAYS)
    # The change events of the window the streak began in (the same rows the report shows).
    events = tables.read(connection, "snapshot_changes", snapshot_id=began)
    ranks: Mapping[tuple[str, str], int] = {}
    if not mine.empty:
        ranks = fleet_ranks(connection) if known is None else known
    changes = [
        {"kind": row["kind"], "protocol": row["protocol"], "start": _int(row["start"]),
         "end": _int(row["end"]), "previous_start": _int(row["previous_start"]),
         "previous_end": _int(row["previous_end"]), "at": row["at"].isoformat(),
         "previous_at": row["previous_at"].isoformat()}
        for row in events.to_dict("records")
    ]  # fmt: skip
    listed = [
        {"kind": row["kind"], "cause": row["cause"], "detail": row["detail"],
         "at": None if pd.isna(row["at"]) else row["at"].isoformat(),
         "rank": ranks.get((str(row["kind"]), str(row["cause"])))}
        for row in mine.to_dict("records")
    ]  # fmt: skip
    return {"changes": changes, "causes": listed}


def _int(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)


def _change_text(change: dict[str, Any]) -> str:
    span = f"{change['start']}–{change['end']}"
    before = f"{change['previous_start']}–{change['previous_end']}"
    words = {"range-appeared": f"range {span} appeared",
             "range-disappeared": f"range {before} disappeared",
             "range-moved": f"ranges moved from {before} to {span}",
             "dynamic-changed": f"dynamic range changed from {before} to {span}"}  # fmt: skip
    return (
        f"{words.get(change['kind'], change['kind'])} ({change['protocol']}), seen {change['at']}"
    )


def _cause_text(cause: dict[str, Any]) -> str:
    rank = "" if cause["rank"] is None else f"; fleet correlation rank {cause['rank']}"
    at = "" if cause["at"] is None else f" at {cause['at']}"
    return f"{cause['kind']}: {cause['cause']} ({cause['detail']}){at}{rank}"


def _warnings(taken_at: datetime, now: datetime, stale_days: float) -> tuple[str, ...]:
    age = (now - taken_at).total_seconds() / 86400
    if age <= stale_days:
        return ()
    return (
        f"this answer comes from a snapshot {age:.0f} days old (taken {taken_at:%Y-%m-%d %H:%M} "
        f"UTC), older than report.stale_days ({stale_days:g}): the host may have changed since; "
        "collect it again.",
    )


def _details(state: SnapshotState, finding: dict[str, Any], port: int) -> dict[str, Any]:
    """Pick the numbers the answer shows: code, listener, range, block, dynamic range."""
    details: dict[str, Any] = {}
    if finding:
        if not pd.isna(finding["error_code"]):
            details["error_code"] = int(finding["error_code"])
        if not pd.isna(finding["pid"]):
            details["pid"] = int(finding["pid"])
            details["process"] = None if pd.isna(finding["process"]) else str(finding["process"])
        if not pd.isna(finding["range_start"]):
            details["range_start"] = int(finding["range_start"])
            details["range_end"] = int(finding["range_end"])
            details["administered"] = bool(finding["administered"])
        if finding["diagnosis"] in (Diagnosis.PROBABLY_RESERVED, Diagnosis.UNEXPLAINED):
            details["block_start"] = int(finding["block_start"])
            details["block_end"] = int(finding["block_end"])
        low, high = int(finding["dynamic_start"]), int(finding["dynamic_end"])
        captured = bool(finding["dynamic_captured"])
    else:
        dynamic = tcp4_dynamic(state)
        captured = not dynamic.empty
        low, count = (
            (int(dynamic["start"].iloc[0]), int(dynamic["count"].iloc[0]))
            if captured
            else default_dynamic("tcp", "ipv4")
        )
        high = low + count - 1
    details.update(dynamic_start=low, dynamic_end=high, dynamic_captured=captured)
    return details


def _evidence(
    meta: pd.Series, families: tuple[str, ...], details: dict[str, Any], port: int
) -> tuple[str, ...]:
    lines = [f"snapshot {meta['snapshot_id']} taken {meta['taken_at']:%Y-%m-%d %H:%M} UTC "
             f"(source: {meta['source']})"]  # fmt: skip
    if "error_code" in details:
        lines.append(f"binding TCP {port} failed with {describe_code(details['error_code'])} "
                     f"on {' and '.join(families)}")  # fmt: skip
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
    if "range_start" in details:
        kind = "administered '*'" if details["administered"] else "run-time, no '*'"
        lines.append(f"excluded range {details['range_start']}–{details['range_end']} ({kind})")
    elif meta["excluded_known"]:
        lines.append("no captured excluded range covers it")
    else:
        lines.append("no excludedportrange output was captured")
    if "block_start" in details:
        size = details["block_end"] - details["block_start"] + 1
        lines.append(f"it lies in the contiguous block {details['block_start']}–"
                     f"{details['block_end']} ({size} failing ports)")  # fmt: skip
    low, high = details["dynamic_start"], details["dynamic_end"]
    inside = "inside" if in_dynamic_range(port, low, high) else "outside"
    lines.append(f"it is {inside} {describe_dynamic(low, high, details['dynamic_captured'])}")
    if details["dynamic_captured"] and low != DEFAULT_DYNAMIC_START:
        lines.append(
            f"the TCP dynamic range was moved from Windows' default {DEFAULT_DYNAMIC_START}"
        )
    return tuple(lines)
