"""Kerberos for the WinRM transport: the collecting account's tickets, and what a refusal means.

pywinrm's Kerberos (pykerberos) takes tickets from the default credential cache, as ``kinit``
left them (``KRB5CCNAME``). When the config gives a keytab or a password instead, portfleet gets
the ticket-granting ticket itself, once per principal and run, into a credential cache of its
own (a private folder, removed at exit) and points only the probing thread at it
(``gss_krb5_ccache_name`` is per thread in MIT Kerberos), so nothing else in the process, and
no other principal, is affected. python-gssapi does this; it and pykerberos use the same MIT
library in-process.

A refusal is explained from numbers, never from localized text: the minor status code of a
local GSSAPI failure (RFC 4120's error number plus MIT's table base), the error-code and server
time of the KRB-ERROR a host sends back in its 401, or the host's HTTP ``Date``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from collector.transport import TransportError

MAX_SKEW_SECONDS = 300  # Kerberos's default tolerance, Windows' and MIT's alike
_KRB5_BASE = -1765328384  # MIT's ERROR_TABLE_BASE_krb5: code = base + RFC 4120 error number
_MINOR = re.compile(r"\(\s*'[^']*'\s*,\s*(-?\d+)\s*\)\s*\)\s*$")
_RENEW_BEFORE = 300  # seconds of life a ticket must have left to start a host with it

# RFC 4120 7.5.9 error numbers, as a host or the KDC sends them.
PRINCIPAL_UNKNOWN = 7  # KDC_ERR_S_PRINCIPAL_UNKNOWN: no such service principal
CLIENT_UNKNOWN = 6  # KDC_ERR_C_PRINCIPAL_UNKNOWN
PREAUTH_FAILED = 24  # KDC_ERR_PREAUTH_FAILED: a wrong password or key
BAD_INTEGRITY = 31  # KRB_AP_ERR_BAD_INTEGRITY: the same, where the KDC asks no pre-auth
TICKET_EXPIRED = 32  # KRB_AP_ERR_TKT_EXPIRED
SKEW = 37  # KRB_AP_ERR_SKEW
NOT_US = 35  # KRB_AP_ERR_NOT_US: the ticket names another service
MODIFIED = 41  # KRB_AP_ERR_MODIFIED: the ticket is sealed with a key the host does not hold
BAD_KEY_VERSION = 44  # KRB_AP_ERR_BADKEYVER
NO_KEY = 45  # KRB_AP_ERR_NOKEY
_NOT_OUR_KEY = frozenset({NOT_US, MODIFIED, BAD_KEY_VERSION, NO_KEY})
# MIT's own codes outside the protocol's numbers (krb5_err.et, k5e1_err.et).
_NO_CACHE = frozenset({-1765328189, -1765328243, 39756044})  # FCC_NOFILE, CC_NOTFOUND, KG_EMPTY
_KDC_UNREACHABLE = -1765328228  # KRB5_KDC_UNREACH
_REALM_UNKNOWN = -1765328230  # KRB5_REALM_UNKNOWN


def signed(minor: int) -> int:
    """Return a minor status as MIT's tables write it (python-gssapi hands it over unsigned)."""
    return minor - 2**32 if minor >= 2**31 else minor


def protocol_error(minor: int) -> int | None:
    """Return the RFC 4120 error number a MIT minor status carries, if it is one."""
    number = signed(minor) - _KRB5_BASE
    return number if 0 <= number < 128 else None


def minor_status(message: str) -> int | None:
    """Return the minor status code at the end of a pykerberos failure's text."""
    found = _MINOR.search(message.strip())
    return int(found.group(1)) if found else None


def explain_local(message: str, spn: str, principal: str | None) -> str:
    """Explain a Kerberos failure on this side, before the host saw a ticket."""
    minor = minor_status(message)
    who = principal or "the default principal"
    number = protocol_error(minor) if minor is not None else None
    if minor in _NO_CACHE:
        return (
            f"no Kerberos ticket for {who}: run kinit (or kinit -k -t KEYTAB PRINCIPAL in the "
            "cron line, with KRB5CCNAME), or give credential.keytab or password_env"
        )
    if number == TICKET_EXPIRED:
        return (
            f"the Kerberos ticket of {who} has expired: renew it with kinit before collect runs "
            "(or give credential.keytab so portfleet gets a fresh one every night)"
        )
    if number == PRINCIPAL_UNKNOWN:
        return (
            f"the realm has no service principal {spn}: reach the host by the name it is "
            "joined under (its FQDN, not an IP address or alias), set kerberos_hostname, or "
            f"register the name (setspn -S {spn.replace('@', '/', 1)} COMPUTER)"
        )
    if number == SKEW:
        return (
            "this collector's clock differs from the KDC's by more than 5 minutes: "
            "fix time sync here (chrony/ntp)"
        )
    if minor == _KDC_UNREACHABLE:
        return "no KDC answered for the realm: check krb5.conf's [realms] and the network"
    if minor == _REALM_UNKNOWN:
        return (
            f"no realm is known for {spn}: map its DNS domain to the realm in krb5.conf's "
            "[domain_realm], or set kerberos_hostname to its FQDN"
        )
    return f"Kerberos failed before reaching the host: {message[:300]}"


