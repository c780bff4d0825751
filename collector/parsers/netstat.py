"""Read ``netstat -ano`` (and its kin) and ``Get-NetTCPConnection`` output into connections.

Accepted shapes, found by shape and position, never by localized words:

* ``netstat`` rows: a line whose first field is ``TCP`` or ``UDP`` (any case), in the aligned
  console layout or a whitespace-collapsed copy. TCP rows are ``proto local remote state [pid]``,
  where the state may be several words (some display languages translate it, e.g.
  ``IN ASCOLTO``); UDP rows are ``proto local *:* [pid]`` (no state column). This covers
  ``-ano``, ``-an``, ``findstr`` excerpts and ``-ab``/``-abno``. Titles, headers in any
  language, prompts and other lines are ignored. Every row in the text is returned, including the
  ones a ``findstr ":80"`` filter let through for port 8080 or 8042, and repeated rows from
  repeated commands.
* ``-b`` lines: a ``[image.exe]`` line names the process of the latest row, as long as no blank
  line, other row or other ``[image]`` line came between (the service-name line ``-b`` prints
  before it may); other lines such as `` Can not obtain ownership information`` (localized)
  are ignored.
* ``Get-NetTCPConnection`` default table: after a dashes-only underline row, each line whose
  first field is an address and whose second is a number is a row, read by position as
  ``LocalAddress LocalPort RemoteAddress RemotePort State [AppliedSetting] OwningProcess``
  (AppliedSetting is often empty, so 6 or 7 fields). A blank or any other line ends the table.
* ``Get-NetTCPConnection | Format-List``: blank-separated blocks of ``Name : value`` lines. Here
  the keys are the only thing that tells the properties apart (``Format-List *`` reorders
  them); they are the cmdlet's .NET property names, which PowerShell never localizes. A block
  with ``LocalAddress`` or ``LocalPort`` must have all of LocalAddress, LocalPort,
  RemoteAddress, RemotePort, State and OwningProcess.

Decisions:

* Empty result. A PowerShell error record whose invariant ``FullyQualifiedErrorId`` is
  ``CmdletizationQuery_NotFound...,Get-NetTCPConnection`` means the cmdlet looked and no socket
  matched (a reserved port nobody holds, as in nettcpconnection-ru-1): that text truly says
  "no connection", so the result is ``[]``. Anything else without a single row raises
  ParseError, including a netstat title and header with no rows: ``netstat -a`` on a live host
  always lists listeners, and ``netstat | findstr`` with no match prints nothing at all, so a
  header alone is a cut capture, not an answer.
* A paste cut mid-row (a TCP/UDP line with too few fields) is a ParseError, also as the very
  last line, unless the input's ``#`` header declares it truncated (netstat-en-1 ends with
  ``TCP    0.0.0.0:49665`` and says so): then the fields it has must be valid, the half row is
  dropped and a warning says so. A marker of omission (``...``, ``…``) after the first row is a
  ParseError on the same terms. A marker before a row and a note after it are stripped with a
  warning (``notes.py``); a line holding two endpoints that is no readable row (``TCQ  0.0.0.0:135
  0.0.0.0:0 ...``, a row behind a gutter number) is a ParseError. netstat prints no end mark, so
  a paste cut between two whole rows cannot be told from a whole one; a paste whose last row has
  no line end may be cut inside it, and gets a warning.
* A row with text in front of its ``TCP``/``UDP`` field (gutter numbers, ``findstr /n``) is a
  ParseError rather than a silently skipped row.
* Addresses keep their printed form without brackets; an IPv6 zone stays in the string
  (``fe80::1%26``). The local address must be an IP literal. The remote address may be a host
  name (``netstat -a`` without ``-n`` prints ``orion:0``) and its port a well-known service
  name (``https``); an unknown service name is a ParseError that asks for ``-n``. ``*:*`` gives
  ``None`` for both. Ports are 0..65535; a PID is a Windows DWORD (0..4294967295).
* Listener: a TCP row whose remote endpoint is the unspecified one (``0.0.0.0:0``, ``[::]:0``,
  or a host name with port 0 in name-resolving output), unless the state is BOUND
  (``Get-NetTCPConnection`` and ``netstat -q`` show bound, non-listening sockets with the same
  empty remote end). This does not depend on the state word, which German, Spanish, French,
  etc. translate. Every UDP row counts as a listener: a UDP socket in the list is bound and
  receives on its port (netstat's own help calls these "listening ports").
* ``state`` is kept as printed; ``canonical_state`` maps the words listed in ``_STATE_WORDS``
  (English, the ``Get-NetTCPConnection`` enum names, German with its code-page-damaged forms, and
  a few other languages) to netstat's English names, and is None for any other word, which is
  kept, not refused. ``normalized_state`` is the canonical state, else the word as printed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from collector.parsers.errors import ParseError
from collector.parsers.notes import (
    CUT_ADVICE,
    ParseWarning,
    declares_truncation,
    is_omission,
    peel,
)
from collector.parsers.shape import read_digits
from collector.parsers.text import DEFAULT_CODEPAGE, decode_text, header_comments, numbered_lines
from collector.windows import MAX_PORT

__all__ = ["DEFAULT_CODEPAGE", "Connection", "netstat_to_json", "parse_netstat"]

_MAX_PID = 0xFFFFFFFF

# Canonical names are the ones English netstat prints. Sources for the other words:
# - Get-NetTCPConnection: the TcpState enumeration names (learn.microsoft.com, TcpState Enum;
#   MSFT_NetTCPConnection adds Bound).
# - German: a real `netstat -an` paste (code-search id 10882080653: ABHÖREN, HERGESTELLT,
#   WARTEND, SCHLIESSEN_WARTEN, FIN_WARTEN_2, and ABH™REN, its cp850 bytes read as cp1252);
#   SYN_GESENDET from the systeminformation library's Windows parser; SCHLIESSEND from a
#   check_mk agent pattern; FIN_WARTEN_1 by analogy with FIN_WARTEN_2.
# - Spanish, French, Italian, Portuguese, Polish: words that public parsers and their tests
#   report (not seen in a real paste here; unknown words stay as printed anyway, so a wrong
#   guess here can only leave a state unmapped, never break a row).
_STATE_WORDS: dict[str, str] = {
    "listening": "LISTENING",
    "established": "ESTABLISHED",
    "time_wait": "TIME_WAIT",
    "close_wait": "CLOSE_WAIT",
    "syn_sent": "SYN_SENT",
    "syn_received": "SYN_RECEIVED",
    "fin_wait_1": "FIN_WAIT_1",
    "fin_wait_2": "FIN_WAIT_2",
    "closing": "CLOSING",
    "last_ack": "LAST_ACK",
    "closed": "CLOSED",
    "delete_tcb": "DELETE_TCB",
    "bound": "BOUND",
    # Get-NetTCPConnection (enum names, any case)
    "listen": "LISTENING",
    "timewait": "TIME_WAIT",
    "closewait": "CLOSE_WAIT",
    "synsent": "SYN_SENT",
    "synreceived": "SYN_RECEIVED",
    "finwait1": "FIN_WAIT_1",
    "finwait2": "FIN_WAIT_2",
    "lastack": "LAST_ACK",
    "deletetcb": "DELETE_TCB",
    # German
    "abhören": "LISTENING",
    # ABHÖREN through the wrong code page: cp850's 0x99 shown as cp1252 (™) or as unmappable (?,
    # U+FFFD), UTF-8 read as cp1252 (Ã–), cp1252's 0xD6 shown as cp850 (Í) or cp437 (╓).
    "abh™ren": "LISTENING",
    "abh?ren": "LISTENING",
    "abh\ufffdren": "LISTENING",
    "abhã–ren": "LISTENING",
    "abhíren": "LISTENING",
    "abh╓ren": "LISTENING",
    "schließen_warten": "CLOSE_WAIT",
    "hergestellt": "ESTABLISHED",
    "wartend": "TIME_WAIT",
    "schliessen_warten": "CLOSE_WAIT",
    "syn_gesendet": "SYN_SENT",
    "fin_warten_1": "FIN_WAIT_1",
    "fin_warten_2": "FIN_WAIT_2",
    "schliessend": "CLOSING",
    # Spanish
    "escuchando": "LISTENING",
    "establecido": "ESTABLISHED",
    # French
    "écoute": "LISTENING",
    "à l'écoute": "LISTENING",
    "établi": "ESTABLISHED",
    "établie": "ESTABLISHED",
    # Italian
    "in ascolto": "LISTENING",
    # Portuguese
    "escutando": "LISTENING",
    "ouvindo": "LISTENING",
    "estabelecida": "ESTABLISHED",
    "estabelecido": "ESTABLISHED",
    # Polish
    "nasłuchiwanie": "LISTENING",
    "ustanowiono": "ESTABLISHED",
}

# Foreign ports that `netstat -a` without -n prints by name (IANA names, as in Windows'
# drivers\etc\services). A name outside this list cannot be turned into a number safely.
_SERVICE_PORTS: dict[str, int] = {
    "ftp-data": 20,
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "smtp": 25,
    "domain": 53,
    "bootps": 67,
    "bootpc": 68,
    "http": 80,
    "kerberos": 88,
    "pop3": 110,
    "sunrpc": 111,
    "nntp": 119,
    "ntp": 123,
    "epmap": 135,
    "netbios-ns": 137,
    "netbios-dgm": 138,
    "netbios-ssn": 139,
    "imap": 143,
    "snmp": 161,
    "ldap": 389,
    "https": 443,
    "microsoft-ds": 445,
    "kpasswd": 464,
    "isakmp": 500,
    "ldaps": 636,
    "imaps": 993,
    "pop3s": 995,
    "ms-sql-s": 1433,
    "ms-sql-m": 1434,
    "pptp": 1723,
    "ssdp": 1900,
    "ms-wbt-server": 3389,
}

_DIGITS = re.compile(r"[0-9]+")
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_ZONE = re.compile(r"[0-9A-Za-z]+")
_DASHES = re.compile(r"-+")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
# Shaped like netstat's local or foreign endpoint, even when damaged: "0.0.0.0:135", "[::]:0",
# "*:*", "orion:https".
_ENDPOINT_LIKE = re.compile(r"(?:[0-9.]{3,}|\[[^\]]*\]|\*|[A-Za-z][\w.-]*):(?:[0-9]+|\*|[a-z-]+)")
_IMAGE_LINE = re.compile(r"\[([^\[\]]+)\]")
# Format-List writes "Name<padding> : value"; the space before the colon keeps prompts
# such as "C:\>" out.
_LIST_LINE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*) +: ?(.*)")
_NOT_FOUND = re.compile(r"CmdletizationQuery_NotFound\w*\s*,\s*Get-NetTCPConnection\b")

_LIST_PROPERTIES = (
    "LocalAddress",
    "LocalPort",
    "RemoteAddress",
    "RemotePort",
    "State",
    "OwningProcess",
)
_LIST_NAMES = {name.casefold(): name for name in _LIST_PROPERTIES}
_LIST_KEYS = frozenset(_LIST_NAMES)


@dataclass(frozen=True, slots=True)
class Connection:
    """One socket from netstat or Get-NetTCPConnection."""

    proto: str
    local_address: str
    local_port: int
    remote_address: str | None
    remote_port: int | None
    state: str | None
    pid: int | None
    process: str | None = None

    @property
    def family(self) -> Literal[4, 6]:
        """Return 6 for an IPv6 local address, else 4."""
        return 6 if ":" in self.local_address else 4

    @property
    def canonical_state(self) -> str | None:
        """Return the state under its English netstat name, None when the word is unknown."""
        if self.state is None:
            return None
        return _STATE_WORDS.get(" ".join(self.state.split()).casefold())

    @property
    def normalized_state(self) -> str | None:
        """Return the canonical state when known, else the state as printed."""
        return self.canonical_state or self.state

    @property
    def is_listener(self) -> bool:
        """Tell whether the socket waits for traffic on its local port (see module notes)."""
        if self.proto == "UDP":
            return True
        if self.remote_port != 0 or self.remote_address is None:
            return False
        if self.canonical_state == "BOUND":
            return False
        return _is_unspecified_or_name(self.remote_address)


def parse_netstat(
    data: bytes | str,
    codepage: str = DEFAULT_CODEPAGE,
    *,
    warnings: list[ParseWarning] | None = None,
) -> list[Connection]:
    """Read netstat or Get-NetTCPConnection output into connections; raise ParseError.

    What was stripped or is doubtful on purpose is appended to ``warnings`` when it is given.
    """
    text = decode_text(data, codepage)
    lines = numbered_lines(text)
    declared = declares_truncation(header_comments(text))
    found: list[ParseWarning] = []
    last_number = max((number for number, line in lines if line.strip()), default=0)
    rows: list[Connection] = []
    last_row_number = 0
    record: list[tuple[int, str, str, str]] = []
    owner: int | None = None  # row that a following -b "[image]" line belongs to
    in_table = False
    not_found = False

    for number, line in lines:
        tokens = line.split()
        if not tokens:
            last_row_number = _take_record(record, rows, last_row_number)
            record, owner, in_table = [], None, False
            continue
        if (rows or record) and is_omission(line.strip()):
            reason = "a marker of omission after the first row: rows were removed here"
            found.append(_cut(reason, declared, number, line))
            continue
        if _is_protocol(tokens[0]) or _is_marked_row(line):
            last_row_number = _take_record(record, rows, last_row_number)
            record = []
            row = _read_row_or_peeled(line, number, number == last_number, declared, found)
            owner = None
            if row is not None:
                rows.append(row)
                owner = len(rows) - 1
                last_row_number = number
            continue
        _reject_hidden_row(tokens, number, line)
        if in_table and _is_table_row(tokens):
            last_row_number = _take_record(record, rows, last_row_number)
            record = []
            rows.append(_read_table_row_or_peeled(tokens, number, line, found))
            owner = None
            last_row_number = number
            continue
        if in_table and sum(any(c in "0123456789" for c in token) for token in tokens) >= 2:
            # Under the underline every line up to a blank one is a row: this one lost its shape.
            raise ParseError(
                f"a Get-NetTCPConnection row that cannot be read; if the paste was damaged, "
                f"{CUT_ADVICE}",
                number,
                line,
            )
        in_table = len(tokens) >= 2 and all(_DASHES.fullmatch(token) for token in tokens)
        if _NOT_FOUND.search(line):
            not_found = True
        listed = _LIST_LINE.fullmatch(line)
        if listed:
            value = _value_without_note(
                listed.group(1), listed.group(2).strip(), number, line, found
            )
            record.append((number, listed.group(1), value, line))
            continue
        image = _IMAGE_LINE.fullmatch(line.strip())
        if image and owner is not None:
            rows[owner] = replace(rows[owner], process=image.group(1))
            owner = None
    last_row_number = _take_record(record, rows, last_row_number)

    if not rows and not not_found:
        raise ParseError("no netstat row or Get-NetTCPConnection record found")
    if last_row_number and rows[-1].pid is None and any(row.pid is not None for row in rows[:-1]):
        # netstat -o prints a PID on every row: the last one lost it where the paste ends.
        reason = "the last row has no PID while the rows before it have one: it is cut"
        found.append(_cut(reason, declared, last_row_number, dict(lines)[last_row_number]))
    if last_row_number and last_row_number == last_number and not text.endswith(("\n", "\r")):
        found.append(
            ParseWarning(
                last_number,
                "the paste ends on this row without a line end: if it was cut inside the row,"
                " its last field is wrong",
                lines[-1][1],
            )
        )
    if warnings is not None:
        warnings.extend(found)
    return rows


def netstat_to_json(result: Sequence[Connection]) -> list[dict[str, object]]:
    """Render connections as JSON rows (state as printed and canonical, null where none)."""
    return [
        {
            "proto": row.proto,
            "local_address": row.local_address,
            "local_port": row.local_port,
            "remote_address": row.remote_address,
            "remote_port": row.remote_port,
            "state": row.state,
            "canonical_state": row.canonical_state,
            "pid": row.pid,
        }
        for row in result
    ]


def _is_protocol(token: str) -> bool:
    """Tell whether a field is netstat's TCP/UDP protocol column (any case)."""
    return token.isascii() and token.upper() in ("TCP", "UDP")


