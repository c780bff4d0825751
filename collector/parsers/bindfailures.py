"""Parse a bind-probe list: one failing port per line, ``index: port`` or just ``port``.

This is the shape of the seed report's F# probe (``printfn "%5d: %d" index port``). Its indexes
count from 0 without gaps, so a gap means lines were lost on the way: that is an error, not a
shorter list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from collector.parsers.errors import ParseError
from collector.parsers.text import DEFAULT_CODEPAGE, decode_text, numbered_lines

_ROW = re.compile(r"^\s*(?:(\d+)\s*:\s*)?(\d+)\s*$")


def parse_bind_failures(data: bytes | str, codepage: str = DEFAULT_CODEPAGE) -> list[int]:
    """Return the failing ports in the order listed; raise ParseError on any other line."""
    ports: list[int] = []
    expected_index = 0
    for number, line in numbered_lines(decode_text(data, codepage)):
        if not line.strip():
            continue
        match = _ROW.match(line)
        if match is None:
            raise ParseError("expected 'index: port' or a port number", number, line)
        index_text, port_text = match.groups()
        if index_text is not None:
            if int(index_text) != expected_index:
                raise ParseError(
                    f"index {int(index_text)} where {expected_index} was due: lines are missing",
                    number,
                    line,
                )
            expected_index += 1
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ParseError(f"port {port} is outside 1-65535", number, line)
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
