"""The WinRM transport: the probe over pywinrm, within a deadline, whatever its size.

pywinrm's ``run_ps`` puts the whole encoded script on the command line, which cmd.exe cuts at
8191 characters, and it loops on Receive forever. So the probe travels on stdin instead: a short
bootstrap (well under the limit) reads base64 text from stdin and runs it as a script block,
and the Receive loop stops at the host's deadline.

Every failure becomes a ``TransportError`` with an error class (auth, unreachable, timeout,
protocol, probe_error) and a message that never holds a password. Where and as whom a host is
reached is ``collector.endpoint``'s; this is the only module that imports pywinrm.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib.util
import logging
import os
import re
import ssl
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.ssl_ import create_urllib3_context
from winrm import transport as winrm_transport
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from collector import kerberos
from collector.config import HostEntry, PortfleetConfig
from collector.endpoint import Endpoint, build_endpoint, host_url, refuse_plain_basic
from collector.transport import ProbeOutput, SelectionError, TransportError

try:  # the credssp extra; without it collect refuses credssp hosts before any exchange
    from requests_credssp.exceptions import AuthenticationException, NTStatusException

    _CREDSSP_ERRORS: tuple[type[Exception], ...] = (AuthenticationException, NTStatusException)
except ImportError:
    _CREDSSP_ERRORS = ()
try:  # pywinrm's own copy of requests_kerberos, importable only with pykerberos there
    from winrm.vendor.requests_kerberos.exceptions import (
        KerberosExchangeError,
        MutualAuthenticationError,
    )

    _KERBEROS_ERRORS: tuple[type[Exception], ...] = (KerberosExchangeError,)
    _MUTUAL_ERRORS: tuple[type[Exception], ...] = (MutualAuthenticationError,)
except ImportError:
    _KERBEROS_ERRORS = _MUTUAL_ERRORS = ()

log = logging.getLogger(__name__)

# Send stdin in pieces well inside a host's MaxEnvelopeSize (150 KiB on older hosts).
STDIN_CHUNK = 48 * 1024
CONSTRAINED_MARKER = "PORTFLEET-PROBE-ERROR constrained_language"
# Transports pywinrm supports only with an extra installed; it records which imported.
_EXTRAS = {
    "kerberos": (
        "HAVE_KERBEROS",
        "pykerberos and gssapi build against MIT Kerberos: apt-get install gcc libkrb5-dev",
    ),
    "credssp": ("HAVE_CREDSSP", "requests-credssp"),
}


class WinrmTransport:
    """Run the probe over WinRM, each host reached as the config says (see ``build_endpoint``).

    Credentials are read from ``environ`` (the process's environment when None) at each try.
    """

    kind = "winrm"

    def __init__(self, config: PortfleetConfig, environ: Mapping[str, str] | None = None) -> None:
        self._config, self._environ = config, environ

    def check(self, hosts: Sequence[HostEntry]) -> None:
        """Refuse missing extras, then unset credential variables, before any host is reached."""
        check_extras(self._config, hosts)
        check_credentials(self._config, hosts, self._environ)

    def where(self, host: HostEntry) -> str:
        """Return the URL ``host`` is reached at."""
        settings = host.settings(self._config.defaults)
        return host_url(host, settings.https, settings.port)

    def run(
        self, host: HostEntry, script: str, arguments: dict[str, Any], deadline: float
    ) -> ProbeOutput:
        """Resolve ``host``'s endpoint and run the probe there before ``deadline``."""
        output = run_probe(
            build_endpoint(host, self._config, self._environ), script, arguments, deadline
        )
        if CONSTRAINED_MARKER.encode() in output.stdout:
            raise TransportError(
                "probe_error",
                f"{host.name}: PowerShell runs in ConstrainedLanguage mode (AppLocker/WDAC) for "
                "this account; allow the probe (sign it, or an exemption for the collecting "
                "account) or run it from a scheduled task as SYSTEM and import its file",
            )
        return output


def check_extras(config: PortfleetConfig, hosts: Sequence[HostEntry]) -> None:
    """Refuse, before reaching any host, transports or keyrings whose packages are missing."""
    needs: dict[tuple[str, str], list[str]] = {}  # (what needs it, the extra) -> hosts
    for entry in hosts:
        settings = entry.settings(config.defaults)
        transport = settings.transport
        flag, _ = _EXTRAS.get(transport, ("", ""))
        # Kerberos's extra is pykerberos (pywinrm's) and python-gssapi (our own tickets).
        gssapi_missing = transport == "kerberos" and importlib.util.find_spec("gssapi") is None
        if flag and (not getattr(winrm_transport, flag, False) or gssapi_missing):
            needs.setdefault((f"transport {transport}", transport), []).append(entry.name)
        if settings.credential.keyring_service and importlib.util.find_spec("keyring") is None:
            needs.setdefault(("keyring_service", "keyring"), []).append(entry.name)
    if needs:
        raise SelectionError(
            "; ".join(_needs(what, extra, names) for (what, extra), names in sorted(needs.items()))
        )


def check_credentials(
    config: PortfleetConfig, hosts: Sequence[HostEntry], environ: Mapping[str, str] | None = None
) -> None:
    """Refuse, before reaching any host, credential variables that are not set.

    An unset variable is the same mistake for every host that names it: one configuration
    error, not an ``auth`` failure recorded per host.
    """
    environ = os.environ if environ is None else environ
    unset: dict[tuple[str, str], list[str]] = {}  # (variable, what it holds) -> hosts
    for entry in hosts:
        credential = entry.settings(config.defaults).credential
        wanted = []
        if credential.username is None and credential.username_env:
            wanted.append((credential.username_env, "user name"))
        if credential.password_env:
            wanted.append((credential.password_env, "password"))
        for variable, what in wanted:
            if not environ.get(variable) and (what == "user name" or variable not in environ):
                unset.setdefault((variable, what), []).append(entry.name)
    if unset:
        raise SelectionError(
            "; ".join(
                f"environment variable {variable} ({what}) is not set, needed by {_shown(names)}"
                for (variable, what), names in sorted(unset.items())
            )
            + ". Set it in the environment collect runs in (see README, Collecting every night)"
        )


def _shown(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _needs(what: str, extra: str, names: list[str]) -> str:
    shown = _shown(names)
    note = f" ({_EXTRAS[extra][1]})" if extra in _EXTRAS else ""
    return f"{what} for {shown} needs pip install 'portfleet[{extra}]'{note}"


def bootstrap_command(arguments: dict[str, Any]) -> str:
    """Return the short command line that reads the probe from stdin and runs it."""
    splat = "; ".join(f"{name} = {_ps_literal(value)}" for name, value in sorted(arguments.items()))
    script = (
        "$ProgressPreference = 'SilentlyContinue'\n"
        # Constrained language (AppLocker, WDAC) forbids every .NET call below: say so plainly.
        "if ([string]$ExecutionContext.SessionState.LanguageMode -ne 'FullLanguage') {\n"
        f"  Write-Output '{CONSTRAINED_MARKER}'; exit 3\n"
        "}\n"
        "$payload = [Console]::In.ReadToEnd() -replace '\\s', ''\n"
        "$text = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($payload))\n"
        f"$arguments = @{{ {splat} }}\n"
        "& ([scriptblock]::Create($text)) @arguments\n"
    )
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return f"powershell.exe -NoProfile -NonInteractive -EncodedCommand {encoded}"


def stdin_payload(script: str) -> bytes:
    """Return the probe as the bootstrap expects it on stdin: base64 of its UTF-8, in lines."""
    encoded = base64.b64encode(script.encode("utf-8")).decode("ascii")
    return (
        "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)).encode("ascii")
        + b"\r\n"
    )


def run_probe(
    endpoint: Endpoint, script: str, arguments: dict[str, Any], deadline: float
) -> ProbeOutput:
    """Run the probe on ``endpoint``; ``deadline`` is a ``time.monotonic()`` instant."""
    try:
        with _tickets(endpoint):
            return _exchange(endpoint, script, arguments, deadline)
    except TransportError as exc:
        raise TransportError(exc.error_class, redact(str(exc), endpoint.secrets)) from None
    except Exception as exc:  # every library error is classified here, once
        error_class, message = classify(exc, endpoint)
        raise TransportError(error_class, redact(message, endpoint.secrets)) from None


def redact(message: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret in ``message`` (defence in depth: none should be there)."""
    for secret in secrets:
        message = message.replace(secret, "***")
    return message


def classify(exc: BaseException, endpoint: Endpoint) -> tuple[str, str]:
    """Map a pywinrm or requests error to an error class and an operator's message."""
    where = f"{endpoint.host} ({endpoint.url})"
    if isinstance(exc, InvalidCredentialsError) and endpoint.transport == "kerberos":
        return "auth", _kerberos_refusal(endpoint, exc)
    if isinstance(exc, InvalidCredentialsError):
        return (
            "auth",
            f"{where} refused the credentials of {endpoint.username or 'the configured user'}; "
            "check them",
        )
    if isinstance(exc, _KERBEROS_ERRORS):
        return "auth", f"{where}: " + kerberos.explain_local(
            str(exc), endpoint.spn, endpoint.username
        )
    if isinstance(exc, _MUTUAL_ERRORS):
        return (
            "auth",
            f"{where} did not prove it holds the key of {endpoint.spn} (Kerberos mutual "
            "authentication failed): it may not be the host of that name; check DNS and the SPN",
        )
    if isinstance(exc, PermissionError) and exc.errno is None:
        # requests_ntlm's own (no errno, unlike the OS's): the host offered Negotiate, then
        # answered NTLM's first message without a challenge.
        return (
            "auth",
            f"{where} offered Negotiate but refused NTLM (restricted by policy?); "
            "use transport kerberos for it",
        )
    if isinstance(exc, _CREDSSP_ERRORS):
        status = getattr(exc, "status", None)  # NTStatusException: the host's NTSTATUS
        if isinstance(status, int):
            return (
                "auth",
                f"{where} refused the credentials of {endpoint.username or 'the configured user'} "
                f"over CredSSP (status 0x{status:08X}); check them",
            )
        return (
            "auth",
            f"{where} did not complete CredSSP ({_short(exc)}); is it enabled there "
            "(Enable-WSManCredSSP -Role Server)? Otherwise use transport ntlm",
        )
    if isinstance(exc, requests.exceptions.SSLError) and _dropped_in_handshake(exc):
        return (
            "unreachable",
            f"{where} closed the connection during the TLS handshake ({_short(exc)}); "
            "an overloaded host or network does that, so it is tried again",
        )
    if isinstance(exc, requests.exceptions.SSLError) and _misnamed(exc):
        return (
            "protocol",
            f"{where}: TLS failed ({_short(exc)}); its certificate does not name the address "
            "used: reach it by a name its certificate carries (the host's address:)",
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return (
            "protocol",
            f"{where}: TLS failed ({_short(exc)}); trust its CA with ca_file, or verify_tls: false",
        )
    if isinstance(exc, requests.exceptions.ReadTimeout | requests.exceptions.ConnectTimeout):
        return "timeout", f"{where} did not answer in time"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "unreachable", f"{where} is unreachable: {_short(exc)}"
    if isinstance(exc, WSManFaultError):
        return (
            "protocol",
            f"{where} answered with WS-Management fault {exc.wsman_fault_code}: {exc.reason}",
        )
    if isinstance(exc, WinRMTransportError):
        return "protocol", f"{where} answered HTTP {exc.code}; is WinRM listening at that URL?"
    if isinstance(exc, WinRMError):
        return "protocol", f"{where}: {_short(exc)}"
    return "protocol", f"{where}: unexpected {type(exc).__name__}: {_short(exc)}"


def _tickets(endpoint: Endpoint) -> AbstractContextManager[None]:
    """Point this thread at the ticket portfleet gets itself, where the config says so."""
    if not endpoint.own_tickets or not endpoint.username:
        return contextlib.nullcontext()
    return kerberos.TICKETS.used_by_this_thread(
        endpoint.username, keytab=endpoint.keytab, password=endpoint.password
    )


def _exchange(
    endpoint: Endpoint, script: str, arguments: dict[str, Any], deadline: float
) -> ProbeOutput:
    protocol = _protocol(endpoint)
    try:
        return _converse(protocol, endpoint, script, arguments, deadline)
    finally:
        # Close the connection now rather than whenever the garbage collector gets to it.
        protocol.transport.close_session()


def _converse(
    protocol: Protocol,
    endpoint: Endpoint,
    script: str,
    arguments: dict[str, Any],
    deadline: float,
) -> ProbeOutput:
    shell_id = protocol.open_shell(codepage=437)
    command_id = None
    requests_made = 1
    try:
        command_id = protocol.run_command(
            shell_id, bootstrap_command(arguments), console_mode_stdin=False
        )
        requests_made += 1
        payload = stdin_payload(script)
        for start in range(0, len(payload), STDIN_CHUNK):
            chunk = payload[start : start + STDIN_CHUNK]
            protocol.send_command_input(
                shell_id, command_id, chunk, end=start + STDIN_CHUNK >= len(payload)
            )
            requests_made += 1
        stdout, stderr = bytearray(), bytearray()
        while True:
            if time.monotonic() > deadline:
                raise TransportError(
                    "timeout", f"{endpoint.host}: the probe did not finish before its deadline"
                )
            requests_made += 1
            try:
                out, err, exit_code, done = protocol.get_command_output_raw(shell_id, command_id)
            except WinRMOperationTimeoutError:
                continue  # no output within OperationTimeout: ask again (MS-WSMV 3.1.4.14)
            stdout += out
            stderr += err
            if done:
                break
    except (WinRMError, WinRMTransportError):
        # The host answered but refused something: it still holds the shell, so free it.
        _close_quietly(protocol, shell_id, command_id)
        raise
    _close_quietly(protocol, shell_id, command_id)
    return ProbeOutput(bytes(stdout), bytes(stderr), exit_code, requests_made + 2)


def _protocol(endpoint: Endpoint) -> Protocol:
    # The last word before anything is sent.
    refuse_plain_basic(
        endpoint.host, endpoint.url, endpoint.transport, endpoint.allow_unencrypted_basic
    )
    read_timeout = endpoint.operation_timeout + 10
    protocol = Protocol(
        endpoint=endpoint.url,
        transport=endpoint.transport,  # type: ignore[arg-type]
        username=endpoint.username,
        password=endpoint.password,
        server_cert_validation="validate" if endpoint.verify_tls else "ignore",
        # An explicit trust (the CA file, or requests' own bundle) instead of pywinrm's
        # deprecated reading of REQUESTS_CA_BUNDLE.
        ca_trust_path=endpoint.ca_file or None,  # type: ignore[arg-type]
        cert_pem=endpoint.cert_pem,
        cert_key_pem=endpoint.cert_key_pem,
        read_timeout_sec=read_timeout,
        operation_timeout_sec=endpoint.operation_timeout,
        kerberos_hostname_override=endpoint.spn_host,
        # WinRM inside a LAN never goes through a web proxy. An empty proxy says "direct" and,
        # unlike proxy=None (no_proxy="*"), never makes requests write os.environ["no_proxy"]
        # and delete it again: that races between threads (psf/requests#4997, KeyError
        # 'no_proxy' under collect's pool).
        proxy="",
    )
    # Built now, the session then stops reading proxy variables on every request.
    session = protocol.transport.build_session()
    session.trust_env = False
    session.mount("https://", _SharedTrust())
    return protocol


class _SharedTrust(HTTPAdapter):
    """Verify against a CA file read once per process, not once per connection.

    Given a CA file, requests has urllib3 build a TLS context and load the file for every new
    connection: a host a night is a connection a host, 1.4 ms of CPU each. The context made
    here verifies the same way (urllib3's own context with the file's CAs: certificate required,
    the host name checked). A connection with a client certificate keeps its own context: urllib3
    loads the certificate into the context it is given, which must not be a shared one.
    """

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
        path = pool.get("ca_certs")
        if path is not None and "cert_file" not in pool:
            status = os.stat(path)  # a CA file replaced in place is read again
            pool["ssl_context"] = _trust(str(path), status.st_mtime_ns, status.st_size)
            del pool["ca_certs"]
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """Keep a pool on the shared context from loading the CA file into it again.

        requests sets the file on the pool before every request, and urllib3 then loads it
        into the context of every new connection (0.7-1.4 ms of CPU each): the shared context
        holds it already. Verification is still required (``cert_reqs``), as requests set it.
        """
        super().cert_verify(conn, url, verify, cert)
        if conn.conn_kw.get("ssl_context") in _SHARED:
            conn.ca_certs = conn.ca_cert_dir = None


@functools.lru_cache(maxsize=8)
def _trust(path: str, _mtime_ns: int, _size: int) -> ssl.SSLContext:
    """Return a TLS context that trusts the CAs of ``path`` (cached by its path and version).

    Built as urllib3 builds one for each connection, so it verifies exactly the same way.
    """
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_verify_locations(cafile=path)
    _SHARED.add(context)
    return context


# The contexts ``_trust`` made: each holds its CA file already (see ``cert_verify``).
_SHARED: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()


_NEGOTIATE_TOKEN = re.compile(r"(?:Negotiate|Kerberos)\s+([A-Za-z0-9+/]+=*)")


def _kerberos_refusal(endpoint: Endpoint, exc: InvalidCredentialsError) -> str:
    """Say why a host refused a Kerberos ticket, from the 401s pywinrm turned into ``exc``.

    pywinrm raises it while handling requests' HTTPError, whose response (and its history, the
    first 401 that answered the ticket) carries the KRB-ERROR and the host's Date.
    """
    failed = getattr(exc.__context__, "response", None)
    answers = [*failed.history, failed] if isinstance(failed, requests.Response) else []
    token, date = None, None
    for answer in answers:
        date = date or answer.headers.get("Date")
        found = _NEGOTIATE_TOKEN.search(answer.headers.get("WWW-Authenticate", ""))
        if found and token is None:
            token = base64.b64decode(found.group(1))
    reason = kerberos.explain_refusal(endpoint.spn, endpoint.username, token, date)
    return f"{endpoint.host} ({endpoint.url}): {reason}"


def _close_quietly(protocol: Protocol, shell_id: str, command_id: str | None) -> None:
    """Signal and delete the shell so the host does not keep it until it idles out."""
    try:
        if command_id is not None:
            protocol.cleanup_command(shell_id, command_id)
        protocol.close_shell(shell_id)
    except Exception as exc:  # the probe's result is already in hand
        log.debug("closing the shell failed: %s", type(exc).__name__)


def _ps_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, int):
        return str(value)
    text = str(value).replace("'", "''")
    return f"'{text}'"


def _dropped_in_handshake(exc: BaseException) -> bool:
    """Tell a handshake the other end cut (EOF, reset) from one it refused (certificate)."""
    for item in _chain(exc):
        if isinstance(item, ssl.SSLCertVerificationError):
            return False
        if isinstance(item, ssl.SSLEOFError | ssl.SSLZeroReturnError | ConnectionResetError):
            return True
    return False


def _misnamed(exc: BaseException) -> bool:
    """Tell a certificate that names another host from one nobody trusted."""
    # OpenSSL's verify codes: 62 host name mismatch, 64 IP address mismatch.
    return any(
        isinstance(item, ssl.SSLCertVerificationError) and item.verify_code in (62, 64)
        for item in _chain(exc)
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """Yield ``exc`` and every exception behind it, once each."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        # requests wraps urllib3's MaxRetryError, whose reason wraps the ssl module's error.
        pending.extend((item.__cause__, item.__context__, getattr(item, "reason", None)))
        pending.extend(item.args)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