def _cut(reason: str, declared: bool, number: int, line: str) -> ParseWarning:
    """Refuse a cut paste, or return the warning for one whose header declared the cut."""
    if not declared:
        raise ParseError(f"{reason}; {CUT_ADVICE}", number, line)
    return ParseWarning(number, f"{reason} (declared truncated)", line)


def _is_marked_row(line: str) -> bool:
    """Tell whether a line is a netstat row behind a highlight marker (``-> TCP ...``)."""
    peeled = peel(line)
    return (
        peeled is not None
        and peeled.marker is not None
        and _is_protocol(peeled.body.split()[0] if peeled.body else "")
    )


def _read_row_or_peeled(
    line: str, number: int, is_last: bool, declared: bool, found: list[ParseWarning]
) -> Connection | None:
    """Read a TCP/UDP line, else the same line without a marker or note (with a warning)."""
    try:
        return _read_netstat_row(line.split(), number, line, is_last, declared, found)
    except ParseError:
        peeled = peel(line)
        if peeled is None or not peeled.body or not _is_protocol(peeled.body.split()[0]):
            raise
    row = _read_netstat_row(peeled.body.split(), number, line, is_last, declared, found)
    found.extend(peeled.warnings(number, line))
    return row


def _read_netstat_row(
    tokens: list[str],
    number: int,
    line: str,
    is_last: bool,
    declared: bool,
    found: list[ParseWarning],
) -> Connection | None:
    """Read one TCP/UDP line; None for a cut last row in a declared excerpt."""
    proto = tokens[0].upper()
    needed = 4 if proto == "TCP" else 3
    if len(tokens) < needed:
        if not is_last:
            raise ParseError(f"{proto} row has too few fields", number, line)
        found.append(_cut(f"the paste ends inside this {proto} row", declared, number, line))
        # The cut may only fall after complete, valid fields; check those that are there.
        if len(tokens) >= 2:
            _local_endpoint(tokens[1], number, line)
        if len(tokens) >= 3:
            _remote_endpoint(tokens[2], number, line)
        return None
    address, port = _local_endpoint(tokens[1], number, line)
    if proto == "UDP":
        if tokens[2] != "*:*":
            raise ParseError("UDP row needs '*:*' as its remote end", number, line)
        if len(tokens) > 4:
            raise ParseError("UDP row has too many fields", number, line)
        pid = _pid(tokens[3], number, line) if len(tokens) == 4 else None
        return Connection("UDP", address, port, None, None, None, pid)
    remote_address, remote_port = _remote_endpoint(tokens[2], number, line)
    words = tokens[3:]
    pid = None
    if not _is_word(words[-1]):
        pid = _pid(words[-1], number, line)
        words = words[:-1]
    if not words:
        raise ParseError("TCP row has no state", number, line)
    for word in words:
        if not _is_word(word):
            raise ParseError(f"unexpected field {word!r} in the state column", number, line)
    return Connection("TCP", address, port, remote_address, remote_port, " ".join(words), pid)


