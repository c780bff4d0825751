"""How long the simulated fleet's probes run: real time for `simulate`, compressed for the demo.

A probe takes as long as its document says it did (44-100 s in the model) times the hosts'
time scale, and a Receive waits OperationTimeout times the same scale. The demo's scale must
still make every probe span several Receives, with w:TimedOut faults on some hosts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import winrm
from winrm.exceptions import InvalidCredentialsError

from collector import demo
from collector.collect import collect
from collector.config import PortfleetConfig
from collector.plan import plan_collection
from collector.simulator.cluster import (
    TIME_SCALE_ENV,
    SimulatedFleet,
    fleet_config,
    resolve_time_scale,
)
from collector.simulator.fleet import Fleet, FleetSpec
from collector.store.database import Store

SPEC = FleetSpec(hosts=8, nights=3)


def test_simulate_serves_real_time_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = Fleet(SPEC)
    monkeypatch.delenv(TIME_SCALE_ENV, raising=False)
    served = SimulatedFleet(fleet, tmp_path, lambda: 1)  # as `portfleet simulate` builds it
    for host in fleet.hosts:
        seconds = served.probe_seconds(host.name)
        assert seconds == fleet.state(host, 1).duration_ms / 1000
        assert 40 <= seconds <= 120  # two bind sweeps and the rest, as the model has them
    monkeypatch.setenv(TIME_SCALE_ENV, "0.01")
    assert resolve_time_scale(None) == 0.01
    monkeypatch.setenv(TIME_SCALE_ENV, "fast")
    with pytest.raises(ValueError, match=TIME_SCALE_ENV):
        resolve_time_scale(None)
    with pytest.raises(ValueError, match="from 0 to 1"):
        resolve_time_scale(2)


def test_the_demos_hosts_stream_over_several_receives_with_timeouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = Fleet(SPEC)
    night = 1
    served = SimulatedFleet(fleet, tmp_path, lambda: night, https=True, time_scale=demo.TIME_SCALE)
    healthy = [h.name for h in fleet.hosts if fleet.outage(h.name, night) is None]
    with served, Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        addresses = served.addresses()
        addresses.export_credentials()
        body = fleet_config(
            fleet,
            addresses,
            night,
            probe={"operation_timeout_seconds": demo.OPERATION_TIMEOUT},
        )
        config = PortfleetConfig.model_validate(body)
        plan = plan_collection(config, healthy, concurrency=8, deadline_seconds=5, retries=0)
        outcomes = collect(store, config, plan)
        receives = {
            name: Counter(e.status for e in served.exchanges(name) if e.operation == "Receive")
            for name in healthy
        }
    assert {o.status for o in outcomes} <= {"ok", "partial"}
    for name in healthy:
        assert 0.1 <= served.probe_seconds(name) <= 0.3
        # The progress record (Running), then the document (Done)...
        assert receives[name][200] == 2, (name, receives[name])
    # ... and between them w:TimedOut faults where the probe outlasts OperationTimeout (most
    # hosts; how many depends on how soon the next Receive comes on a loaded machine).
    assert any(receives[name][500] for name in healthy), receives


def test_a_fleet_host_refuses_basic_over_plain_http(tmp_path: Path) -> None:
    fleet = Fleet(SPEC)
    host = fleet.hosts[0]
    assert host.allow_unencrypted is False  # WinRM's default
    with SimulatedFleet(fleet, tmp_path, lambda: 0, https=False, time_scale=0) as served:
        addresses = served.addresses()
        session = winrm.Session(
            addresses.urls[host.name],
            auth=("portfleet", addresses.password),
            transport="basic",
            proxy="",
            ca_trust_path=None,
        )
        with pytest.raises(InvalidCredentialsError):
            session.run_cmd("cmd.exe", ["/c", "echo", "hi"])
        ntlm = winrm.Session(
            addresses.urls[host.name],
            auth=("portfleet", addresses.password),
            transport="ntlm",
            proxy="",
            ca_trust_path=None,
        )
        assert ntlm.run_cmd("cmd.exe", ["/c", "echo", "hi"]).std_out == b"hi\r\n"
