"""Copyable fixes, worded from the fix kinds the diagnosis stored (facts.md section B).

``collector.diagnosis.plan_fixes`` decides which fixes a finding calls for, once, when the
snapshot is stored; this module only words them, for ``explain`` and the report alike. portfleet
prints these commands; it never runs them. Every block is for an elevated Command Prompt
(cmd.exe): ``rem`` lines mark the restarts a person has to do between steps.

- ``restart-winnat`` (B1): quick and temporary.
- ``reserve-ports`` (B2): reserve the ports as administered ranges (with winnat stopped where it
  runs); ``reserve-ports-hyperv`` (B3) where Hyper-V, not winnat, holds the reservations.
- ``reset-dynamic-range`` (B4): the TCP dynamic range no longer starts at 49152.
- ``stop-process`` / ``use-another-port``: a program, or Windows itself, holds the port.

Nothing ever deletes a run-time (non-``*``) range: that fails even as administrator (B5).
The ``commands`` and ``caveats`` columns are text, one command or caveat per line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from collector.diagnosis import Fix, HostState, describe_holder
from collector.windows import DEFAULT_DYNAMIC_COUNT, DEFAULT_DYNAMIC_START, SYSTEM_PORTS
from reports.model import COLUMNS

REMEDIATION_COLUMNS = (*COLUMNS["remediation"], "ports")

_IN_USE = (
    'netsh refuses to exclude a port that is in use ("The process cannot access the file '
    'because it is being used by another process"): stop whatever holds it first.'
)
_NETWORK = "Stopping winnat cuts WSL 2 and Docker Desktop networking until it is started again."
_NO_DELETE = (
    "Do not try to delete the run-time (non-'*') ranges: netsh refuses, even as administrator."
)
_MIRRORED = (
    "With WSL networkingMode=mirrored one report found exclusions did not stop the conflict; "
    "only the start order of the services helped."
)
_UNKNOWN_WINNAT = (
    "winnat's state was not captured on this host: check it first with `sc query winnat`; "
    "where it does not run, skip the winnat lines."
)


@dataclass(frozen=True, slots=True)
class Remedy:
    """One fix: the commands to copy, why it applies, and what to watch out for."""

    action: str
    commands: tuple[str, ...]
    why: str
    caveats: tuple[str, ...]
    ports: tuple[int, ...] = ()


def word_fixes(host: HostState, cells: Iterable[tuple[int, Mapping[str, Any]]]) -> list[Remedy]:
    """Word the fixes of some ports of one host, one remedy per fix kind, first fix first.

    ``cells`` are (port, finding) pairs; a finding carries its ``fixes`` and its evidence.
    """
    ports: dict[Fix, list[int]] = {}
    holders: dict[Fix, dict[int, Mapping[str, Any]]] = {}
    dynamic: tuple[int, int] | None = None
    for port, finding in cells:
        for fix in (Fix(word) for word in str(finding["fixes"]).split()):
            if port not in ports.setdefault(fix, []):
                ports[fix].append(port)
            holders.setdefault(fix, {})[port] = finding
            if fix == Fix.RESET_DYNAMIC_RANGE:
                dynamic = (int(finding["dynamic_start"]), int(finding["dynamic_end"]))
    remedies = []
    for fix, listed in ports.items():
        listed.sort()
        if fix == Fix.RESTART_WINNAT:
            remedies.append(restart_winnat(listed, host))
        elif fix in (Fix.RESERVE_PORTS, Fix.RESERVE_PORTS_HYPERV):
            remedies.append(reserve_ports(listed, host))
        elif fix == Fix.RESET_DYNAMIC_RANGE and dynamic is not None:
            remedies.append(reset_dynamic_range(dynamic[0], dynamic[1] - dynamic[0] + 1))
        elif fix in (Fix.STOP_PROCESS, Fix.USE_ANOTHER_PORT):
            remedies += [_free_port(fix, port, holders[fix][port]) for port in listed]
    return remedies


def _exclude(ports: Iterable[int]) -> list[str]:
    return [
        f"netsh int ipv4 add excludedportrange protocol=tcp startport={port} numberofports=1 "
        "store=persistent"
        for port in ports
    ]


def reserve_ports(ports: Sequence[int], host: HostState) -> Remedy:
    """Return the fix that reserves ``ports`` as administered ('*') exclusions."""
    listed = ", ".join(str(p) for p in ports)
    caveats = [
        _IN_USE,
        "Afterwards each port shows as an administered ('*') range that Hyper-V/HNS skip; it "
        "stays across reboots (store=persistent).",
    ]
    if host.wsl:
        caveats.append(_MIRRORED)
    if host.hyperv_owns:
        commands = (
            "dism.exe /Online /Disable-Feature:Microsoft-Hyper-V",
            "rem -- restart Windows now, then run the next lines --",
            *_exclude(ports),
            "dism.exe /Online /Enable-Feature:Microsoft-Hyper-V /All",
            "rem -- restart Windows again --",
        )
        why = (
            f"Hyper-V holds the reservations here (winnat is not running): turn Hyper-V off, "
            f"reserve {listed}, and turn it back on so it places its blocks elsewhere."
        )
        caveats.append("Two restarts; virtual machines are unavailable while Hyper-V is off.")
        return Remedy(Fix.RESERVE_PORTS_HYPERV, commands, why, tuple(caveats), tuple(ports))
    them = "it" if len(ports) == 1 else "them"
    hyperv_instead = (
        "If a port is still excluded while winnat is stopped, Hyper-V holds it: use the Hyper-V "
        "off → reserve → on sequence instead (dism.exe /Online /Disable-Feature:Microsoft-Hyper-V, "
        "restart, reserve, dism.exe /Online /Enable-Feature:Microsoft-Hyper-V /All)."
    )
    if host.winnat is not None and not host.winnat_running:
        why = (
            f"Reserve {listed} so WinNAT/Hyper-V never put a block on {them} (winnat is not "
            "running here)."
        )
        caveats.append(hyperv_instead)
        return Remedy(Fix.RESERVE_PORTS, tuple(_exclude(ports)), why, tuple(caveats), tuple(ports))
    commands = ("net stop winnat", *_exclude(ports), "net start winnat")
    why = (
        f"Reserve {listed} while winnat is stopped, so WinNAT/Hyper-V never put a block on {them}."
    )
    caveats += [_NETWORK, hyperv_instead]
    if host.winnat is None:
        caveats.append(_UNKNOWN_WINNAT)
    return Remedy(Fix.RESERVE_PORTS, commands, why, tuple(caveats), tuple(ports))


def restart_winnat(ports: Sequence[int], host: HostState) -> Remedy:
    """Return the quick, temporary fix: restart winnat so its run-time ranges are dropped."""
    listed = ", ".join(str(p) for p in ports)
    caveats = [
        "Temporary: the ranges come back after the next reboot or Docker restart, maybe "
        "over the same ports; reserve the ports for a lasting fix.",
        _NETWORK,
        _NO_DELETE,
    ]
    if host.winnat is None:
        caveats.append(_UNKNOWN_WINNAT)
    return Remedy(
        Fix.RESTART_WINNAT,
        ("net stop winnat", "net start winnat"),
        f"{listed} {'is' if len(ports) == 1 else 'are'} blocked by a run-time reservation (a "
        "non-'*' range, or a block of 10013 failures that looks like one); restarting winnat "
        "drops every non-'*' range and keeps the '*' ones.",
        tuple(caveats),
        tuple(ports),
    )


def reset_dynamic_range(start: int, count: int) -> Remedy:
    """Return the fix that sets the TCP dynamic range back to Windows' default."""
    default_start, default_count = DEFAULT_DYNAMIC_START, DEFAULT_DYNAMIC_COUNT
    return Remedy(
        Fix.RESET_DYNAMIC_RANGE,
        (
            f"netsh int ipv4 set dynamic tcp start={default_start} num={default_count}",
            "rem -- restart Windows for the reservations to move --",
        ),
        f"The TCP dynamic range was moved to {start}–{start + count - 1} (start {start}, "
        f"{count} ports), so Hyper-V/WinNAT reservations land on ordinary service ports; "
        f"the default is {default_start}–{default_start + default_count - 1}.",
        (
            "Takes effect after a restart.",
            "If `netsh int ipv6 show dynamicport tcp` shows the same change, run the same command "
            "with ipv6 too.",
            "Whatever moved it (an installer such as Visual Studio's, or an update) may move it "
            "again: check the range after updates.",
            "Microsoft's AKS networking team prefers persistent excluded ranges to a smaller "
            "dynamic range (port-exhaustion risk): on a host that opens many outgoing "
            "connections, reserve the wanted ports instead.",
        ),
    )