def _reject_hidden_row(tokens: list[str], number: int, line: str) -> None:
    """Raise when a netstat row hides behind a prefix or lost its TCP/UDP field to damage."""
    for index in range(1, len(tokens) - 1):
        if _is_protocol(tokens[index]) and _looks_like_local_endpoint(tokens[index + 1]):
            raise ParseError("netstat row with unexpected text before it", number, line)
    # A local endpoint and a foreign one on one line: only a netstat row prints that.
    if ":" not in line:
        return  # asked of every other line; an endpoint always holds a colon
    endpoints = [i for i, token in enumerate(tokens) if _ENDPOINT_LIKE.fullmatch(token)]
    if len(endpoints) >= 2 and endpoints[1] == endpoints[0] + 1:
        raise ParseError(
            f"a netstat row without a readable TCP/UDP field; if the paste was damaged, "
            f"{CUT_ADVICE}",
            number,
            line,
        )


def _looks_like_local_endpoint(token: str) -> bool:
    """Tell whether a field reads as a local address:port."""
    try:
        _local_endpoint(token, 0, "")
    except ParseError:
        return False
    return True


def _is_table_row(tokens: list[str]) -> bool:
    """Tell whether a line under a table underline is a Get-NetTCPConnection row."""
    first = tokens[0]
    return (
        len(tokens) >= 2
        and bool(_DIGITS.fullmatch(tokens[1]))
        and (first[0] in "0123456789abcdefABCDEF:")
        and ("." in first or ":" in first)
    )


