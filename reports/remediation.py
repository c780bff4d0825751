"""Copyable fixes per host, only where the evidence calls for them (facts.md section B).

portfleet prints these commands; it never runs them. Every block is for an elevated Command
Prompt (cmd.exe): ``rem`` lines mark the restarts a person has to do between steps.

- ``restart-winnat`` (B1): a wanted port is blocked by a run-time reservation now. Quick and
  temporary.
- ``reserve-ports`` (B2): a wanted port is blocked by a run-time reservation, or free but at risk
  (inside the dynamic range of a host whose blocks move at every boot): reserve it as an
  administered range while winnat is stopped. ``reserve-ports-hyperv`` (B3) is the variant for a
  host where Hyper-V, not winnat, holds the reservations (winnat is known and not running).
- ``reset-dynamic-range`` (B4): the TCP dynamic range no longer starts at 49152 (e.g. 1024, facts
  A6/A8), and only then.

Nothing ever deletes a run-time (non-``*``) range: that fails even as administrator (B5).
The ``commands`` and ``caveats`` columns are text, one command or caveat per line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from reports.classify import DEFAULT_DYNAMIC
from reports.model import COLUMNS

REMEDIATION_COLUMNS = (*COLUMNS["remediation"], "ports")
RUNTIME_BLOCKS = ("excluded", "probably-reserved")
RESERVABLE = (*RUNTIME_BLOCKS, "dynamic-unreserved", "at-risk")

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


@dataclass(frozen=True, slots=True)
class Remedy:
    """One fix: the commands to copy, why it applies, and what to watch out for."""

    action: str
    commands: tuple[str, ...]
    why: str
    caveats: tuple[str, ...]
    ports: tuple[int, ...] = ()


def _exclude(ports: Iterable[int]) -> list[str]:
    return [
        f"netsh int ipv4 add excludedportrange protocol=tcp startport={port} numberofports=1 "
        "store=persistent"
        for port in ports
    ]


def reserve_ports(ports: Sequence[int], *, hyperv_owner: bool = False, wsl: bool = False) -> Remedy:
    """Return the fix that reserves ``ports`` as administered ('*') exclusions."""
    listed = ", ".join(str(p) for p in ports)
    caveats = [
        _IN_USE,
        "Afterwards each port shows as an administered ('*') range that Hyper-V/HNS skip; it "
        "stays across reboots (store=persistent).",
    ]
    if wsl:
        caveats.append(_MIRRORED)
    if hyperv_owner:
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
        return Remedy("reserve-ports-hyperv", commands, why, tuple(caveats), tuple(ports))
    commands = ("net stop winnat", *_exclude(ports), "net start winnat")
    them = "it" if len(ports) == 1 else "them"
    why = (
        f"Reserve {listed} while winnat is stopped, so WinNAT/Hyper-V never put a block on {them}."
    )
    caveats += [
        _NETWORK,
        "If a port is still excluded while winnat is stopped, Hyper-V holds it: use the Hyper-V "
        "off → reserve → on sequence instead (dism.exe /Online /Disable-Feature:Microsoft-Hyper-V, "
        "restart, reserve, dism.exe /Online /Enable-Feature:Microsoft-Hyper-V /All).",
    ]
    return Remedy("reserve-ports", commands, why, tuple(caveats), tuple(ports))


def restart_winnat(ports: Sequence[int]) -> Remedy:
    """Return the quick, temporary fix: restart winnat so its run-time ranges are dropped."""
    listed = ", ".join(str(p) for p in ports)
    return Remedy(
        "restart-winnat",
        ("net stop winnat", "net start winnat"),
        f"{listed} {'is' if len(ports) == 1 else 'are'} blocked by a run-time reservation (a "
        "non-'*' range, or a block of 10013 failures that looks like one); restarting winnat "
        "drops every non-'*' range and keeps the '*' ones.",
        (
            "Temporary: the ranges come back after the next reboot or Docker restart, maybe "
            "over the same ports; reserve the ports for a lasting fix.",
            _NETWORK,
            _NO_DELETE,
        ),
        tuple(ports),
    )


def reset_dynamic_range(start: int, count: int) -> Remedy:
    """Return the fix that sets the TCP dynamic range back to Windows' default."""
    default_start, default_count = DEFAULT_DYNAMIC
    return Remedy(
        "reset-dynamic-range",
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


def suggest_remedies(
    classification: str, port: int, *, hyperv_owner: bool = False, wsl: bool = False
) -> tuple[Remedy, ...]:
    """Return the fixes for one port of one host, given how it was classified."""
    if classification in RUNTIME_BLOCKS:
        return restart_winnat([port]), reserve_ports([port], hyperv_owner=hyperv_owner, wsl=wsl)
    if classification in RESERVABLE:
        return (reserve_ports([port], hyperv_owner=hyperv_owner, wsl=wsl),)
    return ()


def hyperv_owns(hyperv: object, winnat: object) -> bool:
    """Tell whether Hyper-V rather than winnat holds a host's reservations (winnat not running)."""
    return hyperv == "Enabled" and isinstance(winnat, str) and winnat.lower() != "running"


def plan_remediation(wanted: pd.DataFrame, hosts: pd.DataFrame) -> pd.DataFrame:
    """Return the ``remediation`` frame: the fixes each host's evidence calls for."""
    facts = hosts.set_index("host")
    remedies: list[tuple[str, Remedy]] = []
    blocked = (wanted["status"] == "blocked") & wanted["classification"].isin(RESERVABLE)
    risky = (wanted["status"] == "free") & (wanted["classification"] == "at-risk")
    for host, cells in wanted[blocked | risky].groupby("host", sort=True):
        fact = facts.loc[host] if host in facts.index else pd.Series(dtype=object)
        owner = hyperv_owns(fact.get("hyperv"), fact.get("winnat"))
        wsl = isinstance(fact.get("wsl"), str)
        runtime = cells["classification"].isin(RUNTIME_BLOCKS) & (cells["status"] == "blocked")
        if runtime.any() and not owner:
            remedies.append((str(host), restart_winnat(sorted(cells.loc[runtime, "port"]))))
        reserve = sorted(cells["port"])
        remedies.append((str(host), reserve_ports(reserve, hyperv_owner=owner, wsl=wsl)))
    moved = hosts[hosts["dynamic_start"].notna() & (hosts["dynamic_start"] != DEFAULT_DYNAMIC[0])]
    for row in moved.to_dict("records"):
        fix = reset_dynamic_range(int(row["dynamic_start"]), int(row["dynamic_count"]))
        remedies.append((str(row["host"]), fix))
    rows = [
        (host, r.action, "\n".join(r.commands), r.why, "\n".join(r.caveats), list(r.ports))
        for host, r in sorted(remedies, key=lambda item: item[0])
    ]
    return pd.DataFrame(rows, columns=list(REMEDIATION_COLUMNS))
