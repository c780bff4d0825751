"""Parsers for what Windows prints, one module per command, all raising only ParseError."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from collector.parsers.bindfailures import parse_bind_failures
from collector.parsers.dynamicport import dynamicport_to_json, parse_dynamicport
from collector.parsers.errors import ParseError
from collector.parsers.excluded import excluded_to_json, parse_excluded
from collector.parsers.hotfix import hotfix_to_json, parse_hotfix
from collector.parsers.netstat import netstat_to_json, parse_netstat
from collector.parsers.notes import ParseWarning
from collector.parsers.text import DEFAULT_CODEPAGE


class ParseFunction(Protocol):
    """A parser: text in, rows out, what it stripped on purpose appended to ``warnings``."""

    def __call__(
        self, data: bytes | str, codepage: str = ..., *, warnings: list[ParseWarning] | None = ...
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class ParserKind:
    """A kind of command output that ``portfleet parse`` reads."""

    command: str
    parse: ParseFunction
    to_json: Callable[[Any], list[Any]]


def _bind_failures_json(ports: list[int]) -> list[Any]:
    return [{"port": port} for port in ports]


PARSERS: dict[str, ParserKind] = {
    "excluded": ParserKind(
        "netsh int ipv4|ipv6 show excludedportrange protocol=tcp|udp",
        parse_excluded,
        excluded_to_json,
    ),
    "dynamicport": ParserKind(
        "netsh int ipv4|ipv6 show dynamicport tcp|udp", parse_dynamicport, dynamicport_to_json
    ),
    "netstat": ParserKind("netstat -ano (or Get-NetTCPConnection)", parse_netstat, netstat_to_json),
    "hotfix": ParserKind("Get-HotFix, wmic qfe, systeminfo", parse_hotfix, hotfix_to_json),
    "bind-failures": ParserKind(
        "a bind-probe list ('index: port' lines)", parse_bind_failures, _bind_failures_json
    ),
}

__all__ = [
    "DEFAULT_CODEPAGE",
    "PARSERS",
    "ParseError",
    "ParseFunction",
    "ParseWarning",
    "ParserKind",
]
