"""The diagnosis of a snapshot's ports: computed once, when the snapshot is stored.

``diagnose`` turns what one snapshot captured (bind failures, excluded ranges, listeners, dynamic
ranges, Hyper-V and winnat state) into *findings*: stretches of ports of one protocol and family
that share one explanation. Every output — the SQL views, ``explain``, the report and alerts —
reads the stored findings; none classifies again.

A port's status is the finding that covers it, or, where none does, ``free`` (the bind sweep
ran) or ``unknown`` (it did not). Findings, in the order the rules are tried:

- ``reserved``: inside an excluded range taken at run time (WinNAT/HNS, Hyper-V). An
  administered (``*``) range blocks nothing: a program may still bind its ports; it only keeps
  them out of the ephemeral pool and out of WinNAT's reach (facts C), so it explains no failure;
- ``in-use``: a listener holds it (one of the same family first), named, with the kernel and
  Windows' own services told apart from other processes;
- ``probably-reserved``: no excluded ranges were captured, and the port fails with WSAEACCES
  inside a run of at least ``MIN_BLOCK`` such ports that lies in the dynamic range (captured,
  else the Windows default, and the reason says which);
- ``unexplained``: it fails and none of the above tells why;
- ``at-risk`` (never a failing port): free now, inside the TCP dynamic range of a host where
  WinNAT/Hyper-V reserve blocks, which move at every boot, and not inside an administered range
  (which they never take).

Without a bind sweep, excluded ranges and listeners still give ``reserved`` and ``in-use``
findings. Each finding carries its evidence (the range and who owns it, the failing run, the
listener, the dynamic range and whether it was captured) and the ordered fixes that
``plan_fixes`` — the one remediation policy — picks for it. ``word`` says why in a sentence,
from those fields, wherever a finding is shown; the sentence itself is not stored.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from itertools import pairwise
from operator import attrgetter
from types import SimpleNamespace
from typing import Any

from collector.windows import (
    DEFAULT_DYNAMIC_START,
    HYPERV_FEATURE,
    MIN_BLOCK,
    RUNNING,
    RUNTIME_OWNER,
    SYSTEM_PORTS,
    WELL_KNOWN_PIDS,
    WINDOWS_PROCESSES,
    WINNAT_SERVICE,
    WSAEACCES,
    default_dynamic,
    describe_code,
)


class Diagnosis(StrEnum):
    """Why a port binds or not. ``free`` and ``unknown`` are never stored: no finding says so."""

    RESERVED = "reserved"
    PROBABLY_RESERVED = "probably-reserved"
    IN_USE = "in-use"
    UNEXPLAINED = "unexplained"
    AT_RISK = "at-risk"
    FREE = "free"
    UNKNOWN = "unknown"


class PortStatus(StrEnum):
    """What a team needs to know of one port of one host (the wanted-ports matrix, ``explain``)."""

    FREE = "free"
    AT_RISK = "at-risk"
    IN_USE = "in-use"
    RESERVED = "reserved"
    BLOCKED = "blocked"  # fails, and nothing captured tells why
    UNKNOWN = "unknown"


_STATUS = {
    Diagnosis.RESERVED: PortStatus.RESERVED,
    Diagnosis.PROBABLY_RESERVED: PortStatus.RESERVED,
    Diagnosis.IN_USE: PortStatus.IN_USE,
    Diagnosis.UNEXPLAINED: PortStatus.BLOCKED,
    Diagnosis.AT_RISK: PortStatus.AT_RISK,
    Diagnosis.FREE: PortStatus.FREE,
    Diagnosis.UNKNOWN: PortStatus.UNKNOWN,
}


class Fix(StrEnum):
    """A kind of fix; ``reports.remediation`` words each one as copyable commands."""

    RESTART_WINNAT = "restart-winnat"
    RESERVE_PORTS = "reserve-ports"
    RESERVE_PORTS_HYPERV = "reserve-ports-hyperv"
    RESET_DYNAMIC_RANGE = "reset-dynamic-range"
    STOP_PROCESS = "stop-process"
    USE_ANOTHER_PORT = "use-another-port"


class Holder(StrEnum):
    """Who holds a port: Windows itself (the kernel or one of its services), or a program."""

    WINDOWS = "windows"
    PROCESS = "process"


# winnat's status when services were read and winnat was not among them.
NOT_INSTALLED = "NotInstalled"

_FailureRow = tuple[str, str, int, int, int]  # protocol, family, start, end, error code
_ExcludedRow = tuple[str, str, int, int, bool]  # protocol, family, start, end, administered
_ListenerRow = tuple[
    str, str, int, "int | None", "str | None"
]  # protocol, address, port, pid, name
_DynamicRow = tuple[str, str, int, int]  # protocol, family, start, count


@dataclass(frozen=True, slots=True)
class HostState:
    """What the remediation policy needs of a host: Hyper-V, winnat, WSL."""

    hyperv: str | None = None  # the Microsoft-Hyper-V feature state, None when not read
    winnat: str | None = None  # winnat's status; None when services were not read
    wsl: bool = False

    @property
    def hyperv_owns(self) -> bool:
        """Tell whether Hyper-V rather than winnat holds the run-time reservations."""
        return self.hyperv == "Enabled" and self.winnat is not None and not self.winnat_running

    @property
    def winnat_running(self) -> bool:
        """Tell whether winnat is known to run."""
        return self.winnat is not None and self.winnat.casefold() == RUNNING.casefold()


@dataclass(frozen=True, slots=True)
class Facts:
    """What one snapshot captured; ``None`` means not captured, unlike an empty list."""

    failures: Sequence[_FailureRow] | None
    excluded: Sequence[_ExcludedRow] | None
    listeners: Sequence[_ListenerRow] | None
    dynamic: Sequence[_DynamicRow]
    host: HostState


@dataclass(frozen=True, slots=True)
class Finding:
    """Ports ``start``–``end`` of one protocol and family that share one explanation."""

    protocol: str
    family: str
    start: int
    end: int
    diagnosis: str
    dynamic_start: int  # the dynamic range it was judged against
    dynamic_end: int
    dynamic_captured: bool  # False: Windows' default, assumed
    error_code: int | None = None  # None: the port did not fail (or was not swept)
    administered: bool | None = None  # of the covering excluded range
    range_start: int | None = None  # the covering excluded range
    range_end: int | None = None
    block_start: int | None = None  # the run of failing ports it belongs to
    block_end: int | None = None
    pid: int | None = None  # the listener holding it
    process: str | None = None
    holder: str | None = None
    fixes: str = ""  # Fix values, space-separated, first fix first
    # Whether its ports lie in the dynamic range: findings never straddle its edges.
    in_dynamic: bool = field(init=False)

    def __post_init__(self) -> None:
        """Work out ``in_dynamic`` from the first port."""
        inside = in_dynamic_range(self.start, self.dynamic_start, self.dynamic_end)
        object.__setattr__(self, "in_dynamic", inside)

    def row(self) -> tuple[object, ...]:
        """Return the finding as a tuple in ``FINDING_COLUMNS`` order."""
        # Not dataclasses.astuple: its deep copy of plain values took most of the diagnosis's
        # time.
        return _ROW(self)

    @property
    def fix_list(self) -> tuple[Fix, ...]:
        """Return the fixes as enum values, in order."""
        return tuple(Fix(word) for word in self.fixes.split())


FINDING_COLUMNS = tuple(f.name for f in fields(Finding))
# What two findings next to each other must share to be one: all but where they lie.
_EXTENT = ("start", "end", "in_dynamic")
_SHARED = tuple(name for name in FINDING_COLUMNS if name not in _EXTENT)
_ROW = attrgetter(*FINDING_COLUMNS)
_SHARED_FIELDS = attrgetter(*_SHARED)


def in_dynamic_range(port: int, low: int, high: int) -> bool:
    """Tell whether a port lies in the dynamic range ``low``–``high`` (both ends included)."""
    return low <= port <= high


def diagnose(facts: Facts) -> list[Finding]:
    """Return the findings of one snapshot, sorted by protocol, family and port."""
    excluded = _merge_families(facts.excluded or ())
    listeners = _Listeners(facts.listeners or ())
    dynamic: dict[tuple[str, str], tuple[int, int, bool]] = {}
    found = [
        finding
        for run in sorted(facts.failures or ())
        for finding in _failing(run, facts, excluded, listeners, dynamic)
    ]
    if facts.failures is None:
        found += _unswept_reservations(facts, excluded)
    found += _held(facts, listeners, found)
    if facts.failures is not None and _reserving(facts, found):
        protected = [(a, b) for a, b, admin, _ in excluded.get("tcp", []) if admin]
        found += _at_risk(facts, found, protected)
    for finding in found:
        _amend(finding, "fixes", " ".join(plan_fixes(finding, facts.host)))
    return sorted(found, key=lambda f: (f.protocol, f.family, f.start))


def _amend(finding: Finding, name: str, value: object) -> None:
    """Complete a finding this diagnosis has just made, before anyone else holds it.

    Findings are frozen for everyone after ``diagnose``; copying each with dataclasses.replace
    to fill its fixes and to stretch it over its neighbours took 40% of the diagnosis.
    """
    object.__setattr__(finding, name, value)


def plan_fixes(finding: Finding, host: HostState) -> tuple[Fix, ...]:
    """Return the fixes for one finding on one host, first fix first (facts.md section B).

    Never a winnat fix for a port a process holds; never ``restart-winnat`` where winnat is
    known not to run; ``reserve-ports-hyperv`` where Hyper-V, not winnat, holds the blocks.
    """
    kind = finding.diagnosis
    if kind == Diagnosis.IN_USE:
        return (Fix.USE_ANOTHER_PORT if finding.holder == Holder.WINDOWS else Fix.STOP_PROCESS,)
    if kind == Diagnosis.RESERVED and finding.administered:
        return ()  # an administrator's own reservation: nothing to undo behind their back
    if kind not in (Diagnosis.RESERVED, Diagnosis.PROBABLY_RESERVED, Diagnosis.AT_RISK):
        return ()
    fixes: list[Fix] = []
    if kind != Diagnosis.AT_RISK and (host.winnat is None or host.winnat_running):
        fixes.append(Fix.RESTART_WINNAT)
    fixes.append(Fix.RESERVE_PORTS_HYPERV if host.hyperv_owns else Fix.RESERVE_PORTS)
    moved = finding.dynamic_captured and finding.dynamic_start != DEFAULT_DYNAMIC_START
    if moved and finding.protocol == "tcp" and finding.in_dynamic:
        fixes.append(Fix.RESET_DYNAMIC_RANGE)
    return tuple(fixes)


def status_of(diagnosis: str) -> PortStatus:
    """Return the port status a diagnosis amounts to."""
    return _STATUS[Diagnosis(diagnosis)]


def serves(process: str | None, wanted_process: str | None) -> bool:
    """Tell whether a port's holder is the service configured to want it (names fold case)."""
    if not process or not wanted_process:
        return False
    return _bare(process) == _bare(wanted_process)