def _read_table_row(tokens: list[str], number: int, line: str) -> Connection:
    """Read a default-view Get-NetTCPConnection table row by position."""
    if len(tokens) not in (6, 7):
        raise ParseError(
            "Get-NetTCPConnection row needs LocalAddress LocalPort RemoteAddress RemotePort "
            "State [AppliedSetting] OwningProcess",
            number,
            line,
        )
    if not _is_word(tokens[4]) or (len(tokens) == 7 and not _is_word(tokens[5])):
        raise ParseError("Get-NetTCPConnection row has no readable State", number, line)
    return Connection(
        "TCP",
        _plain_ip(tokens[0], number, line),
        _port(tokens[1], number, line),
        _plain_ip(tokens[2], number, line),
        _port(tokens[3], number, line),
        tokens[4],
        _pid(tokens[-1], number, line),
    )


def _read_table_row_or_peeled(
    tokens: list[str], number: int, line: str, found: list[ParseWarning]
) -> Connection:
    """Read a Get-NetTCPConnection table row, else it without a note (with a warning)."""
    try:
        return _read_table_row(tokens, number, line)
    except ParseError:
        peeled = peel(line)
        if peeled is None or peeled.marker is not None:
            raise
    row = _read_table_row(peeled.body.split(), number, line)
    found.extend(peeled.warnings(number, line))
    return row


