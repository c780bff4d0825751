"""Never a silently partial answer: cuts, notes and omissions over every corpus expectation.

For every corpus file with an expected answer (the official ``.expected.json`` or our by-eye file),
hypothesis picks where to damage the text the way people do, and the parser must answer whole or
refuse. What "whole" can mean is limited by what the command prints, and each limit is spelled out
in ``_check_cut``:

- excludedportrange tables end with a footer that netsh always prints: a table cut anywhere is
  refused or comes back with a "no footer" warning;
- netstat, Get-HotFix/wmic tables and dynamicport print no end mark, so a paste cut exactly
  between two whole rows (or blocks) cannot be told from a whole one: it may come back as a
  prefix of the answer, never with a changed or invented row; one cut inside a row is refused or
  comes back with a "no line end" warning;
- systeminfo announces its count, so any cut of its hotfix section is refused.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.parsers import PARSERS
from collector.parsers.errors import ParseError
from collector.parsers.notes import ParseWarning
from tests.parser_helpers import BY_EYE_ROOT, CORPUS_ROOT

CASE_SETTINGS = settings(
    # PROPERTY_EXAMPLES=1500 searches harder (about a minute on two workers).
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "25")),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Which lines of a corpus file are rows, per kind (the lines a note is appended to).
_ROW_LINES: dict[str, re.Pattern[str]] = {
    "excluded": re.compile(r"\s*[0-9]+\s+[0-9]+(?:\s*\*.*)?\s*"),
    "dynamicport": re.compile(r".*\S\s*[:：]\s*[0-9]+\s*"),
    "netstat": re.compile(
        r"\s*(?:TCP|UDP)\s.*|\s*[0-9a-f.:]+\s+[0-9]+\s.*[0-9]\s*"
        r"|\s*(?:Local|Remote)(?:Address|Port)\s+:.*|\s*(?:State|OwningProcess)\s+:.*"
    ),
    "hotfix": re.compile(r".*\bKB[0-9]+\b.*"),
}
_END_WARNINGS = ("no footer", "without a line end")
_NOTES = ["   <- this one", "\t# the blocked one", " (after the reboot)", "  --> look here"]
_OMISSIONS = ["...", "…", "   ......", ". . . . .", "[...]"]
_TRUNCATED = re.compile(r"\s*#\s*truncated\b.*", re.IGNORECASE)


@dataclass(frozen=True)
class Case:
    """One corpus file with its expected answer, read as units a cut may shorten."""

    kind: str
    path: Path
    text: str
    expected: list[Any]

    def rows(self) -> list[int]:
        """Return the indexes of the lines (split with their ends) that are rows."""
        pattern = _ROW_LINES[self.kind]
        lines = self.text.splitlines()
        body = _body_start(lines)
        return [i for i, line in enumerate(lines) if i >= body and pattern.fullmatch(line)]


def _body_start(lines: Sequence[str]) -> int:
    """Return the index of the first line after the ``# `` header."""
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    return start


def _expectation(kind: str, path: Path) -> list[Any] | None:
    """Return a corpus file's expected JSON, None when it has none or declares itself cut."""
    official = path.with_name(f"{path.stem}.expected.json")
    by_eye = BY_EYE_ROOT / kind / f"{path.stem}.json"
    source = official if official.exists() else by_eye
    if not source.exists():
        return None
    value = json.loads(source.read_text(encoding="utf-8"))
    assert isinstance(value, list)
    return value


def _declared_truncated(text: str) -> bool:
    head = text.splitlines()[: _body_start(text.splitlines())]
    return any(re.search(r"#\s*truncated\b", line, re.IGNORECASE) for line in head)


def _cases(declared: bool) -> list[Case]:
    found = []
    for kind in ("excluded", "dynamicport", "netstat", "hotfix"):
        for path in sorted((CORPUS_ROOT / kind).glob("*.txt")):
            expected = _expectation(kind, path)
            text = path.read_text(encoding="utf-8")
            if expected is not None and _declared_truncated(text) == declared:
                found.append(Case(kind, path, text, expected))
    return found


WHOLE = _cases(declared=False)
EXCERPTS = _cases(declared=True)


def _own_rows(case: Case) -> list[int]:
    """Return the rows a note or a marker can follow: not one a web copy glued to its footer."""
    lines = case.text.splitlines()
    return [i for i in case.rows() if "* -" not in lines[i]]


# The properties that write on a row are drawn over the cases that have one (an empty table
# has none), so that no case is skipped.
WITH_ROWS = [case for case in WHOLE if case.rows()]
WITH_OWN_ROWS = [case for case in WHOLE if _own_rows(case)]


def _json(kind: str, result: Any) -> list[Any]:
    rows = PARSERS[kind].to_json(result)
    if kind == "netstat":
        # The by-eye files predate canonical_state (test_parse_netstat checks it).
        rows = [{k: v for k, v in row.items() if k != "canonical_state"} for row in rows]
    return rows


def _run(kind: str, text: str) -> tuple[list[Any] | None, list[ParseWarning]]:
    """Parse ``text``: its JSON and warnings, or None after a ParseError that names a line."""
    warnings: list[ParseWarning] = []
    try:
        result = PARSERS[kind].parse(text, warnings=warnings)
    except ParseError as error:
        assert error.line is None or error.line >= 1
        return None, warnings
    return _json(kind, result), warnings


def _units(kind: str, rows: list[Any]) -> list[Any]:
    """Flatten a JSON answer into the units a cut can drop (ranges keep their protocol)."""
    if kind == "excluded":
        return [(table["protocol"], json.dumps(item)) for table in rows for item in table["ranges"]]
    return [json.dumps(row, sort_keys=True) for row in rows]