def _bare(name: str) -> str:
    return name.casefold().removesuffix(".exe")


def absent_reason(swept: bool) -> str:
    """Say why a port no finding covers is free, or why that cannot be told."""
    if swept:
        return "It bound in the bind sweep, nothing listens on it and no excluded range covers it."
    return "No bind sweep was recorded, and no captured excluded range or listener covers it."


def host_state(
    features: Iterable[tuple[str, str]], services: Iterable[tuple[str, str]] | None, wsl: bool
) -> HostState:
    """Return the host state from (name, state) features and (name, status) services."""
    hyperv = next((state for name, state in features if name == HYPERV_FEATURE), None)
    winnat = None
    if services is not None:
        statuses = {name.casefold(): status for name, status in services}
        winnat = statuses.get(WINNAT_SERVICE, NOT_INSTALLED if statuses else None)
    return HostState(hyperv=hyperv, winnat=winnat, wsl=wsl)


def holder_of(pid: int | None, process: str | None) -> Holder:
    """Tell whether Windows itself or another program holds a port."""
    if pid in WELL_KNOWN_PIDS or _bare(process or "") in WINDOWS_PROCESSES:
        return Holder.WINDOWS
    return Holder.PROCESS


def describe_holder(pid: int | None, process: str | None, port: int | None = None) -> str:
    """Name a listening process for people, saying when it is Windows itself."""
    name = f"{process} (PID {pid})" if process else f"PID {pid} (process name not captured)"
    if pid in WELL_KNOWN_PIDS:
        service = SYSTEM_PORTS.get(port) if port is not None else None
        return f"{name}, the Windows kernel" + (f", for {service}" if service else "")
    if holder_of(pid, process) == Holder.WINDOWS:
        return f"{name}, a Windows service host"
    return name


