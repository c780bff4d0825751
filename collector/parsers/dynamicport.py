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

What people add is handled as ``notes.py`` says: a marker before a value line and a note after it
are stripped with a warning; a value that holds a digit but is no number, and a marker of
omission (``...``) once a block has begun, are errors (unless the input's header declares it
truncated). A paste whose last value has no line end may be cut inside it: a warning says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

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
    "DynamicPortRange",
    "dynamicport_to_json",
    "parse_dynamicport",
]

# Values are read from these, so they stay apart from excluded.py's looser _LABELLED_NUMBER, which
# only spots a dynamicport block. The last colon decides; ASCII colons are followed by a blank in
# netsh output, which keeps "localhost:8080" and "12:30:45" out.
_LABELLED = re.compile(r"(?P<label>.*\S)\s*(?::\s+|：\s*)(?P<value>\S+)")
# The common value line in full: one colon, a label, at most five digits (int() is safe).
_PLAIN_VALUE = re.compile(
    r"[ \t]*(?P<label>[^:：]*[^\s:：])[ \t]*(?::[ \t]+|：[ \t]*)(?P<value>[0-9]{1,5})[ \t]*"
)
# A line of dashes only (one run, or two as under excludedportrange's headers).
_DASH_LINE = re.compile(r"-+(?:\s+-+)*")
_LABEL_ONLY = re.compile(r"(?P<label>.*\S)\s*[:：]")
_NUMBER = re.compile(r"[0-9]+")
# A number written with separators or a sign: meant as a value, but not one netsh prints.
_NUMBER_LIKE = re.compile(r"[-+]?[0-9][0-9.,' ]*")
# Each parser names its own command (excluded.py has the "excl" twin): the other parser's command
# must not open a block here.
_SHOW_COMMAND = re.compile(r"\bsh(?:ow?)?\s+dyn\w*(?P<rest>.*)", re.IGNORECASE)
# An excludedportrange row (with DASH_BLOCK, its underline): under a title it means the title is
# not ours. Kept apart from excluded.py's _ROW, which also reads a footer glued onto the last row:
# a plain row is enough to give the title away, and taking _ROW would change which titles this
# parser drops.
_EXCLUDED_ROW = re.compile(r"[0-9]+\s+[0-9]+(?:\s*\*)?")


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


# Alike in outline to excluded.py's _Assembler but kept apart: a block here must be complete when
# it closes (start and count, else ParseError), while a table there may close empty, and the two
# take different lines (raw text here, classified lines with neighbours there).
class _Assembler:
    """Collect blocks line by line and check each one when it ends."""

    __slots__ = ("current", "declared", "last_value_line", "pending_protocol", "ranges", "warnings")

    def __init__(self, declared: bool) -> None:
        self.ranges: list[DynamicPortRange] = []
        self.current: _Block | None = None
        # From the last show command; used by the next block whose title is missing.
        self.pending_protocol: str | None = None
        # The input's header says it is an excerpt: a cut is reported, not refused.
        self.declared = declared
        self.warnings: list[ParseWarning] = []
        self.last_value_line = 0

    def cut(self, number: int, text: str, reason: str) -> None:
        """Refuse a cut paste, or report the cut when the input declared it."""
        if not self.declared:
            raise ParseError(f"{reason}; {CUT_ADVICE}", number, text)
        self.warnings.append(ParseWarning(number, f"{reason} (declared truncated)", text))

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
        self.last_value_line = number
        block = self.current
        if block is None or block.foreign or block.count is not None:
            block = self.open(self.pending_protocol, number, text, from_title=False)
        if block.start is None:
            # Port 0 is never part of a dynamic range; refusing it also keeps an over-long
            # count (read as MAX_PORT + 1) from fitting by starting at 0.
            if not 1 <= value <= MAX_PORT:
                raise ParseError(f"start port out of range 1-{MAX_PORT}", number, text)
            block.start, block.start_line, block.start_text = value, number, text
            return
        if value < 1:
            raise ParseError("number of ports must be at least 1", number, text)
        if block.start + value - 1 > MAX_PORT:
            raise ParseError(f"range ends past port {MAX_PORT}", number, text)
        block.count = value


