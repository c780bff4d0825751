"""Where and as whom the WinRM transport reaches a host: its URL, transport and credentials.

Credentials come from the environment or the OS keyring when a try starts, and leave only in
an ``Endpoint`` whose repr never shows the password.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from collector.config import Credential, HostEntry, PortfleetConfig
from collector.transport import TransportError

log = logging.getLogger(__name__)

_KEYRING_HINT = "configure a backend (PYTHON_KEYRING_BACKEND) or use password_env"


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
    keytab: str | None = None  # Kerberos: get the principal's ticket from this keytab
    spn_host: str | None = None  # Kerberos: the host name in HTTP/<name>, when not the URL's

    @property
    def spn(self) -> str:
        """Return the Kerberos service principal the host is asked a ticket for."""
        return f"HTTP/{self.spn_host or urlsplit(self.url).hostname or self.host}"

    @property
    def own_tickets(self) -> bool:
        """Tell whether portfleet gets this host's Kerberos ticket itself (keytab, password)."""
        return self.transport == "kerberos" and bool(self.keytab or self.password)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Return the strings that must never reach a message."""
        return tuple(s for s in (self.password,) if s)


def build_endpoint(
    entry: HostEntry, config: PortfleetConfig, environ: Mapping[str, str] | None = None
) -> Endpoint:
    """Resolve a host's URL, transport and credentials (from the environment or a keyring)."""
    settings = entry.settings(config.defaults)
    url = host_url(entry, settings.https, settings.port)
    # Before any credential is read, on the URL that will be sent.
    refuse_plain_basic(entry.name, url, settings.transport, settings.allow_unencrypted_basic)
    if settings.transport == "basic" and urlsplit(url).scheme.lower() != "https":
        log.warning(
            "%s: basic authentication over unencrypted HTTP (allow_unencrypted_basic)", entry.name
        )
    if not settings.verify_tls:
        log.warning(
            "%s: TLS certificate validation is off for this host (verify_tls: false)", entry.name
        )
    credential = settings.credential
    username, password = _credentials(
        entry.name, credential, os.environ if environ is None else environ
    )
    return Endpoint(
        host=entry.name,
        url=url,
        transport=settings.transport,
        username=username,
        password=password,
        verify_tls=settings.verify_tls,
        ca_file=str(settings.ca_file) if settings.ca_file else None,
        cert_pem=str(credential.cert_pem) if credential.cert_pem else None,
        cert_key_pem=str(credential.cert_key_pem) if credential.cert_key_pem else None,
        operation_timeout=config.probe.operation_timeout_seconds,
        allow_unencrypted_basic=settings.allow_unencrypted_basic,
        keytab=str(credential.keytab) if credential.keytab else None,
        spn_host=spn_host(entry, url) if settings.transport == "kerberos" else None,
    )


def spn_host(entry: HostEntry, url: str) -> str | None:
    """Return the name for the host's service principal when the URL's host is not it.

    A ticket names a host, never an address: a host reached by IP is asked for by its name.
    """
    if entry.kerberos_hostname:
        return entry.kerberos_hostname
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return entry.name


def host_url(entry: HostEntry, https: bool, port: int | None) -> str:
    """Return the one URL a host is reached at: its address's own, else built from settings.

    A scheme written in the address wins over ``https``; whoever checks the transport's safety
    reads the scheme of this URL, never the setting.
    """
    address = entry.address or entry.name
    if "://" in address:
        return address
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"  # an IPv6 literal
    scheme = "https" if https else "http"
    return f"{scheme}://{address}:{port or (5986 if https else 5985)}/wsman"


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


def _credentials(
    host: str, credential: Credential, environ: Mapping[str, str]
) -> tuple[str | None, str | None]:
    username = credential.username
    if username is None and credential.username_env:
        username = environ.get(credential.username_env)
        if not username:
            raise TransportError(
                "auth",
                f"{host}: environment variable {credential.username_env} (user name) is not set",
            )
    password: str | None = None
    if credential.password_env:
        password = environ.get(credential.password_env)
        if password is None:
            raise TransportError(
                "auth",
                f"{host}: environment variable {credential.password_env} (password) is not set",
            )
    elif credential.keyring_service:
        password = _keyring_password(host, credential.keyring_service, username or "")
    return username, password


def _keyring_password(host: str, service: str, username: str) -> str:
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        raise TransportError(
            "auth", f"{host}: keyring_service needs `pip install 'portfleet[keyring]'`"
        ) from None
    try:
        password: str | None = keyring.get_password(service, username)
    except KeyringError as exc:  # no backend, a locked one, a D-Bus failure
        raise TransportError(
            "auth",
            f"{host}: the keyring gave no answer for service {service!r} "
            f"({type(exc).__name__}: {exc}); {_KEYRING_HINT}",
        ) from None
    if password is None:
        raise TransportError(
            "auth", f"{host}: no password for {username!r} in keyring service {service!r}"
        )
    return password