class _Listeners:
    """Listeners of each protocol by port, in the order the snapshot lists them."""

    def __init__(self, rows: Iterable[_ListenerRow]) -> None:
        self.by_port: dict[tuple[str, int], list[_ListenerRow]] = {}
        for row in rows:
            self.by_port.setdefault((row[0], row[2]), []).append(row)
        self.ports: dict[str, list[int]] = {}
        for protocol, port in sorted(self.by_port):
            self.ports.setdefault(protocol, []).append(port)

    def within(self, protocol: str, start: int, end: int) -> list[int]:
        ports = self.ports.get(protocol, [])
        return ports[bisect_left(ports, start) : bisect_right(ports, end)]

    def holder(self, protocol: str, port: int, family: str) -> _ListenerRow | None:
        rows = self.by_port.get((protocol, port), [])
        same = [row for row in rows if _family_of(row[1]) == family]
        return (same or rows)[0] if rows else None


def _family_of(address: str) -> str:
    return "ipv6" if ":" in address else "ipv4"


def _merge_families(rows: Iterable[_ExcludedRow]) -> dict[str, list[tuple[int, int, bool, str]]]:
    """Excluded ranges per protocol, families merged (netsh ipv4 and ipv6 read the same keys)."""
    merged: dict[tuple[str, int, int, bool], str] = {}
    for protocol, family, start, end, administered in sorted(rows, key=lambda r: r[1]):
        merged.setdefault((protocol, start, end, bool(administered)), family)
    ranges: dict[str, list[tuple[int, int, bool, str]]] = {}
    for (protocol, start, end, administered), family in sorted(merged.items()):
        ranges.setdefault(protocol, []).append((start, end, administered, family))
    return ranges


