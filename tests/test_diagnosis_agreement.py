"""One diagnosis everywhere: SQL, `explain` and the report agree, on the demo and on the seed."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console
from sqlalchemy import text

from collector.cli import cli
from collector.demo import WANTED_PORTS, WANTED_SERVICES, run_demo
from collector.simulator.fleet import Fleet, FleetSpec
from collector.store.database import Store
from reports.analysis import build_report_data
from reports.explain import explain
from reports.html import render_report
from reports.odds import MIN_NIGHTS, Odds, at_risk_odds
from tests.agreement import Answers, disagreements, gather
from tests.conftest import import_seed

# Eight nights past the planted update: its blocks have appeared, most not yet moved by a boot.
SPEC = FleetSpec(nights=28)
SEED_NOW = datetime(2018, 6, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, datetime]]:
    """A demo store: the simulated fleet collected over real WinRM, and the seed."""
    out = tmp_path_factory.mktemp("demo")
    result = run_demo(out, Console(file=io.StringIO()), SPEC, report=False)
    store = Store.reader(f"sqlite:///{result.database}")
    fleet = Fleet(SPEC)
    last = max(fleet.collection_time(host, SPEC.nights - 1) for host in fleet.hosts)
    yield store, last + timedelta(hours=6)
    store.close()


@pytest.fixture
def seed(sqlite_url: str) -> Iterator[Store]:
    import_seed(sqlite_url)
    with Store.reader(sqlite_url) as store:
        yield store


def test_the_comparator_catches_a_planted_mismatch() -> None:
    agreeing = Answers(
        view={("h", 1): "reserved", ("h", 2): "free"},
        explain={("h", 1): "reserved", ("h", 2): "free"},
        report={("h", 1): "reserved", ("h", 2): "free"},
        explain_fixes={("h", 2): ()},
        report_fixes={("h", 2): ()},
    )
    assert disagreements(agreeing) == []
    agreeing.explain[("h", 1)] = "unexplained"
    agreeing.report_fixes[("h", 2)] = ("restart-winnat",)
    assert disagreements(agreeing) == [
        "('h', 1): view says reserved, explain says unexplained",
        "('h', 2): report fixes ['restart-winnat'], explain fixes ()",
    ]
    agreeing.report[("h", 2)] = "at-risk"
    assert "('h', 2): view says free, report says at-risk" in disagreements(agreeing)


def test_sql_explain_and_the_report_agree_on_the_demo(demo: tuple[Store, datetime]) -> None:
    engine, now = demo
    answers = gather(engine, WANTED_PORTS, WANTED_SERVICES, now)
    assert len(answers.view) > 1000 and len(answers.explain) > 100
    assert disagreements(answers) == []


def test_sql_explain_and_the_report_agree_on_the_seed(seed: Store) -> None:
    answers = gather(seed, (445, 5357, 7680, 8080, 49786, 60000), {}, SEED_NOW)
    assert disagreements(answers) == []


def test_the_seed_says_three_in_use_and_180_probably_reserved_everywhere(seed: Store) -> None:
    data = build_report_data(seed, [445, 5357, 7680, 49786], now=SEED_NOW)
    with seed.connect() as connection:
        classes: dict[str, int] = dict(connection.execute(text(
            "SELECT classification, COUNT(*) FROM v_failing_ports GROUP BY 1")).all())  # fmt: skip
        held = connection.execute(text(
            "SELECT port, pid, process, holder, fixes FROM v_failing_ports "
            "WHERE classification = 'in-use' ORDER BY port")).all()  # fmt: skip
        blocks = connection.execute(text(
            "SELECT DISTINCT failure_start, failure_end FROM v_failing_ports "
            "WHERE classification = 'probably-reserved' ORDER BY 1")).all()  # fmt: skip
    assert classes == {"in-use": 3, "probably-reserved": 180}
    assert [tuple(row) for row in held] == [
        (445, 4, "System", "windows", "use-another-port"),
        (5357, 4, "System", "windows", "use-another-port"),
        (7680, 7056, None, "process", "stop-process"),
    ]
    assert len(blocks) == 6 and (49770, 49799) in [tuple(row) for row in blocks]
    assert data.failures.groupby("classification")["ports"].sum().to_dict() == classes
    for port in (445, 5357):
        answer = explain(seed, "seed-workstation", port, now=SEED_NOW)
        assert (answer.classification, answer.process) == ("in-use", "System")
        assert not any("winnat" in " ".join(fix.commands) for fix in answer.fixes)
    assert explain(seed, "seed-workstation", 7680, now=SEED_NOW).pid == 7056
    answer = explain(seed, "seed-workstation", 49786, now=SEED_NOW)
    assert (answer.classification, answer.block_start, answer.block_end) == (
        "probably-reserved", 49770, 49799)  # fmt: skip
    wanted = data.wanted.set_index("port")
    assert wanted.loc[49786, "classification"] == "probably-reserved"
    assert wanted.loc[445, "fixes"] == ["use-another-port"]


def test_the_summary_counts_what_sql_counts(demo: tuple[Store, datetime]) -> None:
    engine, now = demo
    data = build_report_data(engine, WANTED_PORTS, now=now, wanted_services=WANTED_SERVICES)
    listed = ", ".join(map(str, WANTED_PORTS))
    with engine.connect() as connection:
        reserved = connection.execute(text(
            "SELECT COUNT(DISTINCT f.host || ':' || p.port) FROM v_findings f "
            "JOIN ports p ON p.port BETWEEN f.start_port AND f.end_port "
            f"WHERE f.latest = 1 AND f.protocol = 'tcp' AND p.port IN ({listed}) "
            "AND f.classification IN ('reserved', 'probably-reserved')")).scalar_one()  # fmt: skip
    page = render_report(data)
    card = page.split("Wanted ports reserved", 1)[0].rsplit('<span class="card__value">', 1)[1]
    assert int(card.split("<", 1)[0]) == reserved
    assert reserved >= 1  # the seed's 49786 at least
    # The team's own services hold their ports: in use, fine, never counted as reserved.
    own = data.wanted[data.wanted.serving.astype(bool)]
    assert len(own) >= 10 and set(own.status) == {"in-use"}
    assert all(fixes == [] for fixes in own.fixes)
    assert "postgres" in " ".join(own.reason)


def test_explain_names_the_planted_update_with_its_rank(demo: tuple[Store, datetime]) -> None:
    engine, now = demo
    fleet = Fleet(SPEC)
    told = []
    with engine.connect() as connection:
        # Every boot places the blocks anew: ask about where they lie on the last night.
        query = (
            "SELECT host, MIN(start_port) FROM v_findings WHERE latest = 1 AND protocol = 'tcp' "
            "AND classification = 'reserved' AND NOT administered GROUP BY host"
        )
        blocks = connection.execute(text(query)).all()
    for host, port in blocks:
        if host not in fleet.truth.affected_hosts:
            continue
        answer = explain(engine, host, int(port), now=now)
        assert answer.classification == "reserved" and answer.since is not None
        causes = {cause["cause"]: cause for cause in answer.causes}
        if fleet.truth.kb in causes:
            told.append((answer, causes[fleet.truth.kb]))
    assert told, "no affected host shows the planted update before its blocks"
    answer, cause = told[0]
    assert cause["kind"] == "update" and cause["rank"] == 1
    assert answer.changes, "the change that brought the block is named"
    text_answer = answer.to_text()
    assert f"update: {fleet.truth.kb}" in text_answer and "fleet correlation rank 1" in text_answer
    as_json = CliRunner().invoke(
        cli, ["--db", str(engine.path), "explain", answer.host, str(answer.port), "--json"]
    )
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert fleet.truth.kb in [cause["cause"] for cause in data["causes"]]
    assert data["warnings"]  # the demo's nights lie in the past of the real clock


def test_reparsing_and_reclassifying_the_demo_change_nothing(
    demo: tuple[Store, datetime], tmp_path: Path
) -> None:
    engine, _ = demo
    copy = tmp_path / "copy.db"
    original = engine.path
    assert original is not None
    for suffix in ("", "-wal"):
        if Path(f"{original}{suffix}").exists():
            Path(f"{copy}{suffix}").write_bytes(Path(f"{original}{suffix}").read_bytes())
    for command in ("reparse", "reclassify"):
        result = CliRunner().invoke(cli, ["--db", str(copy), "db", command])
        assert result.exit_code == 0, result.output
        assert "nothing changed" in result.output.splitlines()[0], command


# A port of a safe range that any evidence snapshot reserved, held, failed or had as dynamic.
_UNSAFE = """
WITH evidence AS (SELECT s.id, s.excluded_set_id, s.bind_failure_set_id, s.listener_set_id,
                         s.dynamic_set_id
                    FROM snapshots s JOIN hosts h ON h.id = s.host_id
                   WHERE (s.excluded_set_id IS NOT NULL OR s.bind_failure_set_id IS NOT NULL)
                     AND h.groups LIKE :member)
