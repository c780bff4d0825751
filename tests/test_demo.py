"""`portfleet demo` end to end: a simulated fleet over real WinRM, 60 nights, plus the seed."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

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