def _free_port(fix: Fix, port: int, finding: Mapping[str, Any]) -> Remedy:
    """Say what to do about a port a program, or Windows itself, holds; never a winnat fix."""
    pid = None if pd.isna(finding["pid"]) else int(finding["pid"])
    process = None if pd.isna(finding["process"]) else str(finding["process"])
    who = describe_holder(pid, process, port)
    if fix == Fix.USE_ANOTHER_PORT:
        service = SYSTEM_PORTS.get(port, "a Windows service")
        return Remedy(
            fix,
            (f"netstat -ano -p tcp | findstr :{port}", f'tasklist /svc /fi "PID eq {pid}"'),
            f"{who} holds TCP {port}: Windows itself uses it ({service}). Give the team's "
            "service another port rather than stopping a Windows component.",
            ("Reserving or restarting winnat does not free a port a listener holds.",),
            (port,),
        )
    return Remedy(
        fix,
        (f'tasklist /v /fi "PID eq {pid}"', f"netstat -ano -p tcp | findstr :{port}"),
        f"{who} listens on TCP {port}: stop or reconfigure that program (or give the team's "
        "service another port).",
        (
            "Reserving or restarting winnat does not free a port a listener holds.",
            "The PID is from the snapshot; check it is still the same program before stopping it.",
        ),
        (port,),
    )


