"""Turn what Windows printed (bytes in some code page, or text) into numbered lines.

Decoding is explicit, never guessed from letter frequencies:

1. ``str`` input is taken as it is (a leading BOM character is dropped).
2. A byte-order mark decides: UTF-8, UTF-16 LE or UTF-16 BE.
3. Without a BOM, bytes with NULs in many high bytes and almost none in the low ones are
   UTF-16 (PowerShell's ``>`` redirection writes UTF-16 LE; a BOM is sometimes lost on copy).
4. Bytes that are valid UTF-8 are UTF-8 (pure ASCII is both).
5. Anything else is the console code page the caller names: ``cp437`` by default, because
   that is what a WinRM shell opened by pywinrm prints in whatever the host's language.
"""

from __future__ import annotations

import codecs

from collector.parsers.errors import ParseError

DEFAULT_CODEPAGE = "cp437"

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def detect_encoding(data: bytes, codepage: str = DEFAULT_CODEPAGE) -> str:
    """Name the encoding ``decode_text`` will use for ``data`` (see the module rules)."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    utf16 = _utf16_without_bom(data)
    if utf16:
        return utf16
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return _checked_codepage(codepage)
    return "utf-8"


def decode_text(data: bytes | str, codepage: str = DEFAULT_CODEPAGE) -> str:
    """Decode command output by the module's rules; raise ParseError if it cannot be read."""
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    encoding = detect_encoding(data, codepage)
    body = data
    for bom, name in _BOMS:
        if name == encoding and data.startswith(bom):
            body = data[len(bom) :]
            break
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1 if encoding != "utf-16-le" else None
        raise ParseError(
            f"bytes are not valid {encoding}; name the host's code page", line
        ) from exc


def numbered_lines(text: str) -> list[tuple[int, str]]:
    """Split text into (1-based line number, line) pairs, without the ``# `` header comments.

    Only the comment block at the very top is dropped (the corpus and capture files put their
    source there); a ``#`` further down is data.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = 0
    while start < len(lines) and (lines[start].startswith("# ") or lines[start] == "#"):
        start += 1
    return [(number, line) for number, line in enumerate(lines[start:], start=start + 1)]


def header_comments(text: str) -> list[str]:
    """Return the ``# `` comment block at the top of ``text`` (what ``numbered_lines`` drops)."""
    header = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not (line.startswith("# ") or line == "#"):
            break
        header.append(line)
    return header


def _utf16_without_bom(data: bytes) -> str | None:
    """Return the UTF-16 flavour of BOM-less bytes, or None when they are not UTF-16.

    Console text in UTF-8 or an OEM code page never holds NUL bytes, while UTF-16 of command
    output (digits, spaces, line ends) puts a NUL in the high byte of a good share of its
    characters even in Japanese or Korean: demand that share on one side, almost none on the
    other, and a clean decode.
    """
    if len(data) < 4 or len(data) % 2:
        return None
    even, odd = data[0::2], data[1::2]
    for name, high, low in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
        if high.count(0) >= 0.25 * len(high) and low.count(0) <= 0.02 * len(low):
            try:
                data.decode(name)
            except UnicodeDecodeError:
                return None
            return name
    return None


def _checked_codepage(codepage: str) -> str:
    """Return the codec's canonical name or raise ParseError for an unknown code page."""
    name = codepage.strip().lower()
    if name.isdigit():
        name = f"cp{name}"
    try:
        return codecs.lookup(name).name
    except LookupError as exc:
        raise ParseError(
            f"unknown code page {codepage!r}; use e.g. 437, 850, 932, 936, 949"
        ) from exc
