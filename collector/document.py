"""Probe documents: read and validate them, or build one from a folder of raw captures."""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema_rs import Draft202012Validator

from collector import __version__
from collector.framing import FrameError, has_frame, unframe_document
from collector.parsers.bindfailures import encode_runs, parse_bind_failures
from collector.parsers.errors import ParseError
from collector.parsers.text import DEFAULT_CODEPAGE, decode_text
from collector.windows import PLAUSIBLE_YEARS, WSAEACCES

SCHEMA_ID = "portfleet.probe/1"
# The deepest a valid document nests is 6 (bind_sweep → failures → a run); NAT entries may
# carry extra keys, so leave room, but not for a nesting bomb.
_MAX_DEPTH = 32
# JSON text decoded strictly holds no NUL and no lone surrogate; only these escapes make one
# (and also a few harmless texts, such as an escaped backslash before "u0000").
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
# The longest number a document holds is a 32-bit code (11 characters with its sign).
_MAX_DIGITS = 20

# A capture file is recognised by the command that produced it, never by its contents.
_CAPTURE_NAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^netstat(-a[nob]+)?$"), "netstat"),
    (re.compile(r"^bind-?failures?$"), "bind_failures"),
    (re.compile(r"^(get-?hotfix|hotfix|wmic-qfe|qfe|systeminfo)$"), "hotfix"),
    (
        re.compile(r"^(?:netsh-)?excluded(?:portrange)?(?:-(ipv4|ipv6))?(?:-(tcp|udp))?$"),
        "excluded",
    ),
    (re.compile(r"^(?:netsh-)?dynamic(?:port)?(?:-(ipv4|ipv6))?(?:-(tcp|udp))?$"), "dynamicport"),
)


class DocumentError(Exception):
    """A document or capture folder that cannot be imported; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class CaptureFolder:
    """A capture folder turned into a probe document, with the files it could not use."""

    document: bytes
    used: tuple[str, ...]
    skipped: tuple[str, ...]


@cache
def probe_schema() -> dict[str, Any]:
    """Return the probe document JSON Schema shipped with portfleet."""
    text = resources.files("collector").joinpath("schema/probe-document-v1.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def extract_document(output: bytes, name: str) -> bytes:
    """Return the JSON document in a file: plain JSON, or the probe's framed stdout."""
    if not has_frame(output):
        return output
    try:
        return unframe_document(output)
    except FrameError as exc:
        raise DocumentError(f"{name}: {exc}; collect or copy the probe's output again") from exc


@cache
def _validator() -> Draft202012Validator:
    """Return the schema's validator, built once; formats (date-time, date) are checked too."""
    return Draft202012Validator(probe_schema(), validate_formats=True)


def load_document(body: bytes, name: str) -> dict[str, Any]:
    """Decode, parse and validate a probe document; raise DocumentError saying what is wrong.

    Beyond its schema, a document is refused when it is not UTF-8, repeats a key, nests
    deeper than any probe document does, holds a number too long to be one, a NUL or a lone
    surrogate, or a time the store cannot keep: whatever a host sends, the store never sees
    a value it would choke on.
    """
    document = _parse_json(_decode_utf8(body, name), name)
    if not isinstance(document, dict) or document.get("schema") != SCHEMA_ID:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise DocumentError(
            f"{name}: not a portfleet probe document (schema {found!r}, expected {SCHEMA_ID!r}); "
            "produce it with the script that `portfleet probe-script` prints"
        )
    problems = sorted(
        _validator().iter_errors(document), key=lambda error: [str(p) for p in error.instance_path]
    )
    if problems:
        lines = [f"  at {_json_path(p.instance_path)}: {p.message[:200]}" for p in problems[:10]]
        more = f"\n  … and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise DocumentError(
            f"{name}: the document does not match its schema:\n" + "\n".join(lines) + more
        )
    _check_times(document, name)
    _check_runs(document, name)
    return document


def _decode_utf8(body: bytes, name: str) -> str:
    """Return the text of a document: UTF-8, or UTF-16 that says so with a byte-order mark.

    Never a code-page guess: bytes that are not UTF-8 would be read as other letters.
    """
    for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if body.startswith(bom):
            try:
                return body[len(bom) :].decode(encoding)
            except UnicodeDecodeError as exc:
                raise DocumentError(f"{name}: not valid {encoding} ({exc.reason})") from None
    try:
        return body.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise DocumentError(
            f"{name}: not UTF-8 (byte 0x{body[exc.start]:02x} on line {line}); probe documents "
            "are UTF-8: take the file the probe wrote, not a copy re-saved in another encoding"
        ) from None


