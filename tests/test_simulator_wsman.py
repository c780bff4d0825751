"""The simulated WinRM listener, driven by the real, unpatched pywinrm over real HTTP(S)."""

from __future__ import annotations

import math
import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import winrm
import xmltodict  # pywinrm's own dependency, no stubs
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError, WSManFaultError
from winrm.protocol import Protocol

from collector.simulator import envelope
from collector.simulator.certs import CertFiles, write_client_cert, write_server_cert
from collector.simulator.responder import ONLY_THE_PROBE, ProbeResponder
from collector.simulator.wsman import (
    TOO_LONG,
    Behaviour,
    CommandRequest,
    CommandResult,
    WsmanServer,
    decode_encoded_command,
)

USER, PASSWORD = "vagrant", "S3cret-pw"
NS = {
    "s": envelope.NS_SOAP,
    "a": envelope.NS_ADDRESSING,
    "x": envelope.NS_TRANSFER,
    "w": envelope.NS_WSMAN,
    "rsp": envelope.NS_SHELL,
    "f": envelope.NS_FAULT,
}
Serve = Callable[..., WsmanServer]
SOAP = {"Content-Type": "application/soap+xml;charset=UTF-8"}


def _echo_script(request: CommandRequest) -> CommandResult:
    return CommandResult(stdout=f"ran: {request.script}\r\n")


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[WsmanServer] = []

    def start(
        handler: Callable[[CommandRequest], CommandResult] = _echo_script,
        unencrypted: bool = True,
        **kw: Any,
    ):
        # Most tests speak Basic over plain HTTP, which needs AllowUnencrypted on the host.
        behaviour = replace(kw.pop("behaviour", None) or Behaviour(), allow_unencrypted=unencrypted)
        server = WsmanServer(
            handler, username=USER, password=PASSWORD, behaviour=behaviour, **kw
        ).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _session(server: WsmanServer, **kw: Any) -> winrm.Session:
    # proxy=None and an explicit ca_trust_path keep pywinrm away from this machine's proxy and
    # REQUESTS_CA_BUNDLE variables (and their DeprecationWarnings, errors under our settings).
    kw.setdefault("ca_trust_path", None)
    kw.setdefault("auth", (USER, PASSWORD))
    return winrm.Session(server.url, proxy=None, **kw)


def _protocol(server: WsmanServer, **kw: Any) -> Protocol:
    kw.setdefault("ca_trust_path", None)
    kw.setdefault("username", USER)
    kw.setdefault("password", PASSWORD)
    return Protocol(server.url, transport="plaintext", proxy=None, **kw)


def _envelope(protocol: Protocol, operation: str, shell_id: str | None, body: Any):
    """Build a request the way pywinrm does; return (XML text, its MessageID)."""
    message_id = uuid.uuid4()
    header = protocol.build_wsman_header(
        action=envelope.ACTIONS.get(operation, operation),
        resource_uri=envelope.RESOURCE_CMD,
        shell_id=shell_id,
        message_id=message_id,
    )
    header["env:Body"] = body or {}
    return xmltodict.unparse({"env:Envelope": header}), f"uuid:{message_id}"


def _raw(protocol: Protocol, operation: str, shell_id: str | None = None, body: Any = None):
    """Send one hand-built request through pywinrm; return (response root, request MessageID)."""
    text, message_id = _envelope(protocol, operation, shell_id, body)
    return ET.fromstring(protocol.send_message(text)), message_id


def _receive_body(command_id: str) -> dict[str, Any]:
    stream = {"@CommandId": command_id, "#text": "stdout stderr"}
    return {"rsp:Receive": {"rsp:DesiredStream": stream}}


