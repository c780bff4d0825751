"""What people add around a row: markers, notes, omissions, and the header that declares a cut."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.parsers.notes import ParseWarning, declares_truncation, is_omission, peel
from tests.parser_helpers import PROPERTY_SETTINGS


@pytest.mark.parametrize(
    "line", ["...", "…", "   ......", ". . . .", "[...]", "(…)", "50000 50059 ...", "TCP … 4"]
)
def test_omissions(line: str) -> None:
    assert is_omission(line)


@pytest.mark.parametrize(
    "line", ["", ".", "1.2.3.4", "I ran this...", "a.b.c", "()", "[svchost.exe]", "* - Admin."]
)
def test_not_omissions(line: str) -> None:
    assert not is_omission(line)


@pytest.mark.parametrize(
    ("line", "body", "marker", "note"),
    [
        ("50000 50059 *   <- this one", "50000 50059 *", None, "<- this one"),
        ("5357 5357\t# the blocked one", "5357 5357", None, "# the blocked one"),
        ("5357 5357 (after reboot)", "5357 5357", None, "(after reboot)"),
        ("-> 5357 5357", "5357 5357", "->", None),
        (
            "=> TCP 0.0.0.0:1 0.0.0.0:0 LISTENING 4 --> here",
            "TCP 0.0.0.0:1 0.0.0.0:0 LISTENING 4",
            "=>",
            "--> here",
        ),
    ],
)
def test_peel_strips_markers_and_notes(
    line: str, body: str, marker: str | None, note: str | None
) -> None:
    peeled = peel(line)
    assert peeled is not None
    assert (peeled.body, peeled.marker, peeled.note) == (body, marker, note)
    assert [w.line for w in peeled.warnings(7, line)] == [7] * ((marker is not None) + bool(note))


@pytest.mark.parametrize(
    "line", ["5357 5357", "x (", "http://support.microsoft.com/?kbid=1", "[::]:0", "a#b", "5 5 #"]
)
def test_peel_leaves_lines_without_a_worded_note(line: str) -> None:
    assert peel(line) is None


def test_the_header_declares_a_cut_only_in_its_comment_lines() -> None:
    assert declares_truncation(["# command: netstat -ano  # truncated (excerpt)"])
    assert declares_truncation(["# source: x", "# command: netsh ... # Truncated"])
    assert not declares_truncation(["# command: netstat -ano"])
    assert not declares_truncation([])


def test_a_warning_reads_like_a_parse_error() -> None:
    assert str(ParseWarning(3, "note '<- x' after the row ignored", "1 2 <- x")) == (
        "line 3: note '<- x' after the row ignored ('1 2 <- x')"
    )


@PROPERTY_SETTINGS
@given(st.text())
def test_any_text_is_peeled_to_a_shorter_body_or_left(text: str) -> None:
    peeled = peel(text)
    if peeled is not None:
        assert len(peeled.body) < len(text)
        assert peeled.marker is not None or peeled.note is not None
    assert isinstance(is_omission(text), bool)
