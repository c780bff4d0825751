"""A realistic ReportData built by hand for the report tests: a dozen hosts, hostile strings too.

The strings a host controls (its name, process names, update titles, messages) include markup
that would run if the report pasted them into the page unescaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from reports.model import COLUMNS, ReportData, empty_frame

HOSTILE_HOST = "<img src=x onerror=alert(1)>"
HOSTILE_PROCESS = '"><script>alert(2)</script>'
HOSTILE_TITLE = (
    "2024-04 Cumulative Update for Windows 11 \"23H2\" & 'Server' (KB5036893) <x-preview>"
)
# A NAT object's name (Get-NetNat) as Plotly would read it: bold, an entity, a link.
HOSTILE_NAT = '<b>nat</b> &amp; <a href="https://example.com/">x</a>'
PROBE_COMMAND = 'powershell -ExecutionPolicy Bypass -File .\\probe.ps1 > "%TEMP%\\probe.json"'
WANTED_PORTS = (80, 443, 3000, 5432, 8080, 50051)
GENERATED_AT = datetime(2024, 5, 14, 6, 0, tzinfo=UTC)
DATABASE = "sqlite:///var/lib/portfleet/store.db"

_WINNAT = "reserved at run time (WinNAT/HNS)"
_ADMIN = "administered (*): added with netsh, persistent"


def _at(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@dataclass(frozen=True, slots=True)
class _Host:
    name: str
    taken_at: str | None
    os_build: str = "10.0.22631.3447"
    hyperv: bool = True
    wsl: bool = True
    docker: str | None = "4.30.0"
    dynamic: tuple[int, int] = (49152, 16384)
    excluded: tuple[tuple[int, int, bool], ...] = ()
    listeners: tuple[tuple[int, int, str], ...] = ()
    unexplained: tuple[int, ...] = ()
    unexplained_class: str = "unexplained"
    excluded_known: bool = True
    status: str = "ok"
    error_class: str | None = None
    message: str | None = None
    failed_attempts: int = 0
    stale: bool = False
    events: tuple[tuple[str, str, str, tuple[int, int] | None, tuple[int, int] | None], ...] = ()
    causes: dict[str, list[dict[str, str | None]]] = field(default_factory=dict)
    nat: str = "WinNAT/HNS reservation"


def _update(at: str | None, title: str = HOSTILE_TITLE) -> dict[str, str | None]:
    return {"kind": "update", "cause": "KB5036893", "detail": title, "at": at}


def _cause(kind: str, cause: str, detail: str | None = None) -> dict[str, str | None]:
    return {"kind": kind, "cause": cause, "detail": detail, "at": None}


def _reboot(at: str) -> dict[str, str | None]:
    return {"kind": "reboot", "cause": "reboot", "detail": None, "at": at}


_HOSTS = (
    _Host(
        "build-01",
        "2024-05-14T03:02:11",
        excluded=((50000, 50059, False), (50301, 50400, False)),
        listeners=((5432, 4242, "postgres.exe"),),
        events=(
            ("range-appeared", "2024-05-09T03:01:00", "2024-05-08T03:00:00", (50000, 50059), None),
        ),
        causes={
            "2024-05-09T03:01:00": [
                _update("2024-05-08T18:31:00Z"),
                _reboot("2024-05-08T18:40:00Z"),
            ]
        },
    ),
    _Host(
        "build-02",
        "2024-05-14T03:01:40",
        excluded=((49709, 49808, False), (5357, 5357, True)),
        events=(
            (
                "range-moved",
                "2024-05-02T03:00:00",
                "2024-05-01T03:00:00",
                (49709, 49808),
                (50110, 50209),
            ),
        ),
        causes={
            "2024-05-02T03:00:00": [
                _cause("docker", "Docker 4.30.0", "Docker Desktop 4.29.0 → 4.30.0"),
                _reboot("2024-05-01T21:12:00Z"),
            ]
        },
    ),
    _Host("build-03", "2024-05-14T03:03:05", docker=None, wsl=False, hyperv=False),
    _Host(
        "dev-ana",
        "2024-05-14T02:58:51",
        excluded=((2869, 2869, True), (50051, 50150, False)),
        listeners=((3000, 9120, "node.exe"), (443, 4, "System")),
        events=(
            ("range-appeared", "2024-05-10T03:00:00", "2024-05-09T03:00:00", (50051, 50150), None),
            (
                "range-disappeared",
                "2024-04-28T03:00:00",
                "2024-04-27T03:00:00",
                None,
                (61000, 61099),
            ),
        ),
        causes={
            "2024-05-10T03:00:00": [_update(None), _cause("wsl", "WSL 2.2.4", "2.1.5 → 2.2.4")],
            "2024-04-28T03:00:00": [],
        },
    ),
    _Host(
        "dev-ben",
        "2024-05-14T03:05:00",
        excluded=((8080, 8080, True),),
        unexplained=(1433, 1434),
    ),
    _Host(
        "dev-chloe",
        "2024-05-13T03:02:00",
        dynamic=(1025, 64510),
        excluded=((1101, 1200, False), (3000, 3099, False)),
        events=(
            ("range-appeared", "2024-05-07T03:00:00", "2024-05-06T03:00:00", (3000, 3099), None),
        ),
        causes={
            "2024-05-07T03:00:00": [
                _cause("dynamic-range", "dynamic range 1025+64510", "was 49152+16384"),
                _update("2024-05-06T22:02:00Z"),
            ]
        },
    ),
    _Host(
        "dev-dmitri",
        "2024-05-14T03:04:10",
        excluded=((50500, 50506, False),),
        unexplained=(55000, 55001, 55002),
        unexplained_class="dynamic-unreserved",
    ),
    _Host(
        "qa-win11",
        "2024-05-14T03:00:30",
        os_build="10.0.22631.3527",
        excluded=((50000, 50008, False),),
        listeners=((80, 4, "System"),),
        events=(
            (
                "range-moved",
                "2024-05-11T03:00:00",
                "2024-05-10T03:00:00",
                (50000, 50008),
                (52000, 52008),
            ),
        ),
        causes={
            "2024-05-11T03:00:00": [
                _cause("bios", "BIOS update", "1.17.0 → 1.18.2"),
                _reboot("2024-05-10T12:00:00Z"),
            ]
        },
    ),
    _Host(
        "ws-legacy",
        "2024-05-13T03:10:00",
        os_build="10.0.19045.4291",
        wsl=False,
        docker=None,
        excluded_known=False,
        unexplained=tuple(range(50000, 50020)),
        unexplained_class="probably-reserved",
        status="partial",
        message="excludedportrange: not elevated",
    ),
    _Host(
        "laptop-eve",
        None,
        status="failed",
        error_class="unreachable",
        message="no answer from http://laptop-eve:5985/wsman: is the laptop on and WinRM enabled?",
        failed_attempts=3,
        stale=True,
    ),
    _Host(
        "kiosk-7",
        "2024-05-05T03:00:00",
        os_build="10.0.19045.3930",
        docker=None,
        excluded=((50200, 50263, False),),
        status="failed",
        error_class="timeout",
        message="the probe did not finish within 120 s",
        failed_attempts=9,
        stale=True,
    ),
    _Host(
        HOSTILE_HOST,
        "2024-05-14T03:06:00",
        excluded=((50100, 50149, False),),
        listeners=((8080, 6666, HOSTILE_PROCESS),),
        events=(
            ("range-appeared", "2024-05-09T03:05:00", "2024-05-08T03:05:00", (50100, 50149), None),
        ),
        causes={"2024-05-09T03:05:00": [_update("2024-05-08T20:00:00Z")]},
        nat=f"reserved for NAT {HOSTILE_NAT}",
    ),
)


def _days_before_report(taken_at: str | None) -> float | None:
    if taken_at is None:
        return None
    return (GENERATED_AT - _at(taken_at).to_pydatetime()).total_seconds() / 86400


def _failures(host: _Host, snapshot_id: int) -> list[dict[str, object]]:
    assert host.taken_at is not None
    dynamic_end = host.dynamic[0] + host.dynamic[1] - 1
    base = {"host": host.name, "snapshot_id": snapshot_id, "taken_at": _at(host.taken_at)}
    base |= {"protocol": "tcp", "family": "ipv4"}
    rows: list[dict[str, object]] = []

    def add(port: int, run: tuple[int, int], **extra: object) -> None:
        in_dynamic = host.dynamic[0] <= port <= dynamic_end
        rows.append(
            base
            | {
                "port": port,
                "failure_start": run[0],
                "failure_end": run[1],
                "in_dynamic_range": in_dynamic,
                "excluded_start": None,
                "excluded_end": None,
                "administered": None,
                "pid": None,
                "process": None,
            }
            | extra
        )

    for start, end, administered in host.excluded:
        for port in range(start, end + 1):
            add(
                port,
                (start, end),
                error_code=10013,
                classification="excluded-administered" if administered else "excluded",
                reason=f"inside excluded range {start}–{end}, "
                + (_ADMIN if administered else _WINNAT),
                excluded_start=start,
                excluded_end=end,
                administered=administered,
            )
    for port, pid, process in host.listeners:
        add(
            port,
            (port, port),
            error_code=10048,
            classification="in-use",
            reason=f"held by {process} (PID {pid})",
            pid=pid,
            process=process,
        )
    if host.unexplained:
        run = (min(host.unexplained), max(host.unexplained))
        for port in host.unexplained:
            add(
                port,
                run,
                error_code=10013,
                classification=host.unexplained_class,
                reason="bind failed with 10013 and nothing in the snapshot explains it",
            )
    return rows


def _wanted_cell(host: _Host, port: int) -> dict[str, object]:
    cell: dict[str, object] = {"host": host.name, "port": port, "serving": False, "fixes": []}
    if host.taken_at is None:
        reason = "no snapshot of this host yet"
        return cell | {
            "status": "unknown",
            "classification": None,
            "reason": reason,
            "evidence": None,
            "taken_at": None,
        }
    cell["taken_at"] = _at(host.taken_at)
    for start, end, administered in host.excluded:
        if start <= port <= end:
            evidence = f"netsh int ipv4 show excludedportrange protocol=tcp: {start} {end}"
            evidence += " *" if administered else ""
            reason = f"inside {start}–{end}, {_ADMIN if administered else _WINNAT}"
            return cell | {
                "status": "reserved",
                "classification": "reserved",
                "reason": reason,
                "evidence": evidence,
            }
    for listen, pid, process in host.listeners:
        if listen == port:
            evidence = f"netstat -ano: TCP 0.0.0.0:{port} 0.0.0.0:0 LISTENING {pid} ({process})"
            return cell | {
                "status": "in-use",
                "classification": "in-use",
                "reason": f"held by {process} (PID {pid})",
                "evidence": evidence,
            }
    if host.name == "dev-dmitri" and port == 50051:
        reason = "Free now, but inside the dynamic range where WinNAT reserves blocks at boot."
        return cell | {
            "status": "at-risk",
            "classification": "at-risk",
            "reason": reason,
            "evidence": "dynamic range 49152–65535; bind sweep passed",
        }
    return cell | {
        "status": "free",
        "classification": "free",
        "reason": "It bound in the sweep.",
        "evidence": "bind sweep passed",
    }


def _frame(name: str, rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(COLUMNS[name]))


def build_report_data() -> ReportData:
    """Return a realistic report of twelve hosts, a few hundred failing ports, hostile names."""
    hosts: list[dict[str, object]] = []
    failures: list[dict[str, object]] = []
    port_map: list[dict[str, object]] = []
    events: list[dict[str, object]] = []
    for snapshot_id, host in enumerate(_HOSTS, start=101):
        seen = host.taken_at is not None
        rows = _failures(host, snapshot_id) if seen else []
        failures += rows
        taken = _at(host.taken_at) if host.taken_at else pd.NaT
        hosts.append(
            {
                "host": host.name,
                "snapshot_id": snapshot_id if seen else None,
                "taken_at": taken,
                "last_attempt_at": _at("2024-05-14T03:00:00"),
                "last_status": host.status,
                "last_error_class": host.error_class,
                "last_message": host.message,
                "failed_attempts": host.failed_attempts,
                "days_since_snapshot": _days_before_report(host.taken_at),
                "stale": host.stale,
                "os_build": host.os_build if seen else None,
                "last_boot_at": _at("2024-05-12T07:31:00") if seen else pd.NaT,
                "hyperv": host.hyperv if seen else None,
                "wsl": host.wsl if seen else None,
                "docker_version": host.docker if seen else None,
                "dynamic_start": host.dynamic[0] if seen else None,
                "dynamic_count": host.dynamic[1] if seen else None,
                "excluded_known": host.excluded_known if seen else None,
                "failing_ports": len(rows) if seen else None,
                "reserved_ports": (
                    sum(end - start + 1 for start, end, _ in host.excluded) if seen else None
                ),
            }
        )
        for start, end, administered in host.excluded:
            kind = "excluded-administered" if administered else "excluded"
            label = "added by an administrator (*)" if administered else host.nat
            port_map.append(
                {"host": host.name, "start": start, "end": end, "kind": kind, "label": label}
            )
        for port, pid, process in host.listeners:
            port_map.append(
                {
                    "host": host.name,
                    "start": port,
                    "end": port,
                    "kind": "in-use",
                    "label": f"{process} (PID {pid})",
                }
            )
        if host.unexplained:
            port_map.append(
                {
                    "host": host.name,
                    "start": min(host.unexplained),
                    "end": max(host.unexplained),
                    "kind": host.unexplained_class,
                    "label": "bind failed, no range or listener seen",
                }
            )
        for kind, at, previous_at, now, before in host.events:
            first, last = now or before or (0, -1)
            events.append(
                {
                    "host": host.name,
                    "kind": kind,
                    "at": _at(at),
                    "previous_at": _at(previous_at),
                    "protocol": "tcp",
                    "start": now[0] if now else None,
                    "end": now[1] if now else None,
                    "previous_start": before[0] if before else None,
                    "previous_end": before[1] if before else None,
                    "ports": last - first + 1,
                    "causes": host.causes.get(at, []),
                }
            )
    wanted = [_wanted_cell(host, port) for host in _HOSTS for port in WANTED_PORTS]
    return ReportData(
        generated_at=GENERATED_AT,
        database=DATABASE,
        wanted_ports=WANTED_PORTS,
        hosts=_frame("hosts", hosts),
        failed_attempts=_frame("failed_attempts", _failed_attempts()),
        failures=_frame("failures", failures),
        wanted=_frame("wanted", wanted),
        port_map=_frame("port_map", port_map),
        events=_frame("events", events),
        correlation=_frame("correlation", _correlation()),
        remediation=_frame("remediation", _remediation()),
    )


def _failed_attempts() -> list[dict[str, object]]:
    fault = (
        'WinRM said: <f:WSManFault Code="5" Machine="ws-legacy"><f:Message>Access is denied. '
        "</f:Message></f:WSManFault> (check the account is in Administrators)"
    )
    rows = [
        ("laptop-eve", "2024-05-14T03:00:00", "unreachable", "no answer on port 5985 & 5986"),
        ("laptop-eve", "2024-05-13T03:00:00", "unreachable", "no answer on port 5985 & 5986"),
        ("laptop-eve", "2024-05-12T03:00:00", "unreachable", "name did not resolve"),
        ("kiosk-7", "2024-05-14T03:00:00", "timeout", "the probe did not finish within 120 s"),
        ("kiosk-7", "2024-05-13T03:00:00", "timeout", "the probe did not finish within 120 s"),
        ("ws-legacy", "2024-05-12T03:00:00", "auth", fault),
        (
            HOSTILE_HOST,
            "2024-05-11T03:00:00",
            "bad_document",
            f"the document names host {HOSTILE_HOST!r}, not the one asked for",
        ),
    ]
    return [
        {"host": host, "started_at": _at(at), "error_class": error, "message": message}
        for host, at, error, message in rows
    ]


def _correlation() -> list[dict[str, object]]:
    def row(
        cause: str,
        kind: str,
        counts: tuple[int, int, int, int],
        p: float | None,
        odds: float | None,
        lag: float | None,
        with_event: list[str],
        without_event: list[str],
        rank: int | None,
    ) -> dict[str, object]:
        return {
            "cause": cause,
            "cause_kind": kind,
            "exposed_with_event": counts[0],
            "exposed_without_event": counts[1],
            "unexposed_with_event": counts[2],
            "unexposed_without_event": counts[3],
            "p_value": p,
            "odds_ratio": odds,
            "median_lag_days": lag,
            "hosts_with_event": with_event,
            "hosts_without_event": without_event,
            "enough_hosts": rank is not None,
            "rank": rank,
        }

    hit = ["build-01", "dev-ana", "dev-chloe", HOSTILE_HOST]
    return [
        row(HOSTILE_TITLE, "update", (4, 1, 2, 3), 0.0476, 6.0, 0.9, hit, ["dev-dmitri"], 1),
        row(
            "Docker Desktop 4.30.0",
            "docker",
            (2, 5, 3, 0),
            0.0833,
            0.0,
            3.5,
            ["build-02", "dev-ana"],
            ["build-01", "dev-ben", "dev-dmitri", "qa-win11", "kiosk-7"],
            2,
        ),
        row(
            "reboot",
            "reboot",
            (6, 3, 0, 1),
            1.0,
            float("inf"),
            0.4,
            ["build-01", "build-02", "dev-ana", "dev-chloe", "qa-win11", HOSTILE_HOST],
            ["dev-ben", "dev-dmitri", "build-03"],
            3,
        ),
        row("BIOS 1.18.2", "bios", (1, 0, 5, 4), None, None, 0.6, ["qa-win11"], [], None),
        row("WSL 2.2.4", "wsl", (1, 1, 5, 3), 1.0, 0.6, 0.0, ["dev-ana"], ["dev-ben"], None),
        row(
            "dynamic range 1025+64510",
            "dynamic_range",
            (1, 0, 5, 4),
            None,
            None,
            0.0,
            ["dev-chloe"],
            [],
            None,
        ),
    ]


def _remediation() -> list[dict[str, object]]:
    winnat_caveats = [
        "Stopping winnat drops the network of running WSL 2 distributions and Docker containers.",
        "Run in an elevated prompt.",
    ]
    return [
        {
            "host": "build-01",
            "action": "Keep WinNAT off port 50051",
            "commands": "net stop winnat\n"
            "netsh int ipv4 add excludedportrange protocol=tcp startport=50051 numberofports=1\n"
            "net start winnat",
            "why": "50051 lies in 50000–50059, reserved at run time by WinNAT; an administered "
            "exclusion made first keeps it free for the gRPC service.",
            "caveats": "\n".join(winnat_caveats),
        },
        {
            "host": "build-02",
            "action": "Move the dynamic port range above the team's ports",
            "commands": [
                "netsh int ipv4 set dynamicport tcp start=50100 num=15436",
                "netsh int ipv6 set dynamicport tcp start=50100 num=15436",
            ],
            "why": "Hyper-V reserves its blocks inside the dynamic range.",
            "caveats": ["Takes effect after a reboot.", "Other tools may expect 49152–65535."],
        },
        {
            "host": HOSTILE_HOST,
            "action": "Find what holds port 8080",
            "commands": "Get-Process -Id 6666 | Format-List Name,Path\n"
            'netstat -ano | findstr ":8080"',
            "why": f"{HOSTILE_PROCESS} (PID 6666) listens on 8080.",
            "caveats": None,
        },
        {
            "host": "ws-legacy",
            "action": "Re-run the probe elevated",
            "commands": PROBE_COMMAND,
            "why": "The probe was not elevated, so excluded ranges are unknown on this host.",
            "caveats": "Its 20 unexplained ports may turn out to be reserved.",
        },
    ]


def empty_report_data() -> ReportData:
    """Return a report with every frame empty, as for a new database."""
    frames: dict[str, Any] = {name: empty_frame(name) for name in COLUMNS}
    return ReportData(
        generated_at=GENERATED_AT, database="sqlite:///empty.db", wanted_ports=(), **frames
    )


def big_fleet_report_data(count: int = 1000) -> ReportData:
    """Return a report of ``count`` hosts with a few reserved ranges each (for the port map)."""
    names = [f"ws-{index:04d}" for index in range(count)]
    hosts = [
        {column: None for column in COLUMNS["hosts"]}
        | {"host": name, "dynamic_start": 49152, "dynamic_count": 16384, "stale": False}
        for name in names
    ]
    port_map = [
        {"host": name, "start": start, "end": start + 99, "kind": kind, "label": "range"}
        for index, name in enumerate(names)
        for start, kind in (
            (49700 + index % 500, "excluded"),
            (50800 + index % 300, "excluded"),
            (5357, "excluded-administered"),
            (60000 + index % 200, "unexplained"),
        )
    ]
    return replace(
        empty_report_data(),
        database="sqlite:///big.db",
        wanted_ports=WANTED_PORTS,
        hosts=_frame("hosts", hosts),
        port_map=_frame("port_map", port_map),
    )
