"""Read ``netsh int ipv4|ipv6 show excludedportrange protocol=tcp|udp`` output in any language.

Nothing here matches a localized word. A line is classified by its shape only:

- a row is two integers and an optional ``*`` (administered), nothing else; a web copy may glue
  the footer (``* - ...``) onto the last row, which is still read;
- a title is a short line holding the lowercase token ``tcp`` or ``udp`` and no digits, colons,
  prompts or paths (``Protokoll "tcp"``, ``协议 tcp 端口排除范围``);
- a dash block is two runs of dashes (the underline of the two column headers);
- a ``show excludedportrange`` command line names the protocol of the table printed after it.

A pasted transcript may hold several tables; a new one starts at a title, after a show command, or
at a dash block that follows rows (or a second dash block). Prefixes that pastes add are dropped:
markdown indents and ``>`` quotes, and tool prefixes such as Packer's ``    vhd: `` (a ``name:``
that begins at least three lines). Lone integers are code-gutter line numbers and are ignored,
except next to a row, where they mean a cut or wrapped row (an error) unless they end the input
(a paste cut short, as in a truncated excerpt).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum, auto

from collector.parsers.errors import ParseError
from collector.parsers.shape import (
    DASH_BLOCK,
    MAX_PORT,
    find_tool_prefixes,
    read_command_protocol,
    read_digits,
    read_title_protocol,
    strip_prefixes,
)
from collector.parsers.text import DEFAULT_CODEPAGE, decode_text, numbered_lines

__all__ = [
    "DEFAULT_CODEPAGE",
    "ExcludedRange",
    "ExcludedTable",
    "excluded_to_json",
    "parse_excluded",
]

_ROW = re.compile(r"([0-9]+)\s+([0-9]+)(?:\s*(\*))?(?:\s*\*\s+-(?:\s.*)?)?")
# Only digits, stars and blanks: such a line is meant as a row even when it is not a valid one.
_ROW_LIKE = re.compile(r"[\s*]*[0-9][0-9\s*]*")
_LONE_NUMBER = re.compile(r"[0-9]+")
# Each parser names its own command (dynamicport.py has the "dyn" twin): the other parser's
# command must not set the protocol of a table here.
_SHOW_COMMAND = re.compile(r"\bsh(?:ow?)?\s+excl\w*(?P<rest>.*)", re.IGNORECASE)
# "label : number" is the dynamicport layout; seen right after a title it means that title was
# not an exclusion table's. Kept apart from dynamicport.py's _LABELLED and _is_label, which read
# values and so also refuse a label ending in a digit: this only decides whether a bare title is
# dropped, and taking theirs would change which titles become empty tables.
_LABELLED_NUMBER = re.compile(r"(?P<label>.*\S)\s*(?::\s+|：\s*)[0-9]+")


@dataclass(frozen=True, slots=True)
class ExcludedRange:
    """One excluded block of ports, both ends included; administered rows carry a ``*``."""

    start: int
    end: int
    administered: bool


@dataclass(frozen=True, slots=True)
class ExcludedTable:
    """One printed table: its protocol (None when nothing in the paste says) and its rows."""

    protocol: str | None
    ranges: tuple[ExcludedRange, ...]


class _Kind(Enum):
    BLANK = auto()
    ROW = auto()
    LONE_NUMBER = auto()
    BAD_ROW = auto()
    DASH_BLOCK = auto()
    SHOW_COMMAND = auto()
    TITLE = auto()
    LABELLED_NUMBER = auto()
    OTHER = auto()


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    text: str
    kind: _Kind
    protocol: str | None = None
    row: ExcludedRange | None = None
    problem: str = ""


@dataclass(slots=True)
class _OpenTable:
    protocol: str | None
    from_title: bool
    ranges: list[ExcludedRange] = field(default_factory=list)
    dash_blocks: int = 0


# Alike in outline to dynamicport.py's _Assembler but kept apart: a table here may close empty,
# while a block there must be complete (start and count) and raises otherwise.
class _Assembler:
    """Group classified lines into tables: where each starts and which protocol it has."""

    __slots__ = ("current", "pending_protocol", "tables")

    def __init__(self) -> None:
        self.tables: list[ExcludedTable] = []
        self.current: _OpenTable | None = None
        # From the last show command; used by the next table whose title is missing.
        self.pending_protocol: str | None = None

    def close(self) -> None:
        """Finish the open table, if any."""
        if self.current is not None:
            self.tables.append(ExcludedTable(self.current.protocol, tuple(self.current.ranges)))
            self.current = None

    def open(self, protocol: str | None, from_title: bool) -> _OpenTable:
        """Finish the open table and start a new one."""
        self.close()
        self.current = _OpenTable(protocol, from_title)
        self.pending_protocol = None
        return self.current

    def take(self, lines: Sequence[_Line], index: int) -> None:
        """Apply one classified line."""
        line = lines[index]
        current = self.current
        if line.kind is _Kind.BAD_ROW:
            raise ParseError(line.problem, line.number, line.text)
        if line.row is not None:
            table = current if current is not None else self.open(self.pending_protocol, False)
            table.ranges.append(line.row)
        elif line.kind is _Kind.LONE_NUMBER:
            _check_lone_number(lines, index)
        elif line.kind is _Kind.DASH_BLOCK:
            if current is None or current.ranges or current.dash_blocks:
                current = self.open(self.pending_protocol, False)
            current.dash_blocks += 1
        elif line.kind is _Kind.SHOW_COMMAND:
            self.close()
            self.pending_protocol = line.protocol
        elif line.kind is _Kind.TITLE:
            # The title is what netsh printed, so it outranks the command typed before it.
            self.open(line.protocol, True)
        elif line.kind is _Kind.LABELLED_NUMBER and _is_bare_title(current):
            # A dynamicport block ("label : number") under that title: not an exclusion table.
            self.current = None


def parse_excluded(data: bytes | str, codepage: str = DEFAULT_CODEPAGE) -> list[ExcludedTable]:
    """Parse every excludedportrange table in ``data``, in order; raise ParseError otherwise."""
    numbered = numbered_lines(decode_text(data, codepage))
    tools = find_tool_prefixes(raw for _, raw in numbered)
    lines = [_classify(number, strip_prefixes(raw, tools)) for number, raw in numbered]
    assembler = _Assembler()
    for index in range(len(lines)):
        assembler.take(lines, index)
    assembler.close()
    if not assembler.tables:
        raise ParseError("no excludedportrange table found (no title, column header or row)")
    return assembler.tables


def excluded_to_json(tables: Sequence[ExcludedTable]) -> list[dict[str, object]]:
    """Render parsed tables in the stored JSON shape."""
    return [
        {
            "protocol": table.protocol,
            "ranges": [
                {"start": item.start, "end": item.end, "administered": item.administered}
                for item in table.ranges
            ],
        }
        for table in tables
    ]


def _classify(number: int, text: str) -> _Line:
    """Name what one input line (its prefixes dropped) is, by its shape alone."""
    if not text:
        return _Line(number, text, _Kind.BLANK)
    row = _ROW.fullmatch(text)
    if row:
        return _read_row(row, number, text)
    if _LONE_NUMBER.fullmatch(text):
        return _Line(number, text, _Kind.LONE_NUMBER)
    if _ROW_LIKE.fullmatch(text):
        problem = "not a row: a row is a start port, an end port and an optional '*'"
        return _Line(number, text, _Kind.BAD_ROW, problem=problem)
    if DASH_BLOCK.fullmatch(text):
        return _Line(number, text, _Kind.DASH_BLOCK)
    show = _SHOW_COMMAND.search(text)
    if show:
        protocol = read_command_protocol(show.group("rest"))
        return _Line(number, text, _Kind.SHOW_COMMAND, protocol=protocol)
    protocol = read_title_protocol(text)
    if protocol is not None:
        return _Line(number, text, _Kind.TITLE, protocol=protocol)
    labelled = _LABELLED_NUMBER.fullmatch(text)
    if labelled and any(char.isalpha() for char in labelled.group("label")):
        return _Line(number, text, _Kind.LABELLED_NUMBER)
    return _Line(number, text, _Kind.OTHER)


def _read_row(row: re.Match[str], number: int, text: str) -> _Line:
    """Read a row match into a range, or into a bad row when its ports are impossible."""
    start, end = read_digits(row.group(1)), read_digits(row.group(2))
    if max(start, end) > MAX_PORT:
        return _Line(number, text, _Kind.BAD_ROW, problem=f"port out of range 0-{MAX_PORT}")
    if start > end:
        return _Line(number, text, _Kind.BAD_ROW, problem="start port is greater than end port")
    return _Line(number, text, _Kind.ROW, row=ExcludedRange(start, end, row.group(3) is not None))


def _check_lone_number(lines: Sequence[_Line], index: int) -> None:
    """Raise for a lone integer that is a cut or wrapped row; gutter numbers pass."""
    before = _neighbour(lines, index, -1)
    after = _neighbour(lines, index, 1)
    if after is None:
        # The paste ends on a cut row (a truncated excerpt): nothing after it to misread.
        return
    if (before is not None and before.kind is _Kind.ROW) or after.kind is _Kind.ROW:
        line = lines[index]
        raise ParseError("a row with one number only: cut or wrapped", line.number, line.text)


def _neighbour(lines: Sequence[_Line], index: int, step: int) -> _Line | None:
    """Return the nearest non-blank line before (step -1) or after (step 1) ``index``."""
    position = index + step
    while 0 <= position < len(lines):
        if lines[position].kind is not _Kind.BLANK:
            return lines[position]
        position += step
    return None


def _is_bare_title(table: _OpenTable | None) -> bool:
    """Tell whether ``table`` is a bare title so far (no dash block, no row)."""
    return table is not None and table.from_title and not table.ranges and not table.dash_blocks
