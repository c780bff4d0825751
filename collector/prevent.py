"""The prevent script: reserve a team's ports on its Windows hosts before Hyper-V takes them.

``prevent_script`` fills the shipped PowerShell 5.1 template (``prevent.ps1``) with the wanted
ports, contiguous ones as one range, and the mode the variant runs in when started without
switches: a dry run (the default, `-Apply` to act), Intune's detection script (exits 1 while a
port is not protected) or its remediation script and a GPO startup script (both apply). The
script decides on the host itself from what netsh and Get-NetTCPConnection say tonight, so one
script serves every host.

Only a copy generated with a dynamic start (``--move-dynamic-range START``) keeps the code that
sets the TCP dynamic range, START to 65535; every other copy has none (the template's
``#region move-dynamic-range`` blocks are cut), so it cannot touch the range by mistake.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from collector.windows import DYNAMIC_MIN_COUNT, DYNAMIC_MOVE_CAVEATS, MAX_PORT

_STARTS_LINE = re.compile(r"^\$WantedStarts = @\(\)$", re.MULTILINE)
_COUNTS_LINE = re.compile(r"^\$WantedCounts = @\(\)$", re.MULTILINE)
_MODE_LINE = re.compile(r"^\$BakedMode = 'dry-run'$", re.MULTILINE)
_DYNAMIC_START_LINE = re.compile(r"^\$DynamicStart = 0$", re.MULTILINE)
_DYNAMIC_COUNT_LINE = re.compile(r"^\$DynamicCount = 0$", re.MULTILINE)
_DYNAMIC_REGION = re.compile(
    r"^#region move-dynamic-range\n.*?^#endregion\n", re.MULTILINE | re.DOTALL
)
# What the template says it is for, where a generated copy names its hosts and ports.
_HEADER_END = "#>\n"
_UNSAFE = re.compile(r"[^A-Za-z0-9 .,:;()_@'/-]")


class Variant(StrEnum):
    """What the script does when run without switches."""

    DRY_RUN = "dry-run"  # say what it would do; -Apply to do it
    DETECT = "detect"  # Intune detection: exit 1 while a port is not protected
    APPLY = "apply"  # Intune remediation, GPO startup script


@cache
def _template() -> str:
    return resources.files("collector").joinpath("prevent.ps1").read_text(encoding="ascii")


def port_ranges(ports: Iterable[int]) -> list[tuple[int, int]]:
    """Return the ports as (start, count) runs of consecutive ports, in order."""
    found: list[tuple[int, int]] = []
    for port in sorted(set(ports)):
        if not 1 <= port <= MAX_PORT:
            raise ValueError(f"port {port} is outside 1-{MAX_PORT}")
        if found and found[-1][0] + found[-1][1] == port:
            found[-1] = (found[-1][0], found[-1][1] + 1)
        else:
            found.append((port, 1))
    return found


def dynamic_range(start: int, ports: Iterable[int]) -> tuple[int, int]:
    """Return the TCP dynamic range (start, count) ``--move-dynamic-range START`` sets.

    The range runs from ``start`` to the last port. Raise ValueError when netsh would refuse it
    (fewer than ``DYNAMIC_MIN_COUNT`` ports) or a wanted port would be inside it, where Hyper-V
    and WinNAT reserve.
    """
    if not 1 <= start <= MAX_PORT:
        raise ValueError(f"--move-dynamic-range {start} is outside 1-{MAX_PORT}")
    count = MAX_PORT - start + 1
    if count < DYNAMIC_MIN_COUNT:
        highest = MAX_PORT - DYNAMIC_MIN_COUNT + 1
        raise ValueError(
            f"--move-dynamic-range {start} leaves {count} ports, and netsh takes no fewer than "
            f"{DYNAMIC_MIN_COUNT}: start at {highest} or below"
        )
    inside = sorted({port for port in ports if port >= start})
    if inside:
        listed = ", ".join(str(port) for port in inside)
        raise ValueError(
            f"wanted port(s) {listed} would be inside the new dynamic range {start}-{MAX_PORT}, "
            f"where Hyper-V/WinNAT reserve: start above {inside[-1]}, or leave the range alone"
        )
    return start, count


def prevent_script(
    ports: Iterable[int],
    variant: Variant = Variant.DRY_RUN,
    hosts: Iterable[str] = (),
    dynamic_start: int | None = None,
) -> str:
    """Return the prevent script for ``ports``, running as ``variant`` without switches.

    With ``dynamic_start`` the script also moves the TCP dynamic range (``dynamic_range``).
    """
    ranges = port_ranges(ports)
    if not ranges:
        raise ValueError("no wanted ports: give --port, or wanted_ports in the config")
    starts = ", ".join(str(start) for start, _ in ranges)
    counts = ", ".join(str(count) for _, count in ranges)
    script = _STARTS_LINE.sub(f"$WantedStarts = @({starts})", _template(), count=1)
    script = _COUNTS_LINE.sub(f"$WantedCounts = @({counts})", script, count=1)
    script = _MODE_LINE.sub(f"$BakedMode = '{variant.value}'", script, count=1)
    shown = ", ".join(str(s) if c == 1 else f"{s}-{s + c - 1}" for s, c in ranges)
    names = sorted(set(hosts))
    note = f"Generated for TCP {shown}" + (f" on {', '.join(names)}" if names else "")
    note = f"{_comment(note)}; runs as {variant.value}."
    if dynamic_start is None:
        script = _DYNAMIC_REGION.sub("", script)
    else:
        start, count = dynamic_range(dynamic_start, (p for s, c in ranges for p in (s, s + c - 1)))
        script = _DYNAMIC_START_LINE.sub(f"$DynamicStart = {start}", script, count=1)
        script = _DYNAMIC_COUNT_LINE.sub(f"$DynamicCount = {count}", script, count=1)
        caveats = "\n".join(f"  - {_comment(caveat)}" for caveat in DYNAMIC_MOVE_CAVEATS)
        note += (
            f"\nThis copy also moves the TCP dynamic port range to {start}-{MAX_PORT} ({count} "
            f"ports) when it applies (--move-dynamic-range {start}). Before deploying it:\n"
            f"{caveats}"
        )
    return script.replace(_HEADER_END, f"\n{note}\n#>\n", 1)


def _comment(text: str) -> str:
    """Keep a comment plain ASCII that cannot close the comment block (no '#', '<' or '>').

    Windows PowerShell 5.1 reads a script without a BOM as ANSI, and host names come from a
    config a script must not be steered by.
    """
    return _UNSAFE.sub("?", text)


class PortOutcome(BaseModel):
    """What the script did, or would do, about one wanted range."""

    model_config = ConfigDict(extra="forbid", strict=True)

    start: int = Field(ge=1, le=MAX_PORT)
    end: int = Field(ge=1, le=MAX_PORT)
    status: Literal["protected", "reserved", "to-reserve", "held", "needs-hyperv-sequence"]
    reason: str = Field(max_length=2000)


class DynamicOutcome(BaseModel):
    """What a copy made with ``--move-dynamic-range`` did, or would do, to one family's range."""

    model_config = ConfigDict(extra="forbid", strict=True)

    family: Literal["ipv4", "ipv6"]
    start: int = Field(ge=1, le=MAX_PORT)  # the range asked for
    count: int = Field(ge=DYNAMIC_MIN_COUNT, le=MAX_PORT)
    found_start: int = Field(ge=0, le=MAX_PORT)  # the range the host had
    found_count: int = Field(ge=0, le=MAX_PORT + 1)
    status: Literal["in-place", "to-move", "moved", "failed"]
    reason: str = Field(max_length=2000)


