"""What people add to a pasted output, and how every parser treats it alike.

A paste is not always what the command printed. People mark a row (``-> 50000 50059 *``), write
a note after it (``50000 50059 *   <- this one``, a tab and ``# comment``, ``(words)``), cut the
list with ``...``, ``…`` or a row of dots, or the paste ends inside a row. One rule for all
parsers:

- a marker before a complete row and a note after it are stripped, and each strip is reported
  as a ``ParseWarning`` with its line number, so the caller can show it;
- a marker of omission inside a table means rows are missing: the parser refuses the input,
  naming the line, unless the input's own header declares it an excerpt (see
  ``declares_truncation``), in which case the rows it shows are returned with a warning;
- a line that looks like a row but cannot be read whole is refused (each parser says what a row
  looks like; this module only knows what people add around one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "CUT_ADVICE",
    "ParseWarning",
    "declares_truncation",
    "is_omission",
    "peel",
]

CUT_ADVICE = "re-run the command and paste its whole output"

# A line of nothing but these, with two dots or one ellipsis, marks an omission: "...", "…",
# ". . . .", "[...]", "(…)". Checked by set, not by a regex that could backtrack on long lines.
_OMISSION_CHARS = frozenset(".…⋯⋮·[]()")
_ELLIPSES = frozenset("…⋯⋮")
# Every omission holds one of these; a line without any cannot be one.
_OMISSION_HINT = re.compile(r"\.[.\s]|[…⋯⋮]")
# An ellipsis inside a line that also holds data ("50000 50059 ...", "TCP ... LISTENING").
_OMISSION_INSIDE = re.compile(r"(?:^|\s)(?:\.{3,}|[…⋯⋮])(?=\s|$)")
# Arrows and bullets that people put in front of the row they mean.
_MARKER = re.compile(r"\s*(?:-+>|=+>|→|⇒|►|▶|➜|>>+)\s+")
# A note begins with an arrow, a comment sign or an opening parenthesis after a blank, and
# holds at least one letter or digit: "<- this one", "# the blocked port", "(after reboot)".
# The blank before it is a lookbehind: a "\s+" here would backtrack over every run of blanks.
_NOTE = re.compile(r"(?<=\s)(?:<-|<=|←|⇐|-+>|=+>|→|⇒|#|//|\(|--\s)")
_NOTE_WORDS = re.compile(r"\w")
# What every marker and note above begins with.
_PEEL_HINT = re.compile(r"<-|<=|←|⇐|->|=>|→|⇒|#|//|\(|--|►|▶|➜|>>")
_DECLARED = re.compile(r"#\s*truncated\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ParseWarning:
    """Something a parser stripped or assumed on purpose, with the line it concerns."""

    line: int | None
    message: str
    text: str = ""

    def __str__(self) -> str:
        """Render the warning the way ``ParseError`` renders an error."""
        where = f"line {self.line}: " if self.line is not None else ""
        shown = f" ({self.text.strip()[:80]!r})" if self.text.strip() else ""
        return f"{where}{self.message}{shown}"


@dataclass(frozen=True, slots=True)
class Peeled:
    """A line without the marker before it and the note after it."""

    body: str
    marker: str | None
    note: str | None

    def warnings(self, number: int, text: str) -> list[ParseWarning]:
        """Report each stripped part of line ``number``."""
        found = []
        if self.marker is not None:
            found.append(
                ParseWarning(number, f"marker {self.marker!r} before the row ignored", text)
            )
        if self.note is not None:
            found.append(ParseWarning(number, f"note {self.note!r} after the row ignored", text))
        return found


def peel(text: str) -> Peeled | None:
    """Strip a highlight marker before and a note after ``text``; None when it has neither."""
    if _PEEL_HINT.search(text) is None:
        return None  # asked of many rows: most hold no arrow, comment sign or parenthesis
    body, marker, note = text, None, None
    found = _MARKER.match(body)
    if found:
        marker = found.group(0).strip()
        body = body[found.end() :]
    found = _NOTE.search(body)
    if found and _NOTE_WORDS.search(body, found.start()):
        note = body[found.start() :].strip()
        body = body[: found.start()]
    if marker is None and note is None:
        return None
    return Peeled(body.strip(), marker, note)


def is_omission(text: str) -> bool:
    """Tell whether a line marks removed lines: dots or ellipses alone, or inside a row."""
    # Every parser asks this of every line: rule out the common line without running a regex.
    if _OMISSION_HINT.search(text) is None:
        return False
    solid = "".join(text.split())
    if solid and _OMISSION_CHARS.issuperset(solid):
        return solid.count(".") >= 2 or not _ELLIPSES.isdisjoint(solid)
    return _OMISSION_INSIDE.search(text) is not None


def declares_truncation(header: list[str]) -> bool:
    """Tell whether the ``# `` comment block above the output declares it an excerpt.

    Captures and the corpus write ``# truncated`` on their ``# command:`` line when whoever saved
    the text knew it was cut: then the rows shown are what is wanted, and a cut is no surprise.
    """
    return any(_DECLARED.search(line) for line in header)
