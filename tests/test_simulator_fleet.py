"""The simulated fleet's model and documents: determinism, schema, parsers, planted cause, store."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import pairwise
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
from sqlalchemy import text

from collector.document import load_document
from collector.parsers.dynamicport import parse_dynamicport
from collector.parsers.excluded import parse_excluded
from collector.parsers.netstat import parse_netstat
from collector.runs import finish_run, start_run
from collector.simulator import locales
from collector.simulator.fleet import OUTAGES, Fleet, FleetSpec
from collector.simulator.host import (
    DOCKER,
    DYNAMIC_RANGE,
    FAST_BOOT,
    FEATURE,
    FULL_BOOT,
    LOW_DYNAMIC,
    UPDATE_FAILED,
    WINNAT_RESTART,
    HostState,
)
from collector.store.database import Store
from collector.store.writer import store_document
from collector.windows import WINNAT_BLOCK as BLOCK_SIZE
from collector.windows import WSAEACCES, WSAEADDRINUSE, default_dynamic

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "collector" / "data" / "corpus"
NIGHTS = FleetSpec().nights


@cache
def fleet() -> Fleet:
    return Fleet()


@cache
def documents() -> dict[tuple[str, int], str]:
    """Every document of the default fleet, as the JSON text a probe would print."""
    f = fleet()
    return {(h.name, n): json.dumps(f.document(h, n)) for h in f.hosts for n in range(NIGHTS)}


@cache
def loaded(name: str, night: int) -> dict[str, Any]:
    """The document read back from its JSON text."""
    result: dict[str, Any] = json.loads(documents()[(name, night)])
    return result


@cache
def validated(name: str, night: int) -> dict[str, Any]:
    """The document as collector.document.load_document reads and checks it (once)."""
    return load_document(documents()[(name, night)].encode(), f"{name}-{night}")


def states(name: str) -> list[HostState]:
    return [fleet().state(name, night) for night in range(NIGHTS)]


def rows(ranges) -> list[tuple[int, int, bool]]:
    return [(r.start, r.end, r.administered) for r in ranges]


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_gives_identical_documents():
    again = Fleet(FleetSpec(seed=7))
    assert again.hosts == fleet().hosts and again.truth == fleet().truth
    for host in fleet().hosts:
        # A document is a pure function of its state: equal states give equal documents.
        assert [again.state(host.name, n) for n in range(NIGHTS)] == states(host.name)
        for night in (0, 1, 20, 21, 40, NIGHTS - 1):
            body = documents()[(host.name, night)]
            assert json.dumps(again.document(host.name, night)) == body, (host.name, night)


DIGEST = """
import hashlib
from collector.simulator.fleet import Fleet
f = Fleet()
states = [f.state(h, n) for h in f.hosts for n in range(f.spec.nights)]
print(hashlib.sha256(repr((states, f.truth, f.healthy_hosts())).encode()).hexdigest())
"""


def test_the_fleet_does_not_depend_on_the_process():
    """Nothing hangs on Python's per-process string hashing: a fresh process agrees."""
    environment = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", DIGEST], env=environment, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    f = fleet()
    every = [f.state(h, n) for h in f.hosts for n in range(NIGHTS)]
    here = repr((every, f.truth, f.healthy_hosts()))
    assert run.stdout.strip() == hashlib.sha256(here.encode()).hexdigest()


def test_different_seed_gives_a_different_fleet():
    other = Fleet(FleetSpec(seed=8))
    assert [h.name for h in other.hosts] == [h.name for h in fleet().hosts]
    assert other.hosts != fleet().hosts
    assert json.dumps(other.document("dev-ws-01", 0)) != documents()[("dev-ws-01", 0)]
    assert other.truth != fleet().truth


def test_state_outside_the_simulated_nights_is_refused():
    with pytest.raises(IndexError):
        fleet().state("dev-ws-01", NIGHTS)


# --- schema and parsers --------------------------------------------------------------------


CHECK = """
import json, sys
from collector.document import load_document
from collector.simulator.fleet import Fleet
f = Fleet()
for name in sys.argv[1:]:
    for night in range(f.spec.nights):
        document = load_document(json.dumps(f.document(name, night)).encode(), name)
        assert document["host"]["name"] == name
    print(name)
"""


