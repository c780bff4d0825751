"""Probe documents: read and validate them, or build one from a folder of raw captures."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
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
from collector.windows import WSAEACCES

SCHEMA_ID = "portfleet.probe/1"

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
    """Decode and validate a probe document; raise DocumentError listing what is wrong."""
    try:
        text = decode_text(body, DEFAULT_CODEPAGE)
        document = json.loads(text)
    except (ParseError, json.JSONDecodeError) as exc:
        raise DocumentError(f"{name}: not a JSON probe document ({exc})") from exc
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
    return document


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
