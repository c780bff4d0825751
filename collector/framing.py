"""The probe's transport-safe output: a JSON document as gzip + base64 between two marker lines.

WinRM hands stdout back in the shell's console code page (437 unless asked otherwise), so the
probe never prints the document itself: it prints ASCII only::

    PORTFLEET-PROBE-BEGIN 1
    H4sIAAAAAAAEAO1d... (base64 of the gzip of the UTF-8 JSON, lines of at most 76 chars)
    PORTFLEET-PROBE-END <sha256 hex of the UTF-8 JSON> <length of the UTF-8 JSON>

Anything before BEGIN or after END (a profile's banner, stray warnings) is ignored; the digest
and the length prove the document arrived whole.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import re

BEGIN = "PORTFLEET-PROBE-BEGIN"
END = "PORTFLEET-PROBE-END"
FRAME_VERSION = "1"
_FRAME = re.compile(
    rb"PORTFLEET-PROBE-BEGIN[ \t]+(?P<version>\S+)[ \t]*\r?\n"
    rb"(?P<body>[A-Za-z0-9+/=\r\n \t]*?)"
    rb"PORTFLEET-PROBE-END[ \t]+(?P<digest>[0-9a-fA-F]{64})[ \t]+(?P<length>\d+)"
)


class FrameError(ValueError):
    """Probe output that does not hold one whole, intact document."""


def frame_document(document: bytes) -> bytes:
    """Wrap UTF-8 JSON bytes the way the probe prints them (CRLF line ends, as Windows)."""
    encoded = base64.b64encode(gzip.compress(document, mtime=0)).decode("ascii")
    lines = [f"{BEGIN} {FRAME_VERSION}"]
    lines += [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    lines.append(f"{END} {hashlib.sha256(document).hexdigest()} {len(document)}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def has_frame(output: bytes) -> bool:
    """Tell whether ``output`` contains a probe frame's first marker."""
    return BEGIN.encode() in output


def unframe_document(output: bytes) -> bytes:
    """Return the UTF-8 JSON document inside probe output; raise FrameError if it is not whole."""
    matches = list(_FRAME.finditer(output))
    if not matches:
        if has_frame(output):
            raise FrameError("the probe output was cut: its end marker is missing")
        raise FrameError("no probe document in the output (no PORTFLEET-PROBE-BEGIN line)")
    if len(matches) > 1:
        raise FrameError(f"the output holds {len(matches)} probe documents; expected one")
    match = matches[0]
    if match.group("version").decode() != FRAME_VERSION:
        raise FrameError(
            f"probe frame version {match.group('version').decode()!r} is not supported"
        )
    body = re.sub(rb"\s+", b"", match.group("body"))
    try:
        document = gzip.decompress(base64.b64decode(body, validate=True))
    except (binascii.Error, OSError, EOFError) as exc:
        raise FrameError(f"the probe output is damaged: {exc}") from exc
    if len(document) != int(match.group("length")):
        raise FrameError(
            f"the document is {len(document)} bytes, the probe said {int(match.group('length'))}"
        )
    if hashlib.sha256(document).hexdigest() != match.group("digest").decode().lower():
        raise FrameError("the document's SHA-256 does not match the one the probe printed")
    return document