SELECT 'reserved' FROM evidence e JOIN excluded_ranges r ON r.set_id = e.excluded_set_id
 WHERE r.protocol = 'tcp' AND r.start_port <= :end AND r.end_port >= :start
UNION ALL
SELECT 'failing' FROM evidence e JOIN bind_failures b ON b.set_id = e.bind_failure_set_id
 WHERE b.protocol = 'tcp' AND b.start_port <= :end AND b.end_port >= :start
UNION ALL
SELECT 'held' FROM evidence e JOIN listeners l ON l.set_id = e.listener_set_id
 WHERE l.protocol = 'tcp' AND l.port BETWEEN :start AND :end
UNION ALL
SELECT 'dynamic' FROM evidence e JOIN dynamic_ranges d ON d.set_id = e.dynamic_set_id
 WHERE d.protocol = 'tcp' AND d.start_port <= :end AND d.start_port + d.port_count - 1 >= :start
UNION ALL
SELECT 'default dynamic' FROM evidence e
 WHERE (SELECT COUNT(*) FROM dynamic_ranges d WHERE d.set_id = e.dynamic_set_id
           AND d.protocol = 'tcp') < 2 AND :end >= 49152
"""


def test_safe_ports_hold_in_every_snapshot_of_the_demo(demo: tuple[Store, datetime]) -> None:
    store, _ = demo
    assert store.path is not None
    for group in ("qa", "team-platform", "developers"):
        done = CliRunner().invoke(
            cli, ["--db", str(store.path), "safe-ports", "--group", group, "--count", "50",
                  "--json", "--port", "5001", "--port", "49786"],
        )  # fmt: skip
        assert done.exit_code == 0, done.output
        answer = json.loads(done.stdout)
        assert answer["evidence"]["host_nights"] > 0
        ports = [item["ports"] for item in answer["ranges"]]
        assert ports == sorted(ports, reverse=True)
        for item in answer["ranges"]:
            assert item["start"] >= 1024
            with store.connect() as connection:
                member = {"member": f'%"{group}"%'}
                rows = connection.execute(text(_UNSAFE), item | member).all()
            assert rows == [], (group, item, rows[:3])
    # The qa hosts run Windows' default dynamic range: 49786 needs the range shrunk.
    moves = answer_of(store, "qa")["dynamic_moves"]
    assert {move["port"] for move in moves} == {49786}
    assert all(move["proposed"]["start"] == 49787 for move in moves)


def answer_of(store: Store, group: str) -> dict[str, Any]:
    """Ask `safe-ports --json` for a group with the demo's wanted ports."""
    assert store.path is not None
    done = CliRunner().invoke(
        cli, ["--db", str(store.path), "safe-ports", "--group", group, "--json",
              "--port", "5001", "--port", "49786"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


_PORT_NIGHTS = """
SELECT s.host_id, s.taken_at,
       (SELECT f.diagnosis FROM findings f WHERE f.set_id = s.finding_set_id
           AND f.protocol = 'tcp' AND f.family = 'ipv4'
           AND f.start_port <= :port AND f.end_port >= :port) AS diagnosis
  FROM snapshots s ORDER BY s.host_id, s.taken_at"""


def test_at_risk_odds_count_what_followed_each_at_risk_night(
    demo: tuple[Store, datetime],
) -> None:
    store, _ = demo
    ports = (49786, 50500, 56000)
    odds = at_risk_odds(store, ports)
    for port in ports:
        with store.connect() as connection:
            rows = connection.execute(text(_PORT_NIGHTS), {"port": port}).all()
        nights: dict[int, list[tuple[datetime, str | None]]] = {}
        for host_id, taken_at, diagnosis in rows:
            at = datetime.fromisoformat(str(taken_at)).replace(tzinfo=UTC)
            nights.setdefault(int(host_id), []).append((at, diagnosis))
        for found in odds[port]:
            window = timedelta(days=found.days)
            base = hits = 0
            for history in nights.values():
                last = history[-1][0]
                for at, diagnosis in history:
                    if diagnosis != "at-risk" or at + window > last:
                        continue
                    base += 1
                    hits += any(
                        at < later <= at + window and kind in ("reserved", "probably-reserved")
                        for later, kind in history
                    )
            assert (found.nights, found.reserved) == (base, hits), (port, found.days)
    assert any(o.reserved for o in odds[56000]), "the demo's blocks do take at-risk ports"


def test_too_little_history_gives_no_rate() -> None:
    assert Odds(5000, 7, MIN_NIGHTS - 1, 3).rate is None
    assert "too little history" in Odds(5000, 7, MIN_NIGHTS - 1, 3).describe()
    assert Odds(5000, 7, MIN_NIGHTS, 5).rate == 5 / MIN_NIGHTS
