"""The probe's C# bind sweep, compiled with Mono and run on this machine's real sockets.

The C# is the very here-string the probe hands to Add-Type (read out of probe.ps1 as
test_probe_script reads it), compiled at C# 5 as Windows PowerShell's CodeDOM compiler does.
Mono maps errno to Windows' SocketError codes as .NET does on Windows: EADDRINUSE is 10048,
EACCES is 10013. A port this test listens on must come back as 10048, a privileged port bound by
a non-root user as 10013 (the sweep runs as ``nobody`` when the tests run as root), a free port
not at all, for IPv4 and IPv6; and the runs must be the run-length encoding portfleet reads.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.parsers.bindfailures import encode_runs
from tests.test_probe_script import _csharp_source, _script_root

INSTALL = "apt-get install mono-mcs (it brings mono-runtime)"
ACCESS_DENIED, IN_USE = 10013, 10048  # WSAEACCES, WSAEADDRINUSE
UNPRIVILEGED_START = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
# A driver around the probe's class: run one sweep, print its runs as JSON. C# 5, like the probe.
DRIVER = """
using System;
using System.Text;

public static class SweepDriver {
    public static int Main(string[] args) {
        Portfleet.SweepResult result = Portfleet.BindSweep.Run(args[0] == "ipv6", false);
        StringBuilder text = new StringBuilder();
        text.Append("{\\"duration_ms\\": ").Append(result.DurationMs).Append(", \\"failures\\": [");
        for (int i = 0; i < result.Runs.Length; i++) {
            if (i > 0) { text.Append(", "); }
            int[] run = result.Runs[i];
            text.Append("[").Append(run[0]).Append(", ").Append(run[1]).Append(", ");
            text.Append(run[2]).Append("]");
        }
        Console.WriteLine(text.Append("]}").ToString());
        return 0;
    }
}
"""


@pytest.fixture(scope="module")
def sweep_program() -> Iterator[Path]:
    """Compile the probe's C# with the driver; skip, naming the package, without Mono."""
    mcs, mono = shutil.which("mcs"), shutil.which("mono")
    if mcs is None or mono is None:
        pytest.skip(f"the probe's C# bind sweep was not run: Mono is missing; {INSTALL}")
    # Not pytest's tmp_path: that is private to root, and the sweep may run as nobody.
    folder = Path(tempfile.mkdtemp(prefix="portfleet-sweep-"))
    try:
        folder.chmod(0o755)
        (folder / "BindSweep.cs").write_text(_csharp_source(_script_root()), encoding="ascii")
        (folder / "Driver.cs").write_text(DRIVER, encoding="ascii")
        program = folder / "sweep.exe"
        compiled = subprocess.run(
            [mcs, "-langversion:5", "-target:exe", f"-out:{program}", "BindSweep.cs", "Driver.cs"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert compiled.returncode == 0, compiled.stdout + compiled.stderr
        program.chmod(0o755)
        yield program
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _sweep(program: Path, family: str) -> dict[str, Any]:
    """Run one sweep as a user who may not bind privileged ports."""
    drop: dict[str, Any] = {}
    if os.geteuid() == 0:
        drop = {"user": "nobody", "group": "nogroup", "extra_groups": []}
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(program.parent)}
    done = subprocess.run(
        ["mono", str(program), family],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=environment,
        **drop,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _listen(family: socket.AddressFamily) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
    sock.listen()
    return sock


def _free_port(family: socket.AddressFamily) -> int:
    """Return a port the kernel just handed out and took back (free, barring a race)."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        port: int = sock.getsockname()[1]
    return port


def _codes(runs: list[list[int]]) -> dict[int, int]:
    return {port: code for start, end, code in runs for port in range(start, end + 1)}


@pytest.mark.parametrize(
    ("family", "address_family"), [("ipv4", socket.AF_INET), ("ipv6", socket.AF_INET6)]
)
def test_the_probes_bind_sweep_on_real_sockets(
    sweep_program: Path, family: str, address_family: socket.AddressFamily
) -> None:
    listener = _listen(address_family)
    try:
        listening = listener.getsockname()[1]
        free = _free_port(address_family)
        result = _sweep(sweep_program, family)
    finally:
        listener.close()
    runs: list[list[int]] = result["failures"]
    codes = _codes(runs)

    assert codes[listening] == IN_USE
    # Below net.ipv4.ip_unprivileged_port_start (1024 unless lowered) only root binds.
    start = int(UNPRIVILEGED_START.read_text()) if UNPRIVILEGED_START.exists() else 1024
    assert start > 1, "this kernel lets anyone bind any port: no 10013 to see here"
    assert runs[0] == [1, start - 1, ACCESS_DENIED]  # every privileged port, one run
    assert free not in codes
    assert isinstance(result["duration_ms"], int) and result["duration_ms"] >= 0

    # The runs are the encoding portfleet stores: ascending, maximal, and each code's ports
    # encode back to exactly these runs.
    assert all(1 <= start <= end <= 65535 for start, end, _code in runs)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(runs))
    assert all(a[1] + 1 < b[0] or a[2] != b[2] for a, b in itertools.pairwise(runs))
    encoded = sorted(
        run
        for code in set(codes.values())
        for run in encode_runs([p for p, c in codes.items() if c == code], code)
    )
    assert [list(run) for run in encoded] == runs
