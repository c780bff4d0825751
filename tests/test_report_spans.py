"""The report read from state spans answers what it answered from every host-night.

Each reader that now reads spans (the ports' runs, the at-risk odds, the safe ports' evidence,
the correlation's growth and the protected ports) is checked against the per-night answer,
computed here the way the report computed it before the spans, on a generated fleet.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Connection, text

from bench.fleet import generate_store
from collector.diagnosis import Diagnosis
from collector.store.database import Store
from collector.store.frames import read_frame, to_utc
from reports.attention import PortHistory, port_runs, protected_ports
from reports.correlation import Reservations, correlate, correlate_fleet, load_reservations
from reports.events import load_causes
from reports.findings import port_statuses
from reports.odds import WINDOWS, at_risk_odds
from reports.safeports import find_safe_ports
from tests.conftest import new_pg_database

PORTS = (5000, 5432, 8080, 49786, 50000, 55000, 60000)
_NIGHTS = """SELECT s.id AS snapshot_id, s.host_id, h.name AS host, s.taken_at, s.finding_set_id,
       CASE WHEN s.bind_failure_set_id IS NULL THEN 0 ELSE 1 END AS swept, s.excluded_set_id,
       CASE WHEN s.excluded_set_id IS NULL AND s.bind_failure_set_id IS NULL THEN 0 ELSE 1
       END AS evidence
  FROM snapshots s JOIN hosts h ON h.id = s.host_id"""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """A generated fleet of 14 hosts x 80 nights with spans, read-only: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('spans') / 'fleet.db'}"
    else:
        url = new_pg_database(request.getfixturevalue("pg_cluster"))
    generate_store(url, hosts=14, nights=80, seed=21)
    with Store.reader(url) as store:
        yield store


def _nights(connection: Connection) -> pd.DataFrame:
    """Read every snapshot, one row per host-night, oldest first per host."""
    frame = read_frame(connection, _NIGHTS)
    frame = frame.assign(taken_at=to_utc(frame["taken_at"]))
    return frame.sort_values(["host_id", "taken_at", "snapshot_id"], ignore_index=True)


def _statuses(nights: pd.DataFrame, findings: pd.DataFrame, port: int) -> pd.Series:
    """Return one port's status on each night, as ``port_statuses`` decides it."""
    cells = nights[["snapshot_id", "finding_set_id", "swept"]].assign(port=port)
    found = cells[["snapshot_id", "finding_set_id"]].dropna().astype("int64")
    found = found.merge(findings, left_on="finding_set_id", right_on="set_id")
    return pd.Series(port_statuses(found, cells), index=nights.index)


def test_port_runs_are_the_runs_of_the_nights(fleet: Store) -> None:
    with fleet.connect() as connection:
        history = PortHistory.read(connection, PORTS)
        nights = _nights(connection)
    runs = port_runs(history)
    expected = []
    for port in PORTS:
        statuses = _statuses(nights, history.findings[port], port)
        change = (nights["host_id"] != nights["host_id"].shift()) | (statuses != statuses.shift())
        for _, run in nights.assign(status=statuses).groupby(change.cumsum()):
            expected.append((int(run["host_id"].iloc[0]), port, run["status"].iloc[0],
                             run["taken_at"].min(), run["taken_at"].max(), len(run),
                             int(run["snapshot_id"].iloc[0])))  # fmt: skip
    got = runs[["host_id", "port", "status", "first_at", "last_at", "snapshots",
                "first_snapshot_id"]]  # fmt: skip
    assert sorted(got.itertuples(index=False, name=None)) == sorted(expected)
    # Fewer spans than nights, or the test would not tell a span from a night.
    assert len(history.spans) < len(nights) / 2 and runs["snapshots"].max() > 10