def _parse_json(text: str, name: str) -> Any:
    """Parse JSON strictly: no repeated key, no over-long number, bounded nesting, clean text."""

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # The dict, built at C speed, is shorter than its pairs only when a key repeats.
        found = dict(pairs)
        if len(found) < len(pairs):
            seen: set[str] = set()
            for key, _value in pairs:
                if key in seen:
                    break
                seen.add(key)
            raise DocumentError(
                f"{name}: the key {key!r} appears twice in one object; which one is meant "
                "is unknown, so the document is refused"
            )
        return found

    def integer(digits: str) -> int:
        # Up to _MAX_DIGITS characters, sign included, it cannot be too long: skip the strip.
        if len(digits) > _MAX_DIGITS and len(digits.lstrip("-")) > _MAX_DIGITS:
            raise DocumentError(
                f"{name}: a number of {len(digits.lstrip('-'))} digits ({digits[:12]}…); "
                "no value of a probe document is that long"
            )
        return int(digits)

    def real(digits: str) -> float:
        value = float(digits) if len(digits) <= _MAX_DIGITS * 2 else math.inf
        if not math.isfinite(value):
            raise DocumentError(f"{name}: the number {digits[:24]!r} is out of range")
        return value

    def constant(word: str) -> None:
        raise DocumentError(f"{name}: {word} is not JSON; a probe document never holds it")

    try:
        document = json.loads(
            text,
            object_pairs_hook=unique_keys,
            parse_int=integer,
            parse_float=real,
            parse_constant=constant,
        )
    except json.JSONDecodeError as exc:
        raise DocumentError(f"{name}: not a JSON probe document ({exc})") from None
    except RecursionError:
        raise DocumentError(
            f"{name}: the JSON nests deeper than Python can read; a probe document nests "
            f"at most {_MAX_DEPTH} levels"
        ) from None
    # Most documents hold neither: the walk that names where one is runs only when the text
    # has an escape that could make one, or the nesting may be too deep.
    if _SUSPECT_ESCAPE.search(text) is not None or not _shallow(document):
        _check_values(document, name)
    return document


def _shallow(document: Any) -> bool:
    """Tell whether no value lies deeper than ``_MAX_DEPTH`` (a scalar counts as a level).

    Level by level, each a list comprehension: half the time of a walk with a stack.
    """
    level = [document] if isinstance(document, dict | list) else []
    for _ in range(_MAX_DEPTH):
        level = [
            item
            for value in level
            for item in (value.values() if isinstance(value, dict) else value)
            if isinstance(item, dict | list)
        ]
        if not level:
            return True
    # The containers _MAX_DEPTH levels down: any of them holding a value is too deep.
    return not any(level)


