"""Parse a bind-probe list: one failing port per line, ``index: port`` or just ``port``.

This is the shape of the seed report's F# probe (``printfn "%5d: %d" index port``). Its indexes
count from 0 without gaps, so a gap means lines were lost on the way: that is an error, not a
shorter list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from collector.parsers.errors import ParseError
from collector.parsers.notes import ParseWarning
from collector.parsers.shape import MAX_PORT, read_digits
from collector.parsers.text import DEFAULT_CODEPAGE, decode_text, numbered_lines

# ASCII digits only: "\d" would also take Arabic-Indic or fullwidth digits, which no probe prints.
# A probe lists each failing port once, so no index goes past the number of ports.
_MAX_INDEX = MAX_PORT
_ROW = re.compile(r"[ \t]*(?:([0-9]+)[ \t]*:[ \t]*)?([0-9]+)[ \t]*")


def parse_bind_failures(
    data: bytes | str,
    codepage: str = DEFAULT_CODEPAGE,
    *,
    warnings: list[ParseWarning] | None = None,
) -> list[int]:
    """Return the failing ports in the order listed; raise ParseError on any other line.

    Nothing is ever stripped here (every line is a port or an error), so ``warnings`` stays as
    it is; it is taken so that every parser is called alike.
    """
    ports: list[int] = []
    expected_index = 0
    for number, line in numbered_lines(decode_text(data, codepage)):
        if not line.strip():
            continue
        match = _ROW.fullmatch(line.rstrip())
        if match is None:
            raise ParseError("expected 'index: port' or a port number", number, line)
        index_text, port_text = match.groups()
        if index_text is not None:
            index = read_digits(index_text, limit=_MAX_INDEX)
            if index != expected_index:
                shown = index_text if index <= _MAX_INDEX else f"{index_text[:8]}..."
                raise ParseError(
                    f"index {shown} where {expected_index} was due: lines are missing",
                    number,
                    line,
                )
            expected_index += 1
        port = read_digits(port_text)
        if not 1 <= port <= MAX_PORT:
            shown = port_text if len(port_text) <= 8 else f"{port_text[:8]}..."
            raise ParseError(f"port {shown} is outside 1-{MAX_PORT}", number, line)
        ports.append(port)
    if not ports:
        raise ParseError("no failing port listed")
    return ports


def encode_runs(ports: Iterable[int], error_code: int) -> list[tuple[int, int, int]]:
    """Run-length encode ports sharing one error code as ascending (start, end, code) runs."""
    runs: list[tuple[int, int, int]] = []
    for port in sorted(set(ports)):
        if runs and runs[-1][1] == port - 1:
            runs[-1] = (runs[-1][0], port, error_code)
        else:
            runs.append((port, port, error_code))
    return runs