def test_at_risk_odds_count_every_at_risk_night(fleet: Store) -> None:
    with fleet.connect() as connection:
        history = PortHistory.read(connection, PORTS)
        nights = _nights(connection)
    odds = at_risk_odds(fleet, PORTS, history)
    assert at_risk_odds(fleet, PORTS) == odds
    ends = nights.groupby("host_id")["taken_at"].transform("max")
    reserving = (Diagnosis.RESERVED.value, Diagnosis.PROBABLY_RESERVED.value)
    hits = 0
    for port in PORTS:
        findings = history.findings[port]
        ipv4 = findings[findings["family"] == "ipv4"]
        risky_sets = set(ipv4.loc[ipv4["diagnosis"] == Diagnosis.AT_RISK.value, "set_id"])
        reserved_sets = set(ipv4.loc[ipv4["diagnosis"].isin(reserving), "set_id"])
        risky = nights["finding_set_id"].isin(risky_sets)
        taken = nights[nights["finding_set_id"].isin(reserved_sets)]
        for days, got in zip(WINDOWS, odds[port], strict=True):
            window = pd.Timedelta(timedelta(days=days))
            observed = nights[risky & (nights["taken_at"] + window <= ends)]
            reserved = 0
            for host_id, at in zip(observed["host_id"], observed["taken_at"], strict=True):
                later = taken.loc[(taken["host_id"] == host_id) & (taken["taken_at"] > at)]
                reserved += bool(len(later)) and later["taken_at"].min() - at <= window
            assert (got.port, got.days, got.nights, got.reserved) == (
                port, days, len(observed), reserved,
            )  # fmt: skip
            hits += reserved
    assert hits > 0


def test_safe_ports_count_the_evidence_nights(fleet: Store) -> None:
    with fleet.connect() as connection:
        nights = _nights(connection)
    evidence = nights[nights["evidence"] == 1]
    answer = find_safe_ports(fleet, None, PORTS)
    assert answer.host_nights == len(evidence)
    assert answer.nights == evidence["taken_at"].dt.date.nunique()
    assert (answer.first, answer.last) == (
        evidence["taken_at"].min().to_pydatetime(), evidence["taken_at"].max().to_pydatetime(),
    )  # fmt: skip
    assert answer.ranges and answer.moves


def test_the_correlation_and_protected_ports_see_the_nights_growth(fleet: Store) -> None:
    with fleet.connect() as connection:
        causes = load_causes(connection)
        spans = load_reservations(connection)
        nights = _nights(connection)
        correlation = correlate_fleet(connection, causes, reservations=spans)
    known = nights[nights["excluded_set_id"].notna()].astype({"excluded_set_id": "int64"})
    levels = known["excluded_set_id"].map(spans.levels.set_index("set_id")["ports"])
    known = known.assign(level=levels.fillna(0).astype("int64").to_numpy())
    highest = known.groupby("host_id")["level"].cummax().groupby(known["host_id"]).shift()
    grown = highest.notna() & (known["level"] > highest)
    growth = known[grown].rename(columns={"taken_at": "at"})
    observed = known.groupby(["host_id", "host"])["taken_at"].agg(["min", "max", "count"])
    observed = observed[observed["count"] >= 2].reset_index()
    observed = observed.rename(columns={"min": "first_at", "max": "last_at"})
    pd.testing.assert_frame_equal(correlation, correlate(causes, growth, observed))
    assert len(growth) > 0 and correlation["exposed_with_event"].sum() > 0
    per_night = Reservations(
        known[["host_id", "host", "snapshot_id", "taken_at", "excluded_set_id"]],
        spans.levels,
        spans.administered,
    )
    ports = sorted({*PORTS, *(int(p) for p in np.unique(spans.administered["start"]))})
    protected = protected_ports(spans, ports)
    pd.testing.assert_frame_equal(protected, protected_ports(per_night, ports))
    assert not protected.empty


def test_the_fleet_has_spans_to_read(fleet: Store) -> None:
    with fleet.connect() as connection:
        spans = connection.execute(text("SELECT COUNT(*), SUM(nights) FROM state_spans")).one()
        nights = connection.execute(text("SELECT COUNT(*) FROM snapshots")).scalar_one()
    assert spans[1] == nights and 14 < spans[0] < nights