def test_every_document_matches_the_schema():
    # A second process (it rebuilds the same fleet from the seed) checks the last hosts while
    # this one checks the first: schema validation is most of this file's time.
    names = [host.name for host in fleet().hosts]
    mine, theirs = names[:7], names[7:]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", CHECK, *theirs]
    with subprocess.Popen(command, env=environment, stdout=PIPE, stderr=PIPE, text=True) as child:
        for name in mine:
            for night in range(NIGHTS):
                assert validated(name, night)["host"]["name"] == name
        out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert out.split() == theirs


def test_raw_text_parses_back_to_the_model():
    parsed: dict[str, Any] = {}  # raw texts repeat from night to night; parse each once

    def once(parser: Callable[[str], Any], raw: str) -> Any:
        if raw not in parsed:
            parsed[raw] = parser(raw)
        return parsed[raw]

    for name, night in documents():
        state = fleet().state(name, night)
        raw = loaded(name, night)["raw"]
        for key, model in (
            ("excluded_ipv4_tcp", state.excluded_tcp),
            ("excluded_ipv6_tcp", state.excluded_tcp),
            ("excluded_ipv4_udp", state.excluded_udp),
        ):
            (table,) = once(parse_excluded, raw[key])
            assert table.protocol == key[-3:]
            assert rows(table.ranges) == rows(model), (name, night, key)
        for key, (start, count) in (
            ("dynamicport_ipv4_tcp", state.dynamic_tcp),
            ("dynamicport_ipv4_udp", state.dynamic_udp),
        ):
            (block,) = once(parse_dynamicport, raw[key])
            assert (block.protocol, block.start, block.count) == (key[-3:], start, count)
        connections = once(parse_netstat, raw["netstat"])
        listeners = {
            (c.proto.lower(), c.local_address, c.local_port, c.pid)
            for c in connections
            if c.is_listener
        }
        assert listeners == {(i.protocol, i.address, i.port, i.pid) for i in state.listeners}
        assert len(listeners) == len(state.listeners)
        # The collector's own WinRM session is the only non-listener, on a listening port
        assert {c.local_port for c in connections if not c.is_listener} == {5985}


def test_excluded_rows_use_the_raw_console_layout():
    raw = loaded("dev-ws-01", 0)["raw"]["excluded_ipv4_tcp"]
    lines = raw.split("\r\n")
    assert lines[0] == "" and lines[-2:] == ["", ""]
    data = [line for line in lines if re.fullmatch(r" *\d+ +\d+ +\*?", line)]
    assert data and all(len(line) == 28 for line in data)
    assert "     50000       50059     *" in data
    assert all(line.endswith(" " * 6) for line in data if not line.endswith("*"))


def test_sweep_failures_follow_the_exclusions_and_the_listeners():
    for name, night in documents():
        state = fleet().state(name, night)
        for sweep in loaded(name, night)["bind_sweep"]:
            runs = sweep["failures"]
            for (_, end, code), (start, _, next_code) in pairwise(runs):
                assert end < start and (end + 1 < start or code != next_code)
            code_of = {p: c for s, e, c in runs for p in range(s, e + 1)}
            # Run-time ranges refuse binds; administered ones do not (facts C).
            runtime = [r for r in state.excluded_tcp if not r.administered]
            for item in runtime:
                assert code_of[item.start] == code_of[item.end] == WSAEACCES
            ipv6 = sweep["family"] == "ipv6"
            held = {
                i.port: i.pid
                for i in state.listeners
                if i.protocol == "tcp" and (":" in i.address) == ipv6
            }
            excluded = {p for r in runtime for p in range(r.start, r.end + 1)}
            for port, pid in held.items():
                expected = WSAEACCES if pid == 4 or port in excluded else WSAEADDRINUSE
                assert code_of[port] == expected, (name, night, port)
            assert set(code_of) == excluded | set(held)


# --- evolution rules -----------------------------------------------------------------------


