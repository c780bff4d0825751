"""The simulated Windows fleet: which workstations exist and what happens to them night by night.

A fixed seed gives the same hosts, events and documents every time: every random choice comes
from a ``random.Random`` seeded with a string naming its purpose (never the global RNG) and no
wall clock is read. Rules cite collector/data/corpus/facts.md ("facts C") and the shared
windows-facts notes ("windows-facts §4"); collector.simulator.machine applies them to one host.
Night n is collected at about 02:00 host time on ``start + n days`` and sees everything that
happened since night n - 1's collection; "day d" is the daytime between nights d and d + 1.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from collector.simulator.host import HostState, PlantedEffect, PortRange, SimHost, SimUpdate
from collector.simulator.machine import Action, Machine
from collector.simulator.updates import (
    DEFENDER_KB,
    ENABLEMENT_KB,
    MSRT_KB,
    msrt_version,
    patch_months,
)

CULTURES = ("en-US", "fr-FR", "de-DE", "ja-JP", "ko-KR", "zh-CN", "es-ES")
# Summer-time offsets of a time zone of each culture; DST changes are not modelled.
_OFFSETS = {
    "en-US": (-4, -5, -7),
    "fr-FR": (2,),
    "de-DE": (2,),
    "ja-JP": (9,),
    "ko-KR": (9,),
    "zh-CN": (8,),
    "es-ES": (2,),
}
OUTAGES = ("offline", "auth", "hang", "reset", "fault")
_PROBLEMS = ("auth", "hang", "reset", "fault")
_MIN_HEALTHY = 8
_BIOS = {"Dell Inc.": "1.{}.0", "LENOVO": "N3HET{}W", "HP": "U23 Ver. 01.{}.00"}
_DOCKER = ("4.43.2", "4.44.0", "4.44.3")
_TEAM_PORTS = (5432, 6379, 8080, 5001, 3000, 1433)
_PUBLISHED = (5672, 15672, 27017, 9200, 8025)

_At = Callable[[int, float, float], datetime]


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """What to simulate: how many hosts for how many nights, and the planted cause."""

    seed: int = 7
    hosts: int = 12
    nights: int = 60
    start: date = date(2026, 9, 1)
    planted_kb: str = "KB5046613"
    planted_night: int = 20
    # The prevent script: deployed as a startup script on some hosts that run WinNAT, on the day
    # before this night, for these TCP ports; none when empty (or when the night is not in).
    prevent_ports: tuple[int, ...] = ()
    prevent_night: int = 35


@dataclass(frozen=True, slots=True)
class PlantedInstall:
    """A host that installed the planted KB: when (host time), and the first night showing it."""

    host: str
    installed_at: datetime
    night: int


@dataclass(frozen=True, slots=True)
class PlantedTruth:
    """The known answer: the planted KB, who installed it, and where it added blocks."""

    kb: str
    installs: tuple[PlantedInstall, ...]
    effects: tuple[PlantedEffect, ...]

    @property
    def installed_hosts(self) -> frozenset[str]:
        """Return the names of the hosts that installed the KB."""
        return frozenset(item.host for item in self.installs)

    @property
    def affected_hosts(self) -> frozenset[str]:
        """Return the names of the hosts where the KB added reserved blocks."""
        return frozenset(item.host for item in self.effects)


@dataclass(frozen=True, slots=True)
class _Plan:
    """Fleet-wide decisions about one host, as day indexes."""

    wsl_install_day: int | None = None
    hyperv_day: int | None = None
    vs_day: int | None = None
    bios_day: int | None = None
    winnat_day: int | None = None
    planted_day: int | None = None
    planted_blocks: int = 0
    cu_fails: bool = False
    prevent_day: int | None = None


class Fleet:
    """A deterministic simulated fleet; every night of every host is computed once, up front."""

    def __init__(self, spec: FleetSpec | None = None) -> None:
        """Build the hosts from the seed and replay all their nights."""
        self.spec = spec = spec or FleetSpec()
        if self.spec.nights < 2 or self.spec.hosts < 1:
            raise ValueError("a fleet needs at least one host and two nights")
        hosts = self._make_hosts()
        self._outages = self._make_outages(hosts)
        # One healthy host is reached with a filtered (not elevated) token (windows-facts §4).
        troubled = {name for name, _ in self._outages}
        healthy = [h for h in hosts if h.name not in troubled]
        if healthy:
            chosen = self._rng("elevation").choice(healthy).name
            hosts = [replace(h, elevated=False) if h.name == chosen else h for h in hosts]
        self.hosts: tuple[SimHost, ...] = tuple(hosts)
        self._by_name = {host.name: host for host in self.hosts}
        self._months = patch_months(spec.seed, spec.start, spec.nights, spec.planted_kb)
        plans = self._make_plans()
        # Hosts that run the prevent script from ``spec.prevent_night`` on.
        self.prevented = tuple(
            sorted(n for n, plan in plans.items() if plan.prevent_day is not None)
        )
        self._states: dict[str, tuple[HostState, ...]] = {}
        installs: list[PlantedInstall] = []
        effects: list[PlantedEffect] = []
        for host in self.hosts:
            history, ubr = self._history(host)
            first_boot = self._first_boot(host)
            machine = Machine(host, self.spec.seed, self.spec.planted_kb, first_boot, history, ubr)
            self._states[host.name] = self._replay(host, machine, plans[host.name])
            for effect in machine.planted_effects:
                effects.append(replace(effect, night=self._night_after(host, effect.boot_at)))
            if machine.planted_installed_at is not None:
                at = machine.planted_installed_at
                installs.append(PlantedInstall(host.name, at, self._night_after(host, at)))
        self.truth = PlantedTruth(self.spec.planted_kb, tuple(installs), tuple(effects))

    def host(self, name: str) -> SimHost:
        """Return the host called ``name``."""
        return self._by_name[name]

    def state(self, host: str | SimHost, night: int) -> HostState:
        """Return what ``host`` looks like when night ``night`` is collected."""
        name = host if isinstance(host, str) else host.name
        if not 0 <= night < self.spec.nights:
            raise IndexError(f"night {night} is outside 0..{self.spec.nights - 1}")
        return self._states[name][night]

    def document(self, host: str | SimHost, night: int) -> dict[str, Any]:
        """Return the probe document ``host`` prints on night ``night``."""
        from collector.simulator.render import render_document

        return render_document(self.state(host, night))

    def outage(self, host_name: str, night: int) -> str | None:
        """Return why ``host_name`` does not answer on ``night`` (one of OUTAGES), or None."""
        return self._outages.get((host_name, night))

    def healthy_hosts(self) -> tuple[str, ...]:
        """Return the names of the hosts that answer every night."""
        troubled = {name for name, _ in self._outages}
        return tuple(host.name for host in self.hosts if host.name not in troubled)

    def collection_time(self, host: SimHost, night: int) -> datetime:
        """Return when night ``night`` is collected on ``host`` (host time, with its offset)."""
        day = datetime.combine(self.spec.start + timedelta(days=night), time(2), host.tz)
        return day + timedelta(seconds=self._rng("clock", host.name, night).randint(2, 170))

    def _rng(self, *purpose: object) -> random.Random:
        return random.Random(":".join(str(part) for part in (self.spec.seed, *purpose)))

    def _make_hosts(self) -> list[SimHost]:
        rng = self._rng("hosts")
        count = self.spec.hosts
        # Every language once (in a seeded order), then a mix weighted towards European teams.
        cultures = rng.sample(CULTURES, len(CULTURES))[:count]
        cultures += rng.choices(CULTURES, (4, 3, 3, 1, 1, 2, 1), k=count - len(cultures))
        hyperv, wsl = -(-count * 2 // 5), -(-count * 3 // 10)
        roles = ["hyperv"] * hyperv + ["wsl"] * wsl + ["plain"] * (count - hyperv - wsl)
        rng.shuffle(roles)
        start = datetime.combine(self.spec.start, time(), UTC)
        hosts = []
        for index, (culture, role) in enumerate(zip(cultures, roles, strict=False)):
            maker = rng.choice(sorted(_BIOS))
            number = rng.randint(12, 60)
            administered = rng.choices(((50000, 50059), (50000, 50099), None), (8, 1, 2))[0]
            hosts.append(
                SimHost(
                    name=f"dev-ws-{index + 1:02d}",
                    culture=culture,
                    utc_offset=timedelta(hours=rng.choice(_OFFSETS[culture])),
                    role=role,
                    groups=("developers", rng.choice(("team-payments", "team-platform", "qa"))),
                    edition=rng.choice(("Professional", "Enterprise")),
                    install_date=start - timedelta(days=rng.randint(200, 900), hours=7),
                    bios_manufacturer=maker,
                    bios_versions=(_BIOS[maker].format(number), _BIOS[maker].format(number + 1)),
                    bios_dates=(
                        self.spec.start - timedelta(days=rng.randint(200, 700)),
                        self.spec.start - timedelta(days=rng.randint(5, 60)),
                    ),
                    fast_startup=rng.random() < 0.5,
                    elevated=True,
                    address=f"10.20.{rng.randint(1, 9)}.{rng.randint(20, 240)}",
                    # '50000-50059 *' is on most machines, one had 50000-50099 (facts C).
                    administered=(PortRange(*administered, True),) if administered else (),
                    team_ports=tuple(sorted(rng.sample(_TEAM_PORTS, rng.randint(1, 3)))),
                    published=tuple(sorted(rng.sample(_PUBLISHED, rng.randint(1, 2)))),
                    docker_expose=rng.random() < 0.3,
                    base_blocks={"hyperv": rng.randint(6, 13), "wsl": rng.randint(2, 5)}.get(
                        role, 0
                    ),
                )
            )
        return hosts

    def _make_outages(self, hosts: list[SimHost]) -> dict[tuple[str, int], str]:
        """Pick the troubled hosts and their bad nights; keep at least 8 hosts healthy."""
        rng = self._rng("outages")
        troubled = max(0, min(len(_PROBLEMS), len(hosts) - _MIN_HEALTHY))
        nights = range(self.spec.nights)
        outages: dict[tuple[str, int], str] = {}
        for index, host in enumerate(rng.sample(hosts, troubled)):
            # Two of them are laptops, at home on some nights (connection refused).
            for night in rng.sample(nights, len(nights) // 8) if index % 2 == 0 else ():
                outages[(host.name, night)] = "offline"
            for night in rng.sample(nights, max(1, len(nights) // 6)):
                outages[(host.name, night)] = _PROBLEMS[index]
        return outages

    def _make_plans(self) -> dict[str, _Plan]:
        """Decide which host lives through which fleet-level event, and on which day."""
        rng = self._rng("plan")
        last = self.spec.nights - 2  # day d is seen on night d + 1
        fields: dict[str, dict[str, Any]] = {host.name: {} for host in self.hosts}
        names = {r: [h.name for h in self.hosts if h.role == r] for r in ("hyperv", "wsl", "plain")}
        mid_way: set[str] = set()
        if names["plain"]:  # WSL installed on a host mid-way
            name = rng.choice(names["plain"])
            fields[name]["wsl_install_day"] = rng.randint(12, 30)
            mid_way.add(name)
        if len(names["wsl"]) > 1:  # Hyper-V enabled on a WSL-only host mid-way
            name = rng.choice(names["wsl"])
            fields[name]["hyperv_day"] = rng.randint(26, 40)
            mid_way.add(name)
        runs_winnat = names["hyperv"] + names["wsl"]
        for name in rng.sample(runs_winnat, min(2, len(runs_winnat))):
            fields[name]["vs_day"] = rng.randint(4, 30)
        for name in rng.sample(list(fields), min(2, len(fields))):
            fields[name]["bios_day"] = rng.randint(3, 50)
        if names["hyperv"]:
            fields[rng.choice(names["hyperv"])]["winnat_day"] = rng.randint(10, 50)
        fields[rng.choice(list(fields))]["cu_fails"] = True
        # The planted KB: on some Hyper-V hosts and some without Hyper-V, never on all hosts.
        # Hosts whose features change mid-way are left out so the truth stays unambiguous.
        with_hv = [n for n in names["hyperv"] if n not in mid_way]
        without = [n for n in names["wsl"] + names["plain"] if n not in mid_way]
        chosen = rng.sample(with_hv, min(len(with_hv), max(2, len(with_hv) * 3 // 5)))
        chosen += rng.sample(without, min(len(without), max(1, len(without) // 2)))
        for name in chosen:
            fields[name]["planted_day"] = self.spec.planted_night - 1 + rng.randint(0, 6)
            fields[name]["planted_blocks"] = rng.randint(2, 4)
        for values in fields.values():
            for key, value in values.items():
                if key.endswith("_day"):
                    values[key] = max(0, min(value, last))
        # Drawn last, so the fleet is the same with or without it up to its night.
        if self.spec.prevent_ports and 1 <= self.spec.prevent_night <= last:
            # One host whose range was moved low (where team ports get taken) runs it and
            # one does not, so the nights after show the difference; half the others run it.
            steady = [n for n in runs_winnat if n not in mid_way]
            moved = [n for n in steady if "vs_day" in fields[n]]
            others = [n for n in steady if n not in moved]
            chosen = moved[:1] + rng.sample(others, len(others) // 2)
            for name in chosen:
                fields[name]["prevent_day"] = self.spec.prevent_night - 1
        return {name: _Plan(**values) for name, values in fields.items()}

    def _history(self, host: SimHost) -> tuple[list[SimUpdate], int]:
        """Return the updates installed before the simulation starts, and the UBR they left."""
        local = host.install_date.astimezone(host.tz) + timedelta(days=2)
        history = [SimUpdate(local, "enablement", ENABLEMENT_KB, "23H2")]
        ubr = self._months[0].ubr - 140
        for month in (m for m in self._months if m.day < 0):
            at = datetime.combine(self.spec.start + timedelta(days=month.day), time(11), host.tz)
            history += [
                SimUpdate(at, "dotnet", month.dotnet_kb, month.label),
                SimUpdate(
                    at + timedelta(minutes=6), "cumulative", month.cumulative_kb, month.label
                ),
                SimUpdate(at + timedelta(minutes=9), "msrt", MSRT_KB, msrt_version(month.label)),
            ]
            ubr = month.ubr
        return history, ubr

    def _first_boot(self, host: SimHost) -> datetime:
        rng = self._rng("first-boot", host.name)
        day = datetime.combine(self.spec.start, time(8), host.tz)
        return day - timedelta(days=rng.randint(1, 6), minutes=rng.randint(0, 120))

    def _night_after(self, host: SimHost, at: datetime) -> int:
        """Return the first night (already replayed) whose probe ran after ``at``."""
        states = self._states[host.name]
        return next((s.night for s in states if s.taken_at > at), self.spec.nights)

    def _replay(self, host: SimHost, machine: Machine, plan: _Plan) -> tuple[HostState, ...]:
        actions = sorted(self._actions(host, plan), key=lambda action: action.at)
        states: list[HostState] = []
        position = 0
        for night in range(self.spec.nights):
            taken_at = self.collection_time(host, night)
            events = []
            while position < len(actions) and actions[position].at < taken_at:
                events += machine.apply(actions[position])
                position += 1
            rng = self._rng("probe", host.name, night)
            sweeps = (rng.randint(20_000, 45_000), rng.randint(20_000, 45_000))
            duration = sum(sweeps) + rng.randint(4_000, 12_000)
            states.append(machine.snapshot(night, taken_at, tuple(events), sweeps, duration))
        return tuple(states)

    def _actions(self, host: SimHost, plan: _Plan) -> list[Action]:
        """List everything that will happen to ``host``, at host-local times."""
        rng = self._rng("days", host.name)

        def at(day: int, low: float, high: float) -> datetime:
            midnight = datetime.combine(self.spec.start + timedelta(days=day), time(), host.tz)
            return midnight + timedelta(minutes=rng.randint(int(low * 60), int(high * 60)))

        actions: list[Action] = []
        for day in range(self.spec.nights - 1):
            if rng.random() < 0.35:  # Defender definitions: frequent, they change nothing
                version = f"1.{437 + day // 30}.{80 + 2 * day}.0"
                actions.append(_update(at(day, 6, 22), "defender", DEFENDER_KB, version))
            if rng.random() < 0.05:  # a user restarts: always a full boot (windows-facts §4)
                actions.append(Action(at(day, 8, 22), "restart"))
            if rng.random() < 0.07:  # shut down and powered on again later that day
                actions.append(Action(at(day, 11, 17), "power"))
            if rng.random() < 0.02:  # a driver from Windows Update: changes nothing
                label = f"Intel Corporation - Display - 32.0.101.{6000 + day}"
                actions.append(_update(at(day, 9, 18), "driver", None, label))
        actions += self._patch_days(plan, rng, at)
        upgrade_days = sorted(rng.sample(range(self.spec.nights - 1), len(_DOCKER) - 1))
        if host.role == "hyperv":  # Docker Desktop upgrades (and restarts)
            for version, day in zip(_DOCKER[1:], upgrade_days, strict=True):
                actions.append(Action(at(day, 10, 17), "docker", version))
        if plan.wsl_install_day is not None:  # `wsl --install`, then the restart it asks for
            actions.append(Action(at(plan.wsl_install_day, 9, 12), "feature", "wsl"))
            actions.append(Action(at(plan.wsl_install_day, 18, 21), "restart"))
        if plan.hyperv_day is not None:  # Hyper-V enabled; the restart waits until the next day
            actions.append(Action(at(plan.hyperv_day, 9, 12), "feature", "hyperv"))
            later = min(plan.hyperv_day + 1, self.spec.nights - 2)
            actions.append(Action(at(later, 18, 21), "restart"))
        if plan.vs_day is not None:  # the Visual Studio installer moves the range (facts A6)
            actions.append(Action(at(plan.vs_day, 9, 16), "dynamic"))
        if plan.bios_day is not None:  # a firmware flash from Windows Update ends in a restart
            title = f"{host.bios_manufacturer} - Firmware - {host.bios_versions[1]}"
            actions.append(_update(at(plan.bios_day, 12, 15), "firmware", None, title))
            actions.append(Action(at(plan.bios_day, 15.5, 16), "bios", host.bios_versions[1]))
            actions.append(Action(at(plan.bios_day, 16.1, 16.5), "restart"))
        if plan.winnat_day is not None:  # someone applies the winnat-restart workaround (facts B1)
            actions.append(Action(at(plan.winnat_day, 10, 16), "winnat"))
        if plan.planted_day is not None:
            label = (self.spec.start + timedelta(days=plan.planted_day)).strftime("%Y-%m")
            update = SimUpdate(at(plan.planted_day, 9, 17), "optional", self.spec.planted_kb, label)
            actions.append(Action(update.at, "update", update=update, blocks=plan.planted_blocks))
            later = min(plan.planted_day + rng.randint(1, 4), self.spec.nights - 2)
            actions.append(Action(at(later, 18, 22), "restart"))  # "restart to finish installing"
        # Drawn last: the rest of the host's days are the same with or without it.
        if plan.prevent_day is not None:  # IT deploys the startup script, then asks for a restart
            ports = ",".join(str(port) for port in self.spec.prevent_ports)
            actions.append(Action(at(plan.prevent_day, 9, 11), "prevent", ports))
            actions.append(Action(at(plan.prevent_day, 17, 18), "restart"))
        return actions

    def _patch_days(self, plan: _Plan, rng: random.Random, at: _At) -> list[Action]:
        """Patch Tuesday: the month's .NET, cumulative and MSRT updates, then a restart."""
        actions: list[Action] = []
        delay = rng.choice((0, 0, 0, 1, 2))
        first = next((m for m in self._months if m.day >= 0), None)
        for month in self._months:
            day = month.day + delay
            if not 0 <= day < self.spec.nights - 1:
                continue
            install = at(day, 10, 16)
            if plan.cu_fails and month is first and day < self.spec.nights - 2:
                # An occasional failed install (result 4), retried the next day.
                failed = SimUpdate(install, "cumulative", month.cumulative_kb, month.label, 4)
                actions.append(Action(install, "update", update=failed))
                day += 1
                install = at(day, 10, 16)
            for kind, kb, label, ubr in (
                ("dotnet", month.dotnet_kb, month.label, 0),
                ("cumulative", month.cumulative_kb, month.label, month.ubr),
                ("msrt", MSRT_KB, msrt_version(month.label), 0),
            ):
                install += timedelta(minutes=rng.randint(2, 9))
                update = SimUpdate(install, kind, kb, label)
                actions.append(Action(install, "update", update=update, ubr=ubr))
            # A cumulative update (it raises the UBR, windows-facts §3) restarts the host that
            # night. Updates are the usual suspects (facts A) but only the planted one reserves.
            actions.append(Action(at(day, 19, 23.5), "restart"))
        return actions


def _update(at: datetime, kind: str, kb: str | None, label: str) -> Action:
    return Action(at, "update", update=SimUpdate(at, kind, kb, label))
