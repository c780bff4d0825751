"""The real pywinrm over real HTTP(S) to simulated hosts: the probe's trip and every failure."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import winrm

from collector.endpoint import Endpoint
from collector.framing import unframe_document
from collector.probe import probe_arguments, probe_script
from collector.simulator.certs import CertFiles, write_server_cert
from collector.simulator.envelope import ACCESS_DENIED
from collector.simulator.responder import METHOD_BLOCKED, ProbeResponder
from collector.simulator.wsman import Behaviour, WsmanServer
from collector.transport import TransportError
from collector.winrm import CONSTRAINED_MARKER, _trust, bootstrap_command, classify, run_probe
from tests.documents import probe_document

PASSWORD = "Pässw0rd!with'quote"
ARGUMENTS = probe_arguments(bind_sweep=True, sweep_udp=False, update_history_limit=500)
JAPANESE = (
    "\r\nプロトコル tcp ポート除外範囲\r\n\r\n開始ポート    終了ポート\r\n"
    "----------    --------\r\n     50000       50059     *\r\n"
)


def _document() -> dict[str, Any]:
    document = probe_document()
    document["raw"]["excluded_ipv6_tcp"] = JAPANESE
    return document


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return write_server_cert(tmp_path_factory.mktemp("certs"))


def _serve(
    behaviour: Behaviour | None = None,
    tls: CertFiles | None = None,
    sweep: float = 0.0,
    language_mode: str = "FullLanguage",
) -> tuple[WsmanServer, ProbeResponder]:
    responder = ProbeResponder(_document, sweep_seconds=sweep, language_mode=language_mode)
    # AllowUnencrypted on: the endpoints send Basic over plain HTTP (allow_unencrypted_basic).
    behaviour = replace(behaviour or Behaviour(), allow_unencrypted=True)
    server = WsmanServer(
        responder, username="portfleet", password=PASSWORD, behaviour=behaviour, tls=tls
    )
    return server.start(), responder


@pytest.fixture
def host() -> Iterator[tuple[WsmanServer, ProbeResponder]]:
    server, responder = _serve()
    yield server, responder
    server.stop()


def _endpoint(server: WsmanServer, password: str = PASSWORD, **changes: Any) -> Endpoint:
    values: dict[str, Any] = {
        "host": "dev-ws-01",
        "url": server.url,
        "transport": "basic",
        "username": "portfleet",
        "password": password,
        "operation_timeout": 2,
        # Basic over loopback HTTP lets these tests read every message the host gets.
        "allow_unencrypted_basic": True,
    }
    values.update(changes)
    return Endpoint(**values)


def _failure(endpoint: Endpoint, deadline_seconds: float = 10) -> TransportError:
    with pytest.raises(TransportError) as caught:
        run_probe(endpoint, probe_script(), ARGUMENTS, time.monotonic() + deadline_seconds)
    assert PASSWORD not in str(caught.value)
    return caught.value


def test_the_probe_arrives_intact_although_far_over_the_command_line_limit(
    host: tuple[WsmanServer, ProbeResponder],
) -> None:
    server, responder = host
    script = probe_script()
    assert (
        len(f"powershell -encodedcommand {'x' * (len(script.encode('utf-16-le')) * 4 // 3)}")
        > 8191 * 8
    )
    assert len(bootstrap_command(ARGUMENTS)) < 8191
    output = run_probe(_endpoint(server), script, ARGUMENTS, time.monotonic() + 10)
    assert responder.last_script == script
    assert output.exit_code == 0
    document = unframe_document(output.stdout)
    assert b'"dev-ws-01"' in document
    counts = server.request_counts()
    assert counts["Create"] == 1 and counts["Command"] == 1 and counts["Send"] >= 1
    assert counts["Signal"] == 1 and counts["Delete"] == 1 and server.open_shells() == 0


def test_japanese_text_survives_because_the_probe_switches_the_console_to_utf8(
    host: tuple[WsmanServer, ProbeResponder],
) -> None:
    server, _ = host
    output = run_probe(_endpoint(server), probe_script(), ARGUMENTS, time.monotonic() + 10)
    assert "プロトコル tcp ポート除外範囲" in unframe_document(output.stdout).decode("utf-8")
    # The same host, sent a probe that forgets the switch, loses the text to code page 437.
    careless = probe_script().replace("[Console]::OutputEncoding", "[Console]::Title")
    mangled = run_probe(_endpoint(server), careless, ARGUMENTS, time.monotonic() + 10)
    text = unframe_document(mangled.stdout).decode("utf-8")
    assert "プロトコル" not in text and "????? tcp" in text


def test_https_with_the_hosts_ca_and_slow_probes_through_operation_timeouts(
    certs: CertFiles,
) -> None:
    behaviour = Behaviour(operation_timeout_scale=0.1)
    server, _ = _serve(behaviour, tls=certs, sweep=0.6)
    try:
        endpoint = _endpoint(server, ca_file=str(certs.cert), operation_timeout=2)
        output = run_probe(endpoint, probe_script(), ARGUMENTS, time.monotonic() + 10)
        assert unframe_document(output.stdout)
        # The first module load's progress record (stderr, Running), then two Receives with
        # nothing within OperationTimeout.
        receives = [e.status for e in server.exchanges() if e.operation == "Receive"]
        assert receives[:3] == [200, 500, 500]
        untrusted = _failure(_endpoint(server))
        assert untrusted.error_class == "protocol" and "ca_file" in str(untrusted)
        ignored = run_probe(
            _endpoint(server, verify_tls=False), probe_script(), ARGUMENTS, time.monotonic() + 10
        )
        assert ignored.exit_code == 0
    finally:
        server.stop()


def test_a_wrong_password_is_an_auth_failure(host: tuple[WsmanServer, ProbeResponder]) -> None:
    server, _ = host
    failure = _failure(_endpoint(server, password="wrong"))
    assert failure.error_class == "auth" and not failure.transient
    assert "refused the credentials of portfleet" in str(failure)


def test_a_reset_connection_is_unreachable_and_transient() -> None:
    server, _ = _serve(Behaviour(reset_on_receive=1))
    try:
        failure = _failure(_endpoint(server))
        assert failure.error_class == "unreachable" and failure.transient
        again = run_probe(_endpoint(server), probe_script(), ARGUMENTS, time.monotonic() + 10)
        assert again.exit_code == 0
    finally:
        server.stop()


def test_a_fault_is_a_protocol_failure_and_the_shell_is_released() -> None:
    server, _ = _serve(Behaviour(fault_on={"Command": ACCESS_DENIED}))
    try:
        failure = _failure(_endpoint(server))
        assert failure.error_class == "protocol" and "fault 5" in str(failure)
        assert server.open_shells() == 0
    finally:
        server.stop()


def test_nobody_listening_is_unreachable(host: tuple[WsmanServer, ProbeResponder]) -> None:
    server, _ = host
    closed = server.url.replace(str(server.port), "9")
    failure = _failure(_endpoint(server, url=closed))
    assert failure.error_class == "unreachable" and "dev-ws-01" in str(failure)


def test_a_probe_that_fails_on_the_host_reports_its_exit_code(
    host: tuple[WsmanServer, ProbeResponder],
) -> None:
    server, _ = host
    output = run_probe(_endpoint(server), "Write-Output 'hello'", ARGUMENTS, time.monotonic() + 10)
    assert output.exit_code == 1 and b"only runs the portfleet probe" in output.stderr


class _WatchedEnviron(MutableMapping[str, str]):
    """os.environ, with every write remembered."""

    def __init__(self, real: MutableMapping[str, str]) -> None:
        self.real, self.writes = real, list[str]()

    def __getitem__(self, key: str) -> str:
        return self.real[key]

    def __setitem__(self, key: str, value: str) -> None:
        self.writes.append(key)
        self.real[key] = value

    def __delitem__(self, key: str) -> None:
        self.writes.append(key)
        del self.real[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.real)

    def __len__(self) -> int:
        return len(self.real)


def test_concurrent_probes_neither_use_nor_write_the_proxy_environment(
    host: tuple[WsmanServer, ProbeResponder], monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests#4997: its proxy look-up writes os.environ["no_proxy"] and deletes it again, which
    # raised KeyError under collect's thread pool. A proxy set here must not be used either.
    server, _ = host
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    watched = _WatchedEnviron(os.environ)
    monkeypatch.setattr(os, "environ", watched)
    script = probe_script()

    def probe(_: int) -> int:
        output = run_probe(_endpoint(server), script, ARGUMENTS, time.monotonic() + 20)
        return output.exit_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(probe, range(16))) == [0] * 16
    assert watched.writes == []


def test_a_host_that_refuses_ntlm_itself_is_an_auth_failure_unlike_an_os_permission_error(
    host: tuple[WsmanServer, ProbeResponder],
) -> None:
    endpoint = _endpoint(host[0], transport="ntlm")
    # requests_ntlm raises a bare PermissionError when Negotiate is offered and NTLM refused.
    refused = PermissionError("Access denied: Server did not respond with NTLM challenge token")
    error_class, message = classify(refused, endpoint)
    assert error_class == "auth" and "refused NTLM" in message
    denied = PermissionError(13, "Permission denied", "client.key")
    assert classify(denied, endpoint)[0] == "protocol"


def test_a_constrained_language_host_answers_the_bootstraps_guard_and_nothing_else() -> None:
    server, responder = _serve(language_mode="ConstrainedLanguage")
    try:
        output = run_probe(_endpoint(server), probe_script(), ARGUMENTS, time.monotonic() + 10)
        assert output.exit_code == 3
        assert output.stdout.strip() == CONSTRAINED_MARKER.encode()
        assert responder.probes_answered == 0
        # Without the guard, the first .NET call fails with PowerShell's own error.
        session = winrm.Session(
            server.url,
            auth=("portfleet", PASSWORD),
            transport="basic",
            proxy="",
            ca_trust_path=None,
        )
        careless = session.run_ps("$text = [Console]::In.ReadToEnd()")
        # pywinrm reads the error record's lines out of the CLIXML on stderr.
        assert careless.status_code == 1
        assert careless.std_err.startswith(METHOD_BLOCKED.strip().encode())
    finally:
        server.stop()


class _HandshakeDropper:
    """A TLS port that reads the client's hello, then closes (EOF) or resets the connection."""

    def __init__(self, reset: bool) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._reset = reset
        self.port = self._listener.getsockname()[1]
        self.hellos = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed: the test is over
                return
            with connection:
                if connection.recv(4096)[:1] == b"\x16":  # a TLS handshake record
                    self.hellos += 1
                if self._reset:  # linger 0: close sends RST instead of FIN
                    linger = struct.pack("ii", 1, 0)
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=5)