def test_runtime_blocks_are_100_ports_inside_the_dynamic_range_and_only_with_winnat():
    for host in fleet().hosts:
        # Blocks sit in the dynamic range in force when they were placed: at a full boot, or
        # at a Docker restart after a winnat restart.
        in_force = placed_in = default_dynamic("tcp", "ipv4")
        vanished = False
        for state in states(host.name):
            for event in state.events:
                if event.kind == DYNAMIC_RANGE:
                    in_force = LOW_DYNAMIC
                elif event.kind == WINNAT_RESTART:
                    vanished = True
                elif event.kind == FULL_BOOT or (event.kind == DOCKER and vanished):
                    placed_in, vanished = in_force, False
            assert state.dynamic_tcp == in_force
            low, count = placed_in
            assert all(low <= b.start and b.end < low + count for b in state.blocks)
            assert all(b.end - b.start + 1 == BLOCK_SIZE for b in state.blocks)
            for before, after in pairwise(state.excluded_tcp):
                assert before.end < after.start
            winnat = dict((n, s) for n, s, _ in state.services)["winnat"] == "Running"
            if not winnat:
                assert [r for r in state.excluded_tcp if not r.administered] == []


def test_reservations_move_at_full_boots_and_stay_put_otherwise():
    moved = kept = 0
    for host in fleet().hosts:
        history = states(host.name)
        for before, after in pairwise(history):
            if not before.blocks or not after.blocks:
                continue
            if after.rebooted:
                assert after.blocks != before.blocks
                assert after.last_boot > before.last_boot
                moved += 1
            elif not any(e.kind in (WINNAT_RESTART, DOCKER) for e in after.events):
                assert after.blocks == before.blocks
                assert after.last_boot == before.last_boot
                kept += 1
    assert moved > 20 and kept > 200


def test_fast_startup_shutdowns_keep_the_boot_and_the_reservations():
    seen = 0
    for host in fleet().hosts:
        history = states(host.name)
        for before, after in pairwise(history):
            if any(e.kind == FAST_BOOT for e in after.events) and not after.rebooted:
                assert host.fast_startup
                assert after.last_boot == before.last_boot
                assert after.excluded_tcp == before.excluded_tcp
                seen += 1
    assert seen > 0


def test_winnat_restart_drops_every_runtime_row_and_keeps_administered_ones():
    restarts = 0
    for host in fleet().hosts:
        history = states(host.name)
        for before, after in pairwise(history):
            if any(e.kind == WINNAT_RESTART for e in after.events) and not after.rebooted:
                assert [r for r in before.excluded_tcp if not r.administered]
                assert after.excluded_tcp == host.administered
                assert after.reserved_blocks == before.reserved_blocks
                restarts += 1
    assert restarts == 1


def test_visual_studio_moves_the_dynamic_range_and_blocks_land_on_ordinary_ports():
    low_hosts = [h.name for h in fleet().hosts if states(h.name)[-1].dynamic_tcp == LOW_DYNAMIC]
    assert 1 <= len(low_hosts) <= 2
    for name in low_hosts:
        history = states(name)
        assert history[0].dynamic_tcp == default_dynamic("tcp", "ipv4")
        changed = next(s for s in history if s.dynamic_tcp == LOW_DYNAMIC)
        # The blocks stay where they were until the next full boot.
        if not changed.rebooted:
            assert changed.blocks == history[changed.night - 1].blocks
        later = [s for s in history[changed.night :] if s.blocks]
        assert any(b.start < 10_000 for s in later for b in s.blocks)
    # Somewhere a team service lost its port to a reservation.
    lost = [
        (s.host.name, port)
        for h in fleet().hosts
        for s in states(h.name)
        for port in h.team_ports
        if port not in {i.port for i in s.listeners}
    ]
    assert lost and all(name in low_hosts for name, _ in lost)


def test_patch_tuesday_updates_every_host_and_restarts_it_that_night():
    for host in fleet().hosts:
        history = states(host.name)
        for month in ("2026-09", "2026-10"):
            state = next(
                s
                for s in history
                if any(
                    u.kind == "cumulative" and u.label == month and u.result_code == 2
                    for u in s.updates
                )
            )
            assert state.rebooted and state.ubr > history[state.night - 1].ubr
            # Hosts install on Patch Tuesday (the second Tuesday) or up to three days later.
            first = date.fromisoformat(f"{month}-01")
            tuesday = first + timedelta(days=(1 - first.weekday()) % 7 + 7)
            assert 0 <= (state.taken_at.date() - timedelta(days=1) - tuesday).days <= 3
    kbs = {
        u.kb for h in fleet().hosts for u in states(h.name)[-1].updates if u.kind == "cumulative"
    }
    assert len(kbs) == 3  # August (before the start), September, October: one KB per month