def _check_values(document: Any, name: str) -> None:
    """Refuse deep nesting, NULs and lone surrogates, anywhere in the document (keys too)."""
    stack: list[tuple[Any, str, int]] = [(document, "$", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise DocumentError(
                f"{name}: at {path}: nested more than {_MAX_DEPTH} levels; "
                "no probe document does that"
            )
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, f"{path} (a key)", name)
                stack.append((item, f"{path}.{key}", depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, path, name)


def _check_text(value: str, path: str, name: str) -> None:
    if "\x00" in value:
        raise DocumentError(f"{name}: at {path}: a NUL character; Windows never prints one there")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DocumentError(
            f"{name}: at {path}: a lone UTF-16 surrogate (\\ud800-\\udfff) is not a character"
        ) from None


# Every date and time a probe document holds, by where it is.
_TIME_FIELDS: tuple[tuple[str, ...], ...] = (
    ("taken_at",),
    ("host", "last_boot"),
    ("host", "os", "install_date"),
    ("host", "bios", "release_date"),
    ("hotfixes", "*", "installed_on"),
    ("update_history", "*", "date"),
)


def read_time(value: str) -> datetime:
    """Read a document's RFC 3339 date-time as the store keeps it (UTC when it has no offset).

    Raise ValueError (a leap second, a lower-case z) or OverflowError (a year that an offset
    pushes out of 1-9999) when Python cannot hold it.
    """
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    # A host time without offset is taken as UTC; the probe always writes the offset.
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    parsed.astimezone(UTC)  # raises OverflowError for year 1 or 9999 pushed over the edge
    return parsed


def _check_times(document: dict[str, Any], name: str) -> None:
    """Refuse times the schema's format allows but the store cannot keep, or no host had."""
    for path in _TIME_FIELDS:
        for where, value in _values_at(document, path, "$"):
            if not isinstance(value, str):
                continue
            try:
                if len(value) == 10:  # a date
                    year = date.fromisoformat(value).year
                else:
                    year = read_time(value).astimezone(UTC).year
            except (ValueError, OverflowError):
                raise DocumentError(
                    f"{name}: at {where}: {value[:40]!r} is not a time portfleet can keep; "
                    "write e.g. 2024-03-01T09:30:00+01:00 (upper-case T and Z, seconds 00-59)"
                ) from None
            if year not in PLAUSIBLE_YEARS:
                raise DocumentError(
                    f"{name}: at {where}: the year {year} is outside "
                    f"{PLAUSIBLE_YEARS.start}-{PLAUSIBLE_YEARS.stop - 1}; an unset Windows date "
                    "(FILETIME 0 is 1601) or a wrong clock, not a real time"
                )


def _check_runs(document: dict[str, Any], name: str) -> None:
    """Refuse failure runs that end before they start (the schema can only describe that)."""
    for index, sweep in enumerate(document.get("bind_sweep") or []):
        for position, (start, end, _code) in enumerate(sweep["failures"]):
            if start > end:
                raise DocumentError(
                    f"{name}: at $.bind_sweep[{index}].failures[{position}]: the run "
                    f"[{start}, {end}] ends before it starts; the probe never writes that"
                )


def _values_at(node: Any, path: tuple[str, ...], where: str) -> Iterator[tuple[str, Any]]:
    if not path:
        yield where, node
        return
    head, rest = path[0], path[1:]
    if head == "*" and isinstance(node, list):
        for position, item in enumerate(node):
            yield from _values_at(item, rest, f"{where}[{position}]")
    elif isinstance(node, dict) and node.get(head) is not None:
        yield from _values_at(node[head], rest, f"{where}.{head}")


def classify_capture(file_name: str) -> tuple[str, str | None, str | None] | None:
    """Return (kind, family, protocol) for a capture file name, or None when unknown."""
    stem = Path(file_name).stem.lower().replace("_", "-").replace(" ", "-")
    for pattern, kind in _CAPTURE_NAMES:
        match = pattern.match(stem)
        if match:
            groups = match.groups() if kind in ("excluded", "dynamicport") else ()
            family = groups[0] if groups else None
            protocol = groups[1] if len(groups) > 1 else None
            return kind, family, protocol
    return None


def build_capture_document(
    folder: Path, host: str, taken_at: datetime, codepage: str = DEFAULT_CODEPAGE
) -> CaptureFolder:
    """Turn a folder of hand-copied command outputs into a probe document.

    The document is canonical JSON that depends only on the files, the host and the time, so
    importing the same folder twice yields the same bytes and is stored once.
    """
    if not folder.is_dir():
        raise DocumentError(
            f"{folder}: not a folder; give the folder the captures were copied into"
        )
    if taken_at.tzinfo is None:
        raise DocumentError("--taken-at needs a time zone, e.g. 2024-03-01T09:30:00+01:00")
    raw: dict[str, str] = {}
    bind_sweep: list[dict[str, Any]] = []
    used: list[str] = []
    skipped: list[str] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        kind = classify_capture(path.name)
        if kind is None:
            skipped.append(path.name)
            continue
        text = _read_capture(path, codepage)
        key = _raw_key(*kind)
        if key in raw:
            raise DocumentError(f"{path}: a second capture of {key}; keep one file per command")
        raw[key] = text
        if key == "bind_failures":
            bind_sweep.append(_bind_sweep_from(text, path))
        used.append(path.name)
    if not used:
        raise DocumentError(
            f"{folder}: no capture file recognised; name files after their command, e.g. "
            "netstat-ano.txt, bind-failures.txt, excludedportrange-ipv4-tcp.txt, "
            "dynamicport-ipv4-tcp.txt, get-hotfix.txt"
        )
    document = {
        "schema": SCHEMA_ID,
        "probe_version": f"capture-{__version__}",
        "source": "capture",
        "taken_at": taken_at.isoformat(),
        "host": {"name": host},
        "raw": raw,
        "bind_sweep": bind_sweep,
        "errors": [],
    }
    body = json.dumps(document, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8")
    return CaptureFolder(body, tuple(used), tuple(skipped))


def _raw_key(kind: str, family: str | None, protocol: str | None) -> str:
    if kind in ("excluded", "dynamicport"):
        return f"{kind}_{family or 'ipv4'}_{protocol or 'tcp'}"
    return kind


def _read_capture(path: Path, codepage: str) -> str:
    try:
        return decode_text(path.read_bytes(), codepage)
    except ParseError as exc:
        raise DocumentError(
            f"{path}: {exc}; pass --codepage with the host's OEM code page"
        ) from exc
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read: {exc.strerror}") from exc


def _bind_sweep_from(text: str, path: Path) -> dict[str, Any]:
    """Describe a hand-run probe's list as a sweep: IPv4 TCP on 0.0.0.0, all WSAEACCES."""
    try:
        ports = parse_bind_failures(text)
    except ParseError as exc:
        raise DocumentError(f"{path}: {exc}") from exc
    # The seed's probe kept only the access-forbidden failures (10013) of 0.0.0.0 binds.
    runs = encode_runs(ports, WSAEACCES)
    return {
        "protocol": "tcp",
        "family": "ipv4",
        "address": "0.0.0.0",
        "exclusive": None,
        "duration_ms": None,
        "failures": [list(run) for run in runs],
    }


def _json_path(parts: Any) -> str:
    text = "$"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
