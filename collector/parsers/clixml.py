"""Read the CLIXML that Windows PowerShell writes on a redirected stderr (as under WinRM).

powershell.exe with -EncodedCommand and redirected streams writes ``#< CLIXML`` on a line, then
an ``<Objs>`` document: its error, warning, verbose, debug and information streams as
``<S S="Error">`` strings (Windows PowerShell 5.1 writes an error record as the lines of its
error view, one string each, the record ended by a line holding one space), and progress
records as ``<Obj S="progress">`` objects, even on success. Native programs' stderr can sit
between documents, and a second header can precede a second document.

Records are read by their structure: the stream attribute, the progress record's fields by
their element names and numbers. Their texts are localized and only ever shown, never matched.
``parse_clixml`` returns everything the text held or raises ParseError naming the line;
``stderr_text`` is the readable form the collector puts in a failed attempt's message.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from collector.parsers.errors import ParseError
from collector.parsers.text import decode_text

HEADER = "#< CLIXML"
_NAMESPACE = "{http://schemas.microsoft.com/powershell/2004/04}"
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_HEADER_LINE = re.compile(r"#< CLIXML\r?\n?")
# The streams PowerShell names in the S attribute (lower-cased here: 7.x writes "warning").
STREAMS = ("error", "warning", "verbose", "debug", "information")
_RECORD_END = " "  # the line Windows PowerShell's error view ends a record with


@dataclass(frozen=True, slots=True)
class StreamText:
    """One string written to a PowerShell stream (a line of the error view, a warning, ...)."""

    stream: str  # one of STREAMS
    text: str


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress record: what Write-Progress (or PowerShell itself) reported."""

    activity: str
    status: str
    activity_id: int
    parent_id: int  # -1: no parent
    percent: int  # -1: not given
    seconds_remaining: int  # -1: not given
    completed: bool  # its RecordType is Completed, not Processing
    source_id: int | None


@dataclass(frozen=True, slots=True)
class Clixml:
    """Everything a CLIXML stderr held, in the order written within each kind."""

    strings: tuple[StreamText, ...]
    progress: tuple[Progress, ...]
    native: tuple[str, ...]  # text outside the documents: native programs' stderr

    def errors(self) -> list[str]:
        """Return the error records: the Error strings, each record ended by a " " line."""
        records: list[str] = []
        current: list[str] = []
        for item in self.strings:
            if item.stream != "error":
                continue
            if item.text.removesuffix("\r\n").removesuffix("\n") != _RECORD_END:
                current.append(item.text)
            elif current:
                records.append(_joined(current))
                current = []
        if current:
            records.append(_joined(current))
        return records

    def message(self) -> str:
        """Return what a person needs to read: native text, errors and warnings, no progress."""
        parts = [text.strip() for text in self.native if text.strip()]
        parts += self.errors()
        parts += [_joined([s.text]) for s in self.strings if s.stream == "warning"]
        return "\n".join(part for part in parts if part)


def parse_clixml(data: bytes | str) -> Clixml:
    """Return the streams, progress records and native text of a CLIXML stderr."""
    text = decode_text(data) if isinstance(data, bytes) else data.removeprefix("\ufeff")
    if not text.startswith(HEADER):
        first = text.splitlines()[0] if text else ""
        raise ParseError("not CLIXML: the first line is not '#< CLIXML'", 1, first)
    strings: list[StreamText] = []
    progress: list[Progress] = []
    native: list[str] = []
    position = 0
    while position < len(text):
        header = _HEADER_LINE.match(text, position)
        if header:
            position = header.end()
            continue
        start = text.find("<Objs", position)
        if start < 0:
            native.append(text[position:])
            break
        if start > position:
            outside = _HEADER_LINE.sub("", text[position:start])
            if outside:
                native.append(outside)
        end = text.find("</Objs>", start)
        if end < 0:
            raise ParseError("the CLIXML document is cut off (no </Objs>)", _line(text, start))
        end += len("</Objs>")
        _read_document(text[start:end], _line(text, start), strings, progress)
        position = end
    return Clixml(tuple(strings), tuple(progress), tuple(native))