def _local(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def test_run_ps_round_trip_through_the_whole_shell_protocol(serve: Serve) -> None:
    seen: list[CommandRequest] = []

    def handler(request: CommandRequest) -> CommandResult:
        seen.append(request)
        return CommandResult(stdout=f"script was [{request.script}]\r\n", stderr="", exit_code=0)

    server = serve(handler)
    script = "Get-NetTCPSetting |\n  Select-Object -First 1 'quoted' \"double\" <&>"
    result = _session(server).run_ps(script)

    assert result.std_out == f"script was [{script}]\r\n".encode("ascii")
    assert (result.std_err, result.status_code) == (b"", 0)
    assert server.request_counts() == dict.fromkeys(
        ["Create", "Command", "Receive", "Signal", "Delete"], 1
    )
    [request] = seen
    assert request.command_line.startswith("powershell -encodedcommand ")
    assert (request.codepage, dict(request.environment), request.stdin) == (437, {}, b"")
    assert request.skip_cmd_shell is False
    assert server.open_shells() == 0  # Delete forgot the shell


def test_french_text_leaves_a_cp437_shell_as_oem_bytes(serve: Serve) -> None:
    text = "Propriétés TCP : activé\r\n"
    server = serve(lambda _request: CommandResult(stdout=text))

    out = _session(server).run_ps("netsh int ipv4 show dynamicport tcp").std_out

    assert out == b"Propri\x82t\x82s TCP : activ\x82\r\n"
    assert out.decode("cp437") == text


def test_japanese_is_lost_under_437_but_arrives_as_utf8_under_65001(serve: Serve) -> None:
    text = "除外されたポート範囲\r\n"
    server = serve(lambda _request: CommandResult(stdout=text))

    assert _session(server).run_ps("x").std_out == b"??????????\r\n"

    protocol = _protocol(server)
    shell_id = protocol.open_shell(codepage=65001)
    command_id = protocol.run_command(shell_id, "netsh", ["int", "ipv4", "show", "exclu", "tcp"])
    out, err, code = protocol.get_command_output(shell_id, command_id)
    protocol.cleanup_command(shell_id, command_id)
    protocol.close_shell(shell_id)
    assert (out, err, code) == (text.encode("utf-8"), b"", 0)


def test_raw_bytes_arguments_and_a_dword_exit_code(serve: Serve) -> None:
    seen: list[CommandRequest] = []

    def handler(request: CommandRequest) -> CommandResult:
        seen.append(request)
        return CommandResult(stdout=b"\xff\x00raw\x82", stderr="warning\r\n", exit_code=-1)

    result = _session(serve(handler)).run_cmd("ipconfig", ["/all"])

    assert (result.std_out, result.std_err) == (b"\xff\x00raw\x82", b"warning\r\n")
    assert result.status_code == 4294967295  # Windows reports exit codes as DWORDs
    assert (seen[0].command, seen[0].arguments, seen[0].script) == ("ipconfig", ("/all",), None)
    assert seen[0].command_line == "ipconfig /all"


def test_large_output_arrives_intact_over_several_bounded_receives(serve: Serve) -> None:
    lines = [f"{i:06d}  49152  {i % 65536:5d}  Tcp  Excluded é\r\n" for i in range(14_000)]
    text = "".join(lines)
    assert len(text) > 500_000
    server = serve(lambda _request: CommandResult(stdout=text))

    result = _session(server).run_ps("Get-NetTCPConnection")

    assert result.std_out == text.encode("cp437")
    receives = [e for e in server.exchanges() if e.operation == "Receive"]
    assert len(receives) >= math.ceil(len(text) * 4 / 3 / 153_600)
    assert all(e.status == 200 and e.size <= 153_600 for e in receives)
    assert all(e.size > 140_000 for e in receives[:-1])  # each full one fills the envelope


def test_cmd_line_limit_and_the_ways_around_it(serve: Serve) -> None:
    ran: list[CommandRequest] = []

    def handler(request: CommandRequest) -> CommandResult:
        ran.append(request)
        text = request.script or request.environment.get("PF_SCRIPT") or request.stdin.decode()
        return CommandResult(stdout=text)

    server = serve(handler)
    session = _session(server)
    # 27 prefix characters + 4*ceil(2N/3) base64 characters: N=3061 gives exactly 8191.
    fits, too_long = "a" * 3061, "a" * 3062
    assert session.run_ps(fits).std_out == fits.encode()

    refused = session.run_ps(too_long)
    assert (refused.std_out, refused.std_err, refused.status_code) == (b"", TOO_LONG, 1)
    assert len(ran) == 1  # cmd.exe refused it; the command never started

    script = "Write-Output 'port range 49152-65535'\n" * 200
    protocol = _protocol(server)
    shell_id = protocol.open_shell(env_vars={"PF_SCRIPT": script})
    command_id = protocol.run_command(shell_id, "powershell", ["-Command", "iex $env:PF_SCRIPT"])
    assert protocol.get_command_output(shell_id, command_id) == (script.encode(), b"", 0)

    command_id = protocol.run_command(shell_id, "powershell", ["-NoProfile", "-Command", "-"])
    protocol.send_command_input(shell_id, command_id, script[:3000])
    protocol.send_command_input(shell_id, command_id, script[3000:], end=True)
    assert protocol.get_command_output(shell_id, command_id) == (script.encode(), b"", 0)
    protocol.close_shell(shell_id)
    assert ran[-1].stdin == script.encode() and ran[-2].environment["PF_SCRIPT"] == script


def test_authentication_and_http_level_answers(serve: Serve) -> None:
    server = serve()
    with pytest.raises(InvalidCredentialsError):
        _session(server, auth=(USER, "wrong")).run_ps("x")

    http = requests.Session()
    http.trust_env = False
    anonymous = http.post(server.url, data=b"<x/>", timeout=5)
    assert (anonymous.status_code, anonymous.content) == (401, b"")
    challenge = anonymous.headers["WWW-Authenticate"]
    assert "Negotiate" in challenge and 'Basic realm="WSMAN"' in challenge
    assert http.get(server.url, timeout=5).status_code == 405
    wrong_path = server.url.replace("/wsman", "/other")
    assert http.post(wrong_path, auth=(USER, PASSWORD), timeout=5).status_code == 404
    http.close()
    assert server.request_counts() == {"Unauthorized": 2}

    assert _session(server, auth=(USER.upper(), PASSWORD)).run_ps("ok").status_code == 0


def test_slow_command_gets_timeout_faults_that_pywinrm_retries_through(serve: Serve) -> None:
    server = serve(
        lambda request: CommandResult(stdout=f"{request.script}\r\n", duration=0.5),
        behaviour=Behaviour(operation_timeout_scale=0.01),  # PT20S blocks 0.2 s
    )
    started = time.monotonic()
    result = _session(server).run_ps("Start-Sleep 30; 'late'")
    elapsed = time.monotonic() - started

    assert result.std_out == b"Start-Sleep 30; 'late'\r\n"
    statuses = [e.status for e in server.exchanges() if e.operation == "Receive"]
    # Two timeouts, or one where a loaded machine sent the second Receive late.
    assert statuses in ([500, 500, 200], [500, 200])
    assert 0.45 < elapsed < 2.0

    protocol = _protocol(server)
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "ping", ["-n", "30", "127.0.0.1"])
    with pytest.raises(WinRMOperationTimeoutError):
        protocol.get_command_output_raw(shell_id, command_id)
    protocol.close_shell(shell_id)


