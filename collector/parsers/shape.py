"""Line shapes that the netsh parsers (excludedportrange and dynamicport) read alike.

Nothing here matches a localized word. It covers what a paste puts before the printed text
(markdown indents and ``>`` quotes, tool prefixes such as Packer's ``    vhd: ``), the shape of a
netsh title line, the protocol named in a typed show command, the dash underline of an
excludedportrange table, and reading a digit run as a port number.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from collector.windows import MAX_PORT

__all__ = [
    "DASH_BLOCK",
    "MAX_PORT",
    "find_tool_prefixes",
    "read_command_protocol",
    "read_digits",
    "read_title_protocol",
    "strip_prefixes",
]


# The underline of excludedportrange's two column headers: two runs of dashes.
DASH_BLOCK = re.compile(r"-{3,}\s+-{3,}")

_DIGITS = re.compile(r"[0-9]+")
_PROTOCOL_TOKEN = re.compile(r"(?<![A-Za-z0-9])(tcp|udp)(?![A-Za-z0-9])")
_ANY_COMMAND = re.compile(r"\b(?:netsh|excludedport\w*|dynamicport\w*)\b", re.IGNORECASE)
_NOT_IN_TITLE = re.compile(r"[0-9:：>\\/=]")
_QUOTE_PREFIX = re.compile(r"\s*(?:>(?:\s+|$))+")
_TOOL_PREFIX = re.compile(r"\s*(?:==>\s*)?(?P<name>[A-Za-z][A-Za-z0-9_.-]*):(?=\s|$)")
# A tool that prefixes its log lines (Packer's "    vhd: ") does so on every line; a lone
# "Error: ..." line is text, not a prefix.
_TOOL_PREFIX_MIN_LINES = 3
_TITLE_MAX_LENGTH = 120


def find_tool_prefixes(raws: Iterable[str]) -> frozenset[str]:
    """Name the ``name:`` prefixes that begin enough lines to be a tool's log prefix."""
    counts = Counter(
        match.group("name")
        for raw in raws
        # A prefix is "name:"; a line without a colon (most rows) cannot have one.
        if ":" in raw and (match := _TOOL_PREFIX.match(_unquote(raw)))
    )
    return frozenset(name for name, seen in counts.items() if seen >= _TOOL_PREFIX_MIN_LINES)


def strip_prefixes(raw: str, tools: frozenset[str]) -> str:
    """Drop what a paste puts before the printed text: indents, ``>`` quotes, tool prefixes."""
    text = _unquote(raw)
    tool = _TOOL_PREFIX.match(text) if tools else None
    # "Startport: 5" is a label, not a tool prefix: keep it when only a number would remain.
    if tool and tool.group("name") in tools and not _DIGITS.fullmatch(text[tool.end() :].strip()):
        text = text[tool.end() :]
    return text.strip()


def read_title_protocol(text: str) -> str | None:
    """Return the protocol a title line names, or None when the line is not a title."""
    if len(text) > _TITLE_MAX_LENGTH or text.startswith("*"):
        return None
    if "tcp" not in text and "udp" not in text:
        return None  # asked of every line: most name no protocol at all
    if _NOT_IN_TITLE.search(text) or _ANY_COMMAND.search(text):
        return None
    found = {match.group(1) for match in _PROTOCOL_TOKEN.finditer(text)}
    if len(found) != 1:
        return None
    if not any(char.isalpha() for char in _PROTOCOL_TOKEN.sub("", text)):
        return None
    return found.pop()


def read_command_protocol(arguments: str) -> str | None:
    """Return the protocol named in a show command's arguments, or None when none is."""
    token = _PROTOCOL_TOKEN.search(arguments.lower())
    return token.group(1) if token else None


def read_digits(digits: str, limit: int = MAX_PORT) -> int:
    """Read a run of ASCII digits; one with more digits than ``limit`` reads as ``limit + 1``."""
    # Converting thousands of digits would trip Python's int-conversion limit (a ValueError).
    return int(digits) if len(digits.lstrip("0")) <= len(str(limit)) else limit + 1


def _unquote(raw: str) -> str:
    """Drop markdown ``>`` quote markers (and the indent before them)."""
    if ">" not in raw:
        return raw  # asked of every line: most hold no quote marker
    quote = _QUOTE_PREFIX.match(raw)
    return raw[quote.end() :] if quote else raw
