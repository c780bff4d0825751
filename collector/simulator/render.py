"""Render a simulated host's state as the probe document it prints, raw console text included.

The raw text follows the real console layout of each command in the host's display language
(collector.simulator.locales); the structured sections follow the probe document schema
(collector/schema/probe-document-v1.json). Everything here is a pure function of a HostState.
"""

from __future__ import annotations

import ipaddress
import random
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import UTC
from functools import cache
from typing import Any

from collector import __version__
from collector.document import SCHEMA_ID
from collector.simulator.host import (
    BUILD,
    DISPLAY_VERSION,
    FEATURES,
    HostState,
    PortRange,
    SimListener,
    SimUpdate,
)
from collector.simulator.locales import (
    DYNAMIC_DASHES,
    dynamic_text,
    excluded_text,
    language,
    netstat_text,
)
from collector.simulator.updates import update_title
from collector.windows import SYSTEM_PID, WSAEACCES, WSAEADDRINUSE

__all__ = [
    "PROBE_VERSION",
    "merge_runs",
    "render_document",
    "render_dynamicport",
    "render_excluded",
    "render_netstat",
    "sweep_failures",
]

PROBE_VERSION = __version__
_CRLF = "\r\n"
_FLAG_WIDTH = 6
_COLLECTOR = "10.20.0.5"  # the address the nightly WinRM session comes from
_OEM_CODEPAGES = {"en": 437, "fr": 850, "de": 850, "es": 850, "ja": 932, "ko": 949, "zh": 936}
# CBS_E_INSTALLERS_FAILED (0x800F0922) as the signed 32-bit HRESULT WUA reports.
_FAILED_HRESULT = 0x800F0922 - (1 << 32)
_ERRORS_NOT_ELEVATED = (
    ("features", "Get-WindowsOptionalFeature: The requested operation requires elevation."),
    ("update_history", "Microsoft.Update.Session: Access is denied. (0x80070005)"),
)


def render_document(state: HostState) -> dict[str, Any]:
    """Return the probe document the host prints when ``state`` is collected."""
    host = state.host
    culture = host.culture
    excluded_tcp = render_excluded(culture, "tcp", state.excluded_tcp)
    document: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "probe_version": PROBE_VERSION,
        "taken_at": state.taken_at.isoformat(),
        "duration_ms": state.duration_ms,
        "host": _host_facts(state),
        "raw": {
            "excluded_ipv4_tcp": excluded_tcp,
            # netsh ipv4 and ipv6 read the same exclusion keys (facts C, "Registry").
            "excluded_ipv6_tcp": excluded_tcp,
            "excluded_ipv4_udp": render_excluded(culture, "udp", state.excluded_udp),
            "dynamicport_ipv4_tcp": render_dynamicport(culture, "tcp", *state.dynamic_tcp),
            "dynamicport_ipv4_udp": render_dynamicport(culture, "udp", *state.dynamic_udp),
            "netstat": render_netstat(state),
        },
        "bind_sweep": [_sweep(state, "ipv4", "0.0.0.0", 0), _sweep(state, "ipv6", "::", 1)],
        "listeners": [
            {
                "protocol": item.protocol,
                "address": item.address,
                "port": item.port,
                "pid": item.pid,
                "process": item.process,
            }
            for item in sorted(state.listeners, key=lambda i: (i.protocol, i.port, i.address))
        ],
        "services": [
            {"name": name, "status": status, "start_type": start}
            for name, status, start in state.services
        ],
        # HNS's own NATs show at most in Get-NetNatExternalAddress (windows-facts §4, inferred).
        "nat": [],
        "versions": {
            "docker": state.docker_version,
            "wsl": state.wsl_version,
            "hns_excluded_port_range": None,
        },
        "hotfixes": [_hotfix(update) for update in state.updates if update.in_hotfix_list],
        "errors": [],
    }
    if host.elevated:
        features = dict(state.features)
        document["features"] = [{"name": name, "state": features[name]} for name in FEATURES]
        document["update_history"] = [_history_entry(u) for u in reversed(state.updates)]
    else:
        # A filtered token cannot read features or the update history (windows-facts §3, §4).
        document["errors"] = [
            {"section": section, "code": "not_elevated", "message": message}
            for section, message in _ERRORS_NOT_ELEVATED
        ]
    return document


def render_excluded(culture: str, protocol: str, ranges: Iterable[PortRange]) -> str:
    """Return what ``netsh int ipv4 show excludedportrange protocol=<protocol>`` prints."""
    text = excluded_text(culture)
    blank = " " * _FLAG_WIDTH
    # Start right-aligned in 10 columns, end in 12, then a 6-column flag; the raw console keeps
    # the flag column's blanks on the header and dash rows too (facts C, "Raw layout").
    lines = ["", text.title.format(protocol=protocol), "", text.header + blank, text.dashes + blank]
    for item in ranges:
        flag = "*".rjust(_FLAG_WIDTH) if item.administered else blank
        lines.append(f"{item.start:>10}{item.end:>12}{flag}")
    lines += ["", text.footer, "", ""]
    return _CRLF.join(lines)


def render_dynamicport(culture: str, protocol: str, start: int, count: int) -> str:
    """Return what ``netsh int ipv4 show dynamicport <protocol>`` prints."""
    text = dynamic_text(culture)
    title = text.title.format(protocol=protocol)
    lines = ["", title, DYNAMIC_DASHES, f"{text.start} {start}", f"{text.count} {count}", "", ""]
    return _CRLF.join(lines)


