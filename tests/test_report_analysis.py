"""The analysis: classification, change events with causes, correlation, and the fleet test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import fisher_exact

from collector.document import load_document
from collector.runs import finish_run, start_run
from collector.simulator.fleet import Fleet, FleetSpec
from collector.simulator.host import LOW_DYNAMIC
from collector.store.database import Store
from collector.store.writer import record_failure, store_document
from reports.analysis import build_report_data
from reports.correlation import correlate
from reports.findings import findings_of
from tests.documents import probe_document

RAW_EXCLUDED = (
    "\nProtocol tcp Port Exclusion Ranges\n\nStart Port    End Port\n----------    --------\n"
    "{rows}\n* - Administered port exclusions.\n"
)
RAW_DYNAMIC = (
    "\nProtocol tcp Dynamic Port Range\n---------------------------------\n"
    "Start Port      : {start}\nNumber of Ports : {count}\n"
)


def excluded_text(*ranges: tuple[int, int, bool]) -> str:
    rows = [f"{a:>10}{b:>12}{'     *' if star else ''}" for a, b, star in ranges]
    return RAW_EXCLUDED.format(rows="\n".join(rows))


def sweep(*failures: tuple[int, int, int], family: str = "ipv4") -> dict[str, Any]:
    address = "0.0.0.0" if family == "ipv4" else "::"
    return {"protocol": "tcp", "family": family, "address": address, "exclusive": True,
            "failures": [list(f) for f in failures]}  # fmt: skip


def save(engine: Store, *documents: dict[str, Any]) -> list[int]:
    """Store documents as a collector would, and return their snapshot ids."""
    run = start_run(engine, "import")
    ids = []
    for document in documents:
        body = json.dumps(document).encode()
        loaded = load_document(body, "test")
        result = store_document(engine, run, body, loaded, "test", "file", datetime.now(UTC))
        assert result.outcome == "stored", result.message
        assert result.snapshot_id is not None
        ids.append(result.snapshot_id)
    finish_run(engine, run)
    return ids


@pytest.fixture
def reader(store: Store, db_url: str) -> Iterator[Store]:
    """A read-only engine on the test database, as the report makes one."""
    with Store.reader(db_url) as opened:
        yield opened


# --- classification ------------------------------------------------------------------------


def known_host(**changes: Any) -> dict[str, Any]:
    """A host whose excluded ranges and dynamic range were captured."""
    document = probe_document()
    document["bind_sweep"] = [
        sweep((135, 135, 10048), (2000, 2000, 10013), (50000, 50059, 10013),
              (52100, 52199, 10013), (60000, 60001, 10013)),
        sweep((52100, 52199, 10013), family="ipv6"),
    ]  # fmt: skip
    document.update(changes)
    return document


def unknown_ranges_host() -> dict[str, Any]:
    """A host like the seed: no excludedportrange, no dynamic range."""
    document = probe_document(taken_at="2026-11-20T03:00:00+00:00")
    document["host"]["name"] = "dev-ws-02"
    document["raw"] = {}
    document["listeners"] = [
        {"protocol": "tcp", "address": "0.0.0.0", "port": 445, "pid": 4, "process": "System"},
        {"protocol": "udp", "address": "0.0.0.0", "port": 49775, "pid": 9, "process": "x"},
    ]
    document["bind_sweep"] = [
        sweep((445, 445, 10013), (3000, 3019, 10013), (49770, 49799, 10013),
              (49900, 49904, 10013), (50100, 50119, 10048)),
    ]  # fmt: skip
    return document


def test_every_class_of_failing_port(store: Store, reader: Store) -> None:
    older = known_host(taken_at="2026-11-19T02:00:00+01:00")
    older["bind_sweep"] = [sweep((52100, 52199, 10013))]
    first, _, _ = save(store, older, known_host(), unknown_ranges_host())
    run = start_run(store, "collect")
    record_failure(store, run, "10.0.0.9", _now(), "unreachable", "connection refused", "ghost")
    data = build_report_data(reader, [445, 2000, 8080], now=_now())
    data.validate()
    ghost = data.hosts.set_index("host").loc["ghost"]
    assert ghost.snapshot_id is pd.NA
    assert bool(ghost.stale) and ghost.failed_attempts == 1
    assert ghost.last_error_class == "unreachable"
    assert list(data.failed_attempts.host) == ["ghost"]
    assert set(data.wanted[data.wanted.host == "ghost"].status) == {"unknown"}
    hosts = data.hosts.set_index("host")
    assert hosts.loc["dev-ws-01", "reserved_ports"] == 1 + 60 + 100
    assert hosts.loc["dev-ws-02", "reserved_ports"] is pd.NA  # not captured, not zero
    assert hosts.loc["dev-ws-02", "failing_ports"] == 1 + 20 + 30 + 5 + 20
    assert (hosts.loc["dev-ws-01", "dynamic_start"], hosts.loc["dev-ws-01", "hyperv"]) == (
        49152,
        "Enabled",
    )
    failures = data.failures
    # One row per failing range, never per port: the ports add up to the same counts.
    assert (failures.ports == failures.end - failures.start + 1).all()
    counts = failures.groupby(["host", "classification"])["ports"].sum().to_dict()
    assert counts == {
        # the same run-time range failed on 0.0.0.0 and [::]; the administered 50000-50059
        # failed too on 0.0.0.0, which an administered range does not explain (facts C)
        ("dev-ws-01", "reserved"): 200,
        ("dev-ws-01", "in-use"): 1,
        ("dev-ws-01", "unexplained"): 1 + 2 + 60,
        ("dev-ws-02", "in-use"): 1,
        ("dev-ws-02", "probably-reserved"): 30,
        ("dev-ws-02", "unexplained"): 20 + 5 + 20,
    }

    def row(host: str, port: int) -> pd.Series:
        covers = (failures.start <= port) & (port <= failures.end)
        found = failures[(failures.host == host) & covers]
        return found.sort_values("family").iloc[0]

    assert row("dev-ws-01", 135).process == "svchost" and row("dev-ws-01", 135).pid == 1152
    assert row("dev-ws-01", 50010).classification == "unexplained"
    assert pd.isna(row("dev-ws-01", 50010).administered)
    excluded = row("dev-ws-01", 52150)
    assert (excluded.excluded_start, excluded.excluded_end) == (52100, 52199)
    assert "run time" in excluded.reason and "Nothing listens" in excluded.reason
    assert "outside the dynamic port range 49152–65535" in row("dev-ws-01", 2000).reason
    assert "49152–65535" in row("dev-ws-01", 60001).reason
    assert bool(row("dev-ws-01", 60001).in_dynamic_range) is True
    probable = row("dev-ws-02", 49786)
    assert probable.classification == "probably-reserved"
    assert (probable.failure_start, probable.failure_end) == (49770, 49799)
    assert "30 failing ports (49770–49799)" in probable.reason
    assert "Windows default, assumed because the dynamic range was not captured" in probable.reason
    assert pd.isna(probable.in_dynamic_range)  # the range was not captured
    assert "not part of a block of 10 or more" in row("dev-ws-02", 49902).reason
    assert row("dev-ws-02", 50105).classification == "unexplained"  # 10048, not 10013
    assert row("dev-ws-02", 445).process == "System"
    old = findings_of(reader, first)
    assert set(old.classification) == {"reserved"} and old.ports.sum() == 100
    assert not old.administered.any()
    reserved = failures[failures.classification == "reserved"]
    assert reserved.groupby("administered")["ports"].sum().to_dict() == {False: 200}
    wanted = data.wanted.set_index(["host", "port"])
    assert wanted.loc[("dev-ws-01", 2000), "status"] == "blocked"  # unexplained
    assert wanted.loc[("dev-ws-01", 8080), "classification"] == "free"
    assert wanted.loc[("dev-ws-02", 445), "classification"] == "in-use"
    assert "listener System (PID 4)" in str(wanted.loc[("dev-ws-02", 445), "evidence"])


def _now() -> datetime:
    return datetime(2026, 11, 25, tzinfo=UTC)


# --- events --------------------------------------------------------------------------------


def series() -> list[dict[str, Any]]:
    """Three snapshots of one host; the third night is missing."""
    history = [
        {"date": "2026-11-12T03:00:00Z", "title": "2026-11 Cumulative Update (KB5034441)",
         "operation": 1, "result_code": 2},
    ]  # fmt: skip
    first = probe_document(
        taken_at="2026-11-20T02:00:00+00:00",
        features=[
            {"name": "Microsoft-Hyper-V", "state": "Enabled"},
            {"name": "Containers", "state": "Disabled"},
        ],
        update_history=list(history),
    )
    first["raw"]["excluded_ipv4_tcp"] = excluded_text(
        (50000, 50059, True), (52100, 52199, False), (53000, 53099, False)
    )
    second = json.loads(json.dumps(first))
    second.update(taken_at="2026-11-21T02:00:00+00:00", versions={"docker": "4.31.0"})
    second["host"]["last_boot"] = "2026-11-20T19:00:00+00:00"
    history.append({"date": "2026-11-20T10:00:00Z", "operation": 1, "result_code": 2,
                    "title": "2026-11 Update for Windows 10 (KB5046613)"})  # fmt: skip
    second["update_history"] = list(history)
    second["raw"]["excluded_ipv4_tcp"] = excluded_text(
        (50000, 50059, True), (52500, 52599, False), (53000, 53099, False), (54000, 54099, False)
    )
    third = json.loads(json.dumps(second))
    third.update(taken_at="2026-11-23T02:00:00+00:00")
    third["host"]["bios"]["version"] = "1.13.0"
    third["features"][1]["state"] = "Enabled"
    history.append({"date": "2026-11-22T12:00:00Z", "operation": 1, "result_code": 2,
                    "title": "2026-11 Update (KB5050000)"})  # fmt: skip
    third["update_history"] = list(history)
    third["raw"]["dynamicport_ipv4_tcp"] = RAW_DYNAMIC.format(start=1024, count=64511)
    third["raw"]["excluded_ipv4_tcp"] = excluded_text(
        (50000, 50059, True), (52500, 52599, False), (54000, 54099, False)
    )
    return [first, second, third]


def test_events_between_consecutive_snapshots_with_their_causes(
    store: Store, reader: Store
) -> None:
    save(store, *series())
    data = build_report_data(reader, [], now=_now())
    events = data.events
    day2, day4 = pd.Timestamp("2026-11-21T02:00Z"), pd.Timestamp("2026-11-23T02:00Z")
    found = {
        (e["kind"], e["at"], None if pd.isna(e["start"]) else e["start"],
         None if pd.isna(e["previous_start"]) else e["previous_start"])
        for e in events.to_dict("records")
    }  # fmt: skip
    assert found == {
        ("range-moved", day2, 52500, 52100),
        ("range-appeared", day2, 54000, None),
        ("range-disappeared", day4, None, 53000),
        ("dynamic-changed", day4, 1024, 49152),
    }
    assert set(events.previous_at) == {pd.Timestamp("2026-11-20T02:00Z"), day2}
    assert events[events["at"] == day4].previous_at.eq(day2).all()  # the missing night widens it
    dynamic = events[events.kind == "dynamic-changed"].iloc[0]
    assert (dynamic.end, dynamic.previous_end, dynamic.ports) == (65534, 65535, 64511)

    def causes(kind: str) -> dict[str, dict[str, Any]]:
        chosen = events[events.kind == kind].iloc[0].causes
        assert isinstance(chosen, list)
        return {c["cause"]: c for c in chosen}

    moved = causes("range-moved")
    assert set(moved) == {"KB5046613", "reboot", "Docker 4.31.0"}
    assert moved["KB5046613"]["kind"] == "update"
    assert moved["KB5046613"]["detail"] == "2026-11 Update for Windows 10 (KB5046613)"
    assert moved["KB5046613"]["at"] == "2026-11-20T10:00:00+00:00"
    assert moved["reboot"]["at"] == "2026-11-20T19:00:00+00:00"
    assert "fast startup on" in moved["reboot"]["detail"]
    assert moved["Docker 4.31.0"]["detail"] == "4.30.0 → 4.31.0"
    assert causes("range-appeared") == moved
    gone = causes("range-disappeared")
    assert set(gone) == {"KB5050000", "BIOS update", "Containers Enabled", "dynamic range changed"}
    assert gone["BIOS update"]["detail"] == "1.12.0 → 1.13.0"
    assert set(causes("dynamic-changed")) == set(gone) - {"dynamic range changed"}
    assert "KB5034441" not in {c["cause"] for cs in events.causes for c in cs}  # baseline


# --- correlation ---------------------------------------------------------------------------


def test_correlation_counts_ranks_and_refuses_thin_or_uncontrasted_causes() -> None:
    day = [datetime(2026, 9, 1, tzinfo=UTC) + timedelta(days=d) for d in range(40)]
    names = [f"h{i}" for i in range(1, 9)]
    hosts = pd.DataFrame(
        {"host_id": range(1, 9), "host": names, "first_at": day[0], "last_at": day[30]}
    )
    rows = []

    def expose(cause: str, ids: list[int], at: datetime) -> None:
        for host_id in ids:
            rows.append({"host_id": host_id, "host": names[host_id - 1], "kind": "update",
                         "cause": cause, "cause_at": at, "seen_at": at + timedelta(hours=6),
                         "exposure": True})  # fmt: skip

    expose("KBX", [1, 2, 3, 4], day[5])
    expose("KBALL", list(range(1, 9)), day[5])
    expose("KBTWO", [1, 2], day[5])
    expose("KBLATE", [5, 6, 7, 8], day[28])
    causes = pd.DataFrame(rows)
    growth = pd.DataFrame(
        {"host_id": [1, 2, 3, 4, 5], "at": [day[7], day[8], day[6], day[2], day[20]]}
    )
    table = correlate(causes, growth, hosts, window_days=7)
    by_cause = table.set_index("cause")
    x = by_cause.loc["KBX"]
    counts = (x.exposed_with_event, x.exposed_without_event, x.unexposed_with_event,
              x.unexposed_without_event)  # fmt: skip
    assert counts == (3, 1, 1, 3)  # h4 grew before the KB: that growth does not count
    assert x.hosts_with_event == ["h1", "h2", "h3"] and x.hosts_without_event == ["h4"]
    assert x.hosts_unexposed_with_event == ["h5"]
    expected = fisher_exact(np.array([[3, 1], [1, 3]]), alternative="greater")
    assert x.p_value == pytest.approx(expected.pvalue)
    assert x.odds_ratio == pytest.approx(9.0)
    assert x.median_lag_days == 2.0
    assert (x["rank"], bool(x.enough_hosts)) == (1, True)
    everyone = by_cause.loc["KBALL"]
    assert everyone.unexposed_with_event + everyone.unexposed_without_event == 0
    assert everyone.p_value == 1.0 and everyone["rank"] == 2
    thin = by_cause.loc["KBTWO"]
    assert bool(thin.enough_hosts) is False and thin["rank"] is pd.NA
    late = by_cause.loc["KBLATE"]
    assert late.pending_hosts == ["h5", "h6", "h7", "h8"]  # two days of follow-up, no event
    assert bool(late.enough_hosts) is False
    assert list(table.cause[:2]) == ["KBX", "KBALL"] and table["rank"][2:].isna().all()


# --- the simulated fleet -------------------------------------------------------------------

_ERROR_CLASSES = {"offline": "unreachable", "auth": "auth", "hang": "timeout",
                  "reset": "protocol", "fault": "probe_error"}  # fmt: skip


@cache
def fleet() -> Fleet:
    return Fleet(FleetSpec(seed=7, hosts=12, nights=60))


@cache
def bodies() -> dict[tuple[str, int], bytes]:
    f = fleet()
    return {
        (h.name, n): json.dumps(f.document(h, n)).encode()
        for h in f.hosts
        for n in range(f.spec.nights)
    }


def test_the_planted_kb_ranks_first_across_the_simulated_fleet(store: Store, reader: Store) -> None:
    f = fleet()
    run = start_run(store, "demo")
    for night in range(f.spec.nights):
        for host in f.hosts:
            at = f.collection_time(host, night)
            outage = f.outage(host.name, night)
            if outage:
                record_failure(store, run, host.address, at, _ERROR_CLASSES[outage],
                               f"simulated {outage}", host.name)  # fmt: skip
                continue
            body = bodies()[(host.name, night)]
            store_document(store, run, body, json.loads(body), host.address, "winrm", at)
    finish_run(store, run)
    last = max(f.collection_time(h, f.spec.nights - 1) for h in f.hosts)
    data = build_report_data(reader, [5432, 6379, 8080], now=last)
    data.validate()
    truth = f.truth
    table = data.correlation
    top = table.iloc[0]
    assert (top.cause, top.cause_kind, top["rank"]) == (truth.kb, "update", 1)
    assert top.hosts_with_event == sorted(truth.affected_hosts)
    assert top.hosts_without_event == sorted(truth.installed_hosts - truth.affected_hosts)
    counts = [[top.exposed_with_event, top.exposed_without_event],
              [top.unexposed_with_event, top.unexposed_without_event]]  # fmt: skip
    assert sum(map(sum, counts)) == len(f.hosts)
    expected = fisher_exact(np.array(counts, dtype=np.int64), alternative="greater")
    assert top.p_value == pytest.approx(expected.pvalue)
    assert 0 < top.median_lag_days <= 7
    # Updates every host got (the monthly cumulative and .NET ones) give no evidence.
    everywhere = table[(table.cause_kind == "update") & (table.unexposed_with_event == 0)
                       & (table.unexposed_without_event == 0)]  # fmt: skip
    assert len(everywhere) >= 4
    assert (everywhere.p_value == 1.0).all() and (everywhere["rank"] > 1).all()
    ranked = table[table.enough_hosts.astype(bool)]
    assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert table.loc[~table.enough_hosts.astype(bool), "rank"].isna().all()
    assert (table[~table.enough_hosts.astype(bool)].index > ranked.index.max()).all()
    # The planted blocks show as range-appeared events on the affected hosts.
    appeared = data.events[(data.events.kind == "range-appeared") & (data.events.ports == 100)]
    for effect in truth.effects:
        seen = next(n for n in range(effect.night, f.spec.nights) if not f.outage(effect.host, n))
        at = pd.Timestamp(f.collection_time(f.host(effect.host), seen))
        mine = appeared[(appeared.host == effect.host) & (appeared["at"] == at)]
        assert len(mine) >= len(effect.blocks), effect
    # The dynamic range is reset only where Visual Studio moved it.
    low = {h.name for h in f.hosts if f.state(h, f.spec.nights - 1).dynamic_tcp == LOW_DYNAMIC}
    resets = data.remediation[data.remediation.action == "reset-dynamic-range"]
    assert set(resets.host) == low and low
    assert "netsh int ipv4 set dynamic tcp start=49152 num=16384" in resets.iloc[0].commands
    assert not data.remediation.commands.str.contains("delete excludedportrange").any()
    # Hosts, freshness and the failed attempts of the last days.
    healthy = set(f.healthy_hosts())
    assert len(data.hosts) == len(f.hosts)
    assert not data.hosts[data.hosts.host.isin(healthy)].stale.any()
    assert set(data.failed_attempts.host) <= {h.name for h in f.hosts} - healthy
    assert data.failed_attempts.started_at.is_monotonic_decreasing
    assert (data.hosts.set_index("host").loc[sorted(healthy), "failed_attempts"] == 0).all()
    assert data.failures.ports.sum() == data.hosts.failing_ports.sum()
