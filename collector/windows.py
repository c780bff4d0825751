"""Windows facts that portfleet relies on, each defined here and nowhere else.

Sources: ``collector/data/corpus/facts.md`` (sections B and C: who reserves excluded ranges, in
what blocks, and what fixes them) and Microsoft's Winsock error list and KB 929851 (error codes,
the dynamic port range). This module holds numbers and names only: no parsing, no I/O, so
the collector, the store, the reports and the simulator can all import it cheaply.
"""

from __future__ import annotations

from enum import IntEnum


class WinsockError(IntEnum):
    """Winsock error codes a bind can end with (windows-facts §2)."""

    WSAEACCES = 10013  # inside an excluded range, or a port held with exclusive use
    WSAEADDRINUSE = 10048  # another socket holds the port
    WSAEADDRNOTAVAIL = 10049  # the address is not on this machine


# Plain ints, as they travel in documents, rows and digests.
WSAEACCES = int(WinsockError.WSAEACCES)
WSAEADDRINUSE = int(WinsockError.WSAEADDRINUSE)

_CODE_WORDS = {
    WinsockError.WSAEACCES: "access forbidden",
    WinsockError.WSAEADDRINUSE: "address in use",
    WinsockError.WSAEADDRNOTAVAIL: "address not available",
}

# Windows' dynamic (ephemeral) port range since Vista, per protocol and family: start, count.
# Each of the four is set on its own (`netsh int ipv4|ipv6 set dynamic tcp|udp`, KB 929851).
DEFAULT_DYNAMIC_START = 49152
DEFAULT_DYNAMIC_COUNT = 16384
DEFAULT_DYNAMIC: dict[tuple[str, str], tuple[int, int]] = {
    (protocol, family): (DEFAULT_DYNAMIC_START, DEFAULT_DYNAMIC_COUNT)
    for protocol in ("tcp", "udp")
    for family in ("ipv4", "ipv6")
}

# The smallest range `netsh int … set dynamicport` accepts (KB 929851). Real hosts run with a
# range from 1024 (set by Visual Studio's installer, corpus dynamicport-en-2), so nothing is
# assumed about the lowest start.
DYNAMIC_MIN_COUNT = 255
# What to know before moving a host's dynamic range (`netsh int … set dynamicport`).
DYNAMIC_MOVE_CAVEATS = (
    "Run it elevated, for ipv4 and ipv6 alike; it lasts across reboots.",
    "Ranges Hyper-V/WinNAT reserved before the change stay until winnat restarts or the host "
    "reboots.",
    "A smaller range leaves fewer ports for outgoing connections (Windows' default is 16,384).",
    "A policy (GPO, Intune) or an installer that sets the range may set it back.",
)
MAX_PORT = 65535  # a port is 16 bits

# The kernel's processes: netsh and netstat print PIDs only.
SYSTEM_IDLE_PID = 0
SYSTEM_PID = 4
WELL_KNOWN_PIDS = {SYSTEM_IDLE_PID: "System Idle Process", SYSTEM_PID: "System"}

# Ports the kernel (System, PID 4) holds on its own behalf, and the Windows service behind each.
SYSTEM_PORTS = {
    80: "HTTP.sys (IIS, WinRM or another http.sys URL reservation)",
    139: "NetBIOS session service",
    443: "HTTP.sys (an https URL reservation)",
    445: "SMB (the Server service)",
    2869: "HTTP.sys (SSDP/UPnP host)",
    5357: "WSDAPI over HTTP.sys (network discovery)",
    5358: "WSDAPI over HTTP.sys (network discovery, secure)",
    5985: "WinRM over HTTP.sys",
    5986: "WinRM over HTTP.sys (HTTPS)",
    47001: "WinRM's local listener over HTTP.sys",
}

# Windows' own service hosts (process names as netstat -b and Get-Process print them, no .exe).
WINDOWS_PROCESSES = frozenset(
    {"system", "svchost", "lsass", "services", "wininit", "spoolsv", "smss", "csrss"}
)

# A run of access-forbidden ports at least this long inside the dynamic range looks like a
# WinNAT/Hyper-V block; they reserve blocks of 100 (facts C), a few single ports stay unexplained.
MIN_BLOCK = 10
# The block size WinNAT/HNS reserve at run time (facts C), used in explanations.
WINNAT_BLOCK = 100

# Who puts an excluded range without '*' there, at run time (facts C).
RUNTIME_OWNER = "WinNAT/HNS/Hyper-V"

HYPERV_FEATURE = "Microsoft-Hyper-V"
WINNAT_SERVICE = "winnat"
RUNNING = "Running"


# The years a date from a host can really have: Windows reports an unset date as FILETIME 0
# (1601), and a clock far in the future is wrong, not a time to store.
PLAUSIBLE_YEARS = range(1980, 2201)


def describe_code(code: int) -> str:
    """Name a Winsock error code for people: ``10013 (WSAEACCES, access forbidden)``."""
    try:
        known = WinsockError(int(code))
    except ValueError:
        return f"error {int(code)}"
    return f"{int(known)} ({known.name}, {_CODE_WORDS[known]})"


def process_name(pid: int | None, process: str | None) -> str | None:
    """Return the process name as reported, else the name a kernel PID always has."""
    if process or pid is None:
        return process
    return WELL_KNOWN_PIDS.get(pid)


def default_dynamic(protocol: str, family: str) -> tuple[int, int]:
    """Return Windows' default dynamic range (start, count) of a protocol and family."""
    return DEFAULT_DYNAMIC[(protocol, family)]
