"""`collect` sends credentials only as the config allows, and refuses a config it cannot use."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from collector.cli import cli
from collector.exitcodes import ExitCode
from collector.simulator.responder import ProbeResponder
from collector.simulator.wsman import WsmanServer
from collector.store.database import create_store_engine
from tests.documents import probe_document

PASSWORD = "n1ghtly-S3cret"


class Listener:
    """A loopback TCP listener that records every byte that arrives and answers HTTP 401."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(1)
                data = b""
                try:
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        chunk = connection.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if data.startswith(b"POST"):
                        connection.sendall(
                            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n"
                        )
                except OSError:
                    pass
                self.received.append(data)

    def everything(self) -> bytes:
        return b"".join(self.received)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    monkeypatch.setenv("PF_TEST_USER", "portfleet")
    monkeypatch.setenv("PF_TEST_PASSWORD", PASSWORD)
    served = Listener()
    yield served
    served.stop()


def _collect(tmp_path: Path, host: dict[str, Any], **defaults: Any) -> Result:
    config = tmp_path / "config.yaml"
    body = {
        "defaults": {
            "credential": {"username_env": "PF_TEST_USER", "password_env": "PF_TEST_PASSWORD"},
            **defaults,
        },
        "probe": {"deadline_seconds": 5, "operation_timeout_seconds": 1},
        "collect": {"retries": 0},
        "hosts": [{"name": "dev-ws-01", **host}],
    }
    config.write_text(json.dumps(body), encoding="utf-8")
    db = tmp_path / "store.db"
    return CliRunner().invoke(
        cli, ["--db", str(db), "--config", str(config), "collect"], catch_exceptions=False
    )


def _attempts(tmp_path: Path) -> list[Any]:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}", writer=False)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT status, error_class, message FROM attempts")).all()
    engine.dispose()
    return list(rows)


def test_basic_to_an_http_address_is_refused_whatever_https_says(
    tmp_path: Path, listener: Listener
) -> None:
    address = f"http://127.0.0.1:{listener.port}/wsman"
    result = _collect(tmp_path, {"address": address, "transport": "basic"})  # https: default true
    assert result.exit_code == ExitCode.SOME_FAILED, result.output
    ((status, error_class, message),) = _attempts(tmp_path)
    assert (status, error_class) == ("failed", "auth")
    assert "would send the password in clear" in message and address in message
    assert listener.everything() == b""  # not even a connection carried anything


def test_basic_over_http_with_the_opt_in_is_sent_and_the_listener_sees_it(
    tmp_path: Path, listener: Listener
) -> None:
    """The same listener does record a Basic header when the host opted in (a live check)."""
    address = f"http://127.0.0.1:{listener.port}/wsman"
    host = {"address": address, "transport": "basic", "allow_unencrypted_basic": True}
    result = _collect(tmp_path, host)
    assert result.exit_code == ExitCode.SOME_FAILED, result.output
    assert b"Authorization: Basic " in listener.everything()
    assert _attempts(tmp_path)[0].error_class == "auth"  # the listener's 401


def test_an_https_address_with_https_false_is_sent_over_tls(
    tmp_path: Path, listener: Listener
) -> None:
    address = f"https://127.0.0.1:{listener.port}/wsman"
    result = _collect(tmp_path, {"address": address, "transport": "basic", "https": False})
    assert result.exit_code == ExitCode.SOME_FAILED, result.output
    received = listener.everything()
    assert received.startswith(b"\x16\x03")  # a TLS handshake record, not plain HTTP
    assert b"Authorization" not in received and PASSWORD.encode() not in received
    assert "in clear" not in _attempts(tmp_path)[0].message


