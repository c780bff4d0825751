"""The vocabulary of the simulated fleet: a host, its state on one night, and the values in it.

collector.simulator.machine produces these; collector.simulator.render prints them. Comments cite
collector/data/corpus/facts.md ("facts C") and the shared windows-facts notes ("windows-facts §4").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from collector.windows import WINNAT_BLOCK as BLOCK_SIZE

LOW_DYNAMIC = (1024, 64511)
BUILD, DISPLAY_VERSION = 22631, "23H2"

# SimEvent kinds
FULL_BOOT = "full-boot"  # a restart, or a shutdown without fast startup
FAST_BOOT = "fast-startup-boot"  # a hybrid shutdown: the kernel session is resumed
UPDATE = "update"
UPDATE_FAILED = "update-failed"
BIOS = "bios"
DOCKER = "docker"
WINNAT_RESTART = "winnat-restart"
DYNAMIC_RANGE = "dynamic-range"
FEATURE = "feature"
PREVENT = "prevent"  # the prevent script reserved (or left) wanted ports
HYPERV_FEATURES = ("Microsoft-Hyper-V-All", "Microsoft-Hyper-V")
WSL_FEATURES = ("VirtualMachinePlatform", "Microsoft-Windows-Subsystem-Linux")
FEATURES = (*HYPERV_FEATURES, *WSL_FEATURES, "Containers")


@dataclass(frozen=True, slots=True)
class PortRange:
    """An excluded port range, both ends included; administered rows print a '*'."""

    start: int
    end: int
    administered: bool = False


@dataclass(frozen=True, slots=True)
class SimListener:
    """A socket waiting for traffic: TCP in LISTENING state, or any bound UDP socket."""

    protocol: str
    address: str
    port: int
    pid: int
    process: str


@dataclass(frozen=True, slots=True)
class SimUpdate:
    """One Windows Update history entry; ``at`` is host-local time."""

    at: datetime
    kind: str  # enablement, cumulative, dotnet, optional, msrt, defender, driver, firmware
    kb: str | None
    label: str  # 'YYYY-MM' for monthly updates, else a version or the whole title
    result_code: int = 2  # OperationResultCode: 2 succeeded, 4 failed (windows-facts §3)

    @property
    def in_hotfix_list(self) -> bool:
        """Tell whether Get-HotFix shows it: only installed CBS packages (windows-facts §3)."""
        kinds = ("enablement", "cumulative", "dotnet", "optional")
        return self.result_code == 2 and self.kind in kinds


@dataclass(frozen=True, slots=True)
class SimEvent:
    """Something that happened to a host (host-local time); see the kind constants."""

    at: datetime
    kind: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SimHost:
    """A simulated workstation as it is when the simulation starts."""

    name: str
    culture: str
    utc_offset: timedelta
    role: str  # "hyperv" (Hyper-V + WSL 2 + Docker Desktop), "wsl" (WSL 2 only) or "plain"
    groups: tuple[str, ...]
    edition: str
    install_date: datetime
    bios_manufacturer: str
    bios_versions: tuple[str, str]  # before and after its BIOS update, if it gets one
    bios_dates: tuple[date, date]
    fast_startup: bool
    elevated: bool
    address: str
    administered: tuple[PortRange, ...]
    team_ports: tuple[int, ...]
    published: tuple[int, ...]  # ports its Docker containers publish (`docker run -p`)
    docker_expose: bool
    base_blocks: int  # 100-port blocks HNS/WinNAT reserve at each boot
    # WinRM's AllowUnencrypted service setting; off, as Windows ships it, so Basic over plain
    # HTTP is refused (NTLM and CredSSP seal their messages, HTTPS encrypts).
    allow_unencrypted: bool = False

    @property
    def tz(self) -> timezone:
        """Return the host's time zone as a fixed offset."""
        return timezone(self.utc_offset)


@dataclass(frozen=True, slots=True)
class HostState:
    """What one host looks like when one night is collected."""

    host: SimHost
    night: int
    taken_at: datetime
    last_boot: datetime
    ubr: int
    bios_version: str
    bios_date: date
    features: tuple[tuple[str, str], ...]
    services: tuple[tuple[str, str, str], ...]  # name, status, start type
    docker_version: str | None
    wsl_version: str | None
    dynamic_tcp: tuple[int, int]  # start, number of ports
    dynamic_udp: tuple[int, int]
    excluded_tcp: tuple[PortRange, ...]
    excluded_udp: tuple[PortRange, ...]
    listeners: tuple[SimListener, ...]
    updates: tuple[SimUpdate, ...]  # Windows Update history so far, oldest first
    reserved_blocks: int  # blocks HNS/WinNAT hold, or would hold but for a winnat restart
    events: tuple[SimEvent, ...]  # since the previous night's collection
    sweep_ms: tuple[int, int]  # IPv4 and IPv6 bind sweeps
    duration_ms: int

    @property
    def rebooted(self) -> bool:
        """Tell whether a full boot happened since the previous night."""
        return any(event.kind == FULL_BOOT for event in self.events)

    @property
    def hyperv(self) -> bool:
        """Tell whether Hyper-V runs."""
        return dict(self.features).get("Microsoft-Hyper-V") == "Enabled"

    @property
    def blocks(self) -> tuple[PortRange, ...]:
        """Return the runtime 100-port blocks among the exclusions."""
        return tuple(
            r for r in self.excluded_tcp if not r.administered and r.end - r.start + 1 == BLOCK_SIZE
        )


@dataclass(frozen=True, slots=True)
class PlantedEffect:
    """Where the planted KB added blocks: at which boot, seen on which night, which blocks."""

    host: str
    boot_at: datetime
    blocks: tuple[PortRange, ...]
    night: int = -1  # filled in by the fleet
