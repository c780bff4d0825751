"""One simulated Windows workstation: how each event of its schedule changes its state.

collector.simulator.fleet decides what happens when; a Machine replays those actions in time
order and takes a HostState snapshot at each collection. Rules cite collector/data/corpus/facts.md
("facts C") and the shared windows-facts notes ("windows-facts §4").
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from collector.simulator.host import (
    BIOS,
    DOCKER,
    DYNAMIC_RANGE,
    FAST_BOOT,
    FEATURE,
    FEATURES,
    FULL_BOOT,
    HYPERV_FEATURES,
    LOW_DYNAMIC,
    PREVENT,
    UPDATE,
    UPDATE_FAILED,
    WINNAT_RESTART,
    WSL_FEATURES,
    HostState,
    PlantedEffect,
    PortRange,
    SimEvent,
    SimHost,
    SimListener,
    SimUpdate,
)
from collector.windows import SYSTEM_PID, default_dynamic
from collector.windows import WINNAT_BLOCK as BLOCK_SIZE

WSL_VERSION = "2.5.10.0"
FIRST_DOCKER = "4.43.2"

# (pid key, process, protocol, port, addresses); "lan" and "vethernet" stand for the host's
# addresses. The usual Windows listeners, as in the seed capture and corpus netstat-en-1.
_WINDOWS: tuple[tuple[str, str, str, int, tuple[str, ...]], ...] = (
    ("rpc", "svchost", "tcp", 135, ("0.0.0.0", "::")),
    ("system", "System", "tcp", 139, ("lan",)),
    ("system", "System", "tcp", 445, ("0.0.0.0", "::")),
    ("cdp", "svchost", "tcp", 5040, ("0.0.0.0",)),
    ("system", "System", "tcp", 5357, ("0.0.0.0", "::")),
    ("system", "System", "tcp", 5985, ("0.0.0.0", "::")),  # WinRM, which the collector uses
    ("do", "svchost", "tcp", 7680, ("0.0.0.0", "::")),
    ("system", "System", "tcp", 47001, ("0.0.0.0", "::")),
    ("lsass", "lsass", "tcp", 49664, ("0.0.0.0", "::")),
    ("wininit", "wininit", "tcp", 49665, ("0.0.0.0", "::")),
    ("eventlog", "svchost", "tcp", 49666, ("0.0.0.0", "::")),
    ("schedule", "svchost", "tcp", 49667, ("0.0.0.0", "::")),
    ("spoolsv", "spoolsv", "tcp", 49668, ("0.0.0.0", "::")),
    ("services", "services", "tcp", 49669, ("0.0.0.0", "::")),
    ("w32time", "svchost", "udp", 123, ("0.0.0.0", "::")),
    ("system", "System", "udp", 137, ("lan",)),
    ("system", "System", "udp", 138, ("lan",)),
    ("ssdp", "svchost", "udp", 1900, ("127.0.0.1", "lan")),
    ("dnscache", "svchost", "udp", 5353, ("0.0.0.0", "::")),
    ("dnscache", "svchost", "udp", 5355, ("0.0.0.0", "::")),
)
# vmms on 2179 (corpus netstat-en-1) and the Default Switch's DNS/DHCP (netstat-en-3).
_HYPERV: tuple[tuple[str, str, str, int, tuple[str, ...]], ...] = (
    ("vmms", "vmms", "tcp", 2179, ("0.0.0.0", "::")),
    ("ics", "svchost", "tcp", 53, ("vethernet",)),
    ("ics", "svchost", "udp", 53, ("vethernet",)),
    ("ics", "svchost", "udp", 67, ("0.0.0.0",)),
)
# Services a developer starts after logging on; they lose their port to a reservation made at
# boot (facts A8: the range covered PostgreSQL's 5432).
TEAM_SERVICES: dict[int, tuple[str, tuple[str, ...]]] = {
    5432: ("postgres", ("0.0.0.0", "::")),
    6379: ("redis-server", ("127.0.0.1",)),
    8080: ("java", ("0.0.0.0", "::")),
    5001: ("dotnet", ("127.0.0.1", "::1")),
    3000: ("node", ("::",)),
    1433: ("sqlservr", ("0.0.0.0", "::")),
}
_PROCESS_KEYS = sorted({row[0] for row in _WINDOWS + _HYPERV} - {"system"} | {"docker"})
_DOCKER_EXPOSED = 2375  # "Expose daemon on tcp://localhost:2375" (facts A4)
# Ports already held when HNS/WinNAT reserve at boot: a range cannot take a port in use
# (facts B5).
_BOOT_PORTS = frozenset(row[3] for row in _WINDOWS + _HYPERV if row[2] == "tcp")
# A single non-'*' 5357 row shows on many WinNAT hosts of the corpus (excluded-en-4, en-10,
# es-1, zh-1, ko-1).
_WSD_PORT = 5357


@dataclass(frozen=True, slots=True)
class Action:
    """One scheduled thing to do to a machine."""

    at: datetime
    kind: str  # update, restart, power, bios, docker, winnat, dynamic, feature
    detail: str = ""
    update: SimUpdate | None = None
    blocks: int = 0  # for the planted KB: blocks it adds at the next boot on a Hyper-V host
    ubr: int = 0  # for a cumulative update: the build revision it brings


class Machine:
    """One host's mutable state while its schedule is replayed in time order."""

    def __init__(
        self,
        host: SimHost,
        seed: int,
        planted_kb: str,
        first_boot: datetime,
        history: Sequence[SimUpdate],
        ubr: int,
    ) -> None:
        """Set up the host as installed, then boot it for the first time."""
        self.host = host
        self._seed, self._planted_kb = seed, planted_kb
        self.boots, self.ubr, self.last_boot = 0, ubr, first_boot
        self.bios = 0
        enabled = {"hyperv": FEATURES[:4], "wsl": WSL_FEATURES}.get(host.role, ())
        self.features = {name: "Enabled" if name in enabled else "Disabled" for name in FEATURES}
        self.docker = FIRST_DOCKER if host.role == "hyperv" else None
        self.wsl = WSL_VERSION if host.role in ("hyperv", "wsl") else None
        self.dynamic_tcp = default_dynamic("tcp", "ipv4")
        self.block_count = host.base_blocks
        self.blocks: tuple[PortRange, ...] = ()
        self.singles: tuple[int, ...] = ()
        self.vanished = False
        self.down: frozenset[int] = frozenset()
        self.pids: dict[str, int] = {}
        self.vethernet = ""
        self.updates = list(history)
        self.planted_pending = 0
        self.planted_installed_at: datetime | None = None
        self.planted_effects: list[PlantedEffect] = []
        self.administered = list(host.administered)
        self.prevent_ports: tuple[int, ...] = ()  # the prevent script, once deployed
        self._boot(first_boot, "first boot")

    @property
    def winnat_running(self) -> bool:
        """Tell whether WinNAT/HNS run: on Hyper-V, WSL 2 or Docker hosts (facts C)."""
        return self.features["Microsoft-Hyper-V"] == "Enabled" or self.wsl is not None

    def apply(self, action: Action) -> list[SimEvent]:
        """Carry out one action and return what happened."""
        at, kind, detail = action.at, action.kind, action.detail
        if kind == "update" and action.update is not None:
            return self._install(action.update, action.blocks, action.ubr)
        if kind == "restart":
            return self._boot(at, "restart")
        if kind == "power":
            if self.host.fast_startup:
                # A hybrid shutdown resumes the kernel session, reservations and all
                # (windows-facts §4).
                return [SimEvent(at, FAST_BOOT, "shutdown with fast startup")]
            return self._boot(at, "shutdown")
        if kind == "bios":
            self.bios = 1
            return [SimEvent(at, BIOS, detail)]
        if kind == "docker":
            self.docker = detail
            if self.vanished:  # a Docker restart brings the ranges back (facts B1)
                self._reserve(self._rng("restore", at.isoformat()), 0, self._busy_ports())
            return [SimEvent(at, DOCKER, detail)]
        if kind == "winnat" and self.winnat_running:
            self.vanished = True  # every non-'*' row goes, '*' rows stay (facts B1, C)
            return [SimEvent(at, WINNAT_RESTART, "net stop winnat; net start winnat")]
        if kind == "dynamic":
            # Only later reservations land in the new range (facts A6).
            self.dynamic_tcp = LOW_DYNAMIC
            return [SimEvent(at, DYNAMIC_RANGE, "tcp 1024/64511 (Visual Studio installer)")]
        if kind == "prevent":
            # A GPO startup script: it runs at every boot from now on (see _protect).
            self.prevent_ports = tuple(int(port) for port in detail.split(","))
            return [SimEvent(at, PREVENT, f"startup script deployed for TCP {detail}")]
        if kind == "feature":
            names = HYPERV_FEATURES if detail == "hyperv" else WSL_FEATURES
            for name in names:
                self.features[name] = "EnablePending"
            return [SimEvent(at, FEATURE, f"{name} EnablePending") for name in names]
        return []

    def snapshot(
        self,
        night: int,
        taken_at: datetime,
        events: tuple[SimEvent, ...],
        sweep_ms: tuple[int, int],
        duration_ms: int,
    ) -> HostState:
        """Return the state a probe started at ``taken_at`` sees."""
        excluded = list(self.administered)
        if self.winnat_running and not self.vanished:
            excluded += self.blocks
            excluded += [PortRange(port, port) for port in self.singles]
            # `docker run -p 8080:80` adds 8080 as a non-'*' row (facts A1).
            excluded += [PortRange(port, port) for port in self._published()]
        return HostState(
            host=self.host,
            night=night,
            taken_at=taken_at,
            last_boot=self.last_boot,
            ubr=self.ubr,
            bios_version=self.host.bios_versions[self.bios],
            bios_date=self.host.bios_dates[self.bios],
            features=tuple(self.features.items()),
            services=self._services(),
            docker_version=self.docker,
            wsl_version=self.wsl,
            dynamic_tcp=self.dynamic_tcp,
            dynamic_udp=default_dynamic("udp", "ipv4"),
            excluded_tcp=tuple(sorted(excluded, key=lambda r: r.start)),
            # No capture shows runtime UDP reservations on such hosts; none are invented.
            excluded_udp=(),
            listeners=tuple(self._listeners()),
            updates=tuple(self.updates),
            reserved_blocks=self.block_count,
            events=events,
            sweep_ms=sweep_ms,
            duration_ms=duration_ms,
        )

    def _rng(self, *purpose: object) -> random.Random:
        parts = (self._seed, "machine", self.host.name, *purpose)
        return random.Random(":".join(str(part) for part in parts))

    def _install(self, update: SimUpdate, blocks: int, ubr: int) -> list[SimEvent]:
        self.updates.append(update)
        name = update.kb or update.label
        if update.result_code != 2:
            return [SimEvent(update.at, UPDATE_FAILED, name)]
        if ubr:
            self.ubr = ubr
        if update.kb == self._planted_kb:
            self.planted_installed_at, self.planted_pending = update.at, blocks
        # Other updates (cumulative, .NET, Defender, drivers) change no reservation.
        return [SimEvent(update.at, UPDATE, name)]

    def _boot(self, at: datetime, reason: str) -> list[SimEvent]:
        """Boot fully: new PIDs, and every runtime reservation placed anew (windows-facts §4)."""
        self.boots += 1
        self.last_boot = at
        rng = self._rng("boot", self.boots)
        events = [SimEvent(at, FULL_BOOT, reason)]
        for name, state in self.features.items():
            if state == "EnablePending":
                self.features[name] = "Enabled"
                events.append(SimEvent(at, FEATURE, f"{name} Enabled"))
                if name == "Microsoft-Windows-Subsystem-Linux":  # WSL 2 reserves blocks (facts A3)
                    self.wsl = WSL_VERSION
                    self.block_count += rng.randint(2, 5)
                elif name == "Microsoft-Hyper-V":  # so does Hyper-V (facts C)
                    self.block_count += rng.randint(3, 6)
        keys = [*_PROCESS_KEYS, *(str(port) for port in TEAM_SERVICES)]
        numbers = rng.sample(range(150, 6000), len(keys))
        self.pids = {key: 4 * number for key, number in zip(keys, numbers, strict=True)}
        self.pids["system"] = SYSTEM_PID
        # The Default Switch gets a new subnet at every boot.
        self.vethernet = f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.1"
        # The planted cause, shaped like facts A1/A7 (an update after which Hyper-V machines
        # reserved more): at this boot a Hyper-V host takes the KB's extra blocks.
        extra = self.planted_pending if self.features["Microsoft-Hyper-V"] == "Enabled" else 0
        # The next reboot after the planted KB settles it, whether or not Hyper-V runs.
        self.planted_pending = 0
        added = self._reserve(rng, extra, _BOOT_PORTS)
        if added:
            self.block_count += extra
            self.planted_effects.append(PlantedEffect(self.host.name, at, added))
        events += self._protect(at)
        covered = self._covered()
        self.down = frozenset(p for p in (*TEAM_SERVICES, *self.host.published) if covered(p))
        return events

    def _protect(self, at: datetime) -> list[SimEvent]:
        """Run the prevent script at boot, before logon: reserve the wanted ports still free.

        The team's services start after logon, so nothing of theirs holds a port yet; a port
        that this boot's run-time reservations took stays blocked (it needs Hyper-V off, the
        script, Hyper-V on), as the script says.
        """
        if not self.prevent_ports:
            return []
        runtime = [(r.start, r.end) for r in self.blocks] + [(p, p) for p in self.singles]
        mine = [(r.start, r.end) for r in self.administered]
        windows = {port for _, _, protocol, port, _ in _WINDOWS if protocol == "tcp"}
        reserved, left = [], []
        for port in self.prevent_ports:
            if any(a <= port <= b for a, b in mine):
                continue  # protected already: the script leaves it alone
            if port in windows or any(a <= port <= b for a, b in runtime):
                left.append(port)
                continue
            self.administered.append(PortRange(port, port, True))
            reserved.append(port)
        said = [f"reserved {reserved}"] if reserved else []
        said += [f"left {left} (inside a run-time range or held)"] if left else []
        return [SimEvent(at, PREVENT, "; ".join(said))] if said else []

    def _reserve(
        self, rng: random.Random, extra: int, busy: Iterable[int]
    ) -> tuple[PortRange, ...]:
        """Place the runtime reservations (same count, new places); return the ``extra`` ones."""
        self.vanished = False
        if not self.winnat_running:
            self.blocks, self.singles = (), ()
            return ()
        low, count = self.dynamic_tcp
        high = low + count - 1
        taken = [(r.start, r.end) for r in self.administered] + [(p, p) for p in busy]
        # Blocks of exactly 100 ports inside the dynamic range (facts C), in runs of adjacent
        # blocks as the captures show (excluded-en-1, excluded-de-4).
        sizes: list[int] = []
        while sum(sizes) < self.block_count:
            sizes.append(min(self.block_count - sum(sizes), rng.randint(1, 5)))
        blocks = _place(rng, sizes, low, high, taken)
        added = _place(rng, [extra], low, high, taken) if extra else []
        self.blocks = tuple(sorted(blocks + added, key=lambda r: r.start))
        singles = [_WSD_PORT]
        for _ in range(rng.choice((0, 0, 1, 2))):  # occasional single ports (excluded-de-1, en-1)
            port = rng.randint(low, high)
            if not any(a <= port <= b for a, b in taken):
                singles.append(port)
                taken.append((port, port))
        self.singles = tuple(sorted(set(singles)))
        return tuple(added)

    def _covered(self) -> Callable[[int], bool]:
        """Tell whether a port is blocked: run-time ranges block binds, administered ones not."""
        ranges = [(r.start, r.end) for r in self.blocks]
        ranges += [(port, port) for port in self.singles]
        return lambda port: any(a <= port <= b for a, b in ranges)

    def _published(self) -> list[int]:
        if self.docker is None:
            return []
        return [port for port in self.host.published if port not in self.down]

    def _busy_ports(self) -> set[int]:
        return {item.port for item in self._listeners() if item.protocol == "tcp"}

    def _listeners(self) -> list[SimListener]:
        rows = list(_WINDOWS)
        if self.features["Microsoft-Hyper-V"] == "Enabled":
            rows += _HYPERV
        for port in self.host.team_ports:
            if port not in self.down:
                process, addresses = TEAM_SERVICES[port]
                rows.append((str(port), process, "tcp", port, addresses))
        if self.docker is not None:
            docker = ("docker", "com.docker.backend", "tcp")
            rows += [(*docker, port, ("0.0.0.0", "::")) for port in self._published()]
            if self.host.docker_expose and _DOCKER_EXPOSED not in self.down:
                rows.append((*docker, _DOCKER_EXPOSED, ("127.0.0.1",)))
        named = {"lan": self.host.address, "vethernet": self.vethernet}
        return [
            SimListener(protocol, named.get(address, address), port, self.pids[key], process)
            for key, process, protocol, port, addresses in rows
            for address in addresses
        ]

    def _services(self) -> tuple[tuple[str, str, str], ...]:
        """List the services the probe asks for; absent ones are left out (windows-facts §4)."""
        hyperv = self.features["Microsoft-Hyper-V"] == "Enabled"
        vmp = self.features["VirtualMachinePlatform"] == "Enabled"
        rows = [("winnat", "Running" if self.winnat_running else "Stopped", "Manual")]
        if hyperv or vmp:
            rows.append(("hns", "Running", "Manual"))
        if hyperv:
            rows.append(("vmms", "Running", "Automatic"))
        if self.features["Microsoft-Windows-Subsystem-Linux"] == "Enabled":
            rows.append(("LxssManager", "Stopped", "Manual"))
        if self.wsl is not None:
            rows.append(("WslService", "Running", "Automatic"))
        if self.docker is not None:
            rows.append(("com.docker.service", "Stopped", "Manual"))
        return tuple(sorted(rows))


def _place(
    rng: random.Random, sizes: Sequence[int], low: int, high: int, taken: list[tuple[int, int]]
) -> list[PortRange]:
    """Put runs of adjacent 100-port blocks at free places, mostly near the range's start."""
    placed: list[PortRange] = []
    for size in sizes:
        length = size * BLOCK_SIZE
        span = high - low + 1 - length
        for _ in range(1000):
            # Most captured blocks lie within a few thousand ports of the range's start, with
            # the odd run far above (excluded-en-2, en-6, es-1, zh-1 near; en-7, de-4 far).
            near = rng.random() < 0.8
            offset = int(rng.expovariate(1 / 1500)) if near else rng.randint(0, span)
            start = low + min(offset, span)
            if not any(start <= b and a <= start + length - 1 for a, b in taken):
                break
        else:
            raise RuntimeError(f"no room for {size} blocks in {low}-{high}")
        taken.append((start, start + length - 1))
        placed += [PortRange(s, s + BLOCK_SIZE - 1) for s in range(start, start + length, 100)]
    return placed
