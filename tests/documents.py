"""Probe documents for tests: small, valid, and easy to vary."""

from __future__ import annotations

from typing import Any


def probe_document(**changes: Any) -> dict[str, Any]:
    """Return a small valid probe document; keyword arguments replace top-level keys."""
    document: dict[str, Any] = {
        "schema": "portfleet.probe/1",
        "probe_version": "1.0.0",
        "taken_at": "2026-11-20T02:00:05+01:00",
        "duration_ms": 61234,
        "host": {
            "name": "dev-ws-01",
            "os": {"product": "Windows 10 Pro", "build": 19045, "ubr": 4291},
            "last_boot": "2026-11-19T08:12:00+01:00",
            "bios": {"version": "1.12.0", "release_date": "2024-03-05"},
            "fast_startup": True,
        },
        "raw": {
            "excluded_ipv4_tcp": "\nProtocol tcp Port Exclusion Ranges\n\nStart Port    End Port\n"
            "----------    --------\n      5357        5357\n     50000       50059     *\n"
            "     52100       52199\n\n* - Administered port exclusions.\n",
            "dynamicport_ipv4_tcp": "\nProtocol tcp Dynamic Port Range\n"
            "---------------------------------\nStart Port      : 49152\nNumber of Ports : 16384\n",
        },
        "bind_sweep": [
            {
                "protocol": "tcp",
                "family": "ipv4",
                "address": "0.0.0.0",
                "exclusive": True,
                "duration_ms": 48000,
                "failures": [
                    [135, 135, 10048],
                    # 50000-50059 is administered ('*'): its ports bind (facts C).
                    [52100, 52199, 10013],
                    [60000, 60001, 10013],
                ],
            },
        ],
        "listeners": [
            {
                "protocol": "tcp",
                "address": "0.0.0.0",
                "port": 135,
                "pid": 1152,
                "process": "svchost",
            }
        ],
        "features": [{"name": "Microsoft-Hyper-V", "state": "Enabled"}],
        "services": [{"name": "winnat", "status": "Running", "start_type": "Manual"}],
        "versions": {"docker": "4.30.0", "wsl": "2.1.5"},
        "hotfixes": [
            {
                "kb": "KB5034441",
                "description": "Security Update",
                "installed_by": "NT AUTHORITY\\SYSTEM",
                "installed_on": "2026-11-12",
            }
        ],
        "update_history": [
            {
                "date": "2026-11-12T03:00:00Z",
                "title": "2026-11 Cumulative Update for Windows 10 (KB5034441)",
                "operation": 1,
                "result_code": 2,
            },
        ],
        "errors": [],
    }
    document.update(changes)
    return document
