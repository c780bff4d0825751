"""Read ``netsh int ipv4|ipv6 show dynamicport tcp|udp`` output in any display language.

netsh prints a title, a dash line and two ``label : number`` lines (start port, then number of
ports). The labels are localized, so they are never read: within a block the first number after a
colon is the start and the second is the count. A block begins at a title (a short line holding
the lowercase token ``tcp`` or ``udp`` and no digits, colons, prompts or paths) or, when the title
is missing, at the first ``label : number`` line. The protocol comes from the title, else from the
``show dynamicport`` command typed before the block, else it is None.

Pastes add prefixes that are dropped: markdown indents and ``>`` quotes, and tool prefixes such
as Packer's ``    vhd: `` (a ``name:`` that begins at least three lines).
``netsh>`` prompts and code-gutter line numbers are not data and are ignored. A block must be
complete: a title without numbers, or a start without a count, is an error.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from collector.parsers.errors import ParseError
from collector.parsers.text import DEFAULT_CODEPAGE, decode_text, numbered_lines

__all__ = [
    "DEFAULT_CODEPAGE",
    "DynamicPortRange",
    "dynamicport_to_json",
    "parse_dynamicport",
]

MAX_PORT = 65535

# The last colon decides; ASCII colons are followed by a blank in netsh output, which keeps
# "localhost:8080" and "12:30:45" out.
_LABELLED = re.compile(r"(?P<label>.*\S)\s*(?::\s+|：\s*)(?P<value>\S+)")
_LABEL_ONLY = re.compile(r"(?P<label>.*\S)\s*[:：]")
_NUMBER = re.compile(r"[0-9]+")
# A number written with separators or a sign: meant as a value, but not one netsh prints.
_NUMBER_LIKE = re.compile(r"[-+]?[0-9][0-9.,' ]*")
_PROTOCOL_TOKEN = re.compile(r"(?<![A-Za-z0-9])(tcp|udp)(?![A-Za-z0-9])")
_SHOW_COMMAND = re.compile(r"\bsh(?:ow?)?\s+dyn\w*(?P<rest>.*)", re.IGNORECASE)
_ANY_COMMAND = re.compile(r"\b(?:netsh|excludedport\w*|dynamicport\w*)\b", re.IGNORECASE)
_NOT_IN_TITLE = re.compile(r"[0-9:：>\\/=]")
_QUOTE_PREFIX = re.compile(r"\s*(?:>(?:\s+|$))+")
_TOOL_PREFIX = re.compile(r"\s*(?:==>\s*)?(?P<name>[A-Za-z][A-Za-z0-9_.-]*):(?=\s|$)")
# A tool that prefixes its log lines (Packer's "    vhd: ") does so on every line; a lone
# "Error: ..." line is text, not a prefix.
_TOOL_PREFIX_MIN_LINES = 3
# The shapes of an excludedportrange table: under a title they mean the title is not ours.
_EXCLUDED_ROW = re.compile(r"[0-9]+\s+[0-9]+(?:\s*\*)?")
_EXCLUDED_DASHES = re.compile(r"-{3,}\s+-{3,}")
_TITLE_MAX_LENGTH = 120


@dataclass(frozen=True, slots=True)
class DynamicPortRange:
    """The dynamic (ephemeral) port range of one protocol: ``count`` ports from ``start``."""

    protocol: str | None
    start: int
    count: int

    @property
    def end(self) -> int:
        """Return the last port of the range."""
        return self.start + self.count - 1


@dataclass(slots=True)
class _Block:
    protocol: str | None
    first_line: int
    first_text: str
    from_title: bool
    start: int | None = None
    start_line: int = 0
    start_text: str = ""
    count: int | None = None
    foreign: bool = False


class _Assembler:
    """Collect blocks line by line and check each one when it ends."""

    __slots__ = ("current", "pending_protocol", "ranges")

    def __init__(self) -> None:
        self.ranges: list[DynamicPortRange] = []
        self.current: _Block | None = None
        # From the last show command; used by the next block whose title is missing.
        self.pending_protocol: str | None = None

    def awaiting_value(self) -> bool:
        """Tell whether the open block still needs its start or its count."""
        return self.current is not None and not self.current.foreign and self.current.count is None

    def close(self) -> None:
        """Finish the open block; raise ParseError when it is incomplete."""
        block, self.current = self.current, None
        if block is None or block.foreign:
            return
        if block.start is None:
            raise ParseError("title without a start port", block.first_line, block.first_text)
        if block.count is None:
            raise ParseError(
                "start port without a number of ports", block.start_line, block.start_text
            )
        self.ranges.append(DynamicPortRange(block.protocol, block.start, block.count))

    def open(self, protocol: str | None, number: int, text: str, from_title: bool) -> _Block:
        """Finish the open block and start a new one."""
        self.close()
        self.current = _Block(protocol, number, text, from_title)
        self.pending_protocol = None
        return self.current

    def value(self, number: int, text: str, value: int) -> None:
        """Take the next number of a block: its start, then its count."""
        block = self.current
        if block is None or block.foreign or block.count is not None:
            block = self.open(self.pending_protocol, number, text, from_title=False)
        if block.start is None:
            if value > MAX_PORT:
                raise ParseError(f"start port out of range 0-{MAX_PORT}", number, text)
            block.start, block.start_line, block.start_text = value, number, text
            return
        if value < 1:
            raise ParseError("number of ports must be at least 1", number, text)
        if block.start + value - 1 > MAX_PORT:
            raise ParseError(f"range ends past port {MAX_PORT}", number, text)
        block.count = value


def parse_dynamicport(
    data: bytes | str, codepage: str = DEFAULT_CODEPAGE
) -> list[DynamicPortRange]:
    """Parse every dynamicport block in ``data``, in order; raise ParseError otherwise."""
    assembler = _Assembler()
    numbered = numbered_lines(decode_text(data, codepage))
    tools = _tool_prefixes(raw for _, raw in numbered)
    for number, raw in numbered:
        text = _strip_prefixes(raw, tools)
        if text:
            _take(assembler, number, text)
    assembler.close()
    if not assembler.ranges:
        raise ParseError("no dynamicport block found (no title and no 'label : number' line)")
    return assembler.ranges


def dynamicport_to_json(ranges: Sequence[DynamicPortRange]) -> list[dict[str, object]]:
    """Render parsed ranges in the stored JSON shape."""
    return [
        {"protocol": item.protocol, "start": item.start, "count": item.count} for item in ranges
    ]


def _take(assembler: _Assembler, number: int, text: str) -> None:
    """Apply one non-blank line, classified by its shape."""
    show = _SHOW_COMMAND.search(text)
    if show:
        assembler.close()
        token = _PROTOCOL_TOKEN.search(show.group("rest").lower())
        assembler.pending_protocol = token.group(1) if token else None
        return
    protocol = _title_protocol(text)
    if protocol is not None:
        # The title is what netsh printed, so it outranks the command typed before it.
        assembler.open(protocol, number, text, from_title=True)
        return
    labelled = _LABELLED.fullmatch(text)
    if labelled and _is_label(labelled.group("label")):
        value = labelled.group("value")
        if _NUMBER.fullmatch(value):
            assembler.value(number, text, _number(value))
            return
        if _NUMBER_LIKE.fullmatch(value) and assembler.awaiting_value():
            raise ParseError("cannot read the number after the colon", number, text)
    label_only = _LABEL_ONLY.fullmatch(text)
    if label_only and _is_label(label_only.group("label")) and assembler.awaiting_value():
        raise ParseError("label without a number", number, text)
    block = assembler.current
    if (
        block is not None
        and block.from_title
        and block.start is None
        and (_EXCLUDED_ROW.fullmatch(text) or _EXCLUDED_DASHES.fullmatch(text))
    ):
        block.foreign = True


def _tool_prefixes(raws: Iterable[str]) -> frozenset[str]:
    """Name the ``name:`` prefixes that begin enough lines to be a tool's log prefix."""
    counts = Counter(
        match.group("name") for raw in raws if (match := _TOOL_PREFIX.match(_unquote(raw)))
    )
    return frozenset(name for name, seen in counts.items() if seen >= _TOOL_PREFIX_MIN_LINES)