def stderr_text(stderr: bytes) -> str:
    """Return the readable text of PowerShell's stderr: CLIXML read, or plain text as it is."""
    text = decode_text(stderr).removeprefix("\ufeff")
    if not text.startswith(HEADER):
        return text.strip()
    try:
        return parse_clixml(text).message()
    except ParseError:
        # Cut off or damaged: the strings that can be read, else everything as it came.
        found = re.findall(r'<S S="(?:Error|Warning)"[^>]*>(.*?)</S>', text, flags=re.DOTALL)
        return _joined([_unescape(_xml_text(part)) for part in found]) or text.strip()


def _read_document(
    block: str, first_line: int, strings: list[StreamText], progress: list[Progress]
) -> None:
    try:
        root = ET.fromstring(block)
    except ET.ParseError as exc:
        line, _column = exc.position
        raise ParseError(f"the CLIXML is not XML: {exc}", first_line + line - 1) from None
    if _local(root.tag) != "Objs":
        raise ParseError(f"<{_local(root.tag)}> where <Objs> was due", first_line)
    for child in root:
        name, stream = _local(child.tag), (child.get("S") or "").lower()
        if name == "S" and stream in STREAMS:
            strings.append(StreamText(stream, _unescape(child.text or "")))
        elif name == "Obj" and stream == "progress":
            progress.append(_progress(child, first_line))
        elif name == "Obj" and stream in STREAMS:
            # Records serialized as objects (PowerShell 7, or -OutputFormat XML): their text.
            shown = child.findtext(f"{_NAMESPACE}ToString")
            if shown is None:
                raise ParseError(f"a {stream} object without its text (ToString)", first_line)
            strings.append(StreamText(stream, _unescape(shown)))
        else:
            raise ParseError(f"unexpected <{name} S={stream!r}> in the CLIXML", first_line)


def _progress(node: ET.Element, line: int) -> Progress:
    record = node.find(f"{_NAMESPACE}MS/{_NAMESPACE}PR")
    if record is None:
        raise ParseError("a progress object without its record (MS/PR)", line)
    fields = {_local(child.tag): child.text or "" for child in record}
    source = node.findtext(f"{_NAMESPACE}MS/{_NAMESPACE}I64[@N='SourceId']")
    try:
        return Progress(
            activity=_unescape(fields["AV"]),
            status=_unescape(fields.get("SD", "")),
            activity_id=int(fields["AI"]),
            parent_id=int(fields.get("PI", "-1")),
            percent=int(fields.get("PC", "-1")),
            seconds_remaining=int(fields.get("SR", "-1")),
            completed=fields.get("T") == "Completed",
            source_id=int(source) if source is not None else None,
        )
    except (KeyError, ValueError) as exc:
        raise ParseError(f"a progress record without a readable {exc}", line) from None


def _unescape(text: str) -> str:
    """Undo CLIXML's _xHHHH_ escapes (UTF-16 code units; a pair makes one character)."""
    if "_x" not in text:
        return text
    units = bytearray()
    out: list[str] = []
    position = 0
    for match in _ESCAPE.finditer(text):
        if match.start() > position:
            out.append(units.decode("utf-16-le", errors="replace"))
            units.clear()
            out.append(text[position : match.start()])
        units += int(match.group(1), 16).to_bytes(2, "little")
        position = match.end()
    out.append(units.decode("utf-16-le", errors="replace"))
    out.append(text[position:])
    return "".join(out)


def _xml_text(fragment: str) -> str:
    try:
        return ET.fromstring(f"<S>{fragment}</S>").text or ""
    except ET.ParseError:
        return fragment


def _joined(parts: list[str]) -> str:
    return "".join(parts).replace("\r\n", "\n").strip()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1