def plan_remediation(wanted: pd.DataFrame, hosts: pd.DataFrame) -> pd.DataFrame:
    """Return the ``remediation`` frame: each host's wanted cells' fixes, worded together.

    A cell's ``finding`` is the one ``reports.findings.answer_ports`` chose; a host whose TCP
    dynamic range was moved gets ``reset-dynamic-range`` even where no wanted port is hit yet.
    """
    states = hosts.set_index("host")["host_state"]
    remedies: list[tuple[str, Remedy]] = []
    chosen = wanted[wanted["fixes"].map(len) > 0]
    for host, cells in chosen.groupby("host", sort=True):
        pairs = [(int(port), finding) for port, finding in zip(cells["port"], cells["finding"],
                                                              strict=True)]  # fmt: skip
        remedies += [(str(host), remedy) for remedy in word_fixes(states[host], pairs)]
    moved = hosts["dynamic_start"].notna() & (hosts["dynamic_start"] != DEFAULT_DYNAMIC_START)
    planned = {(host, remedy.action) for host, remedy in remedies}
    for row in hosts[moved].to_dict("records"):
        if (row["host"], Fix.RESET_DYNAMIC_RANGE) not in planned:
            fix = reset_dynamic_range(int(row["dynamic_start"]), int(row["dynamic_count"]))
            remedies.append((str(row["host"]), fix))
    rows = [
        (host, str(r.action), "\n".join(r.commands), r.why, "\n".join(r.caveats), list(r.ports))
        for host, r in sorted(remedies, key=lambda item: item[0])
    ]
    return pd.DataFrame(rows, columns=list(REMEDIATION_COLUMNS))
