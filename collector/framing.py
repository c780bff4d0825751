"""The probe's transport-safe output: a JSON document as gzip + base64 between two marker lines.

WinRM hands stdout back in the shell's console code page (437 unless asked otherwise), so the
probe never prints the document itself: it prints ASCII only::

    PORTFLEET-PROBE-BEGIN 1
    H4sIAAAAAAAEAO1d... (base64 of the gzip of the UTF-8 JSON, lines of at most 76 chars)
    PORTFLEET-PROBE-END <sha256 hex of the UTF-8 JSON> <length of the UTF-8 JSON>

Anything before BEGIN or after END (a profile's banner, stray warnings) is ignored; the digest
and the length prove the document arrived whole. The gzip stream is inflated piece by piece and
stopped as soon as it outgrows the declared length or the ceiling: a small frame that inflates
to gigabytes (a decompression bomb) costs no more memory than the ceiling.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import re
import zlib

BEGIN = "PORTFLEET-PROBE-BEGIN"
END = "PORTFLEET-PROBE-END"
FRAME_VERSION = "1"
# The largest document accepted unless the caller says otherwise. A real one is 100-500 KB;
# a fleet's biggest (long update histories, thousands of listeners) stays far below.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
_CHUNK = 1024 * 1024
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


def unframe_document(output: bytes, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """Return the UTF-8 JSON document inside probe output; raise FrameError if it is not whole.

    No more than ``limit`` bytes, nor more than the frame declares, are ever inflated.
    """
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
    declared_digits = match.group("length")
    declared = int(declared_digits) if len(declared_digits) <= 12 else limit + 1
    if declared > limit:
        raise FrameError(
            f"the probe declares a {declared_digits[:16].decode()}-byte document, over the "
            f"{limit}-byte ceiling (probe.max_document_mb)"
        )
    body = re.sub(rb"\s+", b"", match.group("body"))
    try:
        document = _inflate(base64.b64decode(body, validate=True), declared)
    except (binascii.Error, zlib.error) as exc:
        raise FrameError(f"the probe output is damaged: {exc}") from exc
    if len(document) != declared:
        raise FrameError(f"the document is {len(document)} bytes, the probe said {declared}")
    if hashlib.sha256(document).hexdigest() != match.group("digest").decode().lower():
        raise FrameError("the document's SHA-256 does not match the one the probe printed")
    return document


def _inflate(compressed: bytes, declared: int) -> bytes:
    """Inflate gzip members, refusing as soon as the output passes ``declared`` bytes."""
    output = bytearray()
    pending = compressed
    while pending:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip, header checked
        data = pending
        while data and not inflater.eof:
            # Ask for at most one byte past what is allowed: enough to know it is too much.
            room = min(_CHUNK, declared - len(output) + 1)
            output += inflater.decompress(data, room)
            if len(output) > declared:
                raise FrameError(
                    f"the document inflates past the {declared} bytes the probe declared; "
                    "refused before inflating the rest (damaged, or a decompression bomb)"
                )
            data = inflater.unconsumed_tail
        if not inflater.eof:
            raise FrameError("the probe output is damaged: the compressed stream is cut")
        pending = inflater.unused_data  # another gzip member, if any
    return bytes(output)