def _cover(ranges: Sequence[tuple[int, int, bool, str]], port: int) -> tuple[int, int, bool] | None:
    """Return the run-time excluded range that blocks a port (the lowest), if one does.

    Administered ranges are passed over: they do not block a bind (facts C).
    """
    hits = [(start, end) for start, end, admin, _ in ranges if start <= port <= end and not admin]
    if not hits:
        return None
    start, end = min(hits)
    return start, end, False


def _dynamic(facts: Facts, protocol: str, family: str) -> tuple[int, int, bool]:
    """Return the dynamic range (low, high, captured); IPv6 falls back on IPv4's, then default."""
    table = {(p, f): (start, count) for p, f, start, count in facts.dynamic}
    for key in ((protocol, family), (protocol, "ipv4")):
        if key in table:
            start, count = table[key]
            return start, start + count - 1, True
    start, count = default_dynamic(protocol, family)
    return start, start + count - 1, False


def _failing(
    run: _FailureRow,
    facts: Facts,
    excluded: dict[str, list[tuple[int, int, bool, str]]],
    listeners: _Listeners,
    dynamic: dict[tuple[str, str], tuple[int, int, bool]],
) -> list[Finding]:
    """Split one run of failing ports into stretches with one explanation each.

    ``dynamic`` keeps each (protocol, family)'s dynamic range for the snapshot's other runs.
    """
    protocol, family, start, end, code = run
    key = (protocol, family)
    if key not in dynamic:
        dynamic[key] = _dynamic(facts, protocol, family)
    low, high, captured = dynamic[key]
    # Only a range that reaches into the run can cut it or cover one of its ports; most runs
    # are a port or two that nothing cuts, so they skip the sorting of cuts.
    ranges = [r for r in excluded.get(protocol, ()) if r[0] <= end and r[1] >= start]
    ports = listeners.within(protocol, start, end)
    edges: Sequence[int]
    if ranges or ports or start < low <= end or start <= high < end:
        cuts = {start, end + 1, low, high + 1}
        for range_start, range_end, _, _ in ranges:
            cuts.add(range_start)
            cuts.add(range_end + 1)
        for port in ports:
            cuts.add(port)
            cuts.add(port + 1)
        edges = sorted(cut for cut in cuts if start <= cut <= end + 1)
    else:
        edges = (start, end + 1)
    in_dynamic = max(0, min(end, high) - max(start, low) + 1)
    found: list[Finding] = []
    for first, after in pairwise(edges):
        cover = _cover(ranges, first) if ranges else None
        # A listener holds a port of the run only when ``within`` found one there.
        held = listeners.holder(protocol, first, family) if ports else None
        inside = in_dynamic_range(first, low, high)
        if cover is not None:
            kind = Diagnosis.RESERVED
        elif held is not None:
            kind = Diagnosis.IN_USE
        elif facts.excluded is None and code == WSAEACCES and inside and in_dynamic >= MIN_BLOCK:
            kind = Diagnosis.PROBABLY_RESERVED
        else:
            kind = Diagnosis.UNEXPLAINED
        pid, process = (held[3], held[4]) if held is not None else (None, None)
        finding = Finding(
            protocol=protocol,
            family=family,
            start=first,
            end=after - 1,
            diagnosis=kind,
            error_code=code,
            administered=None if cover is None else cover[2],
            range_start=None if cover is None else cover[0],
            range_end=None if cover is None else cover[1],
            block_start=start,
            block_end=end,
            pid=pid,
            process=process,
            holder=None if held is None else holder_of(pid, process),
            dynamic_start=low,
            dynamic_end=high,
            dynamic_captured=captured,
            fixes="",
        )
        previous = found[-1] if found else None
        if previous is not None and _same(previous, finding) and previous.end + 1 == first:
            _amend(previous, "end", finding.end)
        else:
            found.append(finding)
    return found


