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
except next to a row, where they mean a cut or wrapped row: an error, also at the end of the input
(a paste cut inside its last row) unless the input's header declares it truncated.

What people add is handled as ``notes.py`` says: a marker before a row and a note after it are
stripped with a warning; a line that is mostly digits but no row (``5000O 50059 *``) and a marker
of omission (``...``, ``…``) inside a table are errors. netsh always prints the footer
(``* - ...``), even under an empty table, so a table without it may have been cut: it is read,
with a warning naming its last line (a table that runs to the end of a footerless paste cannot be
told from a cut one, and real pastes without a footer are common).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum, auto

from collector.parsers.errors import ParseError
from collector.parsers.notes import (
    CUT_ADVICE,
    ParseWarning,
    declares_truncation,
    is_omission,
    peel,
)
from collector.parsers.shape import (
    DASH_BLOCK,
    MAX_PORT,
    find_tool_prefixes,
    read_command_protocol,
    read_digits,
    read_title_protocol,
    strip_prefixes,
)
from collector.parsers.text import DEFAULT_CODEPAGE, decode_text, header_comments, numbered_lines

__all__ = [
    "DEFAULT_CODEPAGE",
    "ExcludedRange",
    "ExcludedTable",
    "excluded_to_json",
    "parse_excluded",
]

_ROW = re.compile(r"([0-9]+)\s+([0-9]+)(?:\s*(\*))?(?P<footer>\s*\*\s+-(?:\s.*)?)?")
# The footnote under every table: "* - Administered port exclusions." in the display language.
_FOOTER = re.compile(r"\*\s*-(?:\s.*)?")
# Only digits, stars and blanks: such a line is meant as a row even when it is not a valid one.
_ROW_LIKE = re.compile(r"[\s*]*[0-9][0-9\s*]*")
_LONE_NUMBER = re.compile(r"[0-9]+")
# A row as netsh prints it, indent and all; five digits at most, so int() is always safe.
_PLAIN_ROW = re.compile(r"[ \t]*([0-9]{1,5})[ \t]+([0-9]{1,5})(?:[ \t]+(\*))?[ \t]*")
# A footer that a web copy glued onto the last row: "52315 52315 ** - Administered ...".
_GLUED_FOOTER = re.compile(r"\*\s+-(?:\s.*)?$")
_TWO_NUMBERS = re.compile(r"[0-9]+\s+[0-9]+(?![0-9])")
# Two five-digit ports, a star and some slack: anything longer is no damaged row.
_ROW_MAX_LENGTH = 16
_NOT_A_ROW = (
    "not a row: a row is a start port, an end port and an optional '*'; "
    f"if the paste was damaged, {CUT_ADVICE}"
)
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
    OMISSION = auto()
    DAMAGED_ROW = auto()
    FOOTER = auto()
    DASH_BLOCK = auto()
    SHOW_COMMAND = auto()
    TITLE = auto()
    LABELLED_NUMBER = auto()
    OTHER = auto()


# Not frozen: one is made per input line, and a frozen dataclass's __init__ is several times
# slower. Nothing changes a _Line once _classify made it.
@dataclass(slots=True)
class _Line:
    number: int
    text: str
    kind: _Kind
    protocol: str | None = None
    row: ExcludedRange | None = None
    problem: str = ""
    warnings: tuple[ParseWarning, ...] = ()
    footer: bool = False


@dataclass(slots=True)
class _OpenTable:
    protocol: str | None
    from_title: bool
    ranges: list[ExcludedRange] = field(default_factory=list)
    dash_blocks: int = 0
    footer: bool = False
    last_line: _Line | None = None


# Alike in outline to dynamicport.py's _Assembler but kept apart: a table here may close empty,
# while a block there must be complete (start and count) and raises otherwise.
class _Assembler:
    """Group classified lines into tables: where each starts and which protocol it has."""

    __slots__ = ("current", "declared", "pending_protocol", "tables", "warnings")

    def __init__(self, declared: bool) -> None:
        self.tables: list[ExcludedTable] = []
        self.current: _OpenTable | None = None
        # From the last show command; used by the next table whose title is missing.
        self.pending_protocol: str | None = None
        # The input's header says it is an excerpt: a cut is expected, and reported, not refused.
        self.declared = declared
        self.warnings: list[ParseWarning] = []

    def close(self) -> None:
        """Finish the open table, if any."""
        table = self.current
        if table is None:
            return
        if not table.footer and table.last_line is not None:
            self.warnings.append(
                ParseWarning(
                    table.last_line.number,
                    "no footer ('* - ...') after this table's last line: netsh always prints one,"
                    " so rows after this line may be missing from the paste",
                    table.last_line.text,
                )
            )
        self.tables.append(ExcludedTable(table.protocol, tuple(table.ranges)))
        self.current = None

    def cut(self, line: _Line, reason: str) -> None:
        """Refuse a table that the paste cut, or report it when the input declared the cut."""
        if not self.declared:
            raise ParseError(f"{reason}; {CUT_ADVICE}", line.number, line.text)
        self.warnings.append(ParseWarning(line.number, f"{reason} (declared truncated)", line.text))

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
        self.warnings.extend(line.warnings)
        if line.row is not None:
            if current is None or current.footer:
                current = self.open(self.pending_protocol, False)
            current.ranges.append(line.row)
            current.last_line = line
            current.footer = line.footer
        elif line.kind is _Kind.DAMAGED_ROW:
            # Inside a table a mostly-digit line is a row that lost a character; elsewhere it is
            # prose (a container id, a timestamp) and no row of ours.
            if current is not None and not current.footer:
                raise ParseError(line.problem, line.number, line.text)
        elif line.kind is _Kind.FOOTER:
            if current is not None:
                current.footer = True
        elif line.kind is _Kind.OMISSION:
            if current is not None and not current.footer:
                self.cut(line, "a marker of omission inside the table: rows were removed here")
        elif line.kind is _Kind.LONE_NUMBER:
            if _is_cut_row(lines, index):
                self.cut(line, "the paste ends inside a row (one number only)")
            else:
                _check_lone_number(lines, index)
        elif line.kind is _Kind.DASH_BLOCK:
            if current is None or current.ranges or current.dash_blocks:
                current = self.open(self.pending_protocol, False)
            current.dash_blocks += 1
            current.last_line = line  # an empty table shows its footer too
        elif line.kind is _Kind.SHOW_COMMAND:
            self.close()
            self.pending_protocol = line.protocol
        elif line.kind is _Kind.TITLE:
            # The title is what netsh printed, so it outranks the command typed before it.
            self.open(line.protocol, True).last_line = line  # its footer is due as well
        elif line.kind is _Kind.LABELLED_NUMBER and _is_bare_title(current):
            # A dynamicport block ("label : number") under that title: not an exclusion table.
            self.current = None


