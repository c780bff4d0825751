"""Decoding of command output is explicit: BOMs, BOM-less UTF-16, UTF-8, then the code page."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.parsers.errors import ParseError
from collector.parsers.text import decode_text, detect_encoding, numbered_lines

FRENCH = "Port de début    Port de fin\r\n"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (b"\xef\xbb\xbf" + FRENCH.encode("utf-8"), "utf-8"),
        (b"\xff\xfe" + FRENCH.encode("utf-16-le"), "utf-16-le"),
        (b"\xfe\xff" + FRENCH.encode("utf-16-be"), "utf-16-be"),
        (FRENCH.encode("utf-16-le"), "utf-16-le"),
        (FRENCH.encode("utf-16-be"), "utf-16-be"),
        (FRENCH.encode("utf-8"), "utf-8"),
        (FRENCH.encode("cp437"), "cp437"),
    ],
)
def test_each_rule_picks_its_encoding(data: bytes, encoding: str) -> None:
    assert detect_encoding(data) == encoding
    assert decode_text(data) == FRENCH


def test_bomless_utf16_of_cjk_output_is_recognised() -> None:
    japanese = (
        "プロトコル tcp の動的ポートの範囲\r\n"
        "開始ポート      : 49152\r\nポート数        : 16384\r\n"
    )
    korean = (
        "프로토콜 tcp 포트 제외 범위\r\n\r\n"
        "시작 포트    끝 포트\r\n     50000       50059     *\r\n"
    )
    for text in (japanese, korean):
        assert decode_text(text.encode("utf-16-le")) == text
        assert decode_text(text.encode("utf-16-be")) == text


def test_the_named_code_page_decides_for_non_utf_bytes() -> None:
    japanese = "開始ポート      : 49152\r\n".encode("cp932")
    assert decode_text(japanese, "932") == "開始ポート      : 49152\r\n"
    assert decode_text("Début".encode("cp850"), "cp850") == "Début"
    # Under the WinRM default (437) the same bytes are mojibake, but the digits survive.
    assert "49152" in decode_text(japanese)


def test_an_unknown_code_page_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="unknown code page"):
        decode_text(b"\xff\x00\x81", "klingon")


def test_bad_bytes_under_a_multibyte_code_page_name_the_line() -> None:
    with pytest.raises(ParseError, match="line 2"):
        decode_text(b"ok\r\n\x81\x20\xff\xff", "cp932")


def test_header_comments_are_dropped_and_line_numbers_kept() -> None:
    text = "# source: x\n# command: y\n\nrow 1\n# not a header any more\r\nrow 2"
    assert numbered_lines(text) == [
        (3, ""),
        (4, "row 1"),
        (5, "# not a header any more"),
        (6, "row 2"),
    ]


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=300), st.sampled_from(["437", "850", "932", "936", "949", "cp866"]))
def test_any_bytes_decode_or_raise_parse_error(data: bytes, codepage: str) -> None:
    with contextlib.suppress(ParseError):
        assert isinstance(decode_text(data, codepage), str)