@pytest.mark.parametrize("reset", [False, True], ids=["eof", "reset"])
def test_a_handshake_the_host_drops_is_unreachable_and_does_not_blame_the_ca(
    certs: CertFiles, reset: bool
) -> None:
    dropper = _HandshakeDropper(reset)
    try:
        url = f"https://127.0.0.1:{dropper.port}/wsman"
        endpoint = Endpoint(
            host="dev-ws-01",
            url=url,
            transport="basic",
            username="portfleet",
            password=PASSWORD,
            operation_timeout=2,
            ca_file=str(certs.cert),
        )
        failure = _failure(endpoint)
    finally:
        dropper.close()
    assert dropper.hellos >= 1
    assert failure.error_class == "unreachable" and failure.transient, str(failure)
    assert "ca_file" not in str(failure) and "dev-ws-01" in str(failure)


def test_connections_to_new_hosts_do_not_load_the_ca_file_into_the_shared_context_again(
    certs: CertFiles,
) -> None:
    # requests hands the CA file to every pool; urllib3 would load it into the shared context
    # at each new connection (a host a night is a connection a host).
    _trust.cache_clear()
    status = os.stat(certs.cert)
    shared = _trust(str(certs.cert), status.st_mtime_ns, status.st_size)
    loads: list[object] = []
    load = shared.load_verify_locations

    def counted(*args: Any, **kwargs: Any) -> None:
        loads.append(args)
        load(*args, **kwargs)

    shared.load_verify_locations = counted  # type: ignore[method-assign]
    servers = [_serve(tls=certs)[0] for _ in range(3)]
    try:
        for server in servers:
            endpoint = _endpoint(server, ca_file=str(certs.cert))
            assert run_probe(endpoint, probe_script(), ARGUMENTS, time.monotonic() + 10).stdout
    finally:
        for server in servers:
            server.stop()
    assert _trust.cache_info().misses == 1 and not loads


