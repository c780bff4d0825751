"""CredSSP against the simulated hosts: real pywinrm and requests-credssp, pyspnego's acceptor."""

from __future__ import annotations

import gc
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
import spnego

from collector.endpoint import Endpoint
from collector.framing import unframe_document
from collector.probe import probe_arguments, probe_script
from collector.simulator.certs import write_server_cert
from collector.simulator.credssp import CredsspConnection
from collector.simulator.ntlm import ACCOUNTS
from collector.simulator.responder import ProbeResponder
from collector.simulator.sealing import SealError, split_parts
from collector.simulator.wsman import WsmanServer
from collector.transport import TransportError
from collector.winrm import run_probe
from tests.documents import probe_document

USER, PASSWORD = "portfleet", "Pässw0rd-credssp"
ARGUMENTS = probe_arguments(bind_sweep=True, sweep_udp=False, update_history_limit=500)
PART = 16 * 1024


def _large_document() -> dict[str, Any]:
    document = probe_document()
    # Text that does not compress, so the framed document stays well over 16 KB.
    noise = "".join(hashlib.sha256(str(i).encode()).hexdigest() + "\r\n" for i in range(1200))
    document["raw"]["netstat"] = (
        "  TCP    0.0.0.0:135    0.0.0.0:0    LISTENING    1044\r\n" + noise
    )
    return document


def _serve(servers: list[WsmanServer], **kw: Any) -> tuple[WsmanServer, ProbeResponder]:
    responder = ProbeResponder(_large_document)
    kw.setdefault("credssp", True)
    server = WsmanServer(responder, username=USER, password=PASSWORD, **kw).start()
    servers.append(server)
    return server, responder


def _endpoint(server: WsmanServer, password: str = PASSWORD, **changes: Any) -> Endpoint:
    values: dict[str, Any] = {
        "host": "dev-ws-01",
        "url": server.url,
        "transport": "credssp",
        "username": USER,
        "password": password,
        "operation_timeout": 2,
    }
    return Endpoint(**(values | changes))


# requests-credssp raises while it still holds the refused 401 response, whose connection then
# goes back to nobody: the socket is closed by the garbage collector, with a ResourceWarning.
# Collected here, so the warning lands in the test that caused it and nowhere else.
_LEAKS_ITS_401 = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _failure(endpoint: Endpoint) -> TransportError:
    with pytest.raises(TransportError) as caught:
        run_probe(endpoint, probe_script(), ARGUMENTS, time.monotonic() + 10)
    gc.collect()
    assert PASSWORD not in str(caught.value)
    return caught.value


def test_over_http_the_probe_and_its_document_travel_sealed(servers: list[WsmanServer]) -> None:
    server, responder = _serve(servers)
    script = probe_script()
    output = run_probe(_endpoint(server), script, ARGUMENTS, time.monotonic() + 10)
    assert responder.last_script == script
    assert b"0.0.0.0:135" in unframe_document(output.stdout)
    exchanges = server.exchanges()
    handshake = [
        e.operation
        for e in exchanges[: exchanges.index(next(e for e in exchanges if e.operation == "Empty"))]
    ]
    assert handshake[0] == "Unauthorized" and set(handshake[1:]) == {"CredSSP"}
    assert len(handshake) >= 4  # TLS, NTLM inside it, the key proofs, the delegated password
    winrs = exchanges[len(handshake) + 1 :]
    assert {e.operation for e in winrs} >= {"Create", "Command", "Send", "Receive", "Delete"}
    assert all(e.sealed and e.status == 200 for e in winrs)
    # The probe (sent in 48 KB pieces) and the document both cross 16 KB: several parts each
    # (sizes are of the plain messages).
    assert max(e.size for e in winrs if e.operation == "Receive") > 2 * PART


def test_over_https_nothing_is_sealed(servers: list[WsmanServer], tmp_path: Path) -> None:
    certs = write_server_cert(tmp_path)
    server, _ = _serve(servers, tls=certs)
    output = run_probe(
        _endpoint(server, ca_file=str(certs.cert)), probe_script(), ARGUMENTS, time.monotonic() + 10
    )
    assert output.exit_code == 0
    assert "CredSSP" in server.request_counts()
    assert not any(e.sealed for e in server.exchanges())


@_LEAKS_ITS_401
def test_a_wrong_password_is_an_auth_failure_with_the_hosts_status(
    servers: list[WsmanServer],
) -> None:
    server, _ = _serve(servers)
    failure = _failure(_endpoint(server, password="last-years-password"))
    assert failure.error_class == "auth"
    assert "refused the credentials of portfleet over CredSSP (status 0x" in str(failure)
    assert "Create" not in server.request_counts()


@_LEAKS_ITS_401
def test_a_host_without_credssp_is_an_auth_failure_that_says_how_to_enable_it(
    servers: list[WsmanServer],
) -> None:
    server, _ = _serve(servers, credssp=False)
    failure = _failure(_endpoint(server))
    assert failure.error_class == "auth"
    assert "Enable-WSManCredSSP -Role Server" in str(failure)
    assert server.request_counts() == {"Unauthorized": 1}


def test_sealed_parts_round_trip_and_a_tampered_one_is_refused() -> None:
    assert ACCOUNTS.add(USER, PASSWORD)
    try:
        client = spnego.client(USER, PASSWORD, hostname="dev-ws-01", protocol="credssp")
        host = CredsspConnection()
        token = client.step()
        while not host.complete:
            reply = host.step(token or b"")
            token = client.step(reply) if reply is not None else None
        assert client.complete and host.user == USER

        answer = b"<s:Envelope>" + b"a" * (2 * PART + 100) + b"</s:Envelope>"
        body, kind = host.seal(answer)
        assert kind.startswith("multipart/x-multi-encrypted;")
        parts = split_parts(body)
        assert [length for length, _, _ in parts] == [PART, PART, len(answer) - 2 * PART]
        assert b"".join(client.unwrap(sealed).data for _, _, sealed in parts) == answer

        request = _client_sealed(client, b"<s:Envelope>request</s:Envelope>")
        assert host.unseal(request) == b"<s:Envelope>request</s:Envelope>"
        tampered = bytearray(_client_sealed(client, b"<s:Envelope>again</s:Envelope>"))
        tampered[-30] ^= 0x01
        with pytest.raises(SealError, match="does not decrypt"):
            host.unseal(bytes(tampered))
    finally:
        ACCOUNTS.release(USER, PASSWORD)


def _client_sealed(client: spnego.ContextProxy, message: bytes) -> bytes:
    """Frame a message as pywinrm does for CredSSP (MS-WSMV 2.2.9.1.3), in one part."""
    wrapped = client.wrap_winrm(message)
    return (
        b"--Encrypted Boundary\r\n"
        b"\tContent-Type: application/HTTP-CredSSP-session-encrypted\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
        + str(len(message)).encode()
        + b"\r\n--Encrypted Boundary\r\n\tContent-Type: application/octet-stream\r\n"
        + len(wrapped.header).to_bytes(4, "little")
        + wrapped.header
        + wrapped.data
        + b"--Encrypted Boundary--\r\n"
    )