def _value_without_note(
    key: str, value: str, number: int, line: str, found: list[ParseWarning]
) -> str:
    """Strip a note after a Format-List value that netstat reads (each is one token)."""
    if key.casefold() not in _LIST_KEYS or len(value.split()) < 2:
        return value
    peeled = peel(value)
    if peeled is None or peeled.marker is not None or len(peeled.body.split()) != 1:
        return value
    found.extend(peeled.warnings(number, line))
    return peeled.body


def _read_record(record: list[tuple[int, str, str, str]]) -> list[Connection]:
    """Turn one Format-List block into a connection, or nothing when it is about no socket."""
    if not record:
        return []
    wanted = _LIST_NAMES
    found: dict[str, tuple[str, int, str]] = {}  # property -> (value, line number, line)
    for number, key, text, line in record:
        name = key.casefold()
        if name not in wanted:
            continue
        if name in found:
            raise ParseError(f"{key} listed twice in one Format-List block", number, line)
        found[name] = (text, number, line)
    if "localaddress" not in found and "localport" not in found:
        return []
    missing = [wanted[name] for name in wanted if name not in found]
    if missing:
        number, _, _, line = record[0]
        raise ParseError("Get-NetTCPConnection record lacks " + ", ".join(missing), number, line)
    state, number, line = found["state"]
    if not _is_word(state) or len(state.split()) != 1:
        raise ParseError("Get-NetTCPConnection record has no readable State", number, line)
    return [
        Connection(
            "TCP",
            _plain_ip(*found["localaddress"]),
            _port(*found["localport"]),
            _plain_ip(*found["remoteaddress"]),
            _port(*found["remoteport"]),
            state,
            _pid(*found["owningprocess"]),
        )
    ]