def parse_dynamicport(
    data: bytes | str,
    codepage: str = DEFAULT_CODEPAGE,
    *,
    warnings: list[ParseWarning] | None = None,
) -> list[DynamicPortRange]:
    """Parse every dynamicport block in ``data``, in order; raise ParseError otherwise.

    What was stripped or is doubtful on purpose is appended to ``warnings`` when it is given.
    """
    whole = decode_text(data, codepage)
    assembler = _Assembler(declares_truncation(header_comments(whole)))
    numbered = numbered_lines(whole)
    tools = find_tool_prefixes(raw for _, raw in numbered)
    last = 0
    for number, raw in numbered:
        plain = _PLAIN_VALUE.fullmatch(raw) if not tools else None
        if plain and _is_label(plain.group("label")):
            # Most lines of a long paste are values: read them without the general checks.
            last = number
            assembler.value(number, raw.strip(), int(plain.group("value")))
            continue
        text = strip_prefixes(raw, tools)
        if text:
            last = number
            _take(assembler, number, text)
    assembler.close()
    if not assembler.ranges:
        raise ParseError("no dynamicport block found (no title and no 'label : number' line)")
    if assembler.last_value_line == last and not whole.endswith(("\n", "\r")):
        assembler.warnings.append(
            ParseWarning(
                last,
                "the paste ends on this value without a line end: if it was cut inside the"
                " number, the number is wrong",
                numbered[-1][1],
            )
        )
    if warnings is not None:
        warnings.extend(assembler.warnings)
    return assembler.ranges


def dynamicport_to_json(ranges: Sequence[DynamicPortRange]) -> list[dict[str, object]]:
    """Render parsed ranges in the stored JSON shape."""
    return [
        {"protocol": item.protocol, "start": item.start, "count": item.count} for item in ranges
    ]


def _take(assembler: _Assembler, number: int, text: str) -> None:
    """Apply one non-blank line, classified by its shape."""
    if is_omission(text):
        if assembler.current is not None or assembler.ranges:
            assembler.cut(number, text, "a marker of omission after a block began: lines removed")
        return
    value = _read_value(text)
    if value is not None:
        # Most lines of a long paste are values: no title or show command has ": <digits>".
        assembler.value(number, text, read_digits(value))
        return
    if _DASH_LINE.fullmatch(text):
        _mark_foreign(assembler, text)  # the underline: no title, value or note in it
        return
    peeled = peel(text)
    if peeled is not None and _read_value(peeled.body) is not None:
        assembler.warnings.extend(peeled.warnings(number, text))
        text = peeled.body
    show = _SHOW_COMMAND.search(text)
    if show:
        assembler.close()
        assembler.pending_protocol = read_command_protocol(show.group("rest"))
        return
    protocol = read_title_protocol(text)
    if protocol is not None:
        # The title is what netsh printed, so it outranks the command typed before it.
        assembler.open(protocol, number, text, from_title=True)
        return
    labelled = _LABELLED.fullmatch(text)
    if labelled and _is_label(labelled.group("label")):
        value = labelled.group("value")
        if _NUMBER.fullmatch(value):
            assembler.value(number, text, read_digits(value))
            return
        if assembler.awaiting_value() and (
            _NUMBER_LIKE.fullmatch(value) or any(char in "0123456789" for char in value)
        ):
            raise ParseError(
                f"cannot read the number after the colon; if the paste was damaged, {CUT_ADVICE}",
                number,
                text,
            )
    label_only = _LABEL_ONLY.fullmatch(text)
    if label_only and _is_label(label_only.group("label")) and assembler.awaiting_value():
        raise ParseError("label without a number", number, text)
    _mark_foreign(assembler, text)


def _mark_foreign(assembler: _Assembler, text: str) -> None:
    """Mark a titled block foreign when an excludedportrange row or header follows its title."""
    block = assembler.current
    if (
        block is not None
        and block.from_title
        and block.start is None
        and (_EXCLUDED_ROW.fullmatch(text) or DASH_BLOCK.fullmatch(text))
    ):
        block.foreign = True


def _read_value(text: str) -> str | None:
    """Return the number of a ``label : number`` line, None for any other line."""
    labelled = _LABELLED.fullmatch(text)
    if labelled and _is_label(labelled.group("label")) and _NUMBER.fullmatch(labelled["value"]):
        return labelled.group("value")
    return None


def _is_label(label: str) -> bool:
    """Tell whether text before a colon can be a localized label (letters, no trailing digit)."""
    return any(char.isalpha() for char in label) and not label[-1].isdigit()