def _same(a: Finding, b: Finding) -> bool:
    return bool(_SHARED_FIELDS(a) == _SHARED_FIELDS(b))


def word(finding: Mapping[str, Any], excluded_known: bool) -> str:
    """Say why, in a sentence, from a finding's fields (a ``Finding``'s names, as stored).

    The sentence is not stored: it is worded from the evidence each time a finding is shown,
    the same way by every output. ``excluded_known``: the snapshot captured excluded ranges.
    """
    f = SimpleNamespace(**finding)
    if f.error_code is None:
        return _word_unfailed(f)
    code = describe_code(f.error_code)
    dynamic = describe_dynamic(f.dynamic_start, f.dynamic_end, f.dynamic_captured)
    who = describe_holder(f.pid, f.process, f.start) if f.pid is not None else ""
    if f.diagnosis == Diagnosis.RESERVED:
        also = f" {who} also listens on it." if who else ""
        if f.administered:
            return _legacy_administered(f)
        quiet = (
            ""
            if who
            else (
                " Nothing listens on it: a reservation is not a socket, so netstat shows nothing."
            )
        )
        return (
            f"Inside the excluded range {f.range_start}–{f.range_end} that {RUNTIME_OWNER} "
            f"reserved at run time (no '*'), so binds fail with {code}.{also}{quiet}"
        )
    if f.diagnosis == Diagnosis.IN_USE:
        return f"{who} listens on it, so binds fail with {code}."
    size = (f.block_end or 0) - (f.block_start or 0) + 1
    if f.diagnosis == Diagnosis.PROBABLY_RESERVED:
        return (
            f"Probably reserved by WinNAT/Hyper-V: it fails with {code} inside a contiguous "
            f"block of {size} failing ports ({f.block_start}–{f.block_end}) within {dynamic}, "
            "and nothing listens on it. No excludedportrange output was captured to confirm "
            "the reservation."
        )
    if excluded_known and f.in_dynamic:
        return (
            f"Fails with {code} inside {dynamic}, yet no excluded range covers it and nothing "
            "listens on it: Windows may have lent it as the local port of an outgoing "
            "connection, or it was reserved after the ranges were read."
        )
    if excluded_known:
        return (
            f"Fails with {code} outside {dynamic}; no excluded range covers it and nothing "
            "listens on it."
        )
    return (
        f"Fails with {code}; no excluded ranges were captured, and it is not part of a block "
        f"of {MIN_BLOCK} or more access-forbidden ports inside {dynamic}, so this snapshot "
        "cannot tell why."
    )


def _word_unfailed(f: SimpleNamespace) -> str:
    """Word a finding of a port that did not fail: held, reserved without a sweep, or at risk."""
    if f.diagnosis == Diagnosis.IN_USE:
        who = describe_holder(f.pid, f.process, f.start)
        return (
            f"{who} listens on it, so another program cannot bind it, although the bind "
            "sweep recorded no failure there."
        )
    if f.diagnosis == Diagnosis.RESERVED:
        if f.administered:
            return _legacy_administered(f)
        return (
            f"No bind sweep was recorded, but it lies inside the excluded range "
            f"{f.range_start}–{f.range_end} (run time, {RUNTIME_OWNER}), so binds fail with "
            f"{describe_code(WSAEACCES)}."
        )
    dynamic = describe_dynamic(f.dynamic_start, f.dynamic_end, f.dynamic_captured)
    return (
        f"Free now, but it lies inside {dynamic}, where WinNAT/Hyper-V already reserve "
        "blocks of ports on this host; they are placed anew at every boot, so the next "
        "reboot may take it."
    )


