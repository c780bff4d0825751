"""`portfleet demo` end to end: a simulated fleet over real WinRM, 60 nights, plus the seed."""

from __future__ import annotations

import email
import json
import zlib
from datetime import UTC, datetime, time, timedelta
from email import policy
from pathlib import Path

import pandas as pd
from click.testing import CliRunner
from sqlalchemy import text

from collector.cli import cli
from collector.simulator.fleet import Fleet, FleetSpec
from collector.store.database import create_store_engine


def test_the_demo_collects_sixty_nights_of_every_healthy_host(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    database = out / "portfleet.db"
    assert f"database: {database}" in result.output.replace("\n", "")
    query = (
        "SELECT h.name AS host, COUNT(DISTINCT s.taken_at) AS nights FROM snapshots s "
        "JOIN hosts h ON h.id = s.host_id GROUP BY h.name ORDER BY h.name"
    )
    sql = CliRunner().invoke(cli, ["--db", str(database), "sql", query, "--format", "json"])
    nights = {row["host"]: row["nights"] for row in json.loads(sql.stdout)}
    fleet = Fleet(FleetSpec())
    healthy = fleet.healthy_hosts()
    assert len(healthy) >= 8
    for host in healthy:
        assert nights[host] == 60, host
    assert nights["seed-workstation"] == 1
    # The troubled hosts' bad nights are recorded with their error classes, not missing.
    failures = CliRunner().invoke(
        cli,
        [
            "--db",
            str(database),
            "sql",
            "SELECT DISTINCT error_class FROM v_attempts WHERE status = 'failed'",
            "--format",
            "csv",
        ],
    )
    assert set(failures.stdout.split()[1:]) == {"auth", "unreachable", "timeout", "protocol"}
    for host in {h.name for h in fleet.hosts} - set(healthy):
        assert nights[host] < 60
    assert (out / "report.html").stat().st_size > 100_000
    _assert_localized_text_arrived_intact(database, fleet)
    _assert_attempts_are_stamped_with_their_night(database, fleet)
    _assert_the_digest_told_what_the_findings_say(out, result.output)
    _assert_a_fix_holds_until_the_fleet_blocks_it_again(out)
    _assert_protected_hosts_stop_being_hit_and_the_others_do_not(database)
    _assert_a_report_without_the_config_checks_the_demos_ports(database, tmp_path)


def _utc(text_time: str) -> datetime:
    return datetime.fromisoformat(text_time).replace(tzinfo=UTC)


def _assert_protected_hosts_stop_being_hit_and_the_others_do_not(database: Path) -> None:
    """From night 35 some hosts run the prevent script: their wanted ports stay free after."""
    from collector.demo import WANTED_PORTS
    from collector.store.database import Store
    from reports.explain import explain

    fleet = Fleet(FleetSpec(prevent_ports=WANTED_PORTS))  # as the demo builds it
    assert fleet.prevented
    hit = " OR ".join(f"(start_port <= {p} AND end_port >= {p})" for p in WANTED_PORTS)
    query = (
        "SELECT host, MAX(taken_at) FROM v_findings WHERE protocol = 'tcp' AND "
        f"classification IN ('reserved', 'probably-reserved') AND ({hit}) GROUP BY host"
    )
    with Store.reader(f"sqlite:///{database}") as store:
        with store.connect() as connection:
            last_hit = {host: at for host, at in connection.execute(text(query)).all()}
        for host in fleet.prevented:
            for port in WANTED_PORTS:
                answer = explain(store, host, port, story=False)
                assert answer.protected is not None and answer.protected_since is not None, (
                    host,
                    port,
                )
                assert answer.status in ("free", "in-use"), (host, port, answer.status)
            # Reserved no more once protected: the last hit is before the port was protected.
            if host in last_hit:
                dates = [explain(store, host, p, story=False).protected_since for p in WANTED_PORTS]
                protected = max(d for d in dates if d is not None)
                assert _utc(last_hit[host]) < protected, (host, last_hit[host], protected)
    since = datetime.combine(fleet.spec.start, time(), UTC) + timedelta(days=35)
    others = {h.name for h in fleet.hosts} - set(fleet.prevented)
    late = {host for host, at in last_hit.items() if _utc(at) > since}
    assert late & others, "some host without the script still loses a wanted port after"


def _assert_attempts_are_stamped_with_their_night(database: Path, fleet: Fleet) -> None:
    """Failed attempts fall on their simulated night, beside the snapshots of the same run."""
    engine = create_store_engine(f"sqlite:///{database}", writer=False)
    with engine.connect() as connection:
        runs = connection.execute(
            text(
                "SELECT a.run_id, MIN(a.started_at), MAX(a.started_at), MIN(s.taken_at) "
                "FROM attempts a LEFT JOIN snapshots s ON s.id = a.snapshot_id "
                "GROUP BY a.run_id ORDER BY a.run_id"
            )
        ).all()
    engine.dispose()
    start = datetime.combine(fleet.spec.start, time(), UTC)
    for run_id, first, last, taken in runs:
        first, last = (datetime.fromisoformat(v).replace(tzinfo=UTC) for v in (first, last))
        assert start - timedelta(days=1) <= first <= last <= start + timedelta(days=61), run_id
        if taken is not None:  # the seed's import: a 2018 capture, stored after the last night
            at = datetime.fromisoformat(taken).astimezone(UTC)
            if at.year == start.year:
                assert abs(at - first) < timedelta(hours=14), (run_id, first, at)


def _wanted_blocked_in_findings(database: Path) -> set[tuple[str, int]]:
    """Ask the stored findings, not portfleet's reading of them, which wanted ports are blocked."""
    engine = create_store_engine(f"sqlite:///{database}", writer=False)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT DISTINCT f.host, p.port FROM v_findings f JOIN ports p "
                "ON p.port BETWEEN f.start_port AND f.end_port "
                "WHERE f.latest = 1 AND f.protocol = 'tcp' AND p.port IN (5000, 5001, 5432, 8080, "
                "49786) AND f.classification IN ('reserved', 'probably-reserved', 'unexplained') "
                "AND COALESCE(f.administered, 0) = 0"
            )
        ).all()
        told = connection.execute(
            text(
                "SELECT host, port FROM notifications "
                "WHERE kind = 'blocked' AND sent_at IS NOT NULL"
            )
        ).all()
    engine.dispose()
    assert {(h, int(p)) for h, p in told} == {(h, int(p)) for h, p in rows}
    return {(h, int(p)) for h, p in rows}


