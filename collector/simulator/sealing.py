"""MS-WSMV 2.2.9.1's framing of sealed WinRM messages over HTTP, as NTLM and CredSSP use it.

A sealed body is a series of part pairs between "--Encrypted Boundary" lines: a header naming
the protocol and the plain message's length, then the sealed bytes behind a 4-byte little-endian
prefix (NTLM: the signature's length; CredSSP: the TLS trailer's). CredSSP seals at most 16 KB
per pair and calls a body of several pairs multipart/x-multi-encrypted.
"""

from __future__ import annotations

import spnego
from spnego.exceptions import SpnegoError

BOUNDARY = b"--Encrypted Boundary"
_END = BOUNDARY + b"--\r\n"
_DATA = b"\tContent-Type: application/octet-stream\r\n"


class SealError(Exception):
    """A handshake token or sealed message that the connection's security context refuses."""


class RefusedWithToken(SealError):
    """A refused handshake whose acceptor wrote a token saying why (Kerberos's KRB-ERROR)."""

    def __init__(self, message: str, token: bytes | None) -> None:
        super().__init__(message)
        self.token = token


_KRB5_OID = b"\x06\x09\x2a\x86\x48\x86\xf7\x12\x01\x02\x02"  # 1.2.840.113554.1.2.2
_SPNEGO_OID = b"\x06\x06\x2b\x06\x01\x05\x05\x02"  # 1.3.6.1.5.5.2


def is_gss_token(token: bytes) -> bool:
    """Tell a Kerberos (raw or SPNEGO-wrapped) GSS token from NTLM's messages."""
    head = token[:24]
    return token[:1] == b"\x60" and (_KRB5_OID in head or _SPNEGO_OID in head)


class SessionContext:
    """One connection's security context (a pyspnego acceptor): a handshake, then sealing."""

    protocol = ""  # the Content-Type's protocol="..." of the messages it seals
    name = ""

    def __init__(self, context: spnego.ContextProxy) -> None:
        """Wrap the acceptor context."""
        self._context = context

    @property
    def complete(self) -> bool:
        """Return whether the handshake authenticated the client."""
        return bool(self._context.complete)

    @property
    def user(self) -> str:
        """Return the authenticated account name, without its domain."""
        principal = self._context.client_principal or ""
        return principal.rpartition("\\")[2]

    def step(self, token: bytes) -> bytes | None:
        """Take a client token; return the token to answer with, None once authenticated."""
        try:
            return self._context.step(token)
        except SpnegoError as exc:
            raise SealError(f"{self.name} refused: {exc}") from exc

    def unseal(self, body: bytes) -> bytes:
        """Return the SOAP message of a sealed request body."""
        raise NotImplementedError

    def seal(self, message: bytes) -> tuple[bytes, str]:
        """Return ``message`` sealed as a response body, and that body's Content-Type."""
        raise NotImplementedError


def content_type(protocol: str, parts: int = 1) -> str:
    """Return the Content-Type of a body sealed under ``protocol`` in ``parts`` pairs."""
    kind = "multipart/x-multi-encrypted" if parts > 1 else "multipart/encrypted"
    return f'{kind};protocol="{protocol}";boundary="Encrypted Boundary"'


def sealed_protocol(content_type_header: str | None, protocols: tuple[str, ...]) -> str | None:
    """Return which of ``protocols`` a request's Content-Type says sealed it, if any."""
    header = content_type_header or ""
    return next((p for p in protocols if f'protocol="{p}"' in header), None)


def split_parts(body: bytes) -> list[tuple[int, bytes, bytes]]:
    """Return each pair's declared plain length, 4-byte prefix and sealed bytes."""
    pieces = [p for p in body.removesuffix(_END).split(BOUNDARY + b"\r\n") if p]
    if not pieces or len(pieces) % 2:
        raise SealError("an encrypted body holds header and data parts in pairs")
    found = []
    for header, payload in zip(pieces[::2], pieces[1::2], strict=True):
        length = header.partition(b"Length=")[2].strip()
        payload = payload.removeprefix(_DATA)
        if not length.isdigit() or len(payload) < 4:
            raise SealError("an encrypted part without its length or its 4-byte prefix")
        found.append((int(length), payload[:4], payload[4:]))
    return found


def join_parts(protocol: str, parts: list[tuple[int, bytes]]) -> bytes:
    """Frame (plain length, prefixed sealed bytes) pairs as a response body."""
    framed = b"".join(
        BOUNDARY + b"\r\n"
        b"\tContent-Type: " + protocol.encode() + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
        + str(length).encode()
        + b"\r\n"
        + BOUNDARY
        + b"\r\n"
        + _DATA
        + sealed
        for length, sealed in parts
    )
    return framed + _END
