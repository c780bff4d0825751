"""A second client, pypsrp, against the simulated hosts: its WinRS runs a command and the probe;
its PowerShell remoting is refused at Create with a clear fault."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import RunspacePool
from pypsrp.shell import Process, SignalCode, WinRS
from pypsrp.wsman import WSMan

from collector.document import load_document
from collector.framing import unframe_document
from collector.parsers.clixml import parse_clixml
from collector.probe import probe_arguments, probe_script
from collector.simulator.responder import ProbeResponder
from collector.simulator.wsman import Behaviour, WsmanServer
from collector.winrm import bootstrap_command, stdin_payload
from tests.documents import probe_document

USER, PASSWORD = "portfleet", "pyp5rp-S3cret"


@pytest.fixture
def server() -> Iterator[WsmanServer]:
    # The probe runs 0.5 s; OperationTimeout (20 s) lasts 0.2 s on this host's clock.
    responder = ProbeResponder(probe_document, sweep_seconds=0.5)
    behaviour = Behaviour(operation_timeout_scale=0.01)
    host = WsmanServer(responder, username=USER, password=PASSWORD, behaviour=behaviour).start()
    yield host
    host.stop()


def _wsman(server: WsmanServer) -> WSMan:
    # NTLM over plain HTTP, messages sealed (pypsrp's default encryption="auto").
    return WSMan(
        "127.0.0.1",
        port=server.port,
        username=USER,
        password=PASSWORD,
        ssl=False,
        auth="ntlm",
        cert_validation=False,
        operation_timeout=20,
    )


def test_pypsrp_winrs_runs_a_command(server: WsmanServer) -> None:
    with _wsman(server) as wsman, WinRS(wsman) as shell:
        process = Process(shell, "cmd.exe", ["/c", "echo", "hi"])
        process.invoke()
        process.signal(SignalCode.CTRL_C)
        missing = Process(shell, "frobnicate.exe")
        missing.invoke()
    assert (process.stdout, process.stderr, process.rc) == (b"hi\r\n", b"", 0)
    assert missing.rc == 9009 and b"is not recognized" in missing.stderr
    assert server.open_shells() == 0


def test_pypsrp_winrs_runs_the_probe_through_operation_timeouts(server: WsmanServer) -> None:
    arguments = probe_arguments(bind_sweep=True, sweep_udp=False, update_history_limit=500)
    with _wsman(server) as wsman, WinRS(wsman) as shell:
        process = Process(shell, bootstrap_command(arguments))
        process.begin_invoke()
        process.send(stdin_payload(probe_script()), end=True)
        started = time.monotonic()
        process.end_invoke()
        elapsed = time.monotonic() - started
        process.signal(SignalCode.TERMINATE)
    assert process.rc == 0
    document = load_document(unframe_document(process.stdout), "pypsrp")
    assert document["host"]["name"]
    stderr = parse_clixml(process.stderr)
    assert len(stderr.progress) == 1 and stderr.errors() == []
    statuses = [e.status for e in server.exchanges() if e.operation == "Receive"]
    assert statuses[0] == 200 and 500 in statuses and statuses[-1] == 200
    assert 0.3 < elapsed < 5


def test_pypsrp_powershell_remoting_is_refused_at_create(server: WsmanServer) -> None:
    with _wsman(server) as wsman, pytest.raises(WSManFaultError) as caught:
        RunspacePool(wsman).open()
    assert caught.value.code == 2150858811
    resource = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"
    assert f"The resource URI ({resource}) was not found" in caught.value.reason
    assert server.request_counts()["Create"] == 1 and server.open_shells() == 0
