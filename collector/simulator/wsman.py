"""A loopback WS-Management server that answers the real pywinrm like a Windows WinRM listener.

It serves POST /wsman over HTTP or HTTPS, checks Basic or TLS client-certificate auth on every
request, and NTLM (channel binding over HTTPS) or CredSSP once per connection, with sealed
messages over HTTP. It validates requests as WinRM does (unencrypted traffic over plain HTTP
refused unless AllowUnencrypted, the SOAP content type, MaxEnvelopeSizekb, the cmd shell's
ResourceURI only: PowerShell remoting is refused at Create), hands the WinRS operations to
collector.simulator.winrs and adds the Windows failure modes a Behaviour asks for (latency,
hangs, resets, faults, operation timeouts).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import logging
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from typing import Any, cast
from urllib.parse import urlsplit

from collector.simulator import credssp, ntlm
from collector.simulator import envelope as env
from collector.simulator.acceptor import ACCEPTOR
from collector.simulator.certs import CertFiles
from collector.simulator.credssp import CredsspConnection
from collector.simulator.ntlm import ACCOUNTS, NtlmConnection, certificate_binding
from collector.simulator.sealing import (
    RefusedWithToken,
    SealError,
    SessionContext,
    is_gss_token,
    sealed_protocol,
)
from collector.simulator.winrs import (
    DEFAULT_ENVELOPE,
    TOO_LONG,
    CommandHandler,
    CommandRequest,
    CommandResult,
    ShellFault,
    ShellLimits,
    WinrsShells,
    decode_encoded_command,
    encode_output,
)

__all__ = [
    "MUTUAL_AUTH",
    "TOO_LONG",
    "Behaviour",
    "CommandHandler",
    "CommandRequest",
    "CommandResult",
    "Exchange",
    "WsmanServer",
    "decode_encoded_command",
    "encode_output",
]

_LOG = logging.getLogger(__name__)
MUTUAL_AUTH = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
_NEGOTIATE = ("WWW-Authenticate", "Negotiate")
_BASIC = ("WWW-Authenticate", 'Basic realm="WSMAN"')
_CREDSSP = ("WWW-Authenticate", "CredSSP")
_KERBEROS = ("WWW-Authenticate", "Kerberos")  # offered beside Negotiate where Auth/Kerberos is on
_NTLM_SCHEMES = ("negotiate", "ntlm")  # requests_ntlm sends a raw NTLM token under either
_SESSION_SCHEMES = (*_NTLM_SCHEMES, "kerberos", "credssp")
_NEGOTIATE_MESSAGE = b"NTLMSSP\x00\x01\x00\x00\x00"  # MS-NLMP 2.2.1.1: a handshake starts
_SOAP = "application/soap+xml"


@dataclass(frozen=True, slots=True)
class Behaviour:
    """Per-server Windows limits and failure modes; operations are named Create, Receive, ..."""

    latency: float = 0.0  # seconds added before every response
    operation_timeout_scale: float = 1.0  # a Receive blocks OperationTimeout * this at most
    timeout_fault: bool = True  # False: answer Running with no output instead of fault 2150858793
    max_command_line: int | None = 8191  # cmd.exe's limit when WINRS_SKIP_CMD_SHELL is false
    max_envelope_size: int = DEFAULT_ENVELOPE  # response cap, besides the client's own
    hang: bool = False  # accept every request and never answer
    hang_on: frozenset[str] = frozenset()  # the same, for these operations only
    reset_on_receive: int = 0  # the first N Receive requests get a TCP RST instead of an answer
    fault_on: Mapping[str, env.WsmanFault] = field(default_factory=dict)
    # WinRM's service settings, at Windows' defaults: unencrypted messages over plain HTTP
    # (Basic without TLS) refused, requests up to 500 KB (winrm/config MaxEnvelopeSizekb).
    allow_unencrypted: bool = False
    max_envelope_size_kb: int = 500

    def __post_init__(self) -> None:
        """Reject operation names that would silently never match."""
        unknown = (set(self.hang_on) | set(self.fault_on)) - set(env.ACTIONS)
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}; use {sorted(env.ACTIONS)}")


@dataclass(frozen=True, slots=True)
class Exchange:
    """One answered request: its operation, HTTP status and response size in bytes."""

    operation: str
    status: int
    size: int
    sealed: bool = False  # the request and its answer travelled sealed (NTLM or CredSSP)


class _Abort(Exception):
    """The server is stopping: drop the connection without an answer."""


class _Reset(Exception):
    """Close the connection with a TCP RST."""


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class WsmanServer:
    """A simulated Windows host's WinRM listener on 127.0.0.1 (HTTP, or HTTPS given tls)."""

    def __init__(
        self,
        handler: CommandHandler,
        *,
        username: str = "vagrant",
        password: str = "vagrant",
        behaviour: Behaviour | None = None,
        tls: CertFiles | None = None,
        client_ca: Path | None = None,
        port: int = 0,
        machine: str = "WIN-SIMHOST",
        on_request: Callable[[str], None] | None = None,
        credssp: bool = False,
        keytab: Path | None = None,
    ) -> None:
        """Configure the listener.

        client_ca (PEM) enables TLS client-certificate auth; credssp offers CredSSP too, as
        `Enable-WSManCredSSP -Role Server` does (Windows leaves it off); keytab joins the host
        to a Kerberos realm: it accepts service tickets for the principals whose keys it holds.
        """
        self.username = username
        self._password = password
        self._ntlm_ready = False
        self.credssp = credssp
        self.keytab = keytab
        self._binding = certificate_binding(tls.cert) if tls is not None else None
        self.behaviour = behaviour or Behaviour()
        self.machine = machine
        self._on_request = on_request
        self._port = port
        self._tls: ssl.SSLContext | None = None
        if tls is not None:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(tls.cert, tls.key)
            if client_ca is not None:
                self._tls.verify_mode = ssl.CERT_OPTIONAL
                self._tls.load_verify_locations(cafile=client_ca)
        b = self.behaviour
        limits = ShellLimits(
            b.max_command_line, b.operation_timeout_scale, b.timeout_fault, b.max_envelope_size
        )
        self._shells = WinrsShells(handler, limits, self._pause, owner=username)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._exchanges: list[Exchange] = []
        self._resets_left = b.reset_on_receive
        self._stopping = threading.Event()
        self._listener: _Listener | None = None
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()

    @property
    def port(self) -> int:
        """Return the TCP port the server listens on (after start)."""
        if self._listener is None:
            raise RuntimeError("server not started")
        return int(self._listener.server_address[1])

    @property
    def url(self) -> str:
        """Return the endpoint URL, e.g. http://127.0.0.1:PORT/wsman."""
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}/wsman"

    def start(self) -> WsmanServer:
        """Bind and serve in a background thread."""
        if self._listener is not None or self._stopping.is_set():
            raise RuntimeError("a WsmanServer starts once")
        self._listener = _Listener(self, self._port)
        if self.keytab is not None:
            # Read the host's key now: MIT's keytab read is unsafe beside other GSSAPI calls.
            from collector.simulator.kerberos import acceptor_credentials

            acceptor_credentials(self.keytab)
        # NTLM and CredSSP need the account in pyspnego's credential file (one password per
        # name at a time). Without it the host offers Basic only, as with only Auth/Basic on.
        self._ntlm_ready = ACCOUNTS.add(self.username, self._password)
        if not self._ntlm_ready:
            _LOG.warning("%s: NTLM is off, its account holds another password here", self.url)
        ACCEPTOR.add(self._listener)
        return self

    def stop(self) -> None:
        """Stop serving, drop open (even hung) connections and wait briefly for their threads."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._stopping.set()
        if self._ntlm_ready:
            ACCOUNTS.release(self.username, self._password)
        ACCEPTOR.remove(listener)
        listener.server_close()
        with self._lock:
            connections, threads = list(self._connections), list(self._threads)
        for sock in connections:
            # The base-class shutdown cuts a TLS socket too, without touching its SSL state.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        deadline = time.monotonic() + 2.0
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> WsmanServer:
        """Start the server for a with block."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop the server at the end of a with block."""
        self.stop()

    def request_counts(self) -> dict[str, int]:
        """Return how many requests arrived per operation (plus Unauthorized and Malformed)."""
        with self._lock:
            return dict(self._counts)

    def exchanges(self) -> list[Exchange]:
        """Return every answered request in order."""
        with self._lock:
            return list(self._exchanges)

    def open_shells(self) -> int:
        """Return how many shells are open (created and not yet deleted)."""
        return self._shells.count()

    def _answer(
        self,
        authorised: bool,
        data: bytes,
        client_ip: str,
        sealed: bool = False,
        content_type: str | None = _SOAP,
    ) -> _Answer:
        if not authorised:
            return self._finish("Unauthorized", lambda: _Answer(401, b"", self._offers()))
        if not data:
            # pywinrm's first NTLM request over HTTP: an empty POST that only sets up sealing.
            return self._finish("Empty", lambda: _Answer(200, b""), sealed)
        if not sealed and not (content_type or "").lower().startswith(_SOAP):
            # HTTP.sys and WinRM take SOAP 1.2 only (ERROR_WSMAN_UNSUPPORTED_MEDIA, as 415).
            return self._finish("Unsupported", lambda: _Answer(415, b""), sealed)
        if len(data) > self.behaviour.max_envelope_size_kb * 1024:
            # Over MaxEnvelopeSizekb: 413, which clients report as "the request size exceeded
            # the configured MaxEnvelopeSize quota" (ansible.windows#391, masterzen/winrm#156).
            return self._finish("TooLarge", lambda: _Answer(413, b""), sealed)
        try:
            request = env.parse_request(data)
        except env.MalformedRequest as exc:
            _LOG.debug("malformed request: %s", exc)
            fault = env.build_fault(env.INVALID_XML, "", self.machine)
            return self._finish("Malformed", lambda: _Answer(400, fault), sealed)
        return self._finish(request.operation, lambda: self._dispatch(request, client_ip), sealed)

    def _offers(self) -> tuple[tuple[str, str], ...]:
        """Return the schemes a 401 offers: Basic only when the account file cannot take ours."""
        kerberos = (_KERBEROS,) if self.keytab is not None else ()
        if not self._ntlm_ready:
            return (*kerberos, _BASIC)
        return (_NEGOTIATE, *kerberos, _BASIC, *((_CREDSSP,) if self.credssp else ()))

    def _challenge(self, scheme: str, token: bytes) -> _Answer:
        """Answer a handshake token with the 401 that carries the next one.

        Recorded as "Negotiate" for NTLM (its CHALLENGE) and "CredSSP" for each CredSSP leg.
        """
        header = f"{scheme} {base64.b64encode(token).decode()}"
        operation = "CredSSP" if scheme.lower() == "credssp" else "Negotiate"
        return self._finish(operation, lambda: _Answer(401, b"", (("WWW-Authenticate", header),)))

    def _finish(
        self,
        operation: str,
        answer: Callable[[], _Answer],
        sealed: bool = False,
    ) -> _Answer:
        """Count, hang, answer, record and delay, as the Behaviour says (WinRS steps run late)."""
        with self._lock:
            self._counts[operation] += 1
        if self._on_request is not None:
            self._on_request(operation)
        if self.behaviour.hang or operation in self.behaviour.hang_on:
            self._pause(None)
        result = answer()
        with self._lock:
            self._exchanges.append(Exchange(operation, result.status, len(result.body), sealed))
        self._pause(self.behaviour.latency)
        return result

    def _dispatch(self, request: env.WsmanRequest, client_ip: str) -> _Answer:
        operation = request.operation
        if operation == "Receive":
            with self._lock:
                reset, self._resets_left = self._resets_left > 0, max(0, self._resets_left - 1)
            if reset:
                raise _Reset
        shells = self._shells
        steps: dict[str, Callable[[env.WsmanRequest], bytes]] = {
            "Create": lambda r: shells.create(r, self.url, client_ip),
            "Command": shells.command,
            "Send": shells.send,
            "Receive": shells.receive,
            "Signal": shells.signal,
            "Delete": shells.delete,
        }
        try:
            if (request.resource_uri or "").lower() != env.RESOURCE_CMD.lower():
                # Only the cmd shell is served; PowerShell remoting's session configurations
                # (.../powershell/Microsoft.PowerShell) are not there, as on a host without them.
                raise ShellFault(env.unknown_resource(request.resource_uri))
            fault = self.behaviour.fault_on.get(operation)
            if fault is not None:
                raise ShellFault(fault)
            step = steps.get(operation)
            if step is None:
                raise ShellFault(env.ACTION_NOT_SUPPORTED)
            body = step(request)
            if request.max_envelope_size is not None and len(body) > request.max_envelope_size:
                raise ShellFault(env.ENVELOPE_EXCEEDED)
            return _Answer(200, body)
        except ShellFault as exc:
            body = env.build_fault(exc.fault, request.message_id, self.machine)
            return _Answer(exc.fault.http_status, body)

    def _authorised(self, authorization: str | None, peer: Any) -> bool:
        if not authorization:
            return False
        if authorization.strip() == MUTUAL_AUTH:
            names = [
                v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"
            ]
            return bool(names) and names[0].casefold() == self.username.casefold()
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            raw = base64.b64decode(token.strip(), validate=True)
        except binascii.Error:
            return False
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")  # what requests sends for a non-ASCII str credential
        user, sep, password = text.partition(":")
        user_ok = user.casefold() == self.username.casefold()  # Windows account names ignore case
        return (
            bool(sep)
            and user_ok
            and hmac.compare_digest(password.encode(), self._password.encode())
        )

    def _pause(self, seconds: float | None) -> None:
        if (seconds is None or seconds > 0) and self._stopping.wait(seconds):
            raise _Abort


