"""The collection benchmark runs end to end on a tiny fleet and prints what CPU depends on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_benchmark_prints_cpu_per_host_beside_the_machine_s_load() -> None:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "bench.collect", "--hosts", "2", "--concurrency", "2"]
    command += ["--repeat", "1", "--latency", "0", "--probe-seconds", "0", "--shared-cores"]
    done = subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "collector CPU:" in done.stdout
    assert "load average:" in done.stdout and "at the start" in done.stdout
