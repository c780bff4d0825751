"""One acceptor thread serves every simulated listener: hosts cost no thread while idle."""

from __future__ import annotations

import socket
import threading

import pytest
import winrm

from collector.simulator.wsman import Behaviour, CommandRequest, CommandResult, WsmanServer

USER, PASSWORD = "vagrant", "S3cret-pw"
PLAIN = Behaviour(allow_unencrypted=True)  # Basic over HTTP, as a lab host allows


def _named(request: CommandRequest) -> CommandResult:
    return CommandResult(stdout=f"ran: {request.script}\r\n")


def _run(server: WsmanServer, script: str) -> bytes:
    # proxy=None and no CA path keep pywinrm off this machine's proxy and CA environment.
    session = winrm.Session(
        server.url, auth=(USER, PASSWORD), transport="basic", proxy=None, ca_trust_path=None
    )
    return session.run_ps(script).std_out


def test_many_idle_listeners_share_one_thread_and_each_answers_for_itself() -> None:
    before = threading.active_count()
    servers = [
        WsmanServer(
            _named, username=USER, password=PASSWORD, behaviour=PLAIN, machine=f"H{n}"
        ).start()
        for n in range(60)
    ]
    try:
        # At most the acceptor itself is new, whatever the number of hosts.
        assert threading.active_count() - before <= 1
        assert len({server.port for server in servers}) == 60
        for server in (servers[0], servers[31], servers[-1]):
            assert _run(server, "Write-Output 1") == b"ran: Write-Output 1\r\n"
            assert server.request_counts()["Command"] == 1
        assert servers[1].request_counts().get("Command", 0) == 0
    finally:
        for server in servers:
            server.stop()


def test_a_stopped_listener_refuses_and_the_others_go_on() -> None:
    first = WsmanServer(_named, username=USER, password=PASSWORD, behaviour=PLAIN).start()
    second = WsmanServer(_named, username=USER, password=PASSWORD, behaviour=PLAIN).start()
    port = first.port
    first.stop()
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert _run(second, "Get-Date") == b"ran: Get-Date\r\n"
    finally:
        second.stop()


def test_a_client_that_connects_and_vanishes_stalls_no_other_host() -> None:
    quiet = WsmanServer(_named, username=USER, password=PASSWORD, behaviour=PLAIN).start()
    busy = WsmanServer(_named, username=USER, password=PASSWORD, behaviour=PLAIN).start()
    try:
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", quiet.port), timeout=5)
            # RST instead of FIN: the connection is gone before (or while) it is accepted.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            sock.close()
        assert _run(busy, "hostname") == b"ran: hostname\r\n"
        assert _run(quiet, "hostname") == b"ran: hostname\r\n"
    finally:
        quiet.stop()
        busy.stop()
