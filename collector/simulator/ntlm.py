"""The host side of NTLM as WinRM speaks it, for the simulated hosts (pywinrm's default transport).

NTLM authenticates a TCP connection, not a request: the client's NEGOTIATE gets a 401 carrying
the CHALLENGE, its AUTHENTICATE (with the request body again) is checked against the account,
and later requests on that connection carry no Authorization header at all. Over HTTPS the
AUTHENTICATE must bind the server's certificate (channel binding, RFC 5929 tls-server-end-point,
as CbtHardeningLevel=Strict). Over HTTP every message is sealed in MS-WSMV 2.2.9.1.1's
multipart/encrypted framing. pyspnego does the NTLM itself; this module holds the state.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import struct
import tempfile
import threading
from pathlib import Path

import spnego
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from spnego.channel_bindings import GssChannelBindings
from spnego.exceptions import SpnegoError

from collector.simulator.sealing import (
    SealError,
    SessionContext,
    content_type,
    join_parts,
    split_parts,
)

PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
_SIGNATURE = 16  # an NTLM signature is 16 bytes (MS-NLMP 2.2.2.9.1)


class _Accounts:
    """The NTLM credential file pyspnego's acceptor reads, and the accounts in it.

    pyspnego finds accounts only through the NTLM_USER_FILE environment variable, so the
    variable is set once, when the first account is added (before any server thread runs).
    The file holds one password per account name: servers running at the same time in one
    process must agree on it, and a name is free again once its last server has stopped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, tuple[str, int]] = {}  # name -> (password, servers using it)
        self._path: Path | None = None
        self._fd: int | None = None

    def add(self, username: str, password: str) -> bool:
        """Accept ``username`` with ``password``; False when the file cannot hold them now."""
        if any(c in value for value in (username, password) for c in ":\r\n"):
            return False  # the file's separators
        key = username.casefold()
        with self._lock:
            held, users = self._accounts.get(key, (password, 0))
            if held != password:
                return False
            self._accounts[key] = (password, users + 1)
            self._write()
        return True

    def release(self, username: str, password: str) -> None:
        """Forget one server's use of the account, which ``add`` accepted."""
        key = username.casefold()
        with self._lock:
            held, users = self._accounts.get(key, (password, 0))
            if held != password or users == 0:
                return
            if users == 1:
                del self._accounts[key]
            else:
                self._accounts[key] = (password, users - 1)
            self._write()

    def _write(self) -> None:
        # Heimdal's DOMAIN:USER:PASSWORD lines; an empty domain matches a bare user name.
        text = "".join(f":{user}:{secret}\n" for user, (secret, _) in self._accounts.items())
        if hasattr(os, "memfd_create"):
            self._write_anonymous(text.encode("utf-8"))
        else:
            self._write_temporary(text)

    def _write_anonymous(self, data: bytes) -> None:
        """Linux: a file in memory only, gone with the process however it ends."""
        fresh = os.memfd_create("portfleet-sim-ntlm")
        with open(fresh, "wb", closefd=False) as handle:
            handle.write(data)
        if self._fd is None:
            self._fd = fresh
            os.environ["NTLM_USER_FILE"] = f"/proc/self/fd/{fresh}"
            return
        # The path names a descriptor: pointing it at the new file is one atomic step, so an
        # acceptor opening it at the same moment reads the old file or the new one, whole.
        os.dup2(fresh, self._fd, inheritable=False)
        os.close(fresh)

    def _write_temporary(self, text: str) -> None:
        """Elsewhere: a private temporary file, removed at exit (it stays if killed)."""
        if self._path is None:
            handle, name = tempfile.mkstemp(prefix="portfleet-sim-ntlm-", suffix=".txt")
            os.close(handle)  # mkstemp made it readable by this user only
            self._path = Path(name)
            atexit.register(self._remove)
            os.environ["NTLM_USER_FILE"] = name
        # Replaced whole, so an acceptor reading it at the same moment never sees half a file.
        staged = self._path.with_suffix(".new")
        staged.write_text(text, encoding="utf-8")
        staged.chmod(0o600)
        os.replace(staged, self._path)

    def _remove(self) -> None:
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()


ACCOUNTS = _Accounts()


def certificate_binding(cert_pem: Path) -> bytes:
    """Return the channel binding a client derives from this server certificate (RFC 5929)."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()  # RFC 5929 4.1: MD5 and SHA-1 certificates use SHA-256
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(Encoding.DER))
    return b"tls-server-end-point:" + digest.finalize()


class NtlmConnection(SessionContext):
    """One connection's NTLM context: NEGOTIATE, CHALLENGE, AUTHENTICATE, then sealing."""

    protocol = PROTOCOL
    name = "NTLM"

    def __init__(self, binding: bytes | None) -> None:
        """Start a context; ``binding`` is the certificate binding over HTTPS, None over HTTP."""
        bindings = GssChannelBindings(application_data=binding) if binding else None
        super().__init__(spnego.server(protocol="ntlm", channel_bindings=bindings))

    def unseal(self, body: bytes) -> bytes:
        """Return the SOAP message inside a multipart/encrypted request body."""
        parts = split_parts(body)
        if len(parts) != 1:
            raise SealError("an NTLM-sealed body is one part")
        length, prefix, sealed = parts[0]
        if struct.unpack("<i", prefix)[0] != _SIGNATURE:
            raise SealError("an encrypted body whose signature is not 16 bytes")
        try:
            message = self._context.unwrap(sealed)  # the signature, then the sealed bytes
        except SpnegoError as exc:
            raise SealError(f"a sealed message does not verify: {exc}") from exc
        if len(message.data) != length:
            raise SealError("a sealed message's length differs from its header")
        return bytes(message.data)

    def seal(self, message: bytes) -> tuple[bytes, str]:
        """Return ``message`` sealed as a response body, and that body's Content-Type."""
        wrapped = self._context.wrap(message, encrypt=True).data  # the signature comes first
        body = join_parts(PROTOCOL, [(len(message), struct.pack("<i", _SIGNATURE) + wrapped)])
        return body, content_type(PROTOCOL)