def test_a_failed_install_is_retried_the_next_day():
    failed = [
        (h.name, e)
        for h in fleet().hosts
        for s in states(h.name)
        for e in s.events
        if e.kind == UPDATE_FAILED
    ]
    assert len(failed) == 1
    name, event = failed[0]
    updates = states(name)[-1].updates
    tries = [u for u in updates if u.kb == event.detail]
    assert [u.result_code for u in tries] == [4, 2]
    assert (tries[1].at.date() - tries[0].at.date()).days == 1


def test_other_updates_never_add_blocks():
    truth = fleet().truth
    effects = {(e.host, e.night): e for e in truth.effects}
    for host in fleet().hosts:
        history = states(host.name)
        for before, after in pairwise(history):
            grown = after.reserved_blocks - before.reserved_blocks
            assert grown >= 0
            if not grown:
                continue
            assert after.rebooted
            enabled = [
                e for e in after.events if e.kind == FEATURE and e.detail.endswith("Enabled")
            ]
            effect = effects.get((host.name, after.night))
            assert enabled or effect, (host.name, after.night)
            if effect and not enabled:
                assert grown == len(effect.blocks)
        for state in history:
            # What netsh shows is every reserved block, or none after a winnat restart.
            assert len(state.blocks) in (0, state.reserved_blocks)


# --- the planted cause ---------------------------------------------------------------------


def test_planted_kb_adds_blocks_at_the_next_reboot_on_hyperv_hosts_only():
    f = fleet()
    truth = f.truth
    assert truth.kb == "KB5046613"
    assert 0 < len(truth.installs) < len(f.hosts)
    effects = {e.host: e for e in truth.effects}
    hyperv_installs = 0
    for install in truth.installs:
        history = states(install.host)
        assert install.night >= f.spec.planted_night
        assert truth.kb in {u.kb for u in history[install.night].updates}
        assert truth.kb not in {u.kb for u in history[install.night - 1].updates}
        boots = [
            (s, e.at)
            for s in history[install.night :]
            for e in s.events
            if e.kind == FULL_BOOT and e.at > install.installed_at
        ]
        reboot, boot = boots[0]
        before = history[reboot.night - 1]
        if reboot.hyperv:
            hyperv_installs += 1
            effect = effects[install.host]
            assert effect.night == reboot.night and effect.boot_at == boot
            assert len(effect.blocks) >= 2
            assert reboot.reserved_blocks == before.reserved_blocks + len(effect.blocks)
            assert len(reboot.blocks) == reboot.reserved_blocks
            if reboot.last_boot == boot:  # no second boot moved them again that night
                assert set(effect.blocks) <= set(reboot.blocks)
        else:
            assert install.host not in effects
            assert reboot.reserved_blocks == before.reserved_blocks
    assert hyperv_installs >= 2 and len(truth.installs) > hyperv_installs
    assert truth.affected_hosts <= truth.installed_hosts
    assert not truth.affected_hosts & {h.name for h in f.hosts if h.role != "hyperv"}


def test_planted_kb_shows_in_both_update_lists():
    truth = fleet().truth
    for install in truth.installs:
        document = loaded(install.host, NIGHTS - 1)
        hotfixes = {h["kb"]: h for h in document["hotfixes"]}
        assert hotfixes[truth.kb]["installed_on"] == install.installed_at.date().isoformat()
        if document["host"]["elevated"]:
            titles = [u["title"] for u in document["update_history"] if u["kb"] == truth.kb]
            assert len(titles) == 1 and titles[0].endswith(f"({truth.kb})")


# --- documents -----------------------------------------------------------------------------


def test_update_history_and_hotfix_views():
    results = set()
    for name, night in documents():
        if night % 10 and night != NIGHTS - 1:
            continue
        document = loaded(name, night)
        for entry in document.get("update_history", []):
            assert entry["date"].endswith("Z") and entry["operation"] == 1
            assert (entry["result_code"] == 4) == (entry["hresult"] < 0)
            results.add(entry["result_code"])
            if entry["kb"] and entry["kb"] != "KB2267602":
                assert entry["title"].endswith(f"({entry['kb']})")
        # Get-HotFix lists CBS packages only: no Defender, MSRT or driver entries.
        kbs = [h["kb"] for h in document["hotfixes"]]
        assert "KB2267602" not in kbs and "KB890830" not in kbs
        assert len(kbs) == len(set(kbs))
    assert results == {2, 4}