def test_without_timeout_faults_a_slow_command_answers_running(serve: Serve) -> None:
    server = serve(
        lambda _request: CommandResult(stdout="done\r\n", duration=0.3),
        behaviour=Behaviour(operation_timeout_scale=0.01, timeout_fault=False),
    )
    result = _session(server, operation_timeout_sec=5, read_timeout_sec=10).run_ps("x")

    assert result.std_out == b"done\r\n"
    receives = [e for e in server.exchanges() if e.operation == "Receive"]
    assert len(receives) >= 4 and all(e.status == 200 for e in receives)


def test_response_envelopes_have_the_recorded_windows_shape(serve: Serve) -> None:
    server = serve(
        lambda _request: CommandResult(stdout="hi\r\n", duration=0.3),
        behaviour=Behaviour(operation_timeout_scale=0.005),
    )
    protocol = _protocol(server)
    shell_body = {"rsp:Shell": {"rsp:InputStreams": "stdin", "rsp:OutputStreams": "stdout stderr"}}
    created, message_id = _raw(protocol, "Create", body=shell_body)
    action = created.findtext("s:Header/a:Action", namespaces=NS)
    assert action == f"{envelope.NS_TRANSFER}/CreateResponse"
    assert created.findtext("s:Header/a:RelatesTo", namespaces=NS) == message_id
    assert created.findtext("s:Header/a:To", namespaces=NS) == envelope.ANONYMOUS
    path = "s:Body/x:ResourceCreated/a:ReferenceParameters/w:SelectorSet/w:Selector"
    selector = created.find(path, NS)
    assert selector is not None and selector.get("Name") == "ShellId"
    shell_id = selector.text or ""
    assert created.findtext("s:Body/rsp:Shell/rsp:ShellId", namespaces=NS) == shell_id
    assert created.findtext("s:Body/rsp:Shell/rsp:Owner", namespaces=NS) == USER

    command_id = protocol.run_command(shell_id, "cmd.exe", ["/c", "echo", "hi"])
    with pytest.raises(WinRMOperationTimeoutError):
        protocol.get_command_output_raw(shell_id, command_id)
    time.sleep(0.3)
    received, _ = _raw(protocol, "Receive", shell_id, _receive_body(command_id))
    response = received.find("s:Body/rsp:ReceiveResponse", NS)
    assert response is not None
    children = list(response)
    outline = [(_local(c), c.get("Name"), c.get("End"), c.get("State", "")[-4:]) for c in children]
    assert outline == [
        ("Stream", "stdout", None, ""),
        ("Stream", "stdout", "true", ""),
        ("Stream", "stderr", "true", ""),
        ("CommandState", None, None, "Done"),
    ]
    assert children[0].text == "aGkNCg=="  # base64 of b"hi\r\n", as in the recording
    assert children[-1].findtext("rsp:ExitCode", namespaces=NS) == "0"

    signal = {"@CommandId": command_id, "rsp:Code": f"{envelope.NS_SHELL}/signal/terminate"}
    signalled, signal_id = _raw(protocol, "Signal", shell_id, {"rsp:Signal": signal})
    assert signalled.find("s:Body/rsp:SignalResponse", NS) is not None
    assert signalled.findtext("s:Header/a:RelatesTo", namespaces=NS) == signal_id
    deleted, delete_id = _raw(protocol, "Delete", shell_id)
    deleted_body = deleted.find("s:Body", NS)
    assert deleted_body is not None and len(deleted_body) == 0
    assert deleted.findtext("s:Header/a:RelatesTo", namespaces=NS) == delete_id


