"""What the prevent script prints when it runs on a simulated host: its model, in Python.

The simulated hosts cannot run PowerShell; they answer the portfleet probe from their state, and
the prevent script the same way. This mirrors ``collector/prevent.ps1``'s decisions for each
wanted range, in its order: inside a range Hyper-V/WinNAT reserved at run time (or an
administered one that covers it only in part) it needs the Hyper-V sequence; an administered
range covering it whole protects it already; a listener holds it (named as
``Get-NetTCPConnection`` and ``Get-Process`` name it); else it is free to reserve. A dry run and
``-Detect`` are answered; ``-Apply`` over WinRM is refused, since the fleet models the script
as a startup script that runs at boot (``FleetSpec.prevent_ports``). A copy made with
``--move-dynamic-range`` also says whether the host's IPv4 TCP dynamic range is where it asks.
"""

from __future__ import annotations

import json
import re
from typing import Any

from collector.simulator.host import HostState

MARKER = "$WantedStarts = @("  # how the responder tells the prevent script from the probe
_STARTS = re.compile(r"^\$WantedStarts = @\(([\d, ]*)\)", re.MULTILINE)
_COUNTS = re.compile(r"^\$WantedCounts = @\(([\d, ]*)\)", re.MULTILINE)
_MODE = re.compile(r"^\$BakedMode = '([a-z-]+)'", re.MULTILINE)
_DYNAMIC = re.compile(r"^\$DynamicStart = (\d+)\n\$DynamicCount = (\d+)$", re.MULTILINE)
_SWITCH = re.compile(r"\b(Apply|Detect) = \$true")


class ApplyRefused(Exception):
    """The script was asked to apply: the simulated hosts apply it only at boot."""


def is_prevent_script(script: str) -> bool:
    """Tell the prevent script from the probe and from anything else."""
    return MARKER in script and _MODE.search(script) is not None


def run_prevent(script: str, command_line: str, state: HostState) -> tuple[str, int]:
    """Return what the script prints on ``state``'s host (its JSON), and its exit code."""
    starts = [int(v) for v in _numbers(_STARTS, script)]
    counts = [int(v) for v in _numbers(_COUNTS, script)]
    baked = _MODE.search(script)
    switches = set(_SWITCH.findall(command_line))
    mode = "detect" if "Detect" in switches else (baked.group(1) if baked else "dry-run")
    if "Apply" in switches or mode == "apply":
        raise ApplyRefused("the simulated hosts apply the prevent script at boot, not over WinRM")
    ports = [_decide(state, first, count) for first, count in zip(starts, counts, strict=True)]
    unprotected = [p for p in ports if p["status"] not in ("protected", "reserved")]
    needs_person = [p for p in ports if p["status"] in ("held", "needs-hyperv-sequence")]
    asked = _DYNAMIC.search(script)
    dynamic = [_dynamic(state, int(asked.group(1)), int(asked.group(2)))] if asked else []
    moving = [d for d in dynamic if d["status"] == "to-move"]
    code = 1 if mode == "detect" and unprotected else 2 if needs_person else 0
    code = 1 if code == 0 and mode == "detect" and moving else code
    result: dict[str, Any] = {
        "format": "portfleet-prevent",
        "version": 1,
        "host": state.host.name.upper(),  # $env:COMPUTERNAME
        "taken_at": state.taken_at.isoformat(),
        "mode": mode,
        "elevated": True,  # WinRM's administrators get a full token
        "applied": False,
        "exit_code": code,
        "ports": ports,
    }
    if asked:
        result["dynamic"] = dynamic
    return json.dumps(result, indent=2), code


def _numbers(pattern: re.Pattern[str], script: str) -> list[str]:
    found = pattern.search(script)
    return [v.strip() for v in found.group(1).split(",") if v.strip()] if found else []


def _decide(state: HostState, first: int, count: int) -> dict[str, Any]:
    """Decide one wanted range as the script's Get-PortState does (IPv4)."""
    last = first + count - 1

    def said(status: str, reason: str) -> dict[str, Any]:
        return {"start": first, "end": last, "status": status, "reason": reason}

    ranges = state.excluded_tcp
    if not any(r.administered and r.start <= first and r.end >= last for r in ranges):
        for item in ranges:
            if item.start <= last and item.end >= first:
                kind = (
                    "an administered range that covers it only in part"
                    if item.administered
                    else "a range Hyper-V/WinNAT reserved at run time"
                )
                return said(
                    "needs-hyperv-sequence",
                    f"{first}-{last} is inside {kind} ({item.start}-{item.end}, ipv4): turn "
                    "Hyper-V off, run this, turn it on, or reboot first",
                )
    else:
        return said("protected", "an administered range covers it")
    holders = list(
        dict.fromkeys(  # IPv4 and IPv6 listeners of one process name it once
            f"{item.process} (PID {item.pid}) on {item.port}"
            for item in state.listeners
            if item.protocol == "tcp" and first <= item.port <= last
        )
    )
    if holders:
        return said("held", f"held by {', '.join(holders)}: stop it first, or leave the port to it")
    return said("to-reserve", "free: an administered range would keep Hyper-V/WinNAT off it")


def _dynamic(state: HostState, start: int, count: int) -> dict[str, Any]:
    """Say whether the IPv4 TCP dynamic range is where the script asks, as Get-DynamicState."""
    found_start, found_count = state.dynamic_tcp
    now = f"{found_start}-{found_start + found_count - 1}"
    in_place = (found_start, found_count) == (start, count)
    return {
        "family": "ipv4",
        "start": start,
        "count": count,
        "found_start": found_start,
        "found_count": found_count,
        "status": "in-place" if in_place else "to-move",
        "reason": f"the TCP dynamic range is {now} already"
        if in_place
        else f"the TCP dynamic range is {now}; it would become {start}-{start + count - 1}",
    }