def _take_record(
    record: list[tuple[int, str, str, str]], rows: list[Connection], last_row_number: int
) -> int:
    """Append a Format-List block's connection to ``rows``; return the last row's line."""
    read = _read_record(record)
    rows.extend(read)
    return record[-1][0] if read else last_row_number


def _is_word(token: str) -> bool:
    """Tell whether a field can be (part of) a state word: it starts with a letter."""
    return bool(token) and token[0].isalpha()


def _split_endpoint(token: str, number: int, line: str) -> tuple[str, str, bool]:
    """Split ``host:port`` or ``[v6]:port`` into host, port and whether it was bracketed."""
    if token.startswith("["):
        close = token.find("]")
        if close < 0 or token[close + 1 : close + 2] != ":":
            raise ParseError(f"bad address {token!r}", number, line)
        return token[1:close], token[close + 2 :], True
    host, colon, port = token.rpartition(":")
    if not colon or not host:
        raise ParseError(f"bad address {token!r}; expected address:port", number, line)
    if ":" in host:
        raise ParseError(f"IPv6 address {token!r} without brackets", number, line)
    return host, port, False


def _local_endpoint(token: str, number: int, line: str) -> tuple[str, int]:
    """Read netstat's local address:port; the address must be an IP literal."""
    host, port, bracketed = _split_endpoint(token, number, line)
    if bracketed:
        _check_ipv6(host, token, number, line)
    else:
        _check_ipv4(host, token, number, line)
    return host, _port(port, number, line)