def _table_count(kind: str, rows: list[Any]) -> int:
    return len(rows) if kind == "excluded" else 0


def _check_cut(case: Case, cut: str) -> None:
    """Assert that a cut text gives the whole answer, a refusal, or a shortening that is told."""
    got, warnings = _run(case.kind, cut)
    if got is None or got == case.expected:
        return
    units, whole = _units(case.kind, got), _units(case.kind, case.expected)
    told = any(end in w.message for w in warnings for end in _END_WARNINGS)
    if told:
        # The warning names where the answer may stop; all before the last unit is exact.
        kept = max(len(units) - 1, 0)
        assert units[:kept] == whole[:kept], (case.path.name, cut[-80:])
        return
    # Without a word, only whole units may be missing, at the end: whole excludedportrange
    # tables (each closed by its footer), or rows and blocks of outputs that print no end mark.
    if case.kind == "excluded":
        units, whole = got, case.expected
    assert len(units) < len(whole) and units == whole[: len(units)], (
        f"{case.path.name}: a cut gave another answer without a warning: {cut[-80:]!r}"
    )


@pytest.mark.parametrize("case", WHOLE, ids=lambda case: case.path.stem)
def test_corpus_file_parses_whole_without_warnings_but_end_ones(case: Case) -> None:
    got, warnings = _run(case.kind, case.text)
    assert got == case.expected
    assert all(any(end in w.message for end in _END_WARNINGS) for w in warnings)


@pytest.mark.parametrize("case", WHOLE, ids=lambda case: case.path.stem)
@CASE_SETTINGS
@given(data=st.data())
def test_a_cut_gives_the_whole_answer_a_refusal_or_a_told_shortening(
    case: Case, data: st.DataObject
) -> None:
    lines = case.text.splitlines(keepends=True)
    rows = case.rows()
    first = rows[0] if rows else _body_start(lines)
    if data.draw(st.booleans(), label="at a line end"):
        end = data.draw(st.integers(first, len(lines) - 1), label="lines kept")
        _check_cut(case, "".join(lines[:end]))
    else:
        start = sum(len(line) for line in lines[:first])
        position = data.draw(st.integers(start, len(case.text) - 1), label="characters kept")
        _check_cut(case, case.text[:position])


@pytest.mark.parametrize("case", WITH_OWN_ROWS, ids=lambda case: case.path.stem)
@CASE_SETTINGS
@given(data=st.data())
def test_a_note_after_a_row_is_stripped_with_a_warning_or_refused(
    case: Case, data: st.DataObject
) -> None:
    lines = case.text.splitlines()
    # A row glued to its footer by a web copy ends in the footer's text, not in a row.
    rows = _own_rows(case)
    index = data.draw(st.sampled_from(rows), label="row")
    note = data.draw(st.sampled_from(_NOTES), label="note")
    lines[index] = lines[index].rstrip() + note
    got, warnings = _run(case.kind, "\n".join(lines) + "\n")
    if got is None:
        return
    assert got == case.expected
    assert any(w.line == index + 1 and "note" in w.message for w in warnings), warnings


@pytest.mark.parametrize("case", WITH_OWN_ROWS, ids=lambda case: case.path.stem)
@CASE_SETTINGS
@given(data=st.data())
def test_an_omission_after_a_row_is_refused(case: Case, data: st.DataObject) -> None:
    lines = case.text.splitlines()
    # After a row glued to its footer the table has ended: nothing of it can be left out there.
    rows = _own_rows(case)
    index = data.draw(st.sampled_from(rows), label="row")
    marker = data.draw(st.sampled_from(_OMISSIONS), label="marker")
    lines.insert(index + 1, marker)
    with pytest.raises(ParseError) as caught:
        PARSERS[case.kind].parse("\n".join(lines) + "\n")
    assert caught.value.line == index + 2


@pytest.mark.parametrize("case", WITH_ROWS, ids=lambda case: case.path.stem)
@CASE_SETTINGS
@given(data=st.data())
def test_a_damaged_character_never_drops_a_row(case: Case, data: st.DataObject) -> None:
    lines = case.text.splitlines()
    index = data.draw(st.sampled_from(case.rows()), label="row")
    line = lines[index]
    at = data.draw(st.integers(0, len(line) - 1), label="position")
    char = data.draw(st.sampled_from("O0lI|x* .:-#\t,;?"), label="character")
    lines[index] = line[:at] + char + line[at + 1 :]
    got, _ = _run(case.kind, "\n".join(lines) + "\n")
    if got is not None:
        # A changed value is the damage itself; a row that vanished would be a silent loss.
        assert len(_units(case.kind, got)) == len(_units(case.kind, case.expected)), lines[index]


@pytest.mark.parametrize("case", EXCERPTS, ids=lambda case: case.path.stem)
def test_an_excerpt_is_refused_unless_its_header_declares_the_cut(case: Case) -> None:
    got, warnings = _run(case.kind, case.text)
    assert got == case.expected
    assert any("declared truncated" in w.message for w in warnings)
    undeclared = "\n".join(_TRUNCATED.sub("", line) for line in case.text.splitlines())
    with pytest.raises(ParseError) as caught:
        PARSERS[case.kind].parse(undeclared + "\n")
    assert caught.value.line is not None


def test_every_expectation_is_covered() -> None:
    assert len(WHOLE) + len(EXCERPTS) >= 40
    assert {case.path.stem for case in EXCERPTS} == {
        "excluded-en-7",
        "excluded-en-8",
        "netstat-en-1",
        "netstat-en-3",
    }
