"""NTLM, pywinrm's default transport, against the simulated hosts: real pywinrm, requests_ntlm."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import requests
import spnego
import winrm
from winrm.exceptions import InvalidCredentialsError

from collector.simulator.certs import write_server_cert
from collector.simulator.ntlm import ACCOUNTS, NtlmConnection
from collector.simulator.sealing import SealError
from collector.simulator.wsman import Behaviour, CommandRequest, CommandResult, WsmanServer

USER, PASSWORD = "portfleet", "Pässw0rd-ntlm"


def _echo(request: CommandRequest) -> CommandResult:
    return CommandResult(stdout=f"ran: {request.script}\r\n")


def _start(servers: list[WsmanServer], password: str = PASSWORD, **kw: Any) -> WsmanServer:
    server = WsmanServer(_echo, username=USER, password=password, **kw).start()
    servers.append(server)
    return server


def _session(server: WsmanServer, password: str = PASSWORD, **kw: Any) -> winrm.Session:
    kw.setdefault("ca_trust_path", None)
    return winrm.Session(server.url, auth=(USER, password), transport="ntlm", proxy="", **kw)


def test_over_http_every_message_after_the_handshake_is_sealed(
    servers: list[WsmanServer],
) -> None:
    server = _start(servers)
    script = "Write-Output 'é à ü'; " + "#" * 1000
    result = _session(server).run_ps(script)
    assert result.status_code == 0
    assert result.std_out.startswith(b"ran: Write-Output")
    exchanges = server.exchanges()
    assert [(e.operation, e.status) for e in exchanges[:3]] == [
        ("Unauthorized", 401),  # pywinrm's set-up POST, before any token
        ("Negotiate", 401),  # the CHALLENGE
        ("Empty", 200),  # the AUTHENTICATE, on that empty set-up POST
    ]
    winrs = exchanges[3:]
    assert [e.operation for e in winrs] == ["Create", "Command", "Receive", "Signal", "Delete"]
    assert all(e.sealed and e.status == 200 for e in winrs)


def test_over_https_the_certificate_is_bound_and_nothing_is_sealed(
    servers: list[WsmanServer], tmp_path: Path
) -> None:
    certs = write_server_cert(tmp_path)
    server = _start(servers, tls=certs)
    assert _session(server, ca_trust_path=str(certs.cert)).run_cmd("hostname").status_code == 0
    assert not any(e.sealed for e in server.exchanges())
    # A client that does not bind the TLS channel is refused, as CbtHardeningLevel=Strict does.
    with pytest.raises(InvalidCredentialsError):
        _session(server, ca_trust_path=str(certs.cert), send_cbt=False).run_cmd("hostname")


def test_a_wrong_password_is_refused_after_the_challenge(servers: list[WsmanServer]) -> None:
    server = _start(servers)
    with pytest.raises(InvalidCredentialsError):
        _session(server, password="last-years-password").run_cmd("hostname")
    assert server.request_counts() == {"Unauthorized": 2, "Negotiate": 1}


def test_a_second_password_for_the_same_account_leaves_that_host_basic_only(
    servers: list[WsmanServer],
) -> None:
    first = _start(servers)
    # AllowUnencrypted on, for the Basic-over-HTTP session below.
    second = _start(servers, password="another-one", behaviour=Behaviour(allow_unencrypted=True))
    offered = requests.post(second.url, data=b"<x/>", timeout=5).headers["WWW-Authenticate"]
    assert "Negotiate" not in offered and "Basic" in offered
    with pytest.raises(InvalidCredentialsError):
        _session(second, password="another-one").run_cmd("hostname")
    basic = winrm.Session(
        second.url, auth=(USER, "another-one"), transport="basic", proxy="", ca_trust_path=None
    )
    assert basic.run_cmd("hostname").status_code == 0
    assert _session(first).run_cmd("hostname").status_code == 0
    # Once the first host stops, the name is free for the other password.
    first.stop()
    second.stop()
    third = _start(servers, password="another-one")
    assert _session(third, password="another-one").run_cmd("hostname").status_code == 0


def test_the_account_file_is_in_memory_only_and_follows_every_change(
    servers: list[WsmanServer],
) -> None:
    server = _start(servers)
    path = Path(os.environ["NTLM_USER_FILE"])
    assert str(path).startswith("/proc/self/fd/")  # Linux: nothing on disk, even if killed
    assert f":{USER}:{PASSWORD}\n" in path.read_text(encoding="utf-8")
    server.stop()
    assert f":{USER}:" not in path.read_text(encoding="utf-8")
    assert _session(_start(servers)).run_cmd("hostname").status_code == 0


def test_sealed_messages_round_trip_and_a_tampered_one_is_refused() -> None:
    assert ACCOUNTS.add(USER, PASSWORD)
    try:
        client = spnego.client(USER, PASSWORD, protocol="ntlm")
        host = NtlmConnection(binding=None)
        challenge = host.step(client.step() or b"")
        assert challenge is not None and host.step(client.step(challenge) or b"") is None
        assert host.complete and host.user == USER

        body, kind = host.seal(b"<s:Envelope>answer</s:Envelope>")
        assert b"answer" not in body
        assert kind.startswith("multipart/encrypted;") and "HTTP-SPNEGO-session-encrypted" in kind
        wrapped = body.split(b"application/octet-stream\r\n")[1].split(b"--Encrypted")[0]
        assert client.unwrap(wrapped[4:]).data == b"<s:Envelope>answer</s:Envelope>"

        request = _client_sealed(client, b"<s:Envelope>request</s:Envelope>")
        assert host.unseal(request) == b"<s:Envelope>request</s:Envelope>"
        tampered = bytearray(_client_sealed(client, b"<s:Envelope>again</s:Envelope>"))
        tampered[-30] ^= 0x01
        with pytest.raises(SealError, match="does not verify"):
            host.unseal(bytes(tampered))
    finally:
        ACCOUNTS.release(USER, PASSWORD)


def _client_sealed(client: spnego.ContextProxy, message: bytes) -> bytes:
    """Frame a message as pywinrm does (MS-WSMV 2.2.9.1.1), sealed by the client context."""
    wrapped = client.wrap(message, encrypt=True).data
    return (
        b"--Encrypted Boundary\r\n"
        b"\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
        + str(len(message)).encode()
        + b"\r\n--Encrypted Boundary\r\n\tContent-Type: application/octet-stream\r\n"
        + len(wrapped[:16]).to_bytes(4, "little")
        + wrapped
        + b"--Encrypted Boundary--\r\n"
    )
