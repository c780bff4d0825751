"""The report benchmark's fleet: N generated workstations over M nights, written to a store.

Night after night as nightly collections would fill it: reboots move each host's run-time
blocks, Patch Tuesdays bring a cumulative update and a restart, a planted KB adds blocks on
Hyper-V hosts, a few hosts fail some nights. No documents are rendered and no WinRM is spoken:
each host's night goes to the store's writer as the typed rows a probe document would become.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import sqlite3
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, text

from collector.simulator.host import LOW_DYNAMIC as MOVED_DYNAMIC
from collector.simulator.render import merge_runs
from collector.store.database import Store
from collector.store.derived import derive_pending
from collector.store.models import Attempt, Base, CollectionRun, Host
from collector.store.rows import (
    ContentSet,
    PreparedSnapshot,
    content_rows,
    document_digest,
    finding_set,
    update_key,
)
from collector.store.snapshots import KnownContent, write_snapshot
from collector.store.writer import attempt_row, ensure_host
from collector.windows import SYSTEM_PID, WSAEACCES, WSAEADDRINUSE, default_dynamic
from collector.windows import WINNAT_BLOCK as BLOCK

START = datetime(2026, 9, 1, tzinfo=UTC)


PLANTED_KB = "KB5046613"


BUILD = "10.0.22631"


PROBE_VERSION = "0.4.0"


FEATURES = (
    "Containers", "Microsoft-Hyper-V", "Microsoft-Hyper-V-All",
    "Microsoft-Windows-Subsystem-Linux", "VirtualMachinePlatform",
)  # fmt: skip


# Parents before children, so the foreign keys hold at every flush.
# (pid key, process, protocol, port, addresses): the usual Windows listeners; "lan" is the host's.
_Endpoint = tuple[str, str, str, int, tuple[str, ...]]


_WINDOWS: tuple[_Endpoint, ...] = (
    ("rpc", "svchost", "tcp", 135, ("0.0.0.0", "::")),
    ("system", "System", "tcp", 445, ("0.0.0.0", "::")),
    ("cdp", "svchost", "tcp", 5040, ("0.0.0.0",)),
    ("system", "System", "tcp", 5985, ("0.0.0.0", "::")),
    ("do", "svchost", "tcp", 7680, ("0.0.0.0", "::")),
    ("lsass", "lsass", "tcp", 49664, ("0.0.0.0", "::")),
    ("wininit", "wininit", "tcp", 49665, ("0.0.0.0", "::")),
    ("eventlog", "svchost", "tcp", 49666, ("0.0.0.0",)),
    ("spoolsv", "spoolsv", "tcp", 49668, ("0.0.0.0",)),
    ("w32time", "svchost", "udp", 123, ("0.0.0.0",)),
    ("ssdp", "svchost", "udp", 1900, ("lan",)),
    ("dnscache", "svchost", "udp", 5353, ("0.0.0.0", "::")),
)


_HYPERV: tuple[_Endpoint, ...] = (
    ("vmms", "vmms", "tcp", 2179, ("0.0.0.0", "::")),
    ("ics", "svchost", "udp", 67, ("0.0.0.0",)),
)


# Developer services started after logon: they lose their port when a block took it at boot.
_TEAM: dict[int, tuple[str, tuple[str, ...]]] = {
    5432: ("postgres", ("0.0.0.0", "::")),
    8080: ("java", ("0.0.0.0", "::")),
    6379: ("redis-server", ("127.0.0.1",)),
    5001: ("dotnet", ("127.0.0.1",)),
}


_BATCH = 500  # hosts whose nights share one look-up of what the store holds

_ERRORS = {
    "unreachable": "connection refused by {address}:5986",
    "auth": "HTTP 401 from {address}:5986: the credentials were rejected",
    "timeout": "{address}: no complete answer within the 120 s deadline",
}


@dataclass(frozen=True, slots=True)
class _Patch:
    """An update as the store keeps it (hotfix list and update history merged)."""

    key: str
    kb: str | None
    title: str
    description: str | None
    installed_at: datetime


@dataclass(frozen=True, slots=True)
class _Event:
    """Something that happens to a host between two nightly collections."""

    at: datetime
    kind: str  # reboot, update, dynamic, hyperv, docker, wsl, bios
    patch: _Patch | None = None
    value: str = ""


@dataclass(slots=True)
class _Host:
    """One generated workstation: fixed traits, its future, and its state tonight."""

    id: int
    name: str
    address: str
    rng: random.Random
    role: str  # hyperv, wsl, plain
    blocks: int
    administered: tuple[int, int] | None
    dynamic: tuple[int, int]
    captures_excluded: bool
    fast_startup: bool
    bios: str
    bios_date: date
    failure_rate: float
    error_class: str
    team: tuple[int, ...]
    docker: str | None
    wsl: str | None
    booted_at: datetime
    ubr: int
    hyperv_blocks: tuple[int, int]
    events: list[_Event] = field(default_factory=list)
    position: int = 0
    pending: list[_Patch] = field(default_factory=list)
    features: dict[str, str] = field(default_factory=dict)
    next_ubr: int = 0
    extra_blocks: int = 0
    excluded: ContentSet | None = None
    failures: ContentSet | None = None
    listeners: ContentSet | None = None
    diagnosed: tuple[tuple[Any, ...], ContentSet] | None = None  # its last state's findings


@dataclass(frozen=True, slots=True)
class Generated:
    """What the generator wrote: rows per table, how long it took, the file size."""

    rows: dict[str, int]
    seconds: float
    database_bytes: int
    now: datetime
    derive_seconds: tuple[float, ...] = ()  # each derivation of the history, oldest first


def generate_store(
    url: str,
    hosts: int,
    nights: int,
    seed: int,
    blocks: tuple[int, int] = (5, 40),
    nightly: bool = False,
    jobs: int = 1,
) -> Generated:
    """Write a realistic fleet history into a fresh store at ``url``, through the store's writer.

    Each night is one run and one transaction; each host's night is handed to the writer, in
    batches as ``import`` hands it documents, as the typed rows a probe document would have
    become (``collector.store.rows``), so content sets, findings and updates are stored
    exactly as a real collection stores them. The history is derived once at the end, or,
    with ``nightly``, at each night's end as each run's end derives it (``derive_seconds``
    then holds each night's time).

    ``jobs`` > 1 (PostgreSQL) splits the fleet between that many processes, as collectors of
    several sites split it: each writes its hosts' nights, a run of its own each night, and
    with ``nightly`` derives at its night's end. The store holds the same history.
    """
    started = time.perf_counter()
    fleet = _make_hosts(random.Random(seed), hosts, nights, seed, blocks)
    with Store.open(url) as store:
        if jobs > 1 and store.path is not None:
            raise ValueError("several jobs need PostgreSQL: SQLite takes one writer at a time")
        with store.transaction() as connection:
            for host in fleet:
                host.id = ensure_host(connection, host.name, host.address, ["developers"])
    if jobs == 1:
        derive_seconds = _write_part(url, fleet, nights, nightly)
    else:
        spawn = multiprocessing.get_context("spawn")  # no store engine crosses a fork
        with ProcessPoolExecutor(jobs, mp_context=spawn) as pool:
            parts = [
                pool.submit(_generate_part, url, hosts, nights, seed, blocks, nightly, part, jobs)
                for part in range(jobs)
            ]
            per_part = [future.result() for future in parts]
        derive_seconds = [sum(night) for night in zip(*per_part, strict=True)]
    with Store.open(url) as store:
        if not nightly and jobs > 1:
            derive_started = time.perf_counter()
            with store.transaction() as connection:
                derive_pending(connection)
            derive_seconds.append(time.perf_counter() - derive_started)
        with store.connect() as connection:
            counts = {
                name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in Base.metadata.tables.items()
            }
        size = store_bytes(store)
    return Generated(
        counts, time.perf_counter() - started, size, report_now(nights), tuple(derive_seconds)
    )


def _generate_part(
    url: str,
    hosts: int,
    nights: int,
    seed: int,
    blocks: tuple[int, int],
    nightly: bool,
    part: int,
    parts: int,
) -> list[float]:
    """Write every ``parts``-th host's nights from ``part`` on, in a process of its own."""
    fleet = _make_hosts(random.Random(seed), hosts, nights, seed, blocks)[part::parts]
    with Store.open(url) as store, store.connect() as connection:
        ids = dict(connection.execute(select(Host.name, Host.id)).tuples().all())
    for host in fleet:
        host.id = ids[host.name]
    return _write_part(url, fleet, nights, nightly, derive_last=parts == 1)


def _write_part(
    url: str, fleet: list[_Host], nights: int, nightly: bool, derive_last: bool = True
) -> list[float]:
    """Write the hosts' nights, one run and transaction a night; return each derivation's time."""
    derive_seconds: list[float] = []
    with Store.open(url) as store:
        for night in range(nights):
            at = START + timedelta(days=night, hours=2)
            with store.transaction() as connection:
                run_id = connection.execute(
                    insert(CollectionRun).returning(CollectionRun.id),
                    {"kind": "collect", "started_at": at, "finished_at": at + timedelta(minutes=9),
                     "portfleet_version": "0.4.0"},
                ).scalar_one()  # fmt: skip
                for start in range(0, len(fleet), _BATCH):
                    drawn = [_draw(host, night) for host in fleet[start : start + _BATCH]]
                    _store_nights(connection, int(run_id), drawn)
            if nightly or (derive_last and night == nights - 1):
                derive_started = time.perf_counter()
                with store.transaction() as connection:
                    derive_pending(connection)
                derive_seconds.append(time.perf_counter() - derive_started)
    return derive_seconds


def store_bytes(store: Store) -> int:
    """Return the store's size on disk: the SQLite file (its log folded in), or the database."""
    if store.path is not None:
        with closing(sqlite3.connect(store.path)) as raw:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(p.stat().st_size for p in store.path.parent.glob(store.path.name + "*"))
    with store.connect() as connection:
        return int(
            connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        )


def report_now(nights: int) -> datetime:
    """Return when the report is taken: the last night's morning."""
    return START + timedelta(days=nights - 1, hours=8)


def _make_hosts(
    rng: random.Random, count: int, nights: int, seed: int, blocks: tuple[int, int]
) -> list[_Host]:
    """Draw every host's traits and schedule everything that will happen to it."""
    low, high = blocks
    # WSL alone reserves fewer blocks than Hyper-V: up to 3/8 of the Hyper-V maximum.
    sizes = {"hyperv": (low, high), "wsl": (low, max(low, high * 3 // 8)), "plain": (0, 0)}
    months = _patch_months(rng, nights)
    baseline = _baseline_patches(rng)
    planted_day = max(1, nights * 2 // 9)
    fleet = []
    for index in range(count):
        name = f"ws-{index + 1:04d}"
        host_rng = random.Random(f"{seed}:{name}")
        role = host_rng.choices(("hyperv", "wsl", "plain"), (5, 2, 3))[0]
        troubled = host_rng.random() < 0.05
        moved = host_rng.random() < 0.02
        host = _Host(
            id=index + 1,
            name=name,
            address=f"10.{20 + index // 60000}.{index // 250 % 240}.{index % 250 + 2}",
            rng=host_rng,
            role=role,
            blocks=host_rng.randint(*sizes[role]),
            administered=host_rng.choices(((50000, 50059), (50000, 50099), None), (16, 1, 3))[0],
            dynamic=MOVED_DYNAMIC if moved else default_dynamic("tcp", "ipv4"),
            captures_excluded=host_rng.random() >= 0.02,
            fast_startup=host_rng.random() < 0.5,
            bios=f"1.{host_rng.randint(10, 30)}.0",
            bios_date=START.date() - timedelta(days=host_rng.randint(60, 700)),
            failure_rate=0.15 if troubled else 0.01,
            error_class=host_rng.choice(tuple(_ERRORS)),
            team=tuple(sorted(host_rng.sample(sorted(_TEAM), host_rng.randint(0, 2)))),
            docker="4.43.2" if role == "hyperv" and host_rng.random() < 0.7 else None,
            wsl="2.5.10.0" if role == "wsl" or host_rng.random() < 0.2 else None,
            booted_at=START
            - timedelta(days=host_rng.randint(1, 6), minutes=host_rng.randint(0, 600)),
            ubr=months[0][3] - 130,
            hyperv_blocks=sizes["hyperv"],
        )
        host.features = dict.fromkeys(FEATURES, "Disabled")
        if role == "hyperv":
            host.features |= {"Microsoft-Hyper-V": "Enabled", "Microsoft-Hyper-V-All": "Enabled"}
        if role in ("hyperv", "wsl"):
            host.features |= {"VirtualMachinePlatform": "Enabled"}
        if role == "wsl":
            host.features |= {"Microsoft-Windows-Subsystem-Linux": "Enabled"}
        host.pending = [p for p in baseline if host_rng.random() < 0.8]
        host.events = _schedule(host, months, nights, planted_day)
        fleet.append(host)
    return fleet


def _patch_months(rng: random.Random, nights: int) -> list[tuple[int, str, str, int]]:
    """Return (day, cumulative KB, .NET KB, UBR) of each Patch Tuesday from the month before."""
    months: list[tuple[int, str, str, int]] = []
    first = (START.date().replace(day=1) - timedelta(days=1)).replace(day=1)
    while first <= START.date() + timedelta(days=nights):
        tuesday = first + timedelta(days=(1 - first.weekday()) % 7 + 7)
        kbs = rng.sample(range(5_060_000, 5_099_999), 2)
        ubr = 5800 + 130 * len(months) + rng.randint(0, 40)
        months.append(((tuesday - START.date()).days, f"KB{kbs[0]}", f"KB{kbs[1]}", ubr))
        first = (first + timedelta(days=32)).replace(day=1)
    return months


def _baseline_patches(rng: random.Random) -> list[_Patch]:
    """Updates installed before the period: the last year of monthly ones, and a few more."""
    patches = [
        _Patch("KB5027397", "KB5027397",
               "Feature Update to Windows 11, version 23H2 via Enablement Package (KB5027397)",
               "Update", START - timedelta(days=400)),
        _Patch("KB890830", "KB890830",
               "Windows Malicious Software Removal Tool x64 - v5.140 (KB890830)", None,
               START - timedelta(days=20)),
        _Patch("KB2267602", "KB2267602",
               "Security Intelligence Update for Microsoft Defender Antivirus - KB2267602 "
               "(Version 1.437.80.0) - Current Channel (Broad)", None, START - timedelta(days=2)),
    ]  # fmt: skip
    for back in range(1, 13):
        at = START - timedelta(days=30 * back - 9, hours=-11)
        label = at.strftime("%Y-%m")
        cumulative, dotnet = rng.sample(range(5_000_000, 5_059_999), 2)
        patches += [
            _Patch(f"KB{cumulative}", f"KB{cumulative}", f"{label} Cumulative Update for Windows "
                   f"11 Version 23H2 for x64-based Systems (KB{cumulative})", "Security Update",
                   at),
            _Patch(f"KB{dotnet}", f"KB{dotnet}", f"{label} Cumulative Update for .NET Framework "
                   f"3.5 and 4.8.1 for Windows 11, version 23H2 for x64 (KB{dotnet})", "Update",
                   at - timedelta(minutes=6)),
        ]  # fmt: skip
    for _ in range(8):
        kb = f"KB{rng.randint(5_000_000, 5_059_999)}"
        when = START - timedelta(days=rng.randint(20, 300))
        title = f"Servicing Stack Update for Windows 11 Version 23H2 ({kb})"
        patches.append(_Patch(kb, kb, title, "Update", when))
    return patches


def _schedule(
    host: _Host, months: list[tuple[int, str, str, int]], nights: int, planted_day: int
) -> list[_Event]:
    """List what happens to ``host`` during the period, oldest first."""
    rng = host.rng

    def at(day: int, low: float, high: float) -> datetime:
        return START + timedelta(days=day, minutes=rng.randint(int(low * 60), int(high * 60)))

    last = nights - 2  # day d is seen on night d + 1
    events: list[_Event] = []
    for day in range(nights - 1):
        if rng.random() < 1 / 7:  # roughly weekly: a restart, or shut down and on again
            events.append(_Event(at(day, 8, 22), "reboot"))
        if rng.random() < 0.005:  # a driver from Windows Update, keyed by its title
            title = f"Intel Corporation - Display - 32.0.101.{6000 + day}"
            key = update_key(None, title)
            events.append(_Event(at(day, 9, 18), "update", _Patch(key, None, title, None,
                                                                   at(day, 9, 18))))  # fmt: skip
    delay = rng.choice((0, 0, 0, 1, 2))
    for day, cumulative, dotnet, ubr in months:
        day += delay
        if not 0 <= day <= last:
            continue
        installed = at(day, 10, 16)
        label = (START + timedelta(days=day)).strftime("%Y-%m")
        events += [
            _Event(installed, "update", _Patch(dotnet, dotnet, f"{label} Cumulative Update for "
                   f".NET Framework 3.5 and 4.8.1 for Windows 11, version 23H2 for x64 ({dotnet})",
                   "Update", installed)),
            _Event(installed + timedelta(minutes=7), "update", _Patch(cumulative, cumulative,
                   f"{label} Cumulative Update for Windows 11 Version 23H2 for x64-based Systems "
                   f"({cumulative})", "Security Update", installed + timedelta(minutes=7)),
                   value=str(ubr)),
            _Event(at(day, 19, 23.5), "reboot"),
        ]  # fmt: skip
    if host.role != "hyperv" and rng.random() < 0.01:  # Hyper-V turned on mid-way
        day = rng.randint(nights // 4, nights // 2)
        events += [_Event(at(day, 9, 12), "hyperv"), _Event(at(day + 1, 18, 21), "reboot")]
    elif rng.random() < 0.3:  # the planted KB: Hyper-V hosts get more blocks at the next boot
        day = min(last, planted_day - 1 + rng.randint(0, 6))
        title = f"2026-09 Update for Windows 11 Version 23H2 for x64-based Systems ({PLANTED_KB})"
        installed = at(day, 9, 17)
        events += [
            _Event(installed, "update", _Patch(PLANTED_KB, PLANTED_KB, title, "Update", installed)),
            _Event(at(min(last, day + rng.randint(1, 4)), 18, 22), "reboot"),
        ]
    if rng.random() < 0.01 and nights > 20:  # an installer moves the dynamic range
        events.append(_Event(at(rng.randint(5, last - 5), 9, 16), "dynamic"))
    if host.docker is not None:
        events.append(_Event(at(rng.randint(0, last), 10, 17), "docker", value="4.44.0"))
    if host.wsl is not None and rng.random() < 0.5:
        events.append(_Event(at(rng.randint(0, last), 10, 17), "wsl", value="2.6.1.0"))
    if rng.random() < 0.02:
        day = rng.randint(0, last)
        events += [_Event(at(day, 15, 15.5), "bios"), _Event(at(day, 16, 16.5), "reboot")]
    return sorted(events, key=lambda event: event.at)


@dataclass(frozen=True, slots=True)
class _Night:
    """One host's drawn night: when it was taken, and its rows, or why the attempt failed."""

    host: _Host
    taken_at: datetime
    finished_at: datetime
    received_at: datetime | None = None
    prepared: PreparedSnapshot | None = None
    error_class: str | None = None
    message: str | None = None


def _draw(host: _Host, night: int) -> _Night:
    """Move one host to tonight and draw its night: an attempt, and rows unless it failed."""
    rng = host.rng
    taken_at = START + timedelta(days=night, hours=2, seconds=rng.randint(2, 170))
    rebooted = night == 0
    while host.position < len(host.events) and host.events[host.position].at < taken_at:
        rebooted |= _apply(host, host.events[host.position])
        host.position += 1
    if rebooted:
        _boot(host)
    if rng.random() < host.failure_rate:
        finished = taken_at + timedelta(seconds=rng.randint(1, 120))
        message = _ERRORS[host.error_class].format(address=host.address)
        return _Night(host, taken_at, finished, error_class=host.error_class, message=message)
    received = taken_at + timedelta(seconds=rng.randint(40, 95))
    prepared = _prepared(host, night, taken_at, rng.uniform(40, 95))
    finished = taken_at + timedelta(seconds=rng.randint(40, 95))
    host.pending = []
    return _Night(host, taken_at, finished, received, prepared)


def _store_nights(connection: Connection, run_id: int, nights: list[_Night]) -> None:
    """Write a batch of hosts' nights as ``import`` writes a batch: one look-up, rows at its end.

    The writer's batch path (``KnownContent``) reads the batch's stored sets, base documents
    and updates in one statement each and sends the rows hanging off snapshots and new sets
    once per table, so a night costs about a statement a host instead of seven.
    """
    batch = [night.prepared for night in nights if night.prepared is not None]
    known = KnownContent.load(connection, batch, defer_rows=True)
    known.store_new_sets(connection, batch)
    host_ids = [night.host.id for night in nights if night.prepared is not None]
    known.load_bases(connection, host_ids)
    known.load_updates(connection, host_ids)
    attempts = []
    for night in nights:
        source = f"https://{night.host.address}:5986/wsman"
        if night.prepared is None or night.received_at is None:
            attempts.append(attempt_row(run_id, night.host.id, source, night.taken_at, "failed",
                                        night.error_class, night.message,
                                        finished_at=night.finished_at))  # fmt: skip
            continue
        snapshot = write_snapshot(connection, night.prepared, night.host.id, night.received_at,
                                  known)  # fmt: skip
        known.keep()
        attempts.append(attempt_row(run_id, night.host.id, source, night.taken_at, "ok", None,
                                    None, snapshot.snapshot_id,
                                    finished_at=night.finished_at))  # fmt: skip
    known.flush(connection)
    connection.execute(insert(Attempt), attempts)


def _prepared(
    host: _Host,
    night: int,
    taken_at: datetime,
    sweep_seconds: float,
) -> PreparedSnapshot:
    """Return the rows the writer gets for one host's night, as a document would give them."""
    body = json.dumps(
        {"format": "portfleet-bench", "host": host.name, "night": night,
         "taken_at": taken_at.isoformat(), "boot": host.booted_at.isoformat()}
    ).encode()  # fmt: skip
    digest = document_digest(body)
    sets: dict[str, ContentSet | None] = {
        "excluded_set_id": host.excluded,
        "bind_failure_set_id": host.failures,
        "listener_set_id": host.listeners,
    }
    ranges = {"tcp": host.dynamic, "udp": default_dynamic("udp", "ipv4")}
    dynamic = [
        {"protocol": protocol, "family": family, "start_port": start, "port_count": count}
        for protocol, (start, count) in ranges.items()
        for family in ("ipv4", "ipv6")
    ]
    features = [{"name": name, "state": state} for name, state in host.features.items()]
    services = [
        {"name": name, "status": status, "start_type": start_type}
        for name, status, start_type in _services(host)
    ]
    # Most nights repeat the host's night before: diagnose a state when it changes (a cache of
    # every state seen grew by gigabytes over a year of 10,000 hosts).
    key = (
        *(content.digest if content else None for content in sets.values()),
        tuple(sorted(host.features.items())),
        tuple(_services(host)),
        host.dynamic,
        host.wsl is not None,
    )
    if host.diagnosed is None or host.diagnosed[0] != key:
        host.diagnosed = (key, finding_set(sets, dynamic, features, services, host.wsl is not None))
    sets["finding_set_id"] = host.diagnosed[1]
    errors = []
    if host.excluded is None:
        errors.append({"section": "excluded_ipv4_tcp", "code": "timeout",
                       "message": "netsh int ipv4 show excludedportrange protocol=tcp did not "
                       "finish"})  # fmt: skip
    updates = {
        patch.key: {"kb": patch.kb, "title": patch.title, "description": patch.description,
                    "installed_by": "NT AUTHORITY\\SYSTEM" if patch.kb else None,
                    "installed_on": patch.installed_at.date() if patch.kb else None,
                    "installed_at": patch.installed_at, "result_code": 2}
        for patch in host.pending
    }  # fmt: skip
    snapshot_row = {
        "source": "winrm", "taken_at": taken_at, "probe_version": PROBE_VERSION,
        "os_build": f"{BUILD}.{host.ubr}", "last_boot_at": host.booted_at,
        "bios_version": host.bios, "bios_date": host.bios_date,
        "fast_startup": host.fast_startup, "docker_version": host.docker,
        "wsl_version": host.wsl, "sweep_seconds": sweep_seconds,
    }  # fmt: skip
    return PreparedSnapshot(
        digest=digest,
        document_row={"sha256": digest, "size": len(body), "body": zlib.compress(body, 9)},
        snapshot_row=snapshot_row,
        sets=sets,
        dynamic=dynamic,
        features=features,
        services=services,
        updates=updates,
        errors=errors,
        problems=[],
    )


def _apply(host: _Host, event: _Event) -> bool:
    """Apply one event to the host's state; return True when it booted the host."""
    if event.kind == "reboot":
        host.booted_at = event.at
        if host.next_ubr:
            host.ubr, host.next_ubr = host.next_ubr, 0
        if host.features["Microsoft-Hyper-V"] == "EnablePending":
            host.features |= {"Microsoft-Hyper-V": "Enabled", "Microsoft-Hyper-V-All": "Enabled",
                              "VirtualMachinePlatform": "Enabled"}  # fmt: skip
            host.role, host.blocks = "hyperv", host.rng.randint(*host.hyperv_blocks)
        host.blocks += host.extra_blocks
        host.extra_blocks = 0
        return True
    if event.kind == "update" and event.patch is not None:
        host.pending.append(event.patch)
        if event.value:
            host.next_ubr = int(event.value)
        if event.patch.kb == PLANTED_KB and host.role == "hyperv":
            host.extra_blocks += host.rng.randint(2, 4)
    elif event.kind == "hyperv":
        host.features |= {"Microsoft-Hyper-V": "EnablePending"}
    elif event.kind == "dynamic":
        host.dynamic = MOVED_DYNAMIC
    elif event.kind == "docker":
        host.docker = event.value
    elif event.kind == "wsl":
        host.wsl = event.value
    elif event.kind == "bios":
        host.bios, host.bios_date = host.bios + ".1", event.at.date()
    return False


def _boot(host: _Host) -> None:
    """Draw what a fresh boot looks like (PIDs, block placement) and the rows it gives."""
    rng = host.rng
    hyperv = host.features["Microsoft-Hyper-V"] == "Enabled"
    endpoints = [*_WINDOWS, *(_HYPERV if hyperv else ())]
    low, count = host.dynamic
    taken = [(port, port) for _, _, protocol, port, _ in endpoints if protocol == "tcp"]
    if host.administered is not None:
        taken.append(host.administered)
    blocks = _place(rng, host.blocks if host.role != "plain" else 0, low, low + count - 1, taken)
    for port in host.team:
        if not any(start <= port <= end for start, end in blocks):
            process, addresses = _TEAM[port]
            endpoints.append((process, process, "tcp", port, addresses))
    pids = {key: SYSTEM_PID if process == "System" else rng.randrange(600, 30000, 4)
            for key, process, _, _, _ in endpoints}  # fmt: skip
    listeners = sorted(
        (protocol, host.address if address == "lan" else address, port, pids[key], process)
        for key, process, protocol, port, addresses in endpoints
        for address in addresses
    )
    host.listeners = content_rows(listeners)
    excluded = [(start, end, False) for start, end in blocks]
    if host.administered is not None:
        excluded.append((*host.administered, True))
    if host.captures_excluded:
        rows = sorted(
            ("tcp", family, s, e, a) for family in ("ipv4", "ipv6") for s, e, a in excluded
        )
        host.excluded = content_rows(rows)
    failures = []
    for family in ("ipv4", "ipv6"):
        runs = [(start, end, WSAEACCES) for start, end, _ in excluded]
        for _, address, port, pid, _ in (row for row in listeners if row[0] == "tcp"):
            if (":" in address) == (family == "ipv6") and not any(
                s <= port <= e for s, e, _ in excluded
            ):
                runs.append((port, port, WSAEACCES if pid == SYSTEM_PID else WSAEADDRINUSE))
        failures += [("tcp", family, *run) for run in merge_runs(runs)]
    host.failures = content_rows(sorted(failures))


def _place(
    rng: random.Random, blocks: int, low: int, high: int, taken: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Put runs of adjacent 100-port blocks at free places, mostly near the range's start."""
    placed: list[tuple[int, int]] = []
    taken = list(taken)
    while blocks > 0:
        size = min(blocks, rng.randint(1, 4))
        blocks -= size
        length = size * BLOCK
        span = high - low + 1 - length
        for _ in range(1000):
            near = rng.random() < 0.8
            start = low + min(
                int(rng.expovariate(1 / 1500)) if near else rng.randint(0, span), span
            )
            if not any(start <= b and a <= start + length - 1 for a, b in taken):
                break
        else:
            continue  # no room: the host simply holds fewer blocks this boot
        taken.append((start, start + length - 1))
        placed += [(s, s + BLOCK - 1) for s in range(start, start + length, BLOCK)]
    return sorted(placed)


def _services(host: _Host) -> list[tuple[str, str, str]]:
    """List the services the probe reports for the host tonight."""
    hyperv = host.features["Microsoft-Hyper-V"] == "Enabled"
    winnat = hyperv or host.role == "wsl"
    rows = [("winnat", "Running" if winnat else "Stopped", "Manual")]
    if hyperv or host.features["VirtualMachinePlatform"] == "Enabled":
        rows.append(("hns", "Running", "Manual"))
    if hyperv:
        rows.append(("vmms", "Running", "Automatic"))
    if host.wsl is not None:
        rows.append(("WslService", "Running", "Automatic"))
    if host.docker is not None:
        rows.append(("com.docker.service", "Stopped", "Manual"))
    return rows