def test_an_unset_credential_variable_is_a_config_error_before_any_host(
    tmp_path: Path, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PF_TEST_PASSWORD")
    address = f"http://127.0.0.1:{listener.port}/wsman"
    result = _collect(tmp_path, {"address": address})
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "environment variable PF_TEST_PASSWORD (password) is not set" in " ".join(
        result.stderr.split()
    )
    assert listener.everything() == b""
    assert not (tmp_path / "store.db").exists()


def test_relative_paths_in_a_config_are_relative_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector.config import load_config

    folder = tmp_path / "etc"
    folder.mkdir()
    config = folder / "config.yaml"
    config.write_text(
        "database: data/portfleet.db\n"
        "defaults: {ca_file: ca.pem, credential: {cert_pem: certs/me.pem}}\n"
        "hosts: [{name: a, ca_file: /abs/ca.pem}, {name: b, ca_file: sub/b.pem}]\n",
        encoding="utf-8",
    )
    (tmp_path / "elsewhere").mkdir()  # cron's working folder is anyone's guess
    monkeypatch.chdir(tmp_path / "elsewhere")
    loaded = load_config(Path("../etc/config.yaml"))
    assert Path(loaded.database or "").resolve() == folder / "data" / "portfleet.db"
    assert loaded.defaults.ca_file and loaded.defaults.ca_file.resolve() == folder / "ca.pem"
    cert = loaded.defaults.credential.cert_pem
    assert cert and cert.resolve() == folder / "certs" / "me.pem"
    resolved = [h.ca_file.resolve() for h in loaded.hosts if h.ca_file]
    assert resolved == [Path("/abs/ca.pem"), folder / "sub" / "b.pem"]


def _netstat(lines: int) -> str:
    rows = [
        f"  TCP    10.0.{i // 250 % 250}.{i % 250}:{1024 + i % 60000}    10.1.2.3:443    "
        f"ESTABLISHED     {1000 + i % 5000}"
        for i in range(lines)
    ]
    header = "\r\nActive Connections\r\n\r\n  Proto  Local Address  Foreign Address  State  PID\r\n"
    return header + "\r\n".join(rows) + "\r\n"


def test_parsing_counts_against_the_hosts_deadline_not_the_writers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A document that takes seconds to parse times its own host out; the others are stored."""
    monkeypatch.setenv("PF_TEST_USER", "portfleet")
    monkeypatch.setenv("PF_TEST_PASSWORD", PASSWORD)
    big = _netstat(300_000)  # about 7 s of parsing here: far past the deadline
    servers = []
    hosts = []
    for name in ("dev-ws-01", "dev-ws-02", "dev-ws-03"):

        def make(name: str = name) -> dict[str, Any]:
            document = probe_document()
            document["host"]["name"] = name.upper()
            document.pop("listeners")  # the listeners then come from the raw netstat text
            if name == "dev-ws-02":
                document["raw"]["netstat"] = big
            return document

        server = WsmanServer(ProbeResponder(make), username="portfleet", password=PASSWORD)
        servers.append(server.start())
        hosts.append({"name": name, "address": server.url})
    config = tmp_path / "config.yaml"
    body = {
        "defaults": {
            "https": False,
            "credential": {"username_env": "PF_TEST_USER", "password_env": "PF_TEST_PASSWORD"},
        },
        "probe": {"deadline_seconds": 2.5},
        "collect": {"concurrency": 3, "retries": 0},
        "hosts": hosts,
    }
    config.write_text(json.dumps(body), encoding="utf-8")
    try:
        result = CliRunner().invoke(
            cli,
            ["--db", str(tmp_path / "store.db"), "--config", str(config), "collect"],
            catch_exceptions=False,
        )
    finally:
        for server in servers:
            server.stop()
    assert result.exit_code == ExitCode.SOME_FAILED, result.output
    engine = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}", writer=False)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT host, status, error_class, message FROM v_attempts ORDER BY host")
        ).all()
    engine.dispose()
    assert [(r.host, r.status, r.error_class) for r in rows] == [
        ("dev-ws-01", "ok", None),
        ("dev-ws-02", "failed", "timeout"),
        ("dev-ws-03", "ok", None),
    ]
    assert "probe and parsing" in rows[1].message
