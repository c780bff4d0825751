"""`portfleet simulate` serves a fleet that `portfleet collect` reaches over HTTPS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO


def test_simulate_then_collect_over_https(tmp_path: Path) -> None:
    """Simulate in one folder, collect from another: the config's paths follow the config."""
    # The hosts' clocks at 1/100: their probes take 0.4-1 s instead of the real 44-100 s.
    environment = {**os.environ, "PYTHONPATH": str(REPO), "PORTFLEET_SIM_TIME_SCALE": "0.01"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    simulate = [
        sys.executable,
        "-m",
        "collector.cli",
        "simulate",
        "--hosts",
        "4",
        "--nights",
        "10",
        "--night",
        "3",
        "--dir",
        "sim",  # relative, as an operator would type it
    ]
    log_path = tmp_path / "simulate.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            simulate, env=environment, stdout=subprocess.DEVNULL, stderr=log, cwd=tmp_path
        )
    try:
        config = tmp_path / "sim" / "config.yaml"
        credentials = tmp_path / "sim" / "simulate.env"
        deadline = time.monotonic() + 60
        while (
            not (credentials.exists() and credentials.stat().st_size)
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert credentials.stat().st_mode & 0o777 == 0o600
        assert "https://127.0.0.1:" in config.read_text(encoding="utf-8")
        secrets = dict(
            line.split("=", 1) for line in credentials.read_text(encoding="utf-8").split()
        )
        assert secrets["PORTFLEET_SIM_PASSWORD"] not in config.read_text(encoding="utf-8")
        database = tmp_path / "sim.db"
        collect = [
            sys.executable,
            "-m",
            "collector.cli",
            "--db",
            str(database),
            "--config",
            str(config),
            "collect",
        ]
        result = subprocess.run(
            collect,
            env={**environment, **secrets},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=elsewhere,
        )
        assert result.returncode in (0, 1), result.stderr
        assert "alembic" not in result.stderr  # its INFO lines only with -v
        query = [
            sys.executable,
            "-m",
            "collector.cli",
            "--db",
            str(database),
            "sql",
            "SELECT host, status FROM v_attempts",
            "--format",
            "json",
        ]
        rows = json.loads(
            subprocess.run(
                query, env=environment, capture_output=True, text=True, check=True
            ).stdout
        )
        assert {row["host"] for row in rows} == {"dev-ws-01", "dev-ws-02", "dev-ws-03", "dev-ws-04"}
        assert sum(row["status"] in ("ok", "partial") for row in rows) >= 3
        assert secrets["PORTFLEET_SIM_PASSWORD"] not in result.stdout + result.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
    assert server.returncode == 0, log_path.read_text()