def _strip_prefixes(raw: str, tools: frozenset[str]) -> str:
    """Drop what a paste puts before the printed text: indents, ``>`` quotes, tool prefixes."""
    text = _unquote(raw)
    tool = _TOOL_PREFIX.match(text)
    # "Startport: 5" is a label, not a tool prefix: keep it when only a number would remain.
    if tool and tool.group("name") in tools and not _NUMBER.fullmatch(text[tool.end() :].strip()):
        text = text[tool.end() :]
    return text.strip()


def _unquote(raw: str) -> str:
    """Drop markdown ``>`` quote markers (and the indent before them)."""
    quote = _QUOTE_PREFIX.match(raw)
    return raw[quote.end() :] if quote else raw


def _is_label(label: str) -> bool:
    """Tell whether text before a colon can be a localized label (letters, no trailing digit)."""
    return any(char.isalpha() for char in label) and not label[-1].isdigit()


def _number(digits: str) -> int:
    """Read a number; huge digit runs become MAX_PORT + 1 so range checks reject them."""
    # Converting thousands of digits would trip Python's int-conversion limit (a ValueError).
    return int(digits) if len(digits.lstrip("0")) <= len(str(MAX_PORT)) else MAX_PORT + 1


def _title_protocol(text: str) -> str | None:
    """Return the protocol a title line names, or None when the line is not a title."""
    if len(text) > _TITLE_MAX_LENGTH or text.startswith("*"):
        return None
    if _NOT_IN_TITLE.search(text) or _ANY_COMMAND.search(text):
        return None
    found = {match.group(1) for match in _PROTOCOL_TOKEN.finditer(text)}
    if len(found) != 1:
        return None
    if not any(char.isalpha() for char in _PROTOCOL_TOKEN.sub("", text)):
        return None
    return found.pop()
