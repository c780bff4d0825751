"""A store for the report tests, filled from real inputs: probe documents, the seed, failed tries.

A dozen hosts over four nights, stored with ``collector.importer.store_document`` as a
collection would store them, then the seed capture imported with ``import_paths``. Four hosts
install KB5036893 (its title hostile) and grow new run-time blocks after it; three change
Docker; one updates its BIOS; one was never reached, one not lately, one could not read its
excluded ranges. The strings a host controls (its name, process names, update titles, attempt
messages) include markup that would run if the report pasted them into the page unescaped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collector.document import load_document
from collector.importer import import_paths
from collector.runs import finish_run, start_run
from collector.store.database import Store
from collector.store.fixes import record_fix
from collector.store.writer import record_failure, store_document
from reports.analysis import build_report_data
from reports.model import ReportData
from tests.conftest import SEED_CAPTURE
from tests.documents import probe_document

HOSTILE_HOST = "<img src=x onerror=alert(1)>"
HOSTILE_PROCESS = '"><script>alert(2)</script>'
HOSTILE_TITLE = (
    "2024-04 Cumulative Update for Windows 11 \"23H2\" & 'Server' (KB5036893) <x-preview>"
)
# A process name as Plotly would read it in a label: bold, an entity, a link.
HOSTILE_NAT = '<b>nat</b> &amp; <a href="https://example.com/">x</a>'
HOSTILE_FAULT = (
    'WinRM said: <f:WSManFault Code="5" Machine="ws-legacy"><f:Message>Access is denied. '
    "</f:Message></f:WSManFault> (check the account is in Administrators)"
)
HOSTILE_NOTE = "<b>netsh</b> & a reboot"  # an admin's note on a fix
WANTED_PORTS = (80, 443, 3000, 5432, 8080, 50051)
NOW = datetime(2024, 5, 14, 6, 0, tzinfo=UTC)
NIGHTS = ("2024-05-01T03:00:00Z", "2024-05-03T03:00:00Z", "2024-05-07T03:00:00Z",
          "2024-05-14T03:00:00Z")  # fmt: skip
KB_INSTALLED = "2024-05-02T18:31:00Z"

Range = tuple[int, int, bool]  # start, end, administered ('*')
Listener = tuple[int, int, str]  # port, pid, process


@dataclass(frozen=True, slots=True)
class _Host:
    """What one host says: per night, its excluded ranges; the rest changes at ``changed``."""

    name: str
    nights: tuple[int, ...]  # indexes into NIGHTS
    excluded: tuple[tuple[Range, ...], ...] | None  # one per night; None: not captured
    listeners: tuple[Listener, ...] = ()
    failing: tuple[tuple[int, int], ...] = ()  # 10013 where no range explains it
    dynamic: tuple[int, int] = (49152, 16384)
    kb: bool = False  # installs KB5036893 and reboots before the second night
    docker: tuple[str, str] = ("4.30.0", "4.30.0")  # before and from the second night
    bios: tuple[str, str] = ("1.17.0", "1.17.0")  # before and from the third night
    errors: tuple[dict[str, str], ...] = field(default_factory=tuple)


_HOSTS = (
    _Host("build-01", (0, 1, 2, 3), (((50301, 50400, False),),) + (((50000, 50059, False),
          (50301, 50400, False)),) * 3, listeners=((5432, 4242, "postgres.exe"),), kb=True),
    _Host("build-02", (0, 1, 2, 3), (((50110, 50209, False), (5357, 5357, True)),)
          + (((5357, 5357, True), (49709, 49808, False), (50110, 50209, False)),) * 3,
          kb=True, docker=("4.29.0", "4.30.0")),
    _Host("build-03", (0, 1, 2, 3), (((5357, 5357, True),),) * 4, docker=("4.29.0", "4.30.0")),
    _Host("dev-ana", (0, 1, 2, 3), (((2869, 2869, True), (61000, 61099, False)),)
          + (((2869, 2869, True), (50051, 50150, False), (61000, 61099, False)),) * 2
          + (((2869, 2869, True), (50051, 50150, False)),),
          listeners=((3000, 9120, "node.exe"), (443, 4, "System")), kb=True),
    _Host("dev-ben", (0, 1, 2, 3), (((8080, 8080, True),),) * 4, failing=((1433, 1434),),
          docker=("4.29.0", "4.30.0")),
    _Host("dev-chloe", (0, 1, 2, 3), (((1101, 1200, False), (3000, 3099, False)),) * 4,
          dynamic=(1025, 64510)),
    _Host("dev-dmitri", (0, 1, 2, 3), (((50500, 50509, False),),) * 4,
          failing=((55000, 55002),)),
    _Host("qa-win11", (0, 1, 2, 3), (((52000, 52008, False),),) * 2
          + (((50000, 50008, False),),) * 2, listeners=((80, 4, "System"),),
          bios=("1.17.0", "1.18.2")),
    _Host("ws-legacy", (1, 2, 3), None, failing=((50000, 50019),),
          errors=({"section": "excludedportrange", "code": "not_elevated",
                   "message": "netsh: the requested operation requires elevation"},)),
    _Host("kiosk-7", (0, 1), (((50200, 50263, False),),) * 2),
    _Host(HOSTILE_HOST, (0, 1, 2, 3), (((5357, 5357, True),),)
          + (((5357, 5357, True), (50100, 50149, False)),) * 3,
          listeners=((8080, 6666, HOSTILE_PROCESS), (9000, 7777, HOSTILE_NAT)), kb=True),
)  # fmt: skip

# (host, night, error class, message): tries that got nothing.
_FAILED = (
    ("laptop-eve", "2024-05-12T03:00:00Z", "unreachable", "name did not resolve"),
    ("laptop-eve", "2024-05-13T03:00:00Z", "unreachable", "no answer on port 5985 & 5986"),
    ("laptop-eve", "2024-05-14T03:00:00Z", "unreachable", "no answer on port 5985 & 5986"),
    ("kiosk-7", "2024-05-13T03:00:00Z", "timeout", "the probe did not finish within 120 s"),
    ("kiosk-7", "2024-05-14T03:00:00Z", "timeout", "the probe did not finish within 120 s"),
    ("ws-legacy", "2024-05-12T03:00:00Z", "auth", HOSTILE_FAULT),
    (HOSTILE_HOST, "2024-05-11T03:00:00Z", "bad_document",
     f"the document names host {HOSTILE_HOST!r}, not the one asked for"),
)  # fmt: skip


def _excluded_text(ranges: Sequence[Range]) -> str:
    rows = "\n".join(f"{a:>10}{b:>12}{'     *' if star else ''}" for a, b, star in sorted(ranges))
    return (
        "\nProtocol tcp Port Exclusion Ranges\n\nStart Port    End Port\n"
        f"----------    --------\n{rows}\n\n* - Administered port exclusions.\n"
    )


def _failures(host: _Host, ranges: Sequence[Range]) -> list[list[int]]:
    """Every port the sweep could not bind: run-time ranges and failing runs 10013, listeners
    10048; an administered range binds (facts C)."""
    spans = {(a, b, 10013) for a, b, admin in ranges if not admin}
    spans |= {(a, b, 10013) for a, b in host.failing}
    spans |= {(port, port, 10048) for port, _, _ in host.listeners}
    return [list(span) for span in sorted(spans)]


def _document(host: _Host, night: int) -> dict[str, Any]:
    """Return what ``host`` printed on ``night``."""
    after_kb = host.kb and night >= 1
    ranges = () if host.excluded is None else host.excluded[host.nights.index(night)]
    raw = {
        "dynamicport_ipv4_tcp": "\nProtocol tcp Dynamic Port Range\n"
        "---------------------------------\n"
        f"Start Port      : {host.dynamic[0]}\nNumber of Ports : {host.dynamic[1]}\n"
    }
    if host.excluded is not None:
        raw["excluded_ipv4_tcp"] = _excluded_text(ranges)
    document = probe_document(
        taken_at=NIGHTS[night],
        raw=raw,
        bind_sweep=[{"protocol": "tcp", "family": "ipv4", "address": "0.0.0.0",
                     "exclusive": True, "failures": _failures(host, ranges)}],
        listeners=[{"protocol": "tcp", "address": "0.0.0.0", "port": port, "pid": pid,
                    "process": process} for port, pid, process in host.listeners],
        versions={"docker": host.docker[night >= 1], "wsl": "2.1.5"},
        hotfixes=[],
        update_history=[{"date": KB_INSTALLED, "title": HOSTILE_TITLE, "kb": "KB5036893",
                         "operation": 1, "result_code": 2}] if after_kb else [],
        errors=list(host.errors),
    )  # fmt: skip
    document["host"] |= {
        "name": host.name,
        "last_boot": "2024-05-02T18:40:00Z" if after_kb else "2024-04-29T08:00:00Z",
        "bios": {"version": host.bios[night >= 2], "release_date": "2024-03-05"},
    }
    return document


def fill_report_store(store: Store) -> None:
    """Store the report tests' fleet, its failed tries and the seed capture in ``store``."""
    # As collect records its config's wanted ports (a report without a config falls back on them).
    run = start_run(store, "collect", dict.fromkeys(WANTED_PORTS))
    for host in _HOSTS:
        for night in host.nights:
            document = _document(host, night)
            body = json.dumps(document).encode()
            at = datetime.fromisoformat(NIGHTS[night])
            result = store_document(
                store, run, body, load_document(body, host.name), host.name, "winrm", at
            )
            assert result.outcome == "stored", result.message
    for name, tried, error_class, message in _FAILED:
        when = datetime.fromisoformat(tried)
        record_failure(store, run, name, when, error_class, message, name)
    finish_run(store, run)
    seed_at = datetime(2024, 4, 20, 12, 0, tzinfo=UTC)  # a workstation not seen for weeks
    (result,) = import_paths(store, [SEED_CAPTURE], "seed-workstation", seed_at)
    assert result.outcome == "stored", result.message
    # An admin's fix, checked against the nights stored after it; its note comes from a person.
    applied = datetime.fromisoformat(NIGHTS[0]) + timedelta(hours=1)
    record_fix(store, "dev-ana", 50051, "reserve", note=HOSTILE_NOTE, by="it",
               applied_at=applied)  # fmt: skip


