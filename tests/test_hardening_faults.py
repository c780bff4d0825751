"""Killed runs: the store stays whole, the next run closes them, the rerun collects everyone."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection, Engine, inspect, text

from collector.cli import cli
from collector.exitcodes import ExitCode
from collector.simulator.wsman import Behaviour
from collector.store.database import create_store_engine
from tests.conftest import REPO
from tests.test_cli_collect import PASSWORD, Fleet

HOSTS = [f"dev-ws-{number:02}" for number in range(1, 7)]


@pytest.fixture
def slow_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    monkeypatch.setenv("PF_TEST_USER", "portfleet")
    monkeypatch.setenv("PF_TEST_PASSWORD", PASSWORD)
    fleet = Fleet(tmp_path)
    for name in HOSTS:
        fleet.add(name, Behaviour(latency=0.08))
    yield fleet
    fleet.stop()


def _config(fleet: Fleet, concurrency: int) -> Path:
    """Write the fleet's config with a deadline no loaded test machine reaches by accident."""
    path = fleet.config(concurrency=concurrency)
    body = json.loads(path.read_text(encoding="utf-8"))
    body["probe"]["deadline_seconds"] = 30
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def _command(db: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "collector.cli", "--db", str(db), "--config", str(config)]


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _snapshots(engine: Engine) -> int:
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT COUNT(*) FROM snapshots")).scalar_one())
    except Exception:  # the schema may not exist yet
        return 0


def _flying(engine: Engine) -> int:
    try:
        with engine.connect() as connection:
            query = "SELECT COUNT(*) FROM attempts WHERE message LIKE 'in flight%'"
            return int(connection.execute(text(query)).scalar_one())
    except Exception:  # the schema may not exist yet
        return 0


def _assert_whole(connection: Connection) -> None:
    """The store after a kill: intact, and no snapshot without its attempt and rows."""
    assert connection.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
    assert connection.execute(text("PRAGMA foreign_key_check")).all() == []
    orphans = connection.execute(
        text(
            "SELECT COUNT(*) FROM snapshots s WHERE NOT EXISTS (SELECT 1 FROM attempts a "
            "WHERE a.snapshot_id = s.id AND a.status IN ('ok', 'partial'))"
        )
    ).scalar_one()
    assert orphans == 0
    # Every stored snapshot of the test's document has its listener and its failure rows.
    hollow = connection.execute(
        text(
            "SELECT COUNT(*) FROM snapshots WHERE listener_set_id IS NULL "
            "OR bind_failure_set_id IS NULL OR excluded_set_id IS NULL"
        )
    ).scalar_one()
    assert hollow == 0


