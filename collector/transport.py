"""Run the probe on a host over WinRM with pywinrm, within a deadline, whatever its size.

pywinrm's ``run_ps`` puts the whole encoded script on the command line, which cmd.exe cuts at
8191 characters, and it loops on Receive forever. So the probe travels on stdin instead: a short
bootstrap (well under the limit) reads base64 text from stdin and runs it as a script block,
and the Receive loop stops at the host's deadline.

Every failure becomes a ``TransportError`` with an error class (auth, unreachable, timeout,
protocol, probe_error) and a message that never holds a password.
"""

from __future__ import annotations

import base64
import html
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

try:  # the credssp extra; without it collect refuses credssp hosts before any exchange
    from requests_credssp.exceptions import AuthenticationException, NTStatusException

    _CREDSSP_ERRORS: tuple[type[Exception], ...] = (AuthenticationException, NTStatusException)
except ImportError:
    _CREDSSP_ERRORS = ()

log = logging.getLogger(__name__)

# Send stdin in pieces well inside a host's MaxEnvelopeSize (150 KiB on older hosts).
STDIN_CHUNK = 48 * 1024
# Only connection failures are worth another try the same night: a host that hung until its
# deadline would most likely hang again and double the night's run.
TRANSIENT = frozenset({"unreachable"})
CONSTRAINED_MARKER = "PORTFLEET-PROBE-ERROR constrained_language"


class TransportError(Exception):
    """A failed exchange with a host, classified for the attempt record."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class

    @property
    def transient(self) -> bool:
        """Tell whether trying again later may succeed."""
        return self.error_class in TRANSIENT


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to reach one host; ``password`` never appears in its repr."""

    host: str
    url: str
    transport: str = "ntlm"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_tls: bool = True
    ca_file: str | None = None
    cert_pem: str | None = None
    cert_key_pem: str | None = None
    operation_timeout: int = 20
    allow_unencrypted_basic: bool = False

    @property
    def secrets(self) -> tuple[str, ...]:
        """Return the strings that must never reach a message."""
        return tuple(s for s in (self.password,) if s)


@dataclass(frozen=True, slots=True)
class ProbeOutput:
    """What the probe printed, and how many WinRM requests it took."""

    stdout: bytes
    stderr: bytes
    exit_code: int
    requests: int


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
        return _exchange(endpoint, script, arguments, deadline)
    except TransportError as exc:
        raise TransportError(exc.error_class, redact(str(exc), endpoint.secrets)) from None
    except Exception as exc:  # every library error is classified here, once
        error_class, message = classify(exc, endpoint)
        raise TransportError(error_class, redact(message, endpoint.secrets)) from None


def clixml_text(stderr: bytes) -> str:
    """Return the readable text of PowerShell's stderr (CLIXML error records, or plain text)."""
    text = stderr.decode("utf-8", errors="replace").removeprefix("\ufeff")
    if not text.startswith("#< CLIXML"):
        return text.strip()
    parts = re.findall(r'<S S="(?:Error|Warning)">(.*?)</S>', text, flags=re.DOTALL)
    joined = "".join(parts).replace("_x000D__x000A_", "\n")
    return html.unescape(
        re.sub(r"_x([0-9A-F]{4})_", lambda m: chr(int(m.group(1), 16)), joined)
    ).strip()


def redact(message: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret in ``message`` (defence in depth: none should be there)."""
    for secret in secrets:
        message = message.replace(secret, "***")
    return message


def classify(exc: BaseException, endpoint: Endpoint) -> tuple[str, str]:
    """Map a pywinrm or requests error to an error class and an operator's message."""
    where = f"{endpoint.host} ({endpoint.url})"
    if isinstance(exc, InvalidCredentialsError):
        return (
            "auth",
            f"{where} refused the credentials of {endpoint.username or 'the configured user'}; "
            "check them",
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


def refuse_plain_basic(host: str, url: str, transport: str, allowed: bool) -> None:
    """Refuse Basic credentials bound for a plain-HTTP URL unless the host opted in (allowed).

    Decided on the URL that is sent, whatever the config's ``https`` said.
    """
    plain = urlsplit(url).scheme.lower() != "https"
    if transport == "basic" and plain and not allowed:
        raise TransportError(
            "auth",
            f"{host}: basic authentication to {url} would send the password "
            "in clear; give an https:// address (or https: true), or set "
            "allow_unencrypted_basic: true for this host",
        )


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
        # WinRM inside a LAN never goes through a web proxy. An empty proxy says "direct" and,
        # unlike proxy=None (no_proxy="*"), never makes requests write os.environ["no_proxy"]
        # and delete it again: that races between threads (psf/requests#4997, KeyError
        # 'no_proxy' under collect's pool).
        proxy="",
    )
    # Built now, the session then stops reading proxy variables on every request.
    protocol.transport.build_session().trust_env = False
    return protocol


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


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
