"""What the netsh parser tests share: corpus expectations, paste collapsing and property checks."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from hypothesis import settings

from collector.parsers.errors import ParseError

ROOT = Path(__file__).resolve().parents[1]
CORPUS_ROOT = ROOT / "collector" / "data" / "corpus"
BY_EYE_ROOT = ROOT / "tests" / "expected"

PROPERTY_SETTINGS = settings(max_examples=300, derandomize=True, database=None, deadline=None)

# The `# ` header a corpus file starts with, and the blank line after it: line numbers in errors
# count these lines too.
HEADER_COMMENT = ["# source: test", "# language/locale: en", "# command: netsh", ""]

Item = TypeVar("Item")


def load_expected_json(path: Path, by_eye: Path) -> object:
    """Return the corpus file's .expected.json, else our by-eye file (which must exist)."""
    official = path.with_name(f"{path.stem}.expected.json")
    if official.exists():
        return json.loads(official.read_text(encoding="utf-8"))
    by_eye_file = by_eye / f"{path.stem}.json"
    assert by_eye_file.exists(), (
        f"no expectation for {path.name}: check it by eye, write {by_eye_file}"
    )
    return json.loads(by_eye_file.read_text(encoding="utf-8"))


def find_stale_by_eye_files(corpus: Path, by_eye: Path) -> list[str]:
    """List by-eye files whose corpus file is gone or now has an official .expected.json."""
    return [
        file.name
        for file in by_eye.glob("*.json")
        if not (corpus / f"{file.stem}.txt").exists()
        or (corpus / f"{file.stem}.expected.json").exists()
    ]


def collapse(text: str) -> str:
    """Collapse runs of blanks to one space and strip each line, as web page copies do."""
    return "\n".join(re.sub(r"\s+", " ", line).strip() for line in text.splitlines())


def accept_or_refuse(
    parse: Callable[[bytes | str], Sequence[Item]], data: bytes | str
) -> Sequence[Item]:
    """Parse ``data`` to a non-empty result, or to nothing after a ParseError on a real line."""
    try:
        result = parse(data)
    except ParseError as error:
        assert error.line is None or error.line >= 1, f"ParseError names line {error.line}"
        return ()
    assert result, "an empty result where a ParseError was due"
    return result