def explain_refusal(
    spn: str, principal: str | None, error_token: bytes | None, date: str | None
) -> str:
    """Explain a host's 401 to a Kerberos ticket, from its KRB-ERROR and its Date header."""
    error = read_krb_error(error_token) if error_token else None
    host_time = error[1] if error and error[1] else _http_date(date)
    skew = (host_time - datetime.now(UTC)).total_seconds() if host_time else None
    code = error[0] if error else None
    # The host's own error number decides; the clocks only where it gave none that does.
    if code in _NOT_OUR_KEY:
        return (
            f"the host could not read the ticket for {spn} (Kerberos error {code}): that "
            "service principal belongs to another account (a duplicate SPN: setspn -X, "
            "setspn -Q) or the host was re-joined and its key changed; fix the SPN, or set "
            "kerberos_hostname to the host's own name"
        )
    if code == SKEW or (skew is not None and abs(skew) > MAX_SKEW_SECONDS):
        shown = f" ({_minutes(skew)} {'ahead of' if (skew or 0) > 0 else 'behind'} this one)"
        return (
            f"the host's clock differs from this collector's by more than 5 minutes"
            f"{shown if skew is not None else ''}: fix time sync (w32tm /resync on the host, "
            "chrony/ntp here)"
        )
    account = principal or "this collector's principal"
    if code is not None:
        return f"the host refused the Kerberos ticket (Kerberos error {code}) of {account}"
    return (
        f"the host refused {account}: authenticated, but not allowed to use WinRM there "
        "(Remote Management Users or Administrators)"
    )


def read_krb_error(token: bytes) -> tuple[int, datetime | None] | None:
    """Return the error-code and server time of a KRB-ERROR (RFC 4120 5.9.1), bare or GSS-framed.

    None when the token is not one (an AP-REP, or SPNEGO framing around something else).
    """
    try:
        body = _unframe(token)
        if body is None:
            return None
        tag, inner, _ = _tlv(body, 0)
        if tag != 0x7E:  # [APPLICATION 30]
            return None
        tag, fields, _ = _tlv(inner, 0)
        if tag != 0x30:
            return None
        code: int | None = None
        stime: datetime | None = None
        offset = 0
        while offset < len(fields):
            tag, value, offset = _tlv(fields, offset)
            inner_tag, content, _ = _tlv(value, 0)
            if tag == 0xA4 and inner_tag == 0x18:  # [4] stime, GeneralizedTime
                stime = datetime.strptime(content.decode("ascii"), "%Y%m%d%H%M%SZ").replace(
                    tzinfo=UTC
                )
            elif tag == 0xA6 and inner_tag == 0x02:  # [6] error-code, INTEGER
                code = int.from_bytes(content, "big", signed=True)
        return (code, stime) if code is not None else None
    except (IndexError, ValueError):
        return None


def _unframe(token: bytes) -> bytes | None:
    """Strip RFC 2743's GSS framing and krb5's TOK_ID 03 00, leaving the KRB-ERROR."""
    if token[:1] == b"\x7e":
        return token
    if token[:1] != b"\x60":
        return None
    _, inner, _ = _tlv(token, 0)
    oid_tag, _, after = _tlv(inner, 0)
    if oid_tag != 0x06 or inner[after : after + 2] != b"\x03\x00":
        return None
    return inner[after + 2 :]