def _legacy_administered(f: SimpleNamespace) -> str:
    """Word a finding stored before administered ranges were known not to block binds."""
    return (
        f"Inside the administered ('*') excluded range {f.range_start}–{f.range_end}, which "
        "portfleet before 2026-12 took for the cause; an administered range does not block a "
        "bind. Run portfleet db reparse to diagnose this snapshot again."
    )


def describe_dynamic(low: int, high: int, captured: bool) -> str:
    """Describe the dynamic range used, saying when it is the assumed default."""
    assumed = " (the Windows default, assumed because the dynamic range was not captured)"
    return f"the dynamic port range {low}–{high}{'' if captured else assumed}"


def _unswept_reservations(
    facts: Facts, excluded: dict[str, list[tuple[int, int, bool, str]]]
) -> list[Finding]:
    """Run-time excluded ranges of a snapshot without a bind sweep: binds there fail all the same.

    Administered ranges are left out: their ports bind (facts C).
    """
    found = []
    for protocol, ranges in excluded.items():
        for start, end, admin, family in ranges:
            if admin:
                continue
            low, high, captured = _dynamic(facts, protocol, family)
            edges = sorted(
                {start, end + 1} | {cut for cut in (low, high + 1) if start < cut <= end}
            )
            for first, after in pairwise(edges):
                found.append(
                    Finding(protocol, family, first, after - 1, Diagnosis.RESERVED, low,
                            high, captured, administered=admin, range_start=start, range_end=end)
                )  # fmt: skip
    return found


def _covered(
    found: Sequence[Finding], protocol: str, also: Sequence[tuple[int, int]] = ()
) -> list[tuple[int, int]]:
    """Return the merged stretches that findings of a protocol (any family), and ``also``, cover."""
    spans = sorted([*((f.start, f.end) for f in found if f.protocol == protocol), *also])
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _inside(spans: Sequence[tuple[int, int]], port: int) -> bool:
    index = bisect_right(spans, (port, 1 << 30)) - 1
    return index >= 0 and spans[index][0] <= port <= spans[index][1]


def _held(facts: Facts, listeners: _Listeners, found: Sequence[Finding]) -> list[Finding]:
    """Listened-on ports that no failure covers (a sweep may keep only 10013, as the seed's)."""
    result = []
    covered = {protocol: _covered(found, protocol) for protocol in listeners.ports}
    for (protocol, port), rows in sorted(listeners.by_port.items()):
        if _inside(covered[protocol], port):
            continue
        _, address, _, pid, process = rows[0]
        family = _family_of(address)
        result.append(
            Finding(
                protocol,
                family,
                port,
                port,
                Diagnosis.IN_USE,
                *_dynamic(facts, protocol, family),
                pid=pid,
                process=process,
                holder=holder_of(pid, process),
            )
        )
    return result


def _reserving(facts: Facts, found: Sequence[Finding]) -> bool:
    """Tell whether WinNAT/Hyper-V reserve blocks on this host (so free ports are at risk)."""
    runtime = any(
        protocol == "tcp" and not admin and end - start + 1 >= MIN_BLOCK
        for protocol, _, start, end, admin in facts.excluded or ()
    )
    return runtime or any(f.diagnosis == Diagnosis.PROBABLY_RESERVED for f in found)


def _at_risk(
    facts: Facts, found: Sequence[Finding], protected: Sequence[tuple[int, int]]
) -> list[Finding]:
    """Return the free TCP ports of the dynamic range, where the next boot may place a block.

    Ports of an administered range are ``protected``: WinNAT and Hyper-V place no block there.
    """
    low, high, captured = _dynamic(facts, "tcp", "ipv4")
    result = []
    cursor = low
    for start, end in [*_covered(found, "tcp", protected), (high + 1, high + 1)]:
        if end < cursor:
            continue
        if start > cursor:
            gap_end = min(start - 1, high)
            result.append(
                Finding("tcp", "ipv4", cursor, gap_end, Diagnosis.AT_RISK, low, high, captured)
            )
        cursor = max(cursor, end + 1)
        if cursor > high:
            break
    return result
