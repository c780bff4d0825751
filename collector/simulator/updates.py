"""The Windows updates the simulated fleet receives: monthly KBs, Patch Tuesdays, their titles.

Every host on the fleet's Windows 11 23H2 build gets the same cumulative and .NET KB each month,
on the second Tuesday or a few days later; titles follow Windows Update's naming, with the KB in
parentheses (windows-facts §3).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from collector.simulator.host import DISPLAY_VERSION, SimUpdate

ENABLEMENT_KB = "KB5027397"
DEFENDER_KB = "KB2267602"
MSRT_KB = "KB890830"


@dataclass(frozen=True, slots=True)
class Month:
    """One month's Patch Tuesday, as a day index from the start, and what it brings."""

    day: int  # negative: before the simulation starts
    label: str  # YYYY-MM
    cumulative_kb: str
    dotnet_kb: str
    ubr: int  # the build revision the cumulative update brings


def patch_months(seed: int, start: date, nights: int, reserved_kb: str) -> tuple[Month, ...]:
    """Return the months from the one before ``start`` to the end; no KB is ``reserved_kb``."""
    rng = random.Random(f"{seed}:kbs")
    taken = {reserved_kb}
    months: list[Month] = []
    first = (start.replace(day=1) - timedelta(days=1)).replace(day=1)
    while first <= start + timedelta(days=nights):
        tuesday = first + timedelta(days=(1 - first.weekday()) % 7 + 7)  # the second Tuesday
        kbs: list[str] = []
        while len(kbs) < 2:
            kb = f"KB50{rng.randint(60000, 99999)}"
            if kb not in taken:
                taken.add(kb)
                kbs.append(kb)
        ubr = 5800 + 130 * len(months) + rng.randint(0, 40)
        label = first.strftime("%Y-%m")
        months.append(Month((tuesday - start).days, label, kbs[0], kbs[1], ubr))
        first = (first + timedelta(days=32)).replace(day=1)
    return tuple(months)


def msrt_version(month: str) -> str:
    """Return the Malicious Software Removal Tool's version for a month (v5.128 was 2024-08)."""
    year, number = int(month[:4]), int(month[5:])
    return f"v5.{128 + (year - 2024) * 12 + number - 8}"


def update_title(update: SimUpdate) -> str:
    """Return the title Windows Update shows for an update, with its KB in parentheses."""
    kb, label, version = update.kb, update.label, DISPLAY_VERSION
    titles = {
        "cumulative": f"{label} Cumulative Update for Windows 11 Version {version} "
        f"for x64-based Systems ({kb})",
        "dotnet": f"{label} Cumulative Update for .NET Framework 3.5 and 4.8.1 for Windows 11, "
        f"version {version} for x64 ({kb})",
        "optional": f"{label} Update for Windows 11 Version {version} for x64-based Systems ({kb})",
        "enablement": f"Feature Update to Windows 11, version {label} "
        f"via Enablement Package ({kb})",
        "msrt": f"Windows Malicious Software Removal Tool x64 - {label} ({kb})",
        "defender": f"Security Intelligence Update for Microsoft Defender Antivirus - {kb} "
        f"(Version {label}) - Current Channel (Broad)",
    }
    # Drivers and firmware have no KB: their label is the whole title.
    return titles.get(update.kind, label)