def _remote_endpoint(token: str, number: int, line: str) -> tuple[str, int]:
    """Read netstat's TCP foreign address:port (IP literal or resolved host name)."""
    host, port_text, bracketed = _split_endpoint(token, number, line)
    if bracketed:
        _check_ipv6(host, token, number, line)
    elif not _is_ipv4(host) and not _is_host_name(host):
        raise ParseError(f"bad foreign address {token!r}", number, line)
    if _DIGITS.fullmatch(port_text):
        return host, _port(port_text, number, line)
    service = _SERVICE_PORTS.get(port_text.casefold())
    if service is None:
        raise ParseError(
            f"foreign port {port_text!r} is not a number; run netstat with -n", number, line
        )
    return host, service


def _plain_ip(text: str, number: int, line: str) -> str:
    """Check an unbracketed IP literal as Get-NetTCPConnection prints it; return it."""
    if ":" in text:
        _check_ipv6(text, text, number, line)
    else:
        _check_ipv4(text, text, number, line)
    return text


def _check_ipv4(host: str, shown: str, number: int, line: str) -> None:
    """Raise unless host is a dotted IPv4 address."""
    if not _is_ipv4(host):
        raise ParseError(f"bad IPv4 address in {shown!r}", number, line)


def _check_ipv6(host: str, shown: str, number: int, line: str) -> None:
    """Raise unless host is an IPv6 address with an optional %zone."""
    address, percent, zone = host.partition("%")
    try:
        ipaddress.IPv6Address(address)
    except ValueError as exc:
        raise ParseError(f"bad IPv6 address in {shown!r}", number, line) from exc
    if percent and not _ZONE.fullmatch(zone):
        raise ParseError(f"bad IPv6 zone in {shown!r}", number, line)


def _is_ipv4(host: str) -> bool:
    """Tell whether host is a dotted IPv4 address (as ipaddress reads it: no leading zeros)."""
    # A regex, not ipaddress.IPv4Address: this runs twice per row and the class is slow.
    return _IPV4.fullmatch(host) is not None


def _is_host_name(host: str) -> bool:
    """Tell whether host is a resolved name (has a letter, so it is no broken IPv4)."""
    return bool(_HOST_NAME.fullmatch(host)) and any(c.isalpha() for c in host)


def _is_unspecified_or_name(address: str) -> bool:
    """Tell whether a remote address is 0.0.0.0, ::, or a host name netstat resolved."""
    if ":" in address:
        try:
            return ipaddress.IPv6Address(address.partition("%")[0]).is_unspecified
        except ValueError:
            return False
    if _is_ipv4(address):
        return address == "0.0.0.0"
    return bool(_HOST_NAME.fullmatch(address))


def _port(text: str, number: int, line: str) -> int:
    """Read a port number 0..65535."""
    if not _DIGITS.fullmatch(text):
        raise ParseError(f"bad port {text!r}", number, line)
    value = read_digits(text)
    if value > MAX_PORT:
        shown = text if len(text) <= 8 else f"{text[:8]}..."
        raise ParseError(f"port {shown} out of range 0..{MAX_PORT}", number, line)
    return value


def _pid(text: str, number: int, line: str) -> int:
    """Read a process id (a Windows DWORD)."""
    if not _DIGITS.fullmatch(text):
        raise ParseError(f"bad PID {text!r}", number, line)
    value = read_digits(text, limit=_MAX_PID)
    if value > _MAX_PID:
        shown = text if len(text) <= 12 else f"{text[:12]}..."
        raise ParseError(f"PID {shown} out of range 0..{_MAX_PID}", number, line)
    return value