def _assert_the_digest_told_what_the_findings_say(out: Path, output: str) -> None:
    blocked = _wanted_blocked_in_findings(out / "portfleet.db")
    assert ("seed-workstation", 49786) in blocked
    (saved,) = (out / "mail" / "new").iterdir()
    assert f"mail:     {saved}" in output.replace("\n", "")
    message = email.message_from_string(saved.read_text(encoding="utf-8"), policy=policy.default)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    lines = str(body.get_content()).splitlines()
    assert any(line.startswith("seed-workstation TCP 49786: blocked (bind fails with 10013)")
               for line in lines)  # fmt: skip
    # Among the other things told: the hosts whose prevent script reserved the wanted ports.
    assert str(message["Subject"]).startswith("portfleet: ")
    assert any("administered range appeared" in line for line in lines), lines[:40]
    config = out / "config.yaml"
    dry = CliRunner().invoke(cli, ["--config", str(config), "notify", "--dry-run"])
    assert (dry.exit_code, dry.stdout) == (0, "")
    again = CliRunner().invoke(cli, ["--config", str(config), "notify"])
    assert again.exit_code == 0, again.output
    assert "notify: 0 queued, 0 sent, 0 failed" in again.output


def _assert_a_fix_holds_until_the_fleet_blocks_it_again(out: Path) -> None:
    """Record a fix on a demo host the night a port came free; the fleet reserves it again."""
    from collector.store.database import Store
    from reports.findings import port_history

    database = out / "portfleet.db"
    store = Store.reader(f"sqlite:///{database}")
    with store.connect() as connection:
        hosts = connection.execute(text("SELECT id, name FROM hosts ORDER BY name")).all()
        for host_id, name in hosts:
            history = port_history(connection, host_id, 5000)
            blocked = [status == "reserved" for status in history["status"]]
            frees = [i for i in range(1, len(blocked)) if blocked[i - 1] and not blocked[i]]
            later = [i for i in range(frees[0], len(blocked)) if blocked[i]] if frees else []
            if later:
                host, freed, again = str(name), frees[0], later[0]
                break
        else:
            raise AssertionError("no demo host has port 5000 reserved, free, reserved again")
    store.close()
    last_blocked = history["taken_at"].iloc[freed - 1]
    at = (last_blocked + pd.Timedelta(hours=1)).isoformat()
    config = out / "config.yaml"
    fixed = CliRunner().invoke(
        cli, ["--config", str(config), "fix", host, "5000", "--action", "restart-winnat",
              "--at", at, "--by", "demo-admin"],
    )  # fmt: skip
    assert fixed.exit_code == 0, fixed.output
    sql = (
        "SELECT snapshot_id, outcome FROM v_fix_checks WHERE source = 'recorded' ORDER BY taken_at"
    )
    checked = CliRunner().invoke(cli, ["--config", str(config), "sql", sql, "--format", "json"])
    outcomes = {row["snapshot_id"]: row["outcome"] for row in json.loads(checked.stdout)}
    ids = [int(i) for i in history["snapshot_id"]]
    assert [outcomes[i] for i in ids[freed:again]] == ["holds"] * (again - freed)
    assert outcomes[ids[again]] == "regressed"  # the night the fleet blocks it again
    explained = CliRunner().invoke(cli, ["--config", str(config), "explain", host, "5000"])
    night = history["taken_at"].iloc[again]
    assert f"regressed {night:%Y-%m-%d %H:%M} UTC (TCP 5000 reserved)" in explained.stdout.replace(
        "\n", " "
    )