def test_timeout_fault_body_matches_the_recording(serve: Serve) -> None:
    server = serve(
        lambda _r: CommandResult(duration=5), behaviour=Behaviour(operation_timeout_scale=0)
    )
    protocol = _protocol(server)
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "ping", ["-t", "127.0.0.1"])
    text, message_id = _envelope(protocol, "Receive", shell_id, _receive_body(command_id))
    http = requests.Session()
    http.trust_env = False
    response = http.post(
        server.url, data=text.encode(), auth=(USER, PASSWORD), headers=SOAP, timeout=5
    )
    http.close()

    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/soap+xml;charset=UTF-8"
    root = ET.fromstring(response.content)
    assert root.findtext("s:Header/a:Action", namespaces=NS) == envelope.FAULT_ACTION
    assert root.findtext("s:Header/a:RelatesTo", namespaces=NS) == message_id
    fault = root.find("s:Body/s:Fault", NS)
    assert fault is not None
    assert fault.findtext("s:Code/s:Value", namespaces=NS) == "s:Receiver"
    assert fault.findtext("s:Code/s:Subcode/s:Value", namespaces=NS) == "w:TimedOut"
    detail = fault.find("s:Detail/f:WSManFault", NS)
    assert detail is not None and detail.get("Code") == "2150858793"
    assert detail.get("Machine") == server.machine
    assert "OperationTimeout" in (detail.findtext("f:Message", namespaces=NS) or "")


def test_a_code_page_windows_lacks_is_an_invalid_parameter(serve: Serve) -> None:
    protocol = _protocol(serve())
    with pytest.raises(WSManFaultError) as caught:
        protocol.open_shell(codepage=12345)
    assert (caught.value.code, caught.value.wsman_fault_code) == (500, 87)
    assert caught.value.fault_subcode == "w:InvalidParameter"
    assert protocol.open_shell(codepage=850)  # an OEM code page Python also knows


def test_unknown_shell_and_command_ids_get_the_windows_faults(serve: Serve) -> None:
    protocol = _protocol(serve())
    shell_id = protocol.open_shell()
    with pytest.raises(WSManFaultError) as no_shell:
        protocol.run_command(str(uuid.uuid4()).upper(), "ipconfig")
    assert (no_shell.value.code, no_shell.value.wsman_fault_code) == (500, 2150858843)
    assert no_shell.value.fault_subcode == "w:InvalidSelectors"
    # As recorded: a generic Reason, the shell's own words in the WSManFault Message.
    assert "invalid selectors for the resource" in no_shell.value.reason
    assert "shell was not found on the server" in no_shell.value.response

    with pytest.raises(WSManFaultError) as no_command:
        protocol.get_command_output_raw(shell_id, str(uuid.uuid4()).upper())
    assert no_command.value.wsman_fault_code == 2150858843
    assert "command identifier that does not exist" in no_command.value.response

    protocol.close_shell(shell_id)
    with pytest.raises(WSManFaultError) as deleted:
        protocol.run_command(shell_id, "ipconfig")
    assert deleted.value.wsman_fault_code == 2150858843


