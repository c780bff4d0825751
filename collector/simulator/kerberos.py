"""The host side of Kerberos as WinRM speaks it, for simulated hosts joined to a realm.

A domain-joined Windows host holds the key of its computer account, under which ``HTTP/<fqdn>``
is registered; WinRM accepts a service ticket for that name, answers with the AP-REP so the
client can check it reached the right host (mutual authentication), and over HTTP seals every
message with the ticket's session key in MS-WSMV 2.2.9.1.1's framing: a 4-byte length, the
GSS wrap header, then the encrypted message (RFC 4121 with DCE-style IOV buffers). Over HTTPS
the authenticator may carry a binding to the server's certificate (RFC 5929); one that names
another certificate is refused. A ticket the host cannot accept (another key, a clock more than
five minutes off) is answered with the KRB-ERROR the acceptor produces, inside the 401's
``WWW-Authenticate``, so the client can tell why.

python-gssapi does the GSSAPI (MIT Kerberos underneath; the ``kerberos`` extra brings it), and
each host reads only its own keytab. Imported only by a host that is joined to a realm.
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import gssapi
import gssapi.raw
from gssapi.raw import ChannelBindings
from gssapi.raw.ext_dce import IOV, IOVBufferType, unwrap_iov, wrap_iov
from gssapi.raw.misc import GSSError

from collector.simulator.ntlm import PROTOCOL  # Kerberos seals under the same SPNEGO protocol
from collector.simulator.sealing import (
    RefusedWithToken,
    SealError,
    SessionContext,
    content_type,
    join_parts,
    split_parts,
)


def cred_store(**entries: str) -> dict[bytes | str, bytes | str]:
    """Return a GSSAPI credential store whose keys and values are bytes.

    python-gssapi (1.12) keeps pointers into the bytes it encodes from str entries, which are
    freed before MIT reads them: with other threads allocating, MIT then finds no keytab and
    reads the default one. Bytes the caller's dict holds stay alive for the call.
    """
    return {key.encode(): value.encode() for key, value in entries.items()}


_ACQUIRING = threading.Lock()
_ACCEPTORS: dict[Path, gssapi.raw.Creds] = {}


def acceptor_credentials(keytab: Path) -> gssapi.raw.Creds:
    """Return the host's acceptor credentials from ``keytab``, read once.

    A host reads its keytab once, when it starts (as Windows holds its machine key), under one
    lock; accepting with credentials held is safe from many threads.
    """
    with _ACQUIRING:
        credentials = _ACCEPTORS.get(keytab)
        if credentials is None:
            store = cred_store(keytab=f"FILE:{keytab}")
            credentials = gssapi.raw.acquire_cred_from(store, usage="accept").creds
            _ACCEPTORS[keytab] = credentials
        return credentials


class KerberosConnection(SessionContext):
    """One connection's Kerberos context: AP-REQ in, AP-REP out, then sealing."""

    protocol = PROTOCOL
    name = "Kerberos"

    def __init__(self, keytab: Path, binding: bytes | None) -> None:
        """Accept with the keys in ``keytab``; ``binding`` is the certificate's over HTTPS."""
        self._credentials = acceptor_credentials(keytab)
        self._bindings = ChannelBindings(application_data=binding) if binding else None
        self._gss: gssapi.raw.SecurityContext | None = None
        self._complete = False
        self._user = ""

    @property
    def complete(self) -> bool:
        """Return whether the ticket was accepted."""
        return self._complete

    @property
    def user(self) -> str:
        """Return the client's principal without its realm (the account name)."""
        return self._user

    def step(self, token: bytes) -> bytes | None:
        """Accept the AP-REQ; return the AP-REP (mutual authentication) or None."""
        try:
            # The raw call, which raises with the acceptor's error token on it (the high-level
            # one returns that token as if it were an answer and raises later).
            accepted = gssapi.raw.accept_sec_context(
                token, self._credentials, self._gss, self._bindings
            )
        except GSSError as exc:
            raise RefusedWithToken(f"Kerberos refused: {exc.gen_message()}", exc.token) from exc
        self._gss = accepted.context
        self._complete = not accepted.more_steps
        if self._complete and accepted.initiator_name is not None:
            principal = gssapi.raw.display_name(accepted.initiator_name).name.decode()
            self._user = principal.rstrip("\x00").partition("@")[0]
        reply: bytes | None = accepted.token
        return reply

    def unseal(self, body: bytes) -> bytes:
        """Return the SOAP message inside a multipart/encrypted request body."""
        parts = split_parts(body)
        if len(parts) != 1:
            raise SealError("a Kerberos-sealed body is one part")
        length, prefix, sealed = parts[0]
        size = struct.unpack("<i", prefix)[0]
        if not 0 < size <= len(sealed):
            raise SealError("a sealed part whose header length does not fit it")
        # Buffers are (type, allocate, bytes): the header and the data are given, not allocated.
        iov = IOV(
            (IOVBufferType.header, False, sealed[:size]),
            (IOVBufferType.data, False, sealed[size:]),
            std_layout=False,
        )
        try:
            unwrap_iov(self._established(), iov)
        except GSSError as exc:
            raise SealError(f"a sealed message does not verify: {exc.gen_message()}") from exc
        message = bytes(iov[1].value or b"")
        if len(message) != length:
            raise SealError("a sealed message's length differs from its header")
        return message

    def _established(self) -> gssapi.raw.SecurityContext:
        if self._gss is None or not self._complete:
            raise SealError("a sealed message before the ticket was accepted")
        return self._gss

    def seal(self, message: bytes) -> tuple[bytes, str]:
        """Return ``message`` sealed as a response body, and that body's Content-Type."""
        iov = IOV(
            (IOVBufferType.header, True, None),
            (IOVBufferType.data, False, message),
            (IOVBufferType.padding, True, None),
            std_layout=False,
        )
        wrap_iov(self._established(), iov, confidential=True)
        header = bytes(iov[0].value or b"")
        sealed = bytes(iov[1].value or b"") + bytes(iov[2].value or b"")
        framed = struct.pack("<i", len(header)) + header + sealed
        body = join_parts(PROTOCOL, [(len(message), framed)])
        return body, content_type(PROTOCOL)
