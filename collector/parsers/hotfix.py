"""Read the list of installed Windows updates out of what a host printed.

These shapes are understood, anywhere in the input and in any display language:

- ``Get-HotFix`` (and ``Get-CimInstance Win32_QuickFixEngineering``, ``Select-Object`` subsets):
  a table whose header words are property names (``Source Description HotFixID InstalledBy
  InstalledOn``), usually with a dash row under it;
- ``wmic qfe`` and ``wmic qfe list brief``: the same kind of table, wider and without dashes;
- ``Get-HotFix | Format-List`` and ``wmic qfe list full``: ``Name : value`` / ``Name=value``
  records separated by blank lines;
- the hotfix section of ``systeminfo``: a ``<label>: <text with one number N>`` line followed by
  ``[01]: KB...`` item lines.  The label and the sentence are localized (``8 Hotfix(s)
  Installed.``, ``安装了 8 个修补程序。``), so the section is found by that shape plus KB-shaped
  items (the processor and network-card sections have the same shape but no KB items); its items
  must be numbered 1..N without a gap, and N must be the count announced.

Property names are never localized, so table headers and list keys are matched by name; every
other line (titles, prompts, systeminfo's other fields) is ignored by shape.  Cells are cut at
the header's column positions, counted in console cells (East Asian wide characters take two),
because cells may be blank or hold spaces (``Security Update``, ``NT AUTHORITY\\SYSTEM``,
``3/22/2018 12:00:00 AM``).  A row that does not fit those positions (a whitespace-collapsed
copy), or whose cells do not hold what their columns hold (``wmic`` pads by bytes, so a Cyrillic
or CJK ``InstalledBy`` shifts the later columns left and the date lands in the wrong cell), is
split by tokens instead, anchored on what cannot move: its KB number and its date.

A marker before a row or item and a note after it are stripped with a warning (``notes.py``);
a marker of omission (``...``) inside a table, a list of records or a section is a ParseError.

Dates are printed in the host's regional format.  Year-first and compact forms (``2018-03-22``,
``2018/03/22``, ``20180322``, Korean ``2018-03-22 오후 12:00:00``) and 16-hex-digit FILETIMEs
(``01c9c5ce4b48e5fd``, read as a UTC date) need no guess.  For year-last forms the day/month order
is decided per table from its own rows: a first field above 12 proves day-first, a second field
above 12 proves month-first, and both in one table is a ParseError.  When no row decides, the order
is assumed (``HotfixTable.date_order_assumed``):

1. a row shaped ``d/MM/yyyy`` (``8/02/2020``: unpadded first field, zero-padded second) is
   day-first: cultures that pad only one field pad the month (es, en-AU, en-NZ and nl-BE print
   ``d/MM/yyyy``); none known prints ``M/dd/yyyy``;
2. otherwise ``/`` means month-first, ``.`` or ``-`` day-first.

Why month-first for ``/``: the corpus's decidable tables are all month-first (``3/22/2018``
from Get-HotFix, ``11/21/2016`` from ``wmic qfe``), which is en-US ``M/d/yyyy``.  Get-HotFix
formats dates in the host's culture, not the invariant one (corpus/facts.md quotes a Spanish
paste: ``8/02/2020 12:00:00 a. m.``); the invariant culture only shapes string conversion, and
it is month-first as well (``MM/dd/yyyy``).  pywinrm asks WinRM for an en-US locale and data locale,
but with ``mustUnderstand="false"``, so the host may ignore it.  Month-first is therefore the best
single guess for ``/``, not a fact, and is flagged as assumed.  The cultures that print a
year-last date with ``.`` or ``-`` (de, ru, pl, tr, cs, nl, da) are all day-first; none known is
month-first, so month-first there would be wrong by default.

Whatever cannot be read this way is a ParseError naming its line: a row under a table header
that neither fits the columns nor splits around one KB number, a ``[NN]: KB...`` item outside
a counted section, a section whose count differs from its items, a Format-List record with an
InstalledOn but no HotFixID, an unreadable or impossible date, and input holding no update list
at all.  Years outside 1980-2200 are rejected: they come from non-Gregorian calendars (Thai
2561, Hijri 1439, Persian 1397) that would otherwise become silently wrong dates.

``parse_hotfix`` gives the rows; ``parse_hotfix_tables`` gives them per printed block with the
date order used and whether it was assumed; ``infer_date_order`` applies the proof rule alone.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

from collector.parsers.errors import ParseError
from collector.parsers.notes import CUT_ADVICE, ParseWarning, is_omission, peel
from collector.parsers.shape import read_digits
from collector.parsers.text import DEFAULT_CODEPAGE, decode_text, numbered_lines
from collector.windows import PLAUSIBLE_YEARS

DateOrder = Literal["mdy", "dmy", "ymd"]
TableKind = Literal["table", "list", "systeminfo"]

__all__ = [
    "DEFAULT_CODEPAGE",
    "DateOrder",
    "Hotfix",
    "HotfixTable",
    "hotfix_to_json",
    "infer_date_order",
    "parse_hotfix",
    "parse_hotfix_tables",
]


@dataclass(frozen=True, slots=True)
class Hotfix:
    """One installed update."""

    kb: str
    description: str | None
    installed_by: str | None
    installed_on: date | None


@dataclass(frozen=True, slots=True)
class HotfixTable:
    """One printed block of updates, with the day/month order used for its dates."""

    kind: TableKind
    first_line: int
    rows: tuple[Hotfix, ...]
    # The order applied to year-last dates ("ymd" when all dates are year-first), None if undated.
    date_order: DateOrder | None
    # True when no row proved the order and the module's assumption was used.
    date_order_assumed: bool


# Not frozen: one is made per row, and a frozen dataclass's __init__ is several times slower.
@dataclass(slots=True)
class _RawRow:
    """A row's cells as printed, before its date is read."""

    start: int  # where the row or record begins
    line: int  # where its date is printed (the line a date error names)
    text: str
    hotfix_id: str
    description: str | None
    installed_by: str | None
    installed_on: str | None