def test_bios_and_docker_updates_change_versions_but_not_reservations():
    flashed, upgraded = set(), set()
    for host in fleet().hosts:
        for before, after in pairwise(states(host.name)):
            if after.bios_version != before.bios_version:
                flashed.add(host.name)
                assert after.rebooted and after.bios_date > before.bios_date
            if after.docker_version != before.docker_version:
                upgraded.add(host.name)
                if not after.rebooted and before.blocks:
                    assert after.excluded_tcp == before.excluded_tcp
    assert len(flashed) == 2
    assert upgraded == {h.name for h in fleet().hosts if h.role == "hyperv"}


def test_one_host_is_not_elevated_and_reports_it():
    unelevated = [h.name for h in fleet().hosts if not h.elevated]
    assert len(unelevated) == 1 and unelevated[0] in fleet().healthy_hosts()
    document = loaded(unelevated[0], 0)
    assert "features" not in document and "update_history" not in document
    assert {(e["section"], e["code"]) for e in document["errors"]} == {
        ("features", "not_elevated"),
        ("update_history", "not_elevated"),
    }
    assert document["hotfixes"]


def test_times_are_host_local_with_offsets():
    for host in fleet().hosts:
        document = loaded(host.name, 3)
        taken = datetime.fromisoformat(document["taken_at"])
        assert taken.utcoffset() == host.utc_offset
        assert (taken.hour, taken.minute) in ((2, 0), (2, 1), (2, 2))
        assert datetime.fromisoformat(document["host"]["last_boot"]) < taken
        sweep = sum(s["duration_ms"] for s in document["bind_sweep"])
        assert 40_000 <= sweep <= 90_000 and sweep < document["duration_ms"]


def test_roles_give_the_expected_features_services_and_listeners():
    roles = {h.role for h in fleet().hosts}
    assert roles == {"hyperv", "wsl", "plain"}
    for host in fleet().hosts:
        state = fleet().state(host.name, 0)
        services = {name for name, _, _ in state.services}
        ports = {i.port for i in state.listeners if i.protocol == "tcp"}
        assert {135, 445, 5040, 7680, 49664, 49669} <= ports
        if host.role == "hyperv":
            assert state.hyperv and {"vmms", "hns", "com.docker.service"} <= services
            assert 2179 in ports and state.docker_version and state.wsl_version
        elif host.role == "wsl":
            assert not state.hyperv and "hns" in services and state.wsl_version
        else:
            assert services == {"winnat"} and state.wsl_version is None


def test_wsl_and_hyperv_arrive_mid_way_on_one_host_each():
    changed = {}
    for host in fleet().hosts:
        first, last = states(host.name)[0], states(host.name)[-1]
        if first.features != last.features:
            changed[host.name] = (host.role, first.reserved_blocks, last.reserved_blocks)
    assert sorted(role for role, _, _ in changed.values()) == ["plain", "wsl"]
    assert all(after > before for _, before, after in changed.values())


# --- languages, outages --------------------------------------------------------------------


def test_display_languages():
    cultures = {h.culture for h in fleet().hosts}
    assert len({c.split("-")[0] for c in cultures}) >= 5
    french = next(h.name for h in fleet().hosts if h.culture == "fr-FR")
    assert "Port de début" in loaded(french, 0)["raw"]["excluded_ipv4_tcp"]
    asian = [h.name for h in fleet().hosts if h.culture in ("ja-JP", "ko-KR", "zh-CN")]
    raws = loaded(asian[0], 0)["raw"].values()
    assert any(ord(char) > 0x3000 for raw in raws for char in raw)
    german = next(h.name for h in fleet().hosts if h.culture == "de-DE")
    assert "ABHÖREN" in loaded(german, 0)["raw"]["netstat"]


def test_localized_strings_are_verified_ones():
    facts = (CORPUS / "facts.md").read_text(encoding="utf-8")
    captures = "\n".join(p.read_text(encoding="utf-8") for p in CORPUS.rglob("*.txt"))
    languages = locales.verified_languages()
    assert languages["excluded"] == ("de", "es", "fr", "ko", "zh")
    assert languages["dynamicport"] == ("ja", "zh")
    for language in languages["excluded"]:
        strings = locales.excluded_text(language)
        for value in (strings.title.format(protocol="tcp"), strings.header, strings.footer):
            assert value in facts, value
        assert strings.dashes in captures
    for language in languages["dynamicport"]:
        labels = locales.dynamic_text(language)
        for value in (labels.title.format(protocol="tcp"), labels.start, labels.count):
            assert value in facts, value
    # Without a verified string the host prints English
    assert locales.excluded_text("ja-JP") == locales.excluded_text("en-US")
    assert locales.dynamic_text("de-DE") == locales.dynamic_text("en-US")