def test_malformed_xml_and_unknown_actions_are_refused(serve: Serve) -> None:
    server = serve()
    protocol = _protocol(server)
    with pytest.raises(WSManFaultError) as malformed:
        protocol.send_message("<env:Envelope><unclosed>")
    assert (malformed.value.code, malformed.value.wsman_fault_code) == (400, 2150858819)

    with pytest.raises(WSManFaultError) as unknown:
        _raw(protocol, "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate")
    assert (unknown.value.code, unknown.value.wsman_fault_code) == (500, 2150858771)
    assert unknown.value.fault_subcode == "a:ActionNotSupported"
    assert server.request_counts()["Malformed"] == 1


def test_fault_on_command_raises_wsman_fault_error(serve: Serve) -> None:
    server = serve(behaviour=Behaviour(fault_on={"Command": envelope.ACCESS_DENIED}))
    with pytest.raises(WSManFaultError) as caught:
        _session(server).run_ps("Get-Date")
    assert (caught.value.code, caught.value.wsman_fault_code) == (500, 5)
    assert caught.value.fault_subcode == "w:AccessDenied"
    assert caught.value.reason.strip() == "Access is denied."
    assert server.open_shells() == 1  # pywinrm never cleans up after a failed step


def test_latency_is_added_to_every_response(serve: Serve) -> None:
    server = serve(behaviour=Behaviour(latency=0.1))
    started = time.monotonic()
    _session(server).run_ps("x")
    assert 0.5 <= time.monotonic() - started < 2.0  # five requests


def test_hang_leads_to_a_read_timeout_and_stop_is_still_prompt(serve: Serve) -> None:
    server = serve(behaviour=Behaviour(hang_on=frozenset({"Receive"})))
    session = _session(server, read_timeout_sec=2, operation_timeout_sec=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.run_ps("x")
    session.protocol.transport.close_session()
    assert server.request_counts()["Receive"] == 1

    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0


def test_stop_drops_a_request_that_is_still_waiting(serve: Serve) -> None:
    server = serve(behaviour=Behaviour(hang=True))
    outcome: list[BaseException] = []

    def wait_forever() -> None:
        http = requests.Session()
        http.trust_env = False
        try:
            http.post(server.url, data=b"<x/>", auth=(USER, PASSWORD), timeout=30)
        except requests.RequestException as exc:
            outcome.append(exc)
        finally:
            http.close()

    client = threading.Thread(target=wait_forever)
    client.start()
    # A second, idle connection: its server thread sits waiting for a request line.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as idle:
        deadline = time.monotonic() + 5
        while not server.request_counts() and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.0
        client.join(5)
        assert not client.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], requests.exceptions.ConnectionError)
        # Closed by the server, not left hanging (a hang would raise the 5 s socket timeout).
        # Whether the kernel reports an orderly close or a reset depends on timing.
        try:
            closed = idle.recv(1) == b""
        except ConnectionResetError:
            closed = True
        assert closed


def test_reset_on_receive_is_a_connection_error_then_the_host_recovers(serve: Serve) -> None:
    server = serve(behaviour=Behaviour(reset_on_receive=1))
    session = _session(server)
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        session.run_ps("x")
    session.protocol.transport.close_session()
    assert "reset" in str(caught.value).lower()  # an RST, not an orderly close
    assert session.run_ps("again").std_out == b"ran: again\r\n"


def test_https_with_the_generated_certificate(serve: Serve, tmp_path: Path) -> None:
    certs = write_server_cert(tmp_path)
    server = serve(tls=certs)
    assert server.url.startswith("https://127.0.0.1:")

    trusted = _session(server, transport="ssl", ca_trust_path=str(certs.cert))
    assert trusted.run_ps("over tls").std_out == b"ran: over tls\r\n"

    untrusted = _session(server, transport="ssl", ca_trust_path=None)
    with pytest.raises(requests.exceptions.SSLError):
        untrusted.run_ps("x")
    untrusted.protocol.transport.close_session()