def test_the_ca_file_is_read_once_and_still_refuses_what_it_does_not_vouch_for(
    certs: CertFiles, tmp_path: Path
) -> None:
    # Every host of a night is a new connection; the CA file behind them is read once.
    _trust.cache_clear()
    server, _ = _serve(tls=certs)
    try:
        for _ in range(3):
            endpoint = _endpoint(server, ca_file=str(certs.cert))
            assert run_probe(endpoint, probe_script(), ARGUMENTS, time.monotonic() + 10).stdout
        assert _trust.cache_info().misses == 1 and _trust.cache_info().hits >= 2
        # Another CA's file does not vouch for this host.
        stranger = write_server_cert(tmp_path, "stranger")
        refused = _failure(_endpoint(server, ca_file=str(stranger.cert)))
        assert refused.error_class == "protocol" and "ca_file" in str(refused)
    finally:
        server.stop()
    # A certificate that names another host does not pass for this one, though its CA is
    # trusted: the name is checked.
    elsewhere = write_server_cert(tmp_path, "elsewhere", dns_name="elsewhere.example")
    server, _ = _serve(tls=elsewhere)
    try:
        misnamed = _failure(_endpoint(server, ca_file=str(elsewhere.cert)))
        assert misnamed.error_class == "protocol", str(misnamed)
        assert "does not name the address" in str(misnamed) and "ca_file" not in str(misnamed)
        assert _trust.cache_info().misses == 3
    finally:
        server.stop()