def big_fleet(store: Store, count: int = 1000) -> None:
    """Store one night of ``count`` hosts with a few reserved ranges and a failing run each."""
    run = start_run(store, "collect")
    for index in range(count):
        ranges = (
            (49700 + index % 500, 49799 + index % 500, False),
            (50800 + index % 300, 50899 + index % 300, False),
            (5357, 5357, True),
        )
        host = _Host(f"ws-{index:04d}", (3,), (ranges,),
                     failing=((60000 + index % 200, 60099 + index % 200),))  # fmt: skip
        body = json.dumps(_document(host, 3)).encode()
        at = datetime.fromisoformat(NIGHTS[3])
        store_document(store, run, body, load_document(body, host.name), host.name, "winrm", at)
    finish_run(store, run)


def report_of(
    path: Path, fill: Callable[[Store], None] | None, wanted: Sequence[int] = WANTED_PORTS
) -> ReportData:
    """Make a store at ``path``, fill it (None: leave it empty), and return its analysis."""
    url = f"sqlite:///{path}"
    with Store.open(url) as store:
        if fill is not None:
            fill(store)
    with Store.reader(url) as store:
        return build_report_data(store, wanted, NOW)


_RANGE = ((5400, 5499, False),)
_FLIPS = (
    _Host("flip-new", (0, 1, 2, 3), ((),) * 3 + (_RANGE,)),
    _Host("flip-freed", (0, 1, 2, 3), (_RANGE,) * 3 + ((),)),
    _Host("flip-cleared", (0, 1, 2, 3), (_RANGE,) * 2 + ((),) * 2),
    _Host("flip-steady", (0, 1, 2, 3), ((),) * 4),
)
FLIP_PORT = 5432  # inside _RANGE, outside the dynamic range


def fill_flips(store: Store) -> None:
    """Store four hosts whose TCP 5432 got reserved, freed, freed earlier, or never taken."""
    run = start_run(store, "collect")
    for host in _FLIPS:
        for night in host.nights:
            body = json.dumps(_document(host, night)).encode()
            at = datetime.fromisoformat(NIGHTS[night])
            result = store_document(
                store, run, body, load_document(body, host.name), host.name, "winrm", at
            )
            assert result.outcome == "stored", result.message
    finish_run(store, run)


def many_changes(store: Store, count: int = 110) -> None:
    """Store ``count`` hosts whose one reserved range moves every night: two changes each."""
    run = start_run(store, "collect")
    for index in range(count):
        moves = tuple(((5400 + 100 * night + index, 5449 + 100 * night + index, False),)
                      for night in range(3))  # fmt: skip
        host = _Host(f"mover-{index:03d}", (0, 1, 2), moves)
        for night in host.nights:
            body = json.dumps(_document(host, night)).encode()
            at = datetime.fromisoformat(NIGHTS[night])
            store_document(store, run, body, load_document(body, host.name), host.name, "winrm", at)
    finish_run(store, run)
