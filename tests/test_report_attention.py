"""Needs attention: what the report says first, read from the stored diagnosis and history."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from collector.store.database import Store
from reports.analysis import build_report_data
from reports.attention import PortHistory
from reports.explain import explain
from reports.odds import at_risk_odds
from tests.report_store import (
    FLIP_PORT,
    NOW,
    WANTED_PORTS,
    fill_flips,
    fill_report_store,
    report_of,
)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    with Store.open(url) as store:
        fill_report_store(store)
    return url


@pytest.fixture(scope="module")
def attention(seeded: str) -> pd.DataFrame:
    with Store.reader(seeded) as store:
        return build_report_data(store, WANTED_PORTS, NOW).attention


def test_each_reserved_wanted_port_is_a_line_that_agrees_with_explain(
    seeded: str, attention: pd.DataFrame
) -> None:
    with Store.reader(seeded) as store:
        data = build_report_data(store, WANTED_PORTS, NOW)
        wanted = data.wanted
        blocked = wanted[wanted.status.isin(["reserved", "blocked"])]
        lines = attention[attention.kind.isin(["reserved", "blocked"])]
        assert sorted(zip(lines.host, lines.port, strict=True)) == sorted(
            zip(blocked.host, blocked.port, strict=True)
        )
        assert len(lines) == 3  # dev-ben's 8080 is administered ('*'): it binds, facts C
        for line in lines.to_dict("records"):
            told = explain(store, line["host"], int(line["port"]), now=NOW)
            assert told.status == "reserved"
            assert line["at"] == told.since  # since when: the same streak explain tells
            assert told.since is not None and f"{told.since:%Y-%m-%d} (" in line["text"]
            start, end = told.range_start, told.range_end
            assert f"excluded range {start if start == end else f'{start}–{end}'}" in line["text"]
            # The same causes of the same week: the line's are explain's best, worded.
            named = [str(cause["cause"]) for cause in told.causes]
            assert bool(line["causes"]) == bool(named)
            assert all(any(said.startswith(name) for name in named) for said in line["causes"])


def test_the_update_before_a_reservation_leads_its_causes(attention: pd.DataFrame) -> None:
    lines = attention[(attention.kind == "reserved") & (attention.port == 50051)]
    assert set(lines.host) == {"build-01", "dev-ana"}
    for line in lines.to_dict("records"):
        assert line["causes"][0].startswith("KB5036893 — ")
        assert "#1 in the fleet correlation" in line["causes"][0]
        assert line["event_id"] is not pd.NA and line["event_id"] is not None
        assert line["fix"] == "restart-winnat"
        assert line["fix_commands"] == "net stop winnat\nnet start winnat"
    # Reserved since the first snapshot: no change brought it, so no cause is claimed.
    chloe = attention[(attention.host == "dev-chloe")].iloc[0]
    assert chloe["causes"] == [] and "first snapshot" in chloe["text"]


def test_hosts_not_seen_lately_and_failed_collections_are_named(attention: pd.DataFrame) -> None:
    stale = attention[attention.kind == "stale"]
    said = dict(zip(stale.host, stale.text, strict=True))
    # Newest first: laptop-eve was tried last night, kiosk-7 last seen on 05-03, the seed 04-20.
    assert list(said) == ["laptop-eve", "kiosk-7", "seed-workstation"]
    assert "(timeout)" in said["kiosk-7"]
    assert "Never collected" in said["laptop-eve"]
    assert "(unreachable)" in said["laptop-eve"]
    assert "2024-04-20" in said["seed-workstation"]


def test_last_night_flips_and_ports_free_again(tmp_path: Path) -> None:
    data = report_of(tmp_path / "flips.db", fill_flips, (FLIP_PORT,))
    lines = data.attention
    by_kind = {kind: sorted(group.host) for kind, group in lines.groupby("kind")}
    assert by_kind["reserved"] == ["flip-new"]
    assert by_kind["newly-blocked"] == ["flip-new"]
    assert by_kind["newly-freed"] == ["flip-freed"]
    assert by_kind["cleared"] == ["flip-cleared"]
    assert by_kind["ranges"] == ["flip-freed", "flip-new"]
    assert "flip-steady" not in set(lines.host)
    cleared = lines[lines.kind == "cleared"].iloc[0]["text"]
    assert "reserved from 2024-05-01 to 2024-05-03 (2 snapshots)" in cleared
    assert "free since 2024-05-07" in cleared
    freed = lines[lines.kind == "newly-freed"].iloc[0]["text"]
    assert "free again on 2024-05-14, after being reserved from 2024-05-01 to 2024-05-07" in freed
    new = lines[lines.kind == "reserved"].iloc[0]
    assert "5400–5499 (100 ports)" in new["text"] and "since 2024-05-14 (1 snapshot)" in new["text"]


def test_nothing_to_report_is_an_empty_frame(tmp_path: Path) -> None:
    data = report_of(tmp_path / "empty.db", None)
    assert data.attention.empty
    assert list(data.attention.columns)[:3] == ["kind", "host", "port"]


def test_a_port_reserved_on_a_host_not_seen_lately_says_when_it_was(tmp_path: Path) -> None:
    data = report_of(tmp_path / "store.db", fill_report_store, (49786,))
    lines = data.attention[data.attention.kind == "reserved"]
    seed = lines[lines.host == "seed-workstation"].iloc[0]["text"]
    assert "probably reserved" in seed
    assert seed.endswith("Last seen 2024-04-20: it may have changed since.")
    assert not any("Last seen" in text for text in lines[lines.host != "seed-workstation"].text)


def test_a_wanted_port_an_administered_range_covers_is_protected_since_it_began(
    attention: pd.DataFrame, seeded: str
) -> None:
    # dev-ben's 8080 lies in its administered ('*') range 8080 every night: it binds, and
    # WinNAT will not take it.
    lines = attention[attention.kind == "protected"]
    assert [(line["host"], line["port"]) for line in lines.to_dict("records")] == [
        ("dev-ben", 8080)
    ]
    (line,) = lines.to_dict("records")
    assert line["text"].startswith("TCP 8080 protected since 2024-05-01: the administered")
    with Store.reader(seeded) as store:
        told = explain(store, "dev-ben", 8080, now=NOW)
    assert told.protected == (8080, 8080) and line["at"] == told.protected_since


def test_the_odds_from_the_history_read_once_are_those_read_apart(seeded: str) -> None:
    # The report reads each wanted port's history once for the runs and the odds; `explain`
    # and the CLI read the odds on their own. Both ways must count the same host-nights.
    with Store.reader(seeded) as store:
        with store.connect() as connection:
            history = PortHistory.read(connection, WANTED_PORTS)
        shared = at_risk_odds(store, WANTED_PORTS, history)
        apart = at_risk_odds(store, WANTED_PORTS)
    assert shared == apart
    assert any(odds.nights for port in WANTED_PORTS for odds in apart[port])
