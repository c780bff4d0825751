"""The host side of CredSSP as WinRM speaks it, for simulated hosts that enable it.

CredSSP (MS-CSSP) authenticates a connection and hands the host the user's password, which
WinRM needs for a second hop; Windows offers it only after `Enable-WSManCredSSP -Role Server`.
Its tokens travel in `Authorization: CredSSP` / `WWW-Authenticate: CredSSP` headers: a TLS
handshake of its own, an NTLM exchange inside that TLS (the account comes from the same
credential file as plain NTLM), both sides proving the TLS key, then the delegated password.
Over HTTP every message is then sealed by that inner TLS, at most 16 KB per part (MS-WSMV
2.2.9.1.3). pyspnego's acceptor runs the protocol; this module holds one connection's state.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from functools import cache
from pathlib import Path

import spnego
import spnego.tls
from spnego.exceptions import SpnegoError

from collector.simulator.sealing import (
    SealError,
    SessionContext,
    content_type,
    join_parts,
    split_parts,
)

PROTOCOL = "application/HTTP-CredSSP-session-encrypted"
_PART = 16 * 1024  # the most plain bytes one sealed part carries


@cache
def _tls_context() -> spnego.tls.CredSSPTLSContext:
    """Return the process's one CredSSP TLS context, with a certificate made for it."""
    context = spnego.tls.default_tls_context(usage="accept")
    cert_pem, key_pem, public_key = spnego.tls.generate_tls_certificate()
    # ssl loads a certificate chain only from a file: a private folder, removed at once.
    folder = Path(tempfile.mkdtemp(prefix="portfleet-sim-credssp-"))
    try:
        chain = folder / "chain.pem"
        chain.write_bytes(cert_pem + key_pem)
        context.context.load_cert_chain(str(chain))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    context.public_key = public_key
    return context


class CredsspConnection(SessionContext):
    """One connection's CredSSP context: its TLS, NTLM inside, delegation, then sealing.

    A refused password still yields a handshake token: the TSRequest carrying the NTSTATUS.
    """

    protocol = PROTOCOL
    name = "CredSSP"

    def __init__(self) -> None:
        """Start an acceptor context."""
        super().__init__(spnego.server(protocol="credssp", credssp_tls_context=_tls_context()))

    def unseal(self, body: bytes) -> bytes:
        """Return the SOAP message of a multipart/(x-multi-)encrypted request body."""
        message = bytearray()
        for length, _trailer, sealed in split_parts(body):
            try:
                plain = self._context.unwrap(sealed).data
            except SpnegoError as exc:
                raise SealError(f"a sealed message does not decrypt: {exc}") from exc
            if len(plain) != length:
                raise SealError("a sealed part's length differs from its header")
            message += plain
        return bytes(message)

    def seal(self, message: bytes) -> tuple[bytes, str]:
        """Return ``message`` sealed as a response body, and that body's Content-Type."""
        parts = []
        for start in range(0, max(len(message), 1), _PART):
            chunk = message[start : start + _PART]
            wrapped = self._context.wrap_winrm(chunk)
            prefix = struct.pack("<i", len(wrapped.header))  # the TLS trailer's length
            parts.append((len(chunk), prefix + wrapped.header + wrapped.data))
        return join_parts(PROTOCOL, parts), content_type(PROTOCOL, len(parts))
