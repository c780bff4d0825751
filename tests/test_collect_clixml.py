"""`collect` against hosts whose PowerShell writes CLIXML on stderr, as Windows PowerShell does.

On success the stderr holds a progress record (streamed while the probe still runs); on failure
error records. The first must not disturb the snapshot, the second must reach the attempt's
message as readable text: no CLIXML, no escapes, no markup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from collector.cli import cli
from collector.simulator.powershell import ErrorView, error_lines, progress_record, stderr_document
from collector.simulator.responder import ProbeResponder
from collector.simulator.wsman import Behaviour, CommandRequest, CommandResult, WsmanServer
from collector.store.database import create_store_engine
from tests.documents import probe_document

PASSWORD = "cl1xml-S3cret"
THROWN = ErrorView(
    'Exception calling "Run" with "2" argument(s): "Ran out of <sockets> & handles"',
    "NotSpecified",
    "MethodInvocationException",
    "SocketException",
    "$result = [Portfleet.BindSweep]::Run($ipv6, ($protocol -eq 'udp'))",
    line=12,
    char=21,
)


def _document(name: str) -> dict[str, Any]:
    document = probe_document()
    document["host"]["name"] = name.upper()
    return document


def _failing(request: CommandRequest) -> CommandResult:
    """A probe that dies with a terminating error, as Windows PowerShell reports it."""
    assert request.script is not None
    stderr = stderr_document(progress_record(), error_lines(THROWN))
    return CommandResult(stderr=stderr, exit_code=1, duration=0.1)


def _collect(tmp_path: Path, servers: dict[str, WsmanServer]) -> list[Any]:
    config = tmp_path / "config.yaml"
    body = {
        "defaults": {
            "https": False,  # NTLM seals every message over plain HTTP
            "credential": {"username_env": "PF_CLIXML_USER", "password_env": "PF_CLIXML_PW"},
        },
        "probe": {"deadline_seconds": 20, "operation_timeout_seconds": 1},
        "collect": {"retries": 0},
        "hosts": [{"name": name, "address": server.url} for name, server in servers.items()],
    }
    config.write_text(json.dumps(body), encoding="utf-8")
    database = tmp_path / "store.db"
    result = CliRunner().invoke(
        cli, ["--db", str(database), "--config", str(config), "collect"], catch_exceptions=False
    )
    assert result.exit_code in (0, 1), result.output
    engine = create_store_engine(f"sqlite:///{database}", writer=False)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT host, status, error_class, message FROM v_attempts ORDER BY host")
        ).all()
    engine.dispose()
    return list(rows)


def test_progress_records_stream_first_and_errors_reach_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PF_CLIXML_USER", "portfleet")
    monkeypatch.setenv("PF_CLIXML_PW", PASSWORD)
    # The probe runs 0.6 s; OperationTimeout (1 s) lasts 0.2 s on this host's clock.
    fine = ProbeResponder(lambda: _document("dev-ws-01"), sweep_seconds=0.6)
    behaviour = Behaviour(operation_timeout_scale=0.2)
    servers = {
        "dev-ws-01": WsmanServer(
            fine, username="portfleet", password=PASSWORD, behaviour=behaviour
        ),
        "dev-ws-02": WsmanServer(_failing, username="portfleet", password=PASSWORD),
    }
    for server in servers.values():
        server.start()
    try:
        rows = _collect(tmp_path, servers)
        receives = [e for e in servers["dev-ws-01"].exchanges() if e.operation == "Receive"]
    finally:
        for server in servers.values():
            server.stop()

    assert [(r.host, r.status, r.error_class) for r in rows] == [
        ("dev-ws-01", "ok", None),
        ("dev-ws-02", "failed", "probe_error"),
    ]
    # The progress record came at once (Running), then nothing within OperationTimeout, then
    # the document with the end of the CLIXML.
    assert [e.status for e in receives[:2]] == [200, 500] and receives[-1].status == 200
    message = rows[1].message
    assert "the probe exited with 1" in message
    assert (
        'Exception calling "Run" with "2" argument(s): "Ran out of <sockets> & handles"' in message
    )
    assert "\nAt line:12 char:21\n" in message  # the view, line by line (cut at 300 characters)
    for noise in ("CLIXML", "_x000D_", "<S ", "&amp;", "Preparing modules"):
        assert noise not in message