def _assert_localized_text_arrived_intact(database: Path, fleet: Fleet) -> None:
    """A French host's accents and an Asian host's script survive WinRM's code page 437."""
    engine = create_store_engine(f"sqlite:///{database}", writer=False)
    checked = set()
    with engine.connect() as connection:
        for host in fleet.hosts:
            if host.culture not in ("fr-FR", "ko-KR", "zh-CN") or host.culture in checked:
                continue
            body = connection.execute(
                text(
                    "SELECT d.body FROM documents d JOIN snapshots s ON s.document_id = d.id "
                    "JOIN hosts h ON h.id = s.host_id WHERE h.name = :name "
                    "ORDER BY s.taken_at LIMIT 1"
                ),
                {"name": host.name},
            ).scalar_one()
            raw = json.loads(zlib.decompress(body))["raw"]["excluded_ipv4_tcp"]
            expected = {"fr-FR": "Port de début", "ko-KR": "시작 포트", "zh-CN": "开始端口"}[
                host.culture
            ]
            assert expected in raw, host.name
            checked.add(host.culture)
    engine.dispose()
    assert {"fr-FR"} < checked


def _assert_a_report_without_the_config_checks_the_demos_ports(database: Path, tmp: Path) -> None:
    """Each demo run recorded its wanted ports: a colleague's report needs no config file."""
    from collector.demo import WANTED_PORTS

    out = tmp / "colleague.html"
    done = CliRunner().invoke(cli, ["--db", str(database), "report", "--out", str(out)])
    assert done.exit_code == 0, done.output
    page = out.read_text(encoding="utf-8")
    assert "from the store: the wanted ports of the last collection" in page
    assert ", ".join(str(port) for port in sorted(WANTED_PORTS)) in page
