"""The probe's output frame: round trip, and every way it can arrive damaged."""

from __future__ import annotations

import base64
import json
import tracemalloc
import zlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.framing import BEGIN, END, FrameError, frame_document, unframe_document

DOCUMENT = json.dumps(
    {"schema": "portfleet.probe/1", "host": {"name": "ws-é-日本"}}, ensure_ascii=False
).encode()


def test_round_trip_with_noise_around_the_frame() -> None:
    framed = frame_document(DOCUMENT)
    assert framed.isascii()
    assert all(len(line) <= 76 for line in framed.splitlines()[1:-1])
    noisy = b"Windows PowerShell banner\r\n" + framed + b"WARNING: something\r\n"
    assert unframe_document(noisy) == DOCUMENT


def test_lf_only_and_extra_blank_lines_are_fine() -> None:
    framed = frame_document(DOCUMENT).replace(b"\r\n", b"\n").replace(b"\n", b"\n\n", 2)
    assert unframe_document(framed) == DOCUMENT


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: f[: len(f) // 2], "end marker is missing"),
        (lambda f: b"nothing here", "no probe document"),
        (lambda f: f + f, "holds 2 probe documents"),
        (lambda f: f.replace(b"BEGIN 1", b"BEGIN 9"), "version '9'"),
        (
            lambda f: f.replace(f.splitlines()[1], f.splitlines()[1][:-8] + b"AAAAAAAA"),
            "damaged|SHA-256|bytes",
        ),
        (lambda f: f.replace(f.splitlines()[-1][-3:], b" 99"), "the probe said 99"),
    ],
)
def test_damaged_output_is_refused(damage: Callable[[bytes], bytes], message: str) -> None:
    with pytest.raises(FrameError, match=message):
        unframe_document(damage(frame_document(DOCUMENT)))


@settings(max_examples=100, derandomize=True)
@given(st.binary(max_size=5000))
def test_any_bytes_round_trip(document: bytes) -> None:
    assert unframe_document(frame_document(document)) == document


def _bomb(inflated: int) -> bytes:
    """Gzip ``inflated`` zero bytes, built piece by piece (the bytes never exist whole)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [packer.compress(zeros) for _ in range(inflated // len(zeros))]
    return b"".join(parts) + packer.flush()


def _frame(compressed: bytes, declared: int) -> bytes:
    encoded = base64.b64encode(compressed).decode("ascii")
    return (f"{BEGIN} 1\r\n{encoded}\r\n{END} {'0' * 64} {declared}\r\n").encode("ascii")


def test_a_decompression_bomb_is_stopped_at_the_declared_length() -> None:
    """512 MB of zeros in about 0.5 MB: refused having inflated about the declared length."""
    framed = _frame(_bomb(512 * 1024 * 1024), declared=600_000)
    tracemalloc.start()
    try:
        with pytest.raises(FrameError, match="inflates past the 600000 bytes"):
            unframe_document(framed)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(framed) * 3 + 8 * 1024 * 1024  # the input and its decoding, not 512 MB


def test_a_declared_length_over_the_ceiling_is_refused_before_inflating() -> None:
    framed = _frame(_bomb(4 * 1024 * 1024), declared=4 * 1024 * 1024)
    with pytest.raises(FrameError, match="over the 1048576-byte ceiling"):
        unframe_document(framed, limit=1024 * 1024)
    with pytest.raises(FrameError, match="over the"):
        unframe_document(_frame(b"", declared=10**40))
    document = b'{"schema": "x"}' * 1000
    assert unframe_document(frame_document(document), limit=len(document)) == document