def test_outages():
    f = fleet()
    healthy = f.healthy_hosts()
    assert len(healthy) >= 8
    seen = set()
    for host in f.hosts:
        for night in range(NIGHTS):
            reason = f.outage(host.name, night)
            assert reason is None if host.name in healthy else reason in (None, *OUTAGES)
            seen.add(reason)
    assert seen == {None, *OUTAGES}
    assert len(Fleet(FleetSpec(hosts=9)).healthy_hosts()) == 8


# --- the store -----------------------------------------------------------------------------


def test_documents_import_into_the_store(tmp_path: Path):
    f = fleet()
    names = [
        next(h.name for h in f.hosts if not h.elevated),
        next(iter(sorted(f.truth.affected_hosts))),
        next(h.name for h in f.hosts if h.culture == "zh-CN"),
    ]
    store = Store.open(f"sqlite:///{tmp_path / 'fleet.db'}")
    run_id = start_run(store, "demo")
    started = datetime(2026, 9, 1, tzinfo=UTC)
    for name in names:
        for night in range(NIGHTS):
            body = documents()[(name, night)].encode()
            document = validated(name, night)
            result = store_document(store, run_id, body, document, name, "winrm", started)
            assert (result.outcome, result.problems) == ("stored", []), (name, night)
    finish_run(store, run_id)
    with store.connect() as connection:
        latest = connection.execute(
            text(
                "SELECT host, os_build, excluded_known, excluded_ranges, failing_ports, errors "
                "FROM v_latest_snapshots ORDER BY host"
            )
        ).all()
        snapshots = connection.execute(text("SELECT COUNT(*) FROM snapshots")).scalar_one()
    store.close()
    assert snapshots == 3 * NIGHTS
    assert [row.host for row in latest] == sorted(names)
    for row in latest:
        state = f.state(row.host, NIGHTS - 1)
        document = validated(row.host, NIGHTS - 1)
        assert row.os_build == f"10.0.22631.{state.ubr}"
        assert row.excluded_known == 1
        assert row.excluded_ranges == 2 * len(state.excluded_tcp)  # ipv4 and ipv6 rows
        failing = {
            (s["family"], p)
            for s in document["bind_sweep"]
            for a, b, _ in s["failures"]
            for p in range(a, b + 1)
        }
        assert row.failing_ports == len(failing)
        assert row.errors == len(document["errors"])


PREVENTED = (5001, 5432, 8080)


def _taken(state: Any, port: int, administered: bool) -> bool:
    return any(
        r.start <= port <= r.end and r.administered == administered for r in state.excluded_tcp
    )


def test_the_prevent_script_protects_the_hosts_that_run_it_and_only_them() -> None:
    spec = FleetSpec(prevent_ports=PREVENTED, prevent_night=35)
    prevented, base = Fleet(spec), fleet()
    assert prevented.prevented and set(prevented.prevented) < {h.name for h in base.hosts}
    for host in base.hosts:
        name = host.name
        runs = name in prevented.prevented
        last = NIGHTS if not runs else spec.prevent_night - 1
        # Nothing changes before the script is deployed, nor ever on the hosts without it.
        assert [prevented.state(name, n) for n in range(last)] == [
            base.state(name, n) for n in range(last)
        ], name
        if not runs:
            continue
        after = [prevented.state(name, n) for n in range(spec.prevent_night, NIGHTS)]
        for state in after:
            for port in PREVENTED:
                # Protected, or left inside a range this boot's reservations took, and said so.
                if not _taken(state, port, administered=True):
                    assert _taken(state, port, administered=False), (name, state.night, port)
        final = after[-1]
        assert all(_taken(final, port, administered=True) for port in PREVENTED), name
    # Where a wanted port was taken at run time before, the script waits for a boot that
    # leaves it free, and reserves it then.
    hit = [
        name
        for name in prevented.prevented
        if any(
            _taken(prevented.state(name, n), port, administered=False)
            for n in range(spec.prevent_night - 5, spec.prevent_night)
            for port in PREVENTED
        )
    ]
    assert hit, "the seed puts one prevented host's wanted port in a run-time range first"