def _b64(token: bytes) -> str:
    return base64.b64encode(token).decode("ascii")


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    # A fleet's hosts are probed at once: room for the connections one epoll turn accepts.
    request_queue_size = 128

    def __init__(self, owner: WsmanServer, port: int) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup we neither need nor want to wait for.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        owner, sock = self.owner, cast(socket.socket, request)
        with owner._lock:
            owner._threads.add(threading.current_thread())
        try:
            sock.setblocking(True)  # the listener is non-blocking (collector.simulator.acceptor)
            # Headers and body go out in two writes; Nagle plus delayed ACK would stall ~40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if owner._tls is not None:
                sock = owner._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            with owner._lock:
                owner._connections.add(sock)
            if owner._stopping.is_set():  # accepted just as stop() took its snapshot
                return
            if isinstance(sock, ssl.SSLSocket):
                sock.settimeout(10.0)
                sock.do_handshake()
                sock.settimeout(None)
            _Handler(sock, client_address, self)
        except OSError as exc:  # handshake refused, peer vanished, or stop() cut the socket
            _LOG.debug("connection from %s ended: %s", client_address, exc)
        finally:
            with owner._lock:
                owner._connections.discard(sock)
                owner._threads.discard(threading.current_thread())
            if sock is not request:
                sock.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # NTLM or CredSSP authenticates the connection this handler serves, once.
    _session: SessionContext | None = None
    _mutual: tuple[str, str] | None = None  # the WWW-Authenticate that completes a handshake

    def version_string(self) -> str:
        """Name the server as Windows' HTTP.sys does."""
        return "Microsoft-HTTPAPI/2.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Log the request line and status only (never headers) at debug level."""
        _LOG.debug("%s " + format, self.client_address[0], *args)

    def do_POST(self) -> None:
        """Answer a WS-Management request."""
        owner = cast(_Listener, self.server).owner
        if self.headers.get("Transfer-Encoding"):  # pywinrm always sends Content-Length
            self.close_connection = True
            self._reply(_Answer(411, b""))
            return
        try:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        except ValueError:
            self._reply(_Answer(400, b""))
            return
        if urlsplit(self.path).path.lower() != "/wsman":
            self._reply(_Answer(404, b""))
            return
        authorization = (self.headers.get("Authorization") or "").strip()
        scheme, _, token = authorization.partition(" ")
        sealing = sealed_protocol(
            self.headers.get("Content-Type"), (ntlm.PROTOCOL, credssp.PROTOCOL)
        )
        try:
            if scheme.lower() in _SESSION_SCHEMES:
                challenge = self._session_step(owner, scheme, token.strip())
                if challenge is not None:
                    self._reply(challenge)
                    return
            session = self._session
            if session is not None and not session.complete:
                session = None
            if sealing is not None:
                if session is None or session.protocol != sealing:
                    raise SealError(f"a message sealed by {sealing} on a connection without it")
                data = session.unseal(data)
            peer = (
                self.connection.getpeercert()
                if isinstance(self.connection, ssl.SSLSocket)
                else None
            )
            authorised = session is not None or owner._authorised(authorization, peer)
            encrypted = sealing is not None or isinstance(self.connection, ssl.SSLSocket)
            if data and not encrypted and not owner.behaviour.allow_unencrypted:
                # AllowUnencrypted is off: Windows rejects the request as unauthorised.
                authorised = False
            answer = owner._answer(
                authorised,
                data,
                self.client_address[0],
                sealing is not None,
                self.headers.get("Content-Type"),
            )
        except SealError as exc:
            _LOG.debug("refused a sealed message: %s", exc)
            self.close_connection = True
            self._reply(_Answer(400, b""))
            return
        except _Abort:
            self.close_connection = True
            return
        except _Reset:
            self.close_connection = True
            linger = struct.pack("ii", 1, 0)  # on, 0 s: the close becomes an RST, not a FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.connection.close()
            return
        if sealing is not None and session is not None and answer.body:
            body, kind = session.seal(answer.body)
            answer = _Answer(answer.status, body, (*answer.headers, ("Content-Type", kind)))
        if self._mutual is not None:
            # Kerberos's AP-REP rides on the answer to the request that carried the ticket.
            mutual, self._mutual = self._mutual, None
            answer = _Answer(answer.status, answer.body, (*answer.headers, mutual))
        self._reply(answer)

    def _session_step(self, owner: WsmanServer, scheme: str, token: str) -> _Answer | None:
        """Take one handshake token (NTLM, Kerberos, CredSSP); return the 401 to answer, or None.

        None means authenticated: the request goes on, and Kerberos's AP-REP (in ``_mutual``)
        rides on its answer.
        """
        try:
            raw = base64.b64decode(token, validate=True)
        except binascii.Error:
            raw = b""
        lowered = scheme.lower()
        session = self._session
        try:
            if lowered != "credssp" and is_gss_token(raw):
                if owner.keytab is None:
                    raise SealError("this host is not joined to a Kerberos realm")
                from collector.simulator.kerberos import KerberosConnection  # needs gssapi

                session = KerberosConnection(owner.keytab, owner._binding)
                self._session = session
                reply = session.step(raw)
                if reply:
                    self._mutual = ("WWW-Authenticate", f"{scheme} {_b64(reply)}")
            else:
                # Refused before any context is built (CredSSP's would make a TLS key).
                if not owner._ntlm_ready:
                    raise SealError(f"{owner.username}: this password cannot be used with {scheme}")
                if lowered == "credssp":
                    if not owner.credssp:
                        raise SealError("CredSSP is not enabled on this host")
                    if not isinstance(session, CredsspConnection) or session.complete:
                        session = CredsspConnection()
                elif raw.startswith(_NEGOTIATE_MESSAGE) or not isinstance(session, NtlmConnection):
                    session = NtlmConnection(owner._binding)
                self._session = session
                reply = session.step(raw)
            if session.complete and session.user.casefold() != owner.username.casefold():
                raise SealError(f"{session.user} is not this host's account")
        except RefusedWithToken as exc:
            _LOG.debug("authentication refused: %s", exc)
            self._session = self._mutual = None
            if exc.token is None:
                return owner._answer(False, b"", self.client_address[0])
            # The KRB-ERROR says why (skew, a key it lacks), as the acceptor wrote it.
            refusal = (("WWW-Authenticate", f"{scheme} {_b64(exc.token)}"),)
            return owner._finish("Unauthorized", lambda: _Answer(401, b"", refusal))
        except SealError as exc:
            _LOG.debug("authentication refused: %s", exc)
            self._session = self._mutual = None
            return owner._answer(False, b"", self.client_address[0])
        if session.complete:
            return None
        return owner._challenge(scheme, reply or b"")

    def _other(self) -> None:
        self.close_connection = True
        found = urlsplit(self.path).path.lower() == "/wsman"
        self._reply(_Answer(405, b"", (("Allow", "POST"),)) if found else _Answer(404, b""))

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other

    def _reply(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        if answer.body and not any(name == "Content-Type" for name, _ in answer.headers):
            self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(answer.body)))
        if self.close_connection:
            # Say so: a client that keeps the connection would race the close on its next request.
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