def test_the_next_run_closes_a_killed_one_with_its_hosts_in_flight(
    slow_fleet: Fleet, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    command = [*_command(db, _config(slow_fleet, 2)), "collect"]
    process = subprocess.Popen(
        command, env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    engine = create_store_engine(f"sqlite:///{db}", writer=False)
    try:
        deadline = time.monotonic() + 30
        # Kill it midway: a host stored, and one marked in flight. (Between a host landing and
        # the next claimed host's mark, there is a moment with none in flight.)
        while not (_snapshots(engine) >= 1 and _flying(engine)) and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        with engine.connect() as connection:
            _assert_whole(connection)
            (killed_run,) = connection.execute(
                text("SELECT id FROM collection_runs WHERE finished_at IS NULL")
            ).scalars()
            flying = connection.execute(
                text(
                    "SELECT host FROM v_attempts WHERE run_id = :run AND message LIKE 'in flight%'"
                ),
                {"run": killed_run},
            ).scalars()
            in_flight = sorted(flying)
        assert 1 <= len(in_flight) <= 2  # two at a time
        again = subprocess.run(
            command, env=_environment(), capture_output=True, text=True, timeout=120, check=False
        )
        assert again.returncode == ExitCode.OK, again.stdout + again.stderr
        said = " ".join(again.stderr.split())
        assert f"run {killed_run} (collect, started" in said
        assert f"closed it as interrupted ({len(in_flight)} in flight: {', '.join(in_flight)})" in (
            said
        )
        with engine.connect() as connection:
            assert (
                connection.execute(
                    text("SELECT COUNT(*) FROM collection_runs WHERE finished_at IS NULL")
                ).scalar_one()
                == 0
            )
            interrupted = connection.execute(
                text(
                    "SELECT host, status, error_class, message FROM v_attempts "
                    "WHERE run_id = :run AND message LIKE 'interrupted%' ORDER BY host"
                ),
                {"run": killed_run},
            ).all()
            assert [row.host for row in interrupted] == in_flight
            assert {(row.status, row.error_class) for row in interrupted} == {("failed", "timeout")}
            latest = connection.execute(text("SELECT host FROM v_latest_snapshots")).scalars()
            assert sorted(latest) == HOSTS
    finally:
        if process.poll() is None:
            process.kill()
        engine.dispose()


def test_a_run_still_going_is_not_closed_by_another(slow_fleet: Fleet, tmp_path: Path) -> None:
    """An import while a collect runs leaves the collect's run and its hosts alone."""
    db = tmp_path / "store.db"
    command = [*_command(db, _config(slow_fleet, 1)), "collect"]
    process = subprocess.Popen(
        command, env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    engine = create_store_engine(f"sqlite:///{db}", writer=False)
    try:
        deadline = time.monotonic() + 30
        while _snapshots(engine) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        document = tmp_path / "doc.json"
        document.write_text('{"schema": "portfleet.probe/1"}', encoding="utf-8")
        imported = CliRunner().invoke(cli, ["--db", str(db), "import", str(document)])
        assert imported.exit_code == ExitCode.SOME_FAILED  # a bad document, on purpose
        assert "never finished" not in imported.stderr
        _out, err = process.communicate(timeout=60)
        assert process.returncode == ExitCode.OK, err
        with engine.connect() as connection:
            messages = connection.execute(text("SELECT message FROM attempts")).scalars().all()
            assert not [m for m in messages if m and m.startswith(("interrupted", "in flight"))]
    finally:
        if process.poll() is None:
            process.kill()
        engine.dispose()


def test_collect_killed_at_random_points_never_leaves_a_partial_store(
    slow_fleet: Fleet, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    command = [*_command(db, _config(slow_fleet, 2)), "collect"]
    engine = create_store_engine(f"sqlite:///{db}", writer=False)
    chance = random.Random(12)
    try:
        for kill in range(10):
            process = subprocess.Popen(
                command, env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            # From start-up and migration through collecting to the end of the run.
            time.sleep(chance.uniform(0.2, 3.0))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            if not db.exists():
                continue  # killed before it made the file
            with engine.connect() as connection:
                tables = set(inspect(connection).get_table_names())
                if "snapshots" not in tables:
                    # Killed while making the schema: one transaction, so nothing of it is left.
                    assert tables <= {"alembic_version"}, (kill, tables)
                    continue
                _assert_whole(connection)
                runs = connection.execute(
                    text("SELECT id, finished_at FROM collection_runs ORDER BY id")
                ).all()
            # Every run but the one just killed was closed, by its successor at the latest.
            assert all(run.finished_at is not None for run in runs[:-1]), (kill, runs)
        # --again: the killed runs may have finished some hosts tonight; the rerun takes all.
        rerun = subprocess.run(
            [*command, "--again"],
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert rerun.returncode == ExitCode.OK, rerun.stdout + rerun.stderr
        with engine.connect() as connection:
            _assert_whole(connection)
            assert (
                connection.execute(
                    text("SELECT COUNT(*) FROM collection_runs WHERE finished_at IS NULL")
                ).scalar_one()
                == 0
            )
            assert (
                connection.execute(
                    text("SELECT COUNT(*) FROM attempts WHERE message LIKE 'in flight%'")
                ).scalar_one()
                == 0
            )
            last_run = connection.execute(text("SELECT MAX(id) FROM collection_runs")).scalar_one()
            collected = connection.execute(
                text(
                    "SELECT host FROM v_attempts "
                    "WHERE run_id = :run AND status IN ('ok', 'partial')"
                ),
                {"run": last_run},
            ).scalars()
            assert sorted(collected) == HOSTS
    finally:
        engine.dispose()


def test_a_killed_import_is_closed_by_the_next_with_the_input_in_flight(tmp_path: Path) -> None:
    from tests.documents import probe_document
    from tests.test_hardening_collect import _netstat

    small = tmp_path / "small.json"
    small.write_text(json.dumps(probe_document()), encoding="utf-8")
    slow_document = probe_document()
    slow_document["host"]["name"] = "dev-ws-02"
    slow_document.pop("listeners")
    slow_document["raw"]["netstat"] = _netstat(200_000)  # seconds of parsing
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps(slow_document), encoding="utf-8")
    db = tmp_path / "store.db"
    command = [sys.executable, "-m", "collector.cli", "--db", str(db), "import"]
    process = subprocess.Popen(
        [*command, str(small), str(slow)],
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    engine = create_store_engine(f"sqlite:///{db}", writer=False)
    try:
        # Both inputs are one batch: marked in flight together, then read, then stored.
        deadline = time.monotonic() + 30
        while _flying(engine) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # into the slow document's parsing
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        again = subprocess.run(
            [*command, str(small)], env=_environment(), capture_output=True, text=True, timeout=60
        )
        assert again.returncode == ExitCode.OK, again.stdout + again.stderr
        said = " ".join(again.stderr.split())
        assert f"closed it as interrupted (2 in flight: {small}, {slow})" in said
        assert f"stored {small} → host dev-ws-01" in said
        assert "already stored" not in said  # nothing of it was kept by the killed import
        with engine.connect() as connection:
            _assert_whole(connection)
            rows = connection.execute(
                text("SELECT source, status, message FROM attempts WHERE run_id = 1 ORDER BY id")
            ).all()
        assert [(r.source, r.status) for r in rows] == [
            (str(small), "failed"),
            (str(slow), "failed"),
        ]
        assert all(r.message.startswith("interrupted: run 1 stopped") for r in rows)
    finally:
        if process.poll() is None:
            process.kill()
        engine.dispose()