def _tlv(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """Read one DER tag-length-value at ``offset``; return tag, value and the next offset."""
    tag = data[offset]
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise ValueError("an indefinite or oversized DER length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise ValueError("a DER value longer than its token")
    return tag, data[start:end], end


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    with contextlib.suppress(TypeError, ValueError):
        return parsedate_to_datetime(value).astimezone(UTC)
    return None


def _minutes(seconds: float | None) -> str:
    minutes = abs(seconds or 0) / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


class Tickets:
    """Ticket-granting tickets portfleet got itself, one cache per principal and secret.

    Keyed by the secret too (a keytab's path, a password's digest): a host configured with
    another password for the same principal must not ride on a ticket it could not get.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._caches: dict[tuple[str, str], Path] = {}
        self._folder: Path | None = None
        self._names = itertools.count()

    @contextlib.contextmanager
    def used_by_this_thread(
        self, principal: str, *, keytab: str | None, password: str | None
    ) -> Iterator[None]:
        """Make this thread's Kerberos use ``principal``'s ticket, getting it when needed."""
        from gssapi.raw import krb5_ccache_name

        cache = self._cache(principal, keytab, password)
        krb5_ccache_name(f"FILE:{cache}".encode())
        try:
            yield
        finally:
            krb5_ccache_name(None)  # back to the default (KRB5CCNAME), not a name read then

    def forget(self) -> None:
        """Drop every cache (the next host gets fresh tickets)."""
        with self._lock:
            folder, self._folder, self._caches = self._folder, None, {}
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _cache(self, principal: str, keytab: str | None, password: str | None) -> Path:
        secret = keytab or hashlib.sha256((password or "").encode()).hexdigest()
        key = (principal, secret)
        with self._lock:  # one KDC exchange per principal, whatever the concurrency
            cache = self._caches.get(key)
            if cache is None or _life_left(cache, principal) < _RENEW_BEFORE:
                cache = self._acquire(principal, keytab, password)
                self._caches[key] = cache
            return cache

    def _acquire(self, principal: str, keytab: str | None, password: str | None) -> Path:
        import gssapi
        import gssapi.raw
        from gssapi.raw.misc import GSSError

        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="portfleet-krb5-"))  # mode 0700
            atexit.register(shutil.rmtree, self._folder, True)
        cache = self._folder / f"cc{next(self._names)}"
        store = _store(ccache=f"FILE:{cache}")
        name = gssapi.Name(principal, gssapi.NameType.kerberos_principal)
        try:
            if keytab is not None:
                store.update(_store(client_keytab=f"FILE:{keytab}"))
                credentials = gssapi.Credentials(name=name, usage="initiate", store=store)
                _ = credentials.lifetime  # MIT gets the ticket lazily: get it now
            else:
                got = gssapi.raw.acquire_cred_with_password(
                    name, (password or "").encode(), usage="initiate"
                )
                gssapi.raw.store_cred_into(
                    store, got.creds, usage="initiate", overwrite=True, set_default=True
                )
        except GSSError as exc:
            raise TransportError("auth", _explain_acquire(principal, keytab, exc)) from None
        return cache


def _explain_acquire(principal: str, keytab: str | None, exc: BaseException) -> str:
    code = getattr(exc, "min_code", None)
    minor = signed(code) if isinstance(code, int) else None
    number = protocol_error(minor) if minor is not None else None
    source = f"keytab {keytab}" if keytab else "its password"
    if number in (PREAUTH_FAILED, BAD_INTEGRITY, CLIENT_UNKNOWN):
        what = "unknown to the realm" if number == CLIENT_UNKNOWN else "refused (wrong password?)"
        return f"no Kerberos ticket for {principal} from {source}: the principal is {what}"
    if minor == _KDC_UNREACHABLE:
        return f"no KDC answered for {principal}: check krb5.conf's [realms] and the network"
    if number == SKEW:
        return "this collector's clock differs from the KDC's by more than 5 minutes: fix time sync"
    return f"no Kerberos ticket for {principal} from {source} (minor status {minor})"


def _store(**entries: str) -> dict[bytes | str, bytes | str]:
    """Return a GSSAPI credential store whose keys and values are bytes.

    python-gssapi 1.12 keeps pointers into the bytes it encodes from str entries, freed before
    MIT reads them (the hosts' twin, ``collector.simulator.kerberos.cred_store``, says what
    that did).
    """
    return {key.encode(): value.encode() for key, value in entries.items()}


def _life_left(cache: Path, principal: str) -> float:
    """Return the seconds the cached ticket of ``principal`` has left (0 when unreadable)."""
    import gssapi
    from gssapi.raw.misc import GSSError

    try:
        name = gssapi.Name(principal, gssapi.NameType.kerberos_principal)
        store = _store(ccache=f"FILE:{cache}")
        credentials = gssapi.Credentials(name=name, usage="initiate", store=store)
        return float(credentials.lifetime or 0)
    except GSSError:
        return 0.0


TICKETS = Tickets()