def render_netstat(state: HostState) -> str:
    """Return what ``netstat -ano`` prints: the listeners and the collector's WinRM session."""
    text = netstat_text(state.host.culture)
    rows: list[tuple[str, str, int, str, str, int]] = []
    for item in state.listeners:
        if item.protocol == "tcp":
            remote = "[::]:0" if ":" in item.address else "0.0.0.0:0"
            rows.append(("TCP", item.address, item.port, remote, "LISTENING", item.pid))
        else:
            rows.append(("UDP", item.address, item.port, "*:*", "", item.pid))
    # The probe's own session on 5985 and a few closed ones: local ports that are already
    # listeners, so they add no failing port to the sweep.
    rng = random.Random(f"netstat:{state.host.name}:{state.taken_at.isoformat()}")
    ports = sorted(rng.sample(range(49152, 65535), 3))
    lan = state.host.address
    rows.append(("TCP", lan, 5985, f"{_COLLECTOR}:{ports[-1]}", "ESTABLISHED", SYSTEM_PID))
    rows += [("TCP", lan, 5985, f"{_COLLECTOR}:{p}", "TIME_WAIT", 0) for p in ports[:-1]]
    rows.sort(key=lambda r: (r[0], *_address_order(r[1]), r[2], r[3]))
    lines = ["", text.title, "", text.header]
    for proto, address, port, remote, state_word, pid in rows:
        local = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        word = text.states.get(state_word, state_word)
        lines.append(f"  {proto:<5}  {local:<22} {remote:<22} {word:<15} {pid}")
    lines.append("")
    return _CRLF.join(lines)


def sweep_failures(state: HostState, family: str) -> list[list[int]]:
    """Return the failing ports of an exclusive TCP bind sweep as [start, end, code] runs.

    Ports in a run-time excluded range fail with WSAEACCES (facts B5, windows-facts §2); ports
    of an administered ('*') range bind (facts C: it only keeps them from WinNAT and the
    ephemeral pool). Ports that a listener of the family holds fail with WSAEADDRINUSE under
    SO_EXCLUSIVEADDRUSE, except the kernel's (System, PID 4), which refuse access as 445 and
    5357 did in the seed report. A run-time excluded port that also has a listener reports
    WSAEACCES (an inference, no source).
    """
    runs = [(r.start, r.end, WSAEACCES) for r in state.excluded_tcp if not r.administered]
    starts = [start for start, _, _ in runs]  # ascending, and the ranges never overlap
    held: dict[int, int] = {}
    for item in _family_listeners(state.listeners, family):
        index = bisect_right(starts, item.port) - 1
        if index < 0 or runs[index][1] < item.port:
            code = WSAEACCES if item.pid == SYSTEM_PID else WSAEADDRINUSE
            held[item.port] = min(code, held.get(item.port, code))
    runs += [(port, port, code) for port, code in held.items()]
    return merge_runs(runs)


def merge_runs(runs: Iterable[tuple[int, int, int]]) -> list[list[int]]:
    """Join touching [start, end, code] runs with the same code, as the probe's sweep does."""
    merged: list[list[int]] = []
    for start, end, code in sorted(runs):
        if merged and merged[-1][2] == code and merged[-1][1] + 1 >= start:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, code])
    return merged


def _sweep(state: HostState, family: str, address: str, index: int) -> dict[str, Any]:
    return {
        "protocol": "tcp",
        "family": family,
        "address": address,
        "exclusive": True,
        "first_port": 1,
        "last_port": 65535,
        "duration_ms": state.sweep_ms[index],
        "failures": sweep_failures(state, family),
    }


@cache
def _address_order(address: str) -> tuple[int, int]:
    """Sort IPv4 before IPv6, then by number, as netstat lists its rows."""
    parsed = ipaddress.ip_address(address)
    return parsed.version, int(parsed)


def _family_listeners(listeners: Sequence[SimListener], family: str) -> list[SimListener]:
    ipv6 = family == "ipv6"
    return [i for i in listeners if i.protocol == "tcp" and (":" in i.address) == ipv6]


def _host_facts(state: HostState) -> dict[str, Any]:
    host = state.host
    edition = "Pro" if host.edition == "Professional" else host.edition
    return {
        "name": host.name,
        "domain": "CORP",
        "os": {
            "product": f"Microsoft Windows 11 {edition}",
            "edition": host.edition,
            "display_version": DISPLAY_VERSION,
            "build": BUILD,
            "ubr": state.ubr,
            "install_date": host.install_date.astimezone(host.tz).isoformat(),
        },
        "last_boot": state.last_boot.isoformat(),
        "bios": {
            "manufacturer": host.bios_manufacturer,
            "version": state.bios_version,
            "release_date": state.bios_date.isoformat(),
        },
        "fast_startup": host.fast_startup,
        "elevated": host.elevated,
        "language_mode": "FullLanguage",
        "culture": host.culture,
        "oem_codepage": _OEM_CODEPAGES[language(host.culture)],
    }


def _hotfix(update: SimUpdate) -> dict[str, Any]:
    """Describe a CBS update as Get-HotFix lists it: a KB and the local install date."""
    return {
        "kb": update.kb,
        "description": "Security Update" if update.kind == "cumulative" else "Update",
        "installed_by": "NT AUTHORITY\\SYSTEM",
        "installed_on": update.at.date().isoformat(),
    }


def _history_entry(update: SimUpdate) -> dict[str, Any]:
    """Describe an update as the Windows Update history lists it (date in UTC)."""
    return dict(_history_items(update))


@cache
def _history_items(update: SimUpdate) -> tuple[tuple[str, Any], ...]:
    # The same entries come back every night; a fresh dict is made from these each time.
    failed = update.result_code != 2
    return (
        ("date", update.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("title", update_title(update)),
        ("kb", update.kb),
        ("operation", 1),
        ("result_code", update.result_code),
        ("hresult", _FAILED_HRESULT if failed else 0),
    )