def _cert_session(server: WsmanServer, client: CertFiles, server_cert: CertFiles) -> winrm.Session:
    return _session(
        server,
        auth=("", ""),
        transport="certificate",
        cert_pem=str(client.cert),
        cert_key_pem=str(client.key),
        ca_trust_path=str(server_cert.cert),
    )


def test_tls_client_certificate_auth(serve: Serve, tmp_path: Path) -> None:
    server_cert = write_server_cert(tmp_path)
    mine = write_client_cert(tmp_path, USER, name="mine")
    other = write_client_cert(tmp_path, "mallory", name="other")
    stranger = write_client_cert(tmp_path, USER, name="stranger")
    trusted = tmp_path / "client-ca.pem"
    trusted.write_bytes(mine.cert.read_bytes() + other.cert.read_bytes())
    server = serve(tls=server_cert, client_ca=trusted)

    assert _cert_session(server, mine, server_cert).run_ps("cert").std_out == b"ran: cert\r\n"
    with pytest.raises(InvalidCredentialsError):
        _cert_session(server, other, server_cert).run_ps("x")
    refused = _cert_session(server, stranger, server_cert)
    with pytest.raises(requests.exceptions.ConnectionError):
        refused.run_ps("x")
    refused.protocol.transport.close_session()
    basic = _session(server, transport="ssl", ca_trust_path=str(server_cert.cert))
    assert basic.run_ps("basic").status_code == 0


def test_behaviour_rejects_unknown_operation_names() -> None:
    with pytest.raises(ValueError, match="Recieve"):
        Behaviour(hang_on=frozenset({"Recieve"}))


@pytest.mark.parametrize(
    ("line", "script"),
    [
        ("powershell -encodedcommand RwBlAHQALQBEAGEAdABlAA==", "Get-Date"),
        ("PowerShell.exe -NoProfile -EncodedCommand RwBlAHQALQBEAGEAdABlAA==", "Get-Date"),
        ("pwsh -ec RwBlAHQALQBEAGEAdABlAA==", "Get-Date"),
        ("powershell /enc RwBlAHQALQBEAGEAdABlAA==", "Get-Date"),
        ("powershell -Command Get-Date", None),
        ("cmd /c -encodedcommand RwBlAHQALQBEAGEAdABlAA==", None),
        ("powershell -encodedcommand not-base64!", None),
    ],
)
def test_decode_encoded_command(line: str, script: str | None) -> None:
    assert decode_encoded_command(line) == script


def test_output_streams_while_the_command_runs_then_done(serve: Serve) -> None:
    # Printed at once, then after 0.3 s; OperationTimeout PT20S lasts 0.1 s on this host.
    server = serve(
        lambda _r: CommandResult(
            stdout="bye\r\n", duration=0.3, output=((0.0, "stdout", "hi\r\n"), (0.0, "stderr", "w"))
        ),
        behaviour=Behaviour(operation_timeout_scale=0.005),
    )
    protocol = _protocol(server)
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "cmd.exe", ["/c", "slow.cmd"])
    first = protocol.get_command_output_raw(shell_id, command_id)
    assert first == (b"hi\r\n", b"w", -1, False)  # Running: no exit code yet
    with pytest.raises(WinRMOperationTimeoutError):
        protocol.get_command_output_raw(shell_id, command_id)
    time.sleep(0.25)
    assert protocol.get_command_output_raw(shell_id, command_id) == (b"bye\r\n", b"", 0, True)
    protocol.close_shell(shell_id)


def test_allow_unencrypted_off_refuses_basic_over_plain_http(serve: Serve, tmp_path: Path) -> None:
    server = serve(unencrypted=False)
    with pytest.raises(InvalidCredentialsError):
        _session(server).run_ps("x")
    assert server.request_counts() == {"Unauthorized": 1}
    over_tls = serve(unencrypted=False, tls=write_server_cert(tmp_path))
    session = _session(
        over_tls, transport="ssl", ca_trust_path=None, server_cert_validation="ignore"
    )
    assert session.run_ps("fine").std_out == b"ran: fine\r\n"


