"""The one error every parser raises."""

from __future__ import annotations


class ParseError(ValueError):
    """Input that a parser cannot read; names the line (1-based) where it went wrong."""

    def __init__(self, message: str, line: int | None = None, text: str | None = None) -> None:
        self.reason = message
        self.line = line
        self.text = text
        where = f"line {line}: " if line is not None else ""
        shown = f" ({text.strip()[:80]!r})" if text and text.strip() else ""
        super().__init__(f"{where}{message}{shown}")