def parse_excluded(
    data: bytes | str,
    codepage: str = DEFAULT_CODEPAGE,
    *,
    warnings: list[ParseWarning] | None = None,
) -> list[ExcludedTable]:
    """Parse every excludedportrange table in ``data``, in order; raise ParseError otherwise.

    What was stripped or is doubtful on purpose is appended to ``warnings`` when it is given.
    """
    text = decode_text(data, codepage)
    numbered = numbered_lines(text)
    tools = find_tool_prefixes(raw for _, raw in numbered)
    lines = [_classify_raw(number, raw, tools) for number, raw in numbered]
    assembler = _Assembler(declares_truncation(header_comments(text)))
    for index in range(len(lines)):
        assembler.take(lines, index)
    assembler.close()
    if not assembler.tables:
        raise ParseError("no excludedportrange table found (no title, column header or row)")
    if warnings is not None:
        warnings.extend(assembler.warnings)
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


def _classify_raw(number: int, raw: str, tools: frozenset[str]) -> _Line:
    """Classify one input line as printed, taking the common plain row the short way."""
    if not tools:
        # Most lines of a long table are plain rows: no prefix to drop, nothing else to try.
        plain = _PLAIN_ROW.fullmatch(raw)
        if plain:
            start, end = int(plain.group(1)), int(plain.group(2))
            if end <= MAX_PORT and start <= end:
                row = ExcludedRange(start, end, plain.group(3) is not None)
                return _Line(number, raw.strip(), _Kind.ROW, row=row)
    return _classify(number, strip_prefixes(raw, tools))


def _classify(number: int, text: str) -> _Line:
    """Name what one input line (its prefixes dropped) is, by its shape alone."""
    if not text:
        return _Line(number, text, _Kind.BLANK)
    row = _ROW.fullmatch(text)
    if row:
        return _read_row(row, number, text)
    if _LONE_NUMBER.fullmatch(text):
        return _Line(number, text, _Kind.LONE_NUMBER)
    if is_omission(text):
        return _Line(number, text, _Kind.OMISSION)
    peeled = peel(text)
    if peeled is not None and (row := _ROW.fullmatch(peeled.body)):
        line = _read_row(row, number, text)
        if line.kind is _Kind.ROW:
            return replace(line, warnings=tuple(peeled.warnings(number, text)))
        return line
    if _ROW_LIKE.fullmatch(text):
        return _Line(number, text, _Kind.BAD_ROW, problem=_NOT_A_ROW)
    if _is_damaged_row(text):
        return _Line(number, text, _Kind.DAMAGED_ROW, problem=_NOT_A_ROW)
    if _FOOTER.fullmatch(text):
        return _Line(number, text, _Kind.FOOTER)
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
    first, second = row.group(1, 2)
    # Up to five digits fit int() safely; longer runs go through read_digits' guard.
    start = int(first) if len(first) <= 5 else read_digits(first)
    end = int(second) if len(second) <= 5 else read_digits(second)
    if max(start, end) > MAX_PORT:
        return _Line(number, text, _Kind.BAD_ROW, problem=f"port out of range 0-{MAX_PORT}")
    if start > end:
        return _Line(number, text, _Kind.BAD_ROW, problem="start port is greater than end port")
    administered = row.group(3) is not None
    footer = row.group("footer") is not None
    return _Line(
        number, text, _Kind.ROW, row=ExcludedRange(start, end, administered), footer=footer
    )


def _is_damaged_row(text: str) -> bool:
    """Tell whether a short line is mostly digits: a row that lost or gained a character."""
    if _TWO_NUMBERS.match(text):
        return True  # a row's two ports followed by what no row holds
    glued = _GLUED_FOOTER.search(text)
    solid = "".join(text[: glued.start() if glued else len(text)].split())
    if not 3 <= len(solid) <= _ROW_MAX_LENGTH:
        return False
    digits = sum(char in "0123456789*" for char in solid)
    return 2 * digits >= len(solid)


def _is_cut_row(lines: Sequence[_Line], index: int) -> bool:
    """Tell whether a lone integer ends the input right after a row: its last row, cut."""
    before = _neighbour(lines, index, -1)
    return _neighbour(lines, index, 1) is None and before is not None and before.kind is _Kind.ROW


def _check_lone_number(lines: Sequence[_Line], index: int) -> None:
    """Raise for a lone integer that is a cut or wrapped row; gutter numbers pass."""
    before = _neighbour(lines, index, -1)
    after = _neighbour(lines, index, 1)
    if after is None:
        return  # a gutter number after the table; one right after a row is _is_cut_row's
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