def test_content_type_and_envelope_sizes_are_checked_both_ways(serve: Serve) -> None:
    server = serve()
    protocol = _protocol(server)
    text, _ = _envelope(protocol, "Create", None, {"rsp:Shell": {}})
    http = requests.Session()
    http.trust_env = False
    plain = {"Content-Type": "text/xml"}
    refused = http.post(server.url, data=text.encode(), auth=(USER, PASSWORD), headers=plain)
    assert refused.status_code == 415
    padding = {
        "rsp:Shell": {"rsp:Environment": {"rsp:Variable": {"@Name": "X", "#text": "y" * 520_000}}}
    }
    big, _ = _envelope(protocol, "Create", None, padding)
    too_big = http.post(server.url, data=big.encode(), auth=(USER, PASSWORD), headers=SOAP)
    assert too_big.status_code == 413  # over MaxEnvelopeSizekb (500)
    http.close()

    header = protocol.build_wsman_header(
        action=envelope.ACTIONS["Create"],
        resource_uri=envelope.RESOURCE_CMD,
        shell_id=None,
        message_id=uuid.uuid4(),
    )
    header["env:Header"]["w:MaxEnvelopeSize"]["#text"] = "1000"  # a CreateResponse is larger
    header["env:Body"] = {"rsp:Shell": {}}
    with pytest.raises(WSManFaultError) as caught:
        protocol.send_message(xmltodict.unparse({"env:Envelope": header}))
    assert (caught.value.wsman_fault_code, caught.value.fault_subcode) == (
        2150858824,
        "w:EncodingLimit",
    )


def test_only_the_cmd_shell_is_served_and_powershell_remoting_is_refused_at_create(
    serve: Serve,
) -> None:
    server = serve()
    protocol = _protocol(server)
    uri = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"
    header = protocol.build_wsman_header(
        action=envelope.ACTIONS["Create"], resource_uri=uri, shell_id=None, message_id=uuid.uuid4()
    )
    header["env:Body"] = {"rsp:Shell": {}}
    with pytest.raises(WSManFaultError) as caught:
        protocol.send_message(xmltodict.unparse({"env:Envelope": header}))
    assert caught.value.wsman_fault_code == 2150858811
    assert f"The resource URI ({uri}) was not found" in caught.value.reason
    assert server.open_shells() == 0


def test_without_cmd_a_bare_program_name_is_not_found_and_a_path_is(serve: Serve) -> None:
    protocol = _protocol(serve())
    shell_id = protocol.open_shell()
    with pytest.raises(WSManFaultError) as caught:
        protocol.run_command(shell_id, "powershell.exe", ["Write-Host", "hi"], skip_cmd_shell=True)
    assert (caught.value.wsman_fault_code, caught.value.fault_code) == (2147942402, "s:Receiver")
    full = "C:\\Windows\\system32\\WindowsPowerShell\\v1.0\\powershell.exe"
    assert protocol.run_command(shell_id, full, ["Write-Host", "hi"], skip_cmd_shell=True)
    protocol.close_shell(shell_id)


def test_the_shell_echoes_its_working_directory_and_idle_timeout(serve: Serve) -> None:
    protocol = _protocol(serve())
    body = {"rsp:Shell": {"rsp:WorkingDirectory": "C:\\Windows", "rsp:IdleTimeOut": "PT60S"}}
    created, _ = _raw(protocol, "Create", body=body)
    assert created.findtext("s:Body/rsp:Shell/rsp:WorkingDirectory", namespaces=NS) == "C:\\Windows"
    assert created.findtext("s:Body/rsp:Shell/rsp:IdleTimeOut", namespaces=NS) == "PT60.000S"


def test_other_command_lines_get_cmd_exes_answers(serve: Serve) -> None:
    server = serve(ProbeResponder(dict))
    session = _session(server)
    missing = session.run_cmd("frobnicate.exe", ["--now"])
    assert (missing.status_code, missing.std_out) == (9009, b"")
    assert missing.std_err == (
        b"'frobnicate.exe' is not recognized as an internal or external command,\r\n"
        b"operable program or batch file.\r\n"
    )
    # As recorded in stderr_rc: cmd keeps the space before each operator.
    both = session.run_cmd("cmd.exe", ["/c echo out && echo err>&2 && exit 1"])
    assert (both.std_out, both.std_err, both.status_code) == (b"out \r\n", b"err \r\n", 1)
    assert session.run_cmd("cmd.exe", ["/c", "nosuch", "||", "echo", "fallback"]).std_out == (
        b"fallback\r\n"
    )
    failed_ps = session.run_ps("Get-Date")  # the simulated host runs only the probe
    assert failed_ps.status_code == 1 and failed_ps.std_err.startswith(ONLY_THE_PROBE.encode())
