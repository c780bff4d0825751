"""Real servers on loopback that notifications go to: SMTP (aiosmtpd) and HTTP webhooks."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from collector.simulator.certs import write_server_cert


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_context(directory: Path) -> ssl.SSLContext:
    files = write_server_cert(directory, "mail")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    return context


@dataclass
class Mailbox:
    """What an SMTP server received: parsed messages and the logins it saw."""

    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        self.messages.append(message_from_bytes(raw, policy=policy.default))
        return "250 OK"

    def html(self, index: int = -1) -> str:
        part = self.messages[index].get_body(("html",))
        assert part is not None
        return str(part.get_content())


class SmtpServer:
    """An aiosmtpd server on loopback: plain, STARTTLS or implicit TLS, with or without auth."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        security: str = "none",
        login: tuple[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.mailbox = Mailbox()
        self.port = port or free_port()
        self.security = security
        kwargs: dict[str, Any] = {}
        context = server_context(tmp_path) if security != "none" else None
        if security == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        if login is not None:
            expected = login

            def authenticate(
                server: Any, session: Any, envelope: Any, mechanism: str, data: Any
            ) -> AuthResult:
                assert isinstance(data, LoginPassword)
                got = (data.login.decode(), data.password.decode())
                self.mailbox.logins.append(got)
                return AuthResult(success=got == expected)

            kwargs.update(authenticator=authenticate, auth_required=True)
            # Over implicit TLS aiosmtpd does not know the session is encrypted: do not ask.
            kwargs["auth_require_tls"] = security == "starttls"
        self.controller = Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=context if security == "tls" else None,
            server_hostname="127.0.0.1",
            **kwargs,
        )

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.controller.stop()


@dataclass
class Hook:
    """What a webhook server received, and how it answers (200, 500, or hang)."""

    mode: str = "ok"
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    hang_seconds: float = 5.0


class WebhookServer:
    """A real HTTP server on loopback that records JSON POSTs."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.hook = Hook()
        hook = self.hook

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if hook.mode == "hang":
                    time.sleep(hook.hang_seconds)
                    return
                hook.paths.append(self.path)
                hook.bodies.append(json.loads(body))
                status = 500 if hook.mode == "500" else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
