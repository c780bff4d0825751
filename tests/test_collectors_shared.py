"""Three collector processes share a night on one PostgreSQL; one is killed half-way.

Real WinRM to simulated hosts (a fleet in a child process), real ``portfleet collect``
processes, a real PostgreSQL. Every host must be collected exactly once, and the hosts the
killed collector held must go to the survivors as soon as they find it dead, long before its
lease runs out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, bindparam, text

from collector.simulator.cluster import PASSWORD_ENV, USER_ENV, FleetProcess
from collector.simulator.fleet import Fleet, FleetSpec
from collector.store.database import Store, create_store_engine

REPO = Path(__file__).resolve().parent.parent
NIGHT = "2026-12-06"
LEASE = 60.0  # long: the survivors must not wait for it to run out
SPEC = FleetSpec(hosts=30, nights=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetProcess]:
    with FleetProcess(
        SPEC, tmp_path_factory.mktemp("fleet"), https=True, latency=0.05, time_scale=0
    ) as fleet:
        yield fleet


def _config(served: FleetProcess, folder: Path, name: str) -> Path:
    assert served.addresses is not None
    names = Fleet(SPEC).healthy_hosts()  # tonight's outages would only add failed attempts
    body = {
        "defaults": {
            "transport": "basic",  # over HTTPS: the collector's CPU goes to collecting
            "ca_file": served.addresses.ca_file,
            "credential": {"username_env": USER_ENV, "password_env": PASSWORD_ENV},
        },
        "probe": {"deadline_seconds": 60},
        "collect": {
            "concurrency": 2,
            "retries": 0,
            "lease_seconds": LEASE,
            "collector_name": name,
        },
        "hosts": [{"name": n, "address": served.addresses.urls[n]} for n in names],
    }
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(body), encoding="utf-8")  # JSON is YAML
    return path


def _start(served: FleetProcess, url: str, config: Path) -> subprocess.Popen[str]:
    assert served.addresses is not None
    environment = {**os.environ, **served.addresses.credentials(), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "collector.cli", "--db", url, "--config", str(config)]
    return subprocess.Popen(
        [*command, "collect", "--night", NIGHT],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _done_by(engine: Engine, collector: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT COUNT(*) FROM night_claims c JOIN collection_runs r ON r.id = c.run_id "
                    "WHERE r.collector = :who AND c.done_at IS NOT NULL"
                ),
                {"who": collector},
            ).scalar_one()
        )


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_three_collectors_one_killed_every_host_collected_once(
    served: FleetProcess, db_url: str, tmp_path: Path
) -> None:
    Store.open(db_url).close()  # `portfleet db upgrade` once, before the collectors start
    hosts = Fleet(SPEC).healthy_hosts()
    names = ("collector-1", "collector-2", "collector-3")
    processes = {n: _start(served, db_url, _config(served, tmp_path, n)) for n in names}
    engine = create_store_engine(db_url)
    try:
        deadline = time.monotonic() + 120
        while _done_by(engine, "collector-3") < 3:  # half-way through its share
            assert time.monotonic() < deadline, "collector-3 collected nothing in 120 s"
            assert processes["collector-3"].poll() is None, processes["collector-3"].stderr
            time.sleep(0.05)
        processes["collector-3"].send_signal(signal.SIGKILL)
        processes["collector-3"].communicate(timeout=10)
        with engine.connect() as connection:
            killed_at = connection.execute(text("SELECT timezone('UTC', now())")).scalar_one()
            held: dict[int, datetime] = dict(
                connection.execute(
                    text(
                        "SELECT c.host_id, c.lease_until FROM night_claims c "
                        "JOIN collection_runs r ON r.id = c.run_id "
                        "WHERE r.collector = 'collector-3' AND c.done_at IS NULL"
                    )
                ).all()
            )
        assert held, "collector-3 held no host when it was killed"
        said = {}
        for name in names[:2]:
            out, err = processes[name].communicate(timeout=240)
            assert processes[name].returncode == 0, err
            said[name] = out
        with engine.connect() as connection:
            tries = connection.execute(
                text(
                    "SELECT h.name, COUNT(*) FROM attempts a JOIN hosts h ON h.id = a.host_id "
                    "WHERE a.status IN ('ok', 'partial') GROUP BY h.name"
                )
            ).all()
            # Every try is recorded; the only failed rows are the killed run's in-flight marks,
            # closed as interrupted by the survivor that found it dead.
            failed = connection.execute(
                text("SELECT host_id, message FROM attempts WHERE status = 'failed'")
            ).all()
            taken = connection.execute(
                text(
                    "SELECT c.host_id, r.collector, c.claimed_at FROM night_claims c "
                    "JOIN collection_runs r ON r.id = c.run_id WHERE c.host_id IN :ids"
                ).bindparams(bindparam("ids", expanding=True)),
                {"ids": list(held)},
            ).all()
            claims = connection.execute(
                text("SELECT COUNT(*), COUNT(done_at) FROM night_claims WHERE night = :n"),
                {"n": NIGHT},
            ).one()
        assert dict(tries) == dict.fromkeys(hosts, 1)
        assert {host_id for host_id, _ in failed} <= set(held)
        assert all(message.startswith("interrupted: run") for _, message in failed)
        assert claims == (len(hosts), len(hosts))
        # The survivors took the killed collector's hosts after it died, before its lease ran
        # out: they found its liveness lock gone.
        assert len(taken) == len(held)
        for host_id, collector, claimed_at in taken:
            assert collector in names[:2]
            assert killed_at <= claimed_at.replace(tzinfo=None) < held[host_id].replace(tzinfo=None)
        shares = {name: _done_by(engine, name) for name in names}
        assert sum(shares.values()) == len(hosts)
        assert all(count >= 1 for count in shares.values()), shares
        for name in names[:2]:
            summary = " ".join(said[name].split())
            assert f"night {NIGHT}: {len(hosts)} hosts planned" in summary
            for other in names:
                assert f"({other}): {shares[other]} hosts" in summary
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
        engine.dispose()