class PreventResult(BaseModel):
    """The JSON result a prevent script prints, as `portfleet import` takes it."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["portfleet-prevent"]
    version: Literal[1]
    host: str = Field(min_length=1, max_length=255)
    taken_at: AwareDatetime
    mode: Literal["dry-run", "detect", "apply"]
    elevated: bool
    applied: bool
    exit_code: int
    ports: list[PortOutcome]
    dynamic: list[DynamicOutcome] | None = None  # only from a --move-dynamic-range copy

    def reserved(self) -> list[PortOutcome]:
        """Return the ranges this run reserved (an apply that went through)."""
        return [p for p in self.ports if p.status == "reserved"] if self.applied else []

    def summary(self) -> str:
        """Say in one line what the script found and did."""
        said = [f"{p.start}-{p.end}: {p.status}" if p.end > p.start else f"{p.start}: {p.status}"
                for p in self.ports]  # fmt: skip
        said += [f"dynamic {d.family} {d.start}-{d.start + d.count - 1}: {d.status}"
                 for d in self.dynamic or ()]  # fmt: skip
        return f"prevent script ({self.mode}, exit {self.exit_code}): " + "; ".join(said)


def is_prevent_result(body: bytes) -> bool:
    """Tell a prevent script's result from a probe document, without parsing either."""
    return (
        b"portfleet-prevent" in body[:4096]
        or "portfleet-prevent".encode("utf-16-le") in body[:8192]
    )


def read_prevent_result(body: bytes, source: str) -> PreventResult:
    """Read a prevent script's JSON result (UTF-8, or UTF-16 as PowerShell 5.1 redirects it).

    Raise ValueError naming the field that is wrong.
    """
    try:
        if body.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = body.decode("utf-16")
        else:
            text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source}: not UTF-8 or UTF-16 text ({exc.reason})") from None
    try:
        return PreventResult.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the result"
        raise ValueError(
            f"{source}: not a prevent script result ({where}: {first['msg']}); import the "
            "JSON the script that `portfleet prevent-script` prints wrote"
        ) from None