# Not frozen: one is made per row, and a frozen dataclass's __init__ is several times slower.
@dataclass(slots=True)
class _Stamp:
    """A printed date split into its fields (ymd: year, month, day; year_last: a, b, year)."""

    shape: Literal["ymd", "year_last", "filetime"]
    fields: tuple[str, str, str]
    separator: str


# Property names of Win32_QuickFixEngineering as Get-HotFix and wmic print them (never localized).
_PROPERTIES = frozenset(
    {
        "caption",
        "csname",
        "description",
        "fixcomments",
        "hotfixid",
        "installdate",
        "installedby",
        "installedon",
        "name",
        "servicepackineffect",
        "status",
        "source",
        "pscomputername",
    }
)
# How a whitespace-collapsed row maps onto columns: one token, a URL or nothing, free text,
# or columns that are blank in practice (if they are not, the row cannot be split).
_SINGLE_TOKEN = frozenset({"source", "csname", "pscomputername"})
_URL_OR_BLANK = frozenset({"caption"})
_FREE_TEXT = frozenset({"description", "fixcomments"})
_USUALLY_BLANK = frozenset({"installdate", "name", "servicepackineffect", "status"})

_ASCII_DIGIT = re.compile(r"[0-9]")
_KB = re.compile(r"KB\s?([0-9]+)", re.IGNORECASE)
_KB_TOKEN = re.compile(r"KB[0-9]+", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PROMPT = re.compile(r"\s*(?:\[[^\]]*\]:\s*)?(?:PS(?:\s[^>]*)?>|[A-Za-z]:\\[^>]*>)")
_DASHES = re.compile(r"-+(?:\s+-+)*")
_KEY_LINE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*[:=]\s?(.*)")
# "<label>: <sentence holding one number>", the label and sentence in any language.
_COUNT_LINE = re.compile(r"\s*[^\s:：][^:：]*[:：]\s*(?P<rest>.*\S)\s*")
_COUNT = re.compile(r"(?<![0-9])[0-9]+(?![0-9])")
_ITEM = re.compile(r"\s*\[([0-9]+)\]:\s*(.*)")

_YMD = re.compile(r"([0-9]{4})([-/.])([0-9]{1,2})\2([0-9]{1,2})")
_YEAR_LAST = re.compile(r"([0-9]{1,2})([-/.])([0-9]{1,2})\2([0-9]{4})")
_SHORT_YEAR = re.compile(r"[0-9]{1,2}([-/.])[0-9]{1,2}\1[0-9]{2}")
_COMPACT = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_FILETIME = re.compile(r"[0-9A-Fa-f]{16}")
# Any of the five date shapes above in one pattern (is_date_token runs on every cell's tokens).
_DATE_TOKEN = re.compile(
    r"[0-9]{4}([-/.])[0-9]{1,2}\1[0-9]{1,2}|[0-9]{1,2}([-/.])[0-9]{1,2}\2[0-9]{4}"
    r"|[0-9]{1,2}([-/.])[0-9]{1,2}\3[0-9]{2}|[0-9]{8}|[0-9A-Fa-f]{16}"
)
# The same, as a whole token anywhere in a text (one search instead of one match per token).
_DATE_INSIDE = re.compile(rf"(?<!\S)(?:{_DATE_TOKEN.pattern})(?!\S)")
_TIME = re.compile(r"([0-9]{1,2})[:.]([0-9]{2})(?:[:.]([0-9]{2}))?")
_MARKER = re.compile(r"[^\W\d_][^\d\s]{0,11}")

_OMITTED = f"a marker of omission inside the update list: lines were removed; {CUT_ADVICE}"
# systeminfo numbers its items with two digits or more; no host lists a million updates.
_MAX_ITEMS = 999_999

_TICKS_PER_DAY = 864_000_000_000
_FILETIME_EPOCH = date(1601, 1, 1)


def parse_hotfix(
    data: bytes | str,
    codepage: str = DEFAULT_CODEPAGE,
    *,
    warnings: list[ParseWarning] | None = None,
) -> list[Hotfix]:
    """Parse every update list in ``data`` into hotfix rows, in printed order.

    What was stripped on purpose is appended to ``warnings`` when it is given.
    """
    tables = parse_hotfix_tables(data, codepage, warnings=warnings)
    return [row for table in tables for row in table.rows]


def parse_hotfix_tables(
    data: bytes | str,
    codepage: str = DEFAULT_CODEPAGE,
    *,
    warnings: list[ParseWarning] | None = None,
) -> tuple[HotfixTable, ...]:
    """Parse every update list in ``data``, keeping each block and its date order apart."""
    text = decode_text(data, codepage)
    lines = [(number, _ANSI.sub("", line)) for number, line in numbered_lines(text)]
    found: list[ParseWarning] = []
    tables: list[HotfixTable] = []
    records: list[_RawRow] = []
    i = 0
    # Lines up to here were read as a record that is no update: not read as records again.
    plain_until = 0
    # The line number of the last line read into an update list.
    consumed = 0
    while i < len(lines):
        number, line = lines[i]
        if not line.strip():
            i += 1
            continue
        if records and is_omission(line.strip()):
            raise ParseError(_OMITTED, number, line)
        record = _read_record(lines, i) if i >= plain_until else None
        if record is not None:
            row, end = record
            if row is not None:
                records.append(row)
                i = end
                consumed = lines[end - 1][0]
                continue
            plain_until = end
        if records:
            tables.append(_resolve("list", records[0].start, records))
            records = []
        header = _header_columns(line)
        if header is not None:
            rows, i = _read_table(lines, i, *header, found)
            tables.append(_resolve("table", number, rows))
            consumed = lines[i - 1][0]
            continue
        section, end = _read_section(lines, i, found)
        if section is not None:
            tables.append(_resolve("systeminfo", number, section))
            i = end
            consumed = lines[end - 1][0]
            continue
        item = _ITEM.fullmatch(line)
        if item and _KB_TOKEN.match(item.group(2).strip()):
            raise ParseError(
                "hotfix item outside a '<label>: N <text>' section; paste the whole systeminfo"
                " output",
                number,
                line,
            )
        # A count line that heads no update section (the processor's): skip its items at once.
        i = max(i + 1, end)
    if records:
        tables.append(_resolve("list", records[0].start, records))
    last = next(((n, t) for n, t in reversed(lines) if t.strip()), None)
    # Tables and lists print no end mark; a last row without a line end may be cut inside.
    if last is not None and consumed >= last[0] and not text.endswith(("\n", "\r")):
        found.append(
            ParseWarning(
                last[0],
                "the paste ends on this line without a line end: if it was cut inside the row,"
                " its last values are wrong",
                last[1],
            )
        )
    if warnings is not None:
        warnings.extend(found)
    if not tables:
        first = next(((n, t) for n, t in lines if t.strip()), None)
        if first is not None:
            raise ParseError("no update list found (Get-HotFix, wmic qfe or systeminfo)", *first)
    return tuple(tables)


def infer_date_order(values: Iterable[str]) -> DateOrder | None:
    """Return the date order that one table's printed dates prove, or None if none decides.

    ``"dmy"``/``"mdy"`` when a year-last date has a field above 12; ``"ymd"`` when every date is
    year-first, compact or a FILETIME; None when year-last dates leave the order open (the
    parser then assumes it, see the module docstring) or there are no dates.  Raises ParseError
    for an impossible or unreadable date or for a table that proves both orders.
    """
    stamps: list[tuple[int | None, str, _Stamp]] = []
    for value in values:
        stamp = _read_stamp(value, None, value)
        if stamp is not None:
            stamps.append((None, value, stamp))
    decided = _proven_order(stamps)
    if decided is not None:
        return decided
    if any(stamp.shape == "year_last" for _, _, stamp in stamps):
        return None
    if stamps:
        return "ymd"
    return None


def hotfix_to_json(result: Iterable[Hotfix]) -> list[dict[str, object]]:
    """Render hotfix rows as JSON-ready dicts with ISO dates."""
    return [
        {
            "kb": row.kb,
            "description": row.description,
            "installed_by": row.installed_by,
            "installed_on": row.installed_on.isoformat() if row.installed_on else None,
        }
        for row in result
    ]


# --- blocks ---------------------------------------------------------------------------------


def _header_columns(line: str) -> tuple[list[str], list[int]] | None:
    """Return a table header's property names and start columns, or None for other lines."""
    first = line.split(None, 1)
    if not first or first[0].casefold() not in _PROPERTIES:
        return None  # asked of every row: most fail on their first word
    words = [(match.group(0).casefold(), match.start()) for match in re.finditer(r"\S+", line)]
    if not words or any(word not in _PROPERTIES for word, _ in words):
        return None
    names = [word for word, _ in words]
    if "hotfixid" not in names or len(set(names)) != len(names):
        return None
    prefix = _display_offsets(line, wide=True)
    return names, [prefix[start] for _, start in words]


def _read_table(
    lines: Sequence[tuple[int, str]],
    start: int,
    names: list[str],
    starts: list[int],
    found: list[ParseWarning],
) -> tuple[list[_RawRow], int]:
    """Read the rows under the header at ``start``; return them and the index after the table."""
    rows: list[_RawRow] = []
    after_gap = False
    i = start + 1
    while i < len(lines):
        number, line = lines[i]
        if not line.strip():
            after_gap = True
            i += 1
            continue
        if is_omission(line.strip()):
            raise ParseError(_OMITTED, number, line)
        if _PROMPT.match(line) or _header_columns(line) is not None:
            break
        if _DASHES.fullmatch(line.strip()):
            after_gap = False
            i += 1
            continue
        row = _read_row_or_peeled(number, line, names, starts, found)
        if row is None:
            if after_gap:
                break
            raise ParseError("cannot read this row of the update table", number, line)
        rows.append(row)
        after_gap = False
        i += 1
    return rows, i


def _read_row_or_peeled(
    number: int, line: str, names: list[str], starts: list[int], found: list[ParseWarning]
) -> _RawRow | None:
    """Read a table row, else the same row without a marker or a note (with a warning)."""
    peeled = peel(line)
    try:
        row = _read_row(number, line, names, starts)
    except ParseError:
        if peeled is None:
            raise
        row = None
    if peeled is None:
        return row
    try:
        stripped = _read_row(number, peeled.body, names, starts)
    except ParseError:
        stripped = None
    # A note that fell into a column nobody reads (wmic's Status) is still reported.
    raw_unread = row is None or not _cells_agree(row)
    if (
        stripped is not None
        and _cells_agree(stripped)
        and (raw_unread or (row is not None and _values(row) == _values(stripped)))
    ):
        found.extend(peeled.warnings(number, line))
        return replace(stripped, text=line)
    if row is not None and _cells_agree(row):
        return row  # what looked like a note is a value ("DOMAIN\\user (admin)")
    if row is None:
        return None
    raise ParseError("cannot read this row of the update table", number, line)


def _values(row: _RawRow) -> tuple[str | None, ...]:
    """Return what a row gives: its id, description, installer and date as printed."""
    return (row.hotfix_id, row.description, row.installed_by, row.installed_on)


def _read_row(number: int, line: str, names: list[str], starts: list[int]) -> _RawRow | None:
    """Read one table row by column positions, else by tokens; None if it is no row at all."""
    cells = _cells_by_position(line, starts)
    values: dict[str, str] | None = None
    if cells is not None:
        values = dict(zip(names, cells, strict=True))
        if not _looks_like_id(values["hotfixid"]) or not _cells_fit(values):
            values = None
    if values is None:
        if not any(_KB_TOKEN.fullmatch(token) for token in line.split()):
            return None
        values = _cells_by_tokens(line, names)
        if values is None:
            raise ParseError("cannot split this update row into its columns", number, line)
    return _RawRow(
        start=number,
        line=number,
        text=line,
        hotfix_id=values["hotfixid"],
        description=values.get("description") or None,
        installed_by=values.get("installedby") or None,
        installed_on=values.get("installedon") or None,
    )


def _cells_fit(values: dict[str, str]) -> bool:
    """Tell whether cells cut by position keep the date in its column (see module notes)."""
    others = "\t".join(
        cell for name, cell in values.items() if name not in ("installedon", "installdate")
    )
    return _DATE_INSIDE.search(others) is None


def _cells_agree(row: _RawRow) -> bool:
    """Tell whether a row's date cell reads as a date (a note there would not)."""
    try:
        _read_stamp(row.installed_on, row.line, row.text)
    except ParseError:
        return False
    return True


def _looks_like_id(text: str) -> bool:
    """Tell whether a cell can be a HotFixID: ``KB4087256``, old ``Q147222`` or ``File 1``."""
    return 0 < len(text.split()) <= 2 and _ASCII_DIGIT.search(text) is not None


def _read_record(lines: Sequence[tuple[int, str]], start: int) -> tuple[_RawRow | None, int] | None:
    """Read a ``Name : value`` record at ``start``; None if the line is not one.

    The row is None for a record that is not an update (its lines are then looked at again).
    """
    fields: dict[str, str] = {}
    where: dict[str, tuple[int, str]] = {}
    last: str | None = None
    i = start
    while i < len(lines):
        number, line = lines[i]
        if not line.strip() or _PROMPT.match(line) or _ITEM.fullmatch(line):
            break
        match = _KEY_LINE.fullmatch(line)
        if match:
            key = match.group(1).casefold()
            if key in fields:
                break  # records pasted without their blank separator line
            fields[key] = match.group(2).strip()
            where[key] = (number, line)
            last = key
        elif last is not None and line[0].isspace():
            fields[last] = f"{fields[last]} {line.strip()}".strip()
        else:
            break
        i += 1
    if last is None:
        return None
    number, line = lines[start]
    if "hotfixid" not in fields:
        if "installedon" in fields or "installedby" in fields:
            raise ParseError("update record without a HotFixID", number, line)
        return None, i
    if not fields["hotfixid"]:
        raise ParseError("update record with a blank HotFixID", number, line)
    date_line, date_text = where.get("installedon", (number, line))
    row = _RawRow(
        start=number,
        line=date_line,
        text=date_text,
        hotfix_id=fields["hotfixid"],
        description=fields.get("description") or None,
        installed_by=fields.get("installedby") or None,
        installed_on=fields.get("installedon") or None,
    )
    return row, i


def _read_section(
    lines: Sequence[tuple[int, str]], start: int, found: list[ParseWarning]
) -> tuple[list[_RawRow] | None, int]:
    """Read systeminfo's hotfix section at ``start``; None (and where to go on) if it is none."""
    number, line = lines[start]
    # A section's first item follows its count line: look there before reading the count.
    if start + 1 >= len(lines) or "[" not in lines[start + 1][1]:
        return None, start + 1
    count = _read_count(line)
    if count is None:
        return None, start + 1
    items: list[_RawRow] = []
    omitted: tuple[int, str] | None = None
    i = start + 1
    while i < len(lines):
        item_number, item_line = lines[i]
        item = _ITEM.fullmatch(item_line)
        if item is None and item_line.strip():
            if is_omission(item_line.strip()):
                omitted = (item_number, item_line)
            break
        if item is not None:
            text = item.group(2).strip()
            if not text:
                reason = f"an item without its update; {CUT_ADVICE}"
                raise ParseError(reason, item_number, item_line)
            peeled = peel(text)
            if peeled is not None and _KB_TOKEN.fullmatch(peeled.body):
                found.extend(peeled.warnings(item_number, item_line))
                text = peeled.body
            row = _RawRow(item_number, item_number, item_line, text, None, None, None)
            items.append(row)
            if read_digits(item.group(1), limit=_MAX_ITEMS) != len(items):
                due = f"[{len(items):02d}]"
                problem = f"item numbered [{item.group(1)}] where {due} was due: items are missing"
                if _KB_TOKEN.match(text):
                    raise ParseError(f"{problem}; {CUT_ADVICE}", item_number, item_line)
        i += 1
    if not any(_KB_TOKEN.match(item.hotfix_id) for item in items):
        return None, i  # the processor or network-card section
    if omitted is not None:
        raise ParseError(_OMITTED, *omitted)
    if count != len(items):
        raise ParseError(
            f"section announces {count} hotfixes but lists {len(items)}; {CUT_ADVICE}",
            number,
            line,
        )
    return items, i


def _read_count(line: str) -> int | None:
    """Return the one number of a ``<label>: <sentence>`` line, None for other lines."""
    match = _COUNT_LINE.fullmatch(line)
    if match is None or _ITEM.fullmatch(line):
        return None
    numbers = _COUNT.findall(match.group("rest"))
    if len(numbers) != 1 or not any(char.isalpha() for char in match.group("rest")):
        return None
    return read_digits(numbers[0], limit=_MAX_ITEMS)


def _resolve(kind: TableKind, first_line: int, raws: Sequence[_RawRow]) -> HotfixTable:
    """Read the dates of one block with the day/month order its rows prove or imply."""
    stamps: list[tuple[_RawRow, _Stamp | None]] = [
        (raw, _read_stamp(raw.installed_on, raw.line, raw.text)) for raw in raws
    ]
    dated = [(raw.line, raw.text, stamp) for raw, stamp in stamps if stamp is not None]
    proven = _proven_order(dated)
    year_last = [stamp for _, _, stamp in dated if stamp.shape == "year_last"]
    order: DateOrder | None
    if year_last:
        order = proven or _assumed_order(year_last)
        assumed = proven is None
    else:
        order = "ymd" if dated else None
        assumed = False
    rows = tuple(
        Hotfix(
            kb=_normalized_kb(raw.hotfix_id),
            description=raw.description,
            installed_by=raw.installed_by,
            installed_on=_to_date(stamp, order, raw.line, raw.text) if stamp else None,
        )
        for raw, stamp in stamps
    )
    return HotfixTable(kind, first_line, rows, order, assumed)


def _normalized_kb(hotfix_id: str) -> str:
    """Return ``KB`` + digits for a KB-shaped id, else the id as printed."""
    match = _KB.fullmatch(hotfix_id.strip())
    return f"KB{match.group(1)}" if match else hotfix_id.strip()


# --- cells ----------------------------------------------------------------------------------


def _char_width(char: str) -> int:
    """Return how many console cells a character takes."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _display_offsets(line: str, wide: bool) -> list[int]:
    """Return the console column where each character starts, plus the line's end column."""
    if not wide or line.isascii():
        return list(range(len(line) + 1))  # one cell per character: no lookups per character
    offsets = []
    column = 0
    for char in line:
        offsets.append(column)
        column += _char_width(char) if wide else 1
    offsets.append(column)
    return offsets


def _cells_by_position(line: str, starts: Sequence[int]) -> list[str] | None:
    """Cut a row at the header's columns; None when its text does not line up with them."""
    if line.isascii():
        # One cell per character: the columns are the string's indexes, no offsets to build.
        return _cut_at(line, [min(start, len(line)) for start in starts])
    attempts = (
        [True, False] if not line.isascii() and any(_char_width(c) != 1 for c in line) else [True]
    )
    for wide in attempts:
        cells = _cut(line, starts, _display_offsets(line, wide))
        if cells is not None:
            return cells
    return None


def _cut(line: str, starts: Sequence[int], offsets: Sequence[int]) -> list[str] | None:
    """Cut ``line`` at display columns ``starts`` given each character's start column."""
    end_column = offsets[-1]
    cuts: list[int] = []
    for start in starts:
        if start >= end_column:
            cuts.append(len(line))
            continue
        index = bisect_left(offsets, start, 0, len(line))
        if offsets[index] != start:
            return None  # the column starts inside a double-width character
        cuts.append(index)
    return _cut_at(line, cuts)


def _cut_at(line: str, cuts: Sequence[int]) -> list[str] | None:
    """Cut ``line`` at string indexes ``cuts``; None when text runs across a column start."""
    if line[: cuts[0]].strip():
        return None
    cells: list[str] = []
    for k, cut in enumerate(cuts):
        end = cuts[k + 1] if k + 1 < len(cuts) else len(line)
        cell = line[cut:end]
        if cell.strip() and cell[0].isspace():
            return None  # text that does not start at its column: not this layout
        if k > 0 and 0 < cut < len(line) and not line[cut - 1].isspace():
            return None  # the previous cell runs into this column
        cells.append(cell.strip())
    return cells


def _cells_by_tokens(line: str, names: Sequence[str]) -> dict[str, str] | None:
    """Split a whitespace-collapsed row around its KB number; None when that is ambiguous."""
    tokens = line.split()
    at = [i for i, token in enumerate(tokens) if _KB_TOKEN.fullmatch(token)]
    if len(at) != 1:
        return None
    values = dict.fromkeys(names, "")
    values["hotfixid"] = tokens[at[0]]
    split = names.index("hotfixid")
    head = _fill_head(tokens[: at[0]], names[:split], values)
    return values if head and _fill_tail(tokens[at[0] + 1 :], names[split + 1 :], values) else None


def _fill_head(tokens: list[str], names: Sequence[str], values: dict[str, str]) -> bool:
    """Assign the tokens before the KB: single-token columns first, then free text."""
    free: str | None = None
    rest = list(tokens)
    for name in names:
        if name in _URL_OR_BLANK:
            if rest and "://" in rest[0] and free is None:
                values[name] = rest.pop(0)
        elif name in _SINGLE_TOKEN:
            if free is not None or not rest:
                return False
            values[name] = rest.pop(0)
        elif name in _FREE_TEXT:
            free = free or name
        elif name not in _USUALLY_BLANK:
            return False
    if rest:
        # A date before the KB means the row holds more than this layout can place.
        if free is None or any(_is_date_token(token) for token in rest):
            return False
        values[free] = " ".join(rest)
    return True


def _fill_tail(tokens: list[str], names: Sequence[str], values: dict[str, str]) -> bool:
    """Assign the tokens after the KB: installer text, then the date, then trailing names."""
    rest = list(tokens)
    columns = list(names)
    if not rest and "servicepackineffect" in columns:
        return False  # pre-Vista rows print a KB as ServicePackInEffect: which KB is the id?
    while columns and (columns[-1] in _SINGLE_TOKEN or columns[-1] in _USUALLY_BLANK):
        name = columns.pop()
        if name in _SINGLE_TOKEN:
            if not rest:
                return False
            values[name] = rest.pop()
    allowed = _USUALLY_BLANK | {"installedby", "installedon"}
    if any(name not in allowed for name in columns):
        return False
    if "installedon" in columns:
        if "installedby" in columns and columns.index("installedby") > columns.index("installedon"):
            return False
        start = _trailing_date(rest)
        if start is not None:
            values["installedon"] = " ".join(rest[start:])
            rest = rest[:start]
    if any(_is_date_token(token) for token in rest):
        return False  # a second date (InstallDate) or a date in an unexpected place
    if rest:
        if "installedby" not in columns:
            return False
        values["installedby"] = " ".join(rest)
    return True


# --- dates ----------------------------------------------------------------------------------


def _is_date_token(token: str) -> bool:
    """Tell whether a token is shaped like a printed date."""
    return _DATE_TOKEN.fullmatch(token) is not None


def _is_time_suffix(tokens: Sequence[str]) -> bool:
    """Tell whether tokens after a date are one time of day plus AM/PM-style markers."""
    if not tokens:
        return True
    times = [token for token in tokens if _is_time(token)]
    markers = [token for token in tokens if _MARKER.fullmatch(token)]
    return len(times) == 1 and len(markers) == len(tokens) - 1 and len(markers) <= 3


def _is_time(token: str) -> bool:
    """Tell whether a token is a valid time of day (``12:00:00``, ``0.00.00``)."""
    match = _TIME.fullmatch(token)
    if match is None:
        return False
    hour, minute, second = match.group(1), match.group(2), match.group(3) or "0"
    return int(hour) < 24 and int(minute) < 60 and int(second) < 60


def _trailing_date(tokens: Sequence[str]) -> int | None:
    """Return where a date (with its time) starts at the end of ``tokens``, if there is one."""
    for start in range(len(tokens) - 1, max(-1, len(tokens) - 6), -1):
        if _is_date_token(tokens[start]) and _is_time_suffix(tokens[start + 1 :]):
            return start
    return None


def _read_stamp(text: str | None, line: int | None, row: str) -> _Stamp | None:
    """Split a printed InstalledOn value; None when blank, ParseError when it is no date."""
    if text is None or not text.strip():
        return None
    first, *rest = text.split()
    if not _is_time_suffix(rest):
        raise ParseError(f"unreadable time in date {text.strip()!r}", line, row)
    if match := _YMD.fullmatch(first):
        return _Stamp("ymd", (match.group(1), match.group(3), match.group(4)), match.group(2))
    if match := _YEAR_LAST.fullmatch(first):
        return _Stamp("year_last", (match.group(1), match.group(3), match.group(4)), match.group(2))
    if match := _COMPACT.fullmatch(first):
        return _Stamp("ymd", (match.group(1), match.group(2), match.group(3)), "")
    if _FILETIME.fullmatch(first):
        return _Stamp("filetime", (first, "", ""), "")
    if _SHORT_YEAR.fullmatch(first):
        raise ParseError(f"two-digit year in {first!r} is ambiguous", line, row)
    raise ParseError(f"unreadable date {text.strip()!r}", line, row)


def _proven_order(stamps: Iterable[tuple[int | None, str, _Stamp]]) -> DateOrder | None:
    """Return the order that year-last dates prove by a field above 12; raise on conflict."""
    day_first: tuple[int | None, str] | None = None
    month_first: tuple[int | None, str] | None = None
    for line, row, stamp in stamps:
        if stamp.shape != "year_last":
            continue
        a, b = int(stamp.fields[0]), int(stamp.fields[1])
        if a > 12 and b > 12:
            raise ParseError(
                f"impossible date {_stamp_text(stamp)!r}: no field is a month", line, row
            )
        if a > 12 and day_first is None:
            day_first = (line, row)
        if b > 12 and month_first is None:
            month_first = (line, row)
        if day_first and month_first:
            where = [f"line {at}" for at in (day_first[0], month_first[0]) if at is not None]
            shown = f" ({' vs '.join(where)})" if where else ""
            raise ParseError(f"table mixes day-first and month-first dates{shown}", line, row)
    if day_first:
        return "dmy"
    if month_first:
        return "mdy"
    return None


def _stamp_text(stamp: _Stamp) -> str:
    """Return a date's fields joined back as printed."""
    return stamp.separator.join(field for field in stamp.fields if field)


def _assumed_order(year_last: Sequence[_Stamp]) -> DateOrder:
    """Return the order assumed for year-last dates no row decides (see the module docstring)."""
    if any(len(s.fields[0]) == 1 and s.fields[1].startswith("0") for s in year_last):
        return "dmy"
    return "mdy" if year_last[0].separator == "/" else "dmy"


def _to_date(stamp: _Stamp, order: DateOrder | None, line: int, row: str) -> date:
    """Turn a split date into a calendar date; ParseError naming the line if it cannot be."""
    if stamp.shape == "filetime":
        days = int(stamp.fields[0], 16) // _TICKS_PER_DAY
        try:
            return _FILETIME_EPOCH + timedelta(days=days)
        except OverflowError as exc:
            raise ParseError(f"FILETIME {stamp.fields[0]!r} is out of range", line, row) from exc
    if stamp.shape == "ymd":
        year, month, day = (int(field) for field in stamp.fields)
    elif order == "mdy":
        month, day, year = (int(field) for field in stamp.fields)
    else:
        day, month, year = (int(field) for field in stamp.fields)
    if year not in PLAUSIBLE_YEARS:
        raise ParseError(
            f"year {year} in {_stamp_text(stamp)!r} is outside "
            f"{PLAUSIBLE_YEARS.start}-{PLAUSIBLE_YEARS.stop - 1}"
            " (a non-Gregorian calendar?)",
            line,
            row,
        )
    try:
        return date(year, month, day)
    except ValueError as exc:
        raise ParseError(f"impossible date {_stamp_text(stamp)!r}", line, row) from exc
