from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.parsers.errors import ParseError
from collector.parsers.netstat import Connection, netstat_to_json, parse_netstat
from collector.parsers.notes import ParseWarning

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "collector" / "data" / "corpus" / "netstat"
EXPECTED = Path(__file__).resolve().parent / "expected" / "netstat"
SEED = ROOT / "collector" / "data" / "seed" / "capture" / "netstat-ano.txt"

CANONICAL_STATES = {
    "LISTENING",
    "ESTABLISHED",
    "TIME_WAIT",
    "CLOSE_WAIT",
    "SYN_SENT",
    "SYN_RECEIVED",
    "FIN_WAIT_1",
    "FIN_WAIT_2",
    "CLOSING",
    "LAST_ACK",
    "CLOSED",
    "DELETE_TCB",
    "BOUND",
}
JSON_KEYS = {
    "canonical_state",
    "proto",
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "state",
    "pid",
}

FUZZ = settings(derandomize=True, max_examples=300, deadline=None, database=None)


def collapse(text: str) -> str:
    """Do what a web page copy does to console output: runs of blanks become one space."""
    return "\n".join(re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n"))


def render(rows: list[Connection], *, with_pid: bool) -> str:
    """Write rows in netstat's aligned console layout, with its title and header."""
    out = ["", "Active Connections", ""]
    header = "  Proto  Local Address          Foreign Address        State"
    out.append(header + ("           PID" if with_pid else ""))
    for row in rows:
        local = _endpoint(row.local_address, row.local_port)
        if row.proto == "UDP":
            remote, state = "*:*", ""
        else:
            assert row.remote_address is not None and row.remote_port is not None
            remote, state = _endpoint(row.remote_address, row.remote_port), row.state or ""
        pid = "" if row.pid is None else str(row.pid)
        out.append(f"  {row.proto:<5}  {local:<22} {remote:<22} {state:<15} {pid}")
    return "\r\n".join(out) + "\r\n"


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


# --- the seed capture -------------------------------------------------------------------------


def test_seed_capture_has_every_row():
    rows = parse_netstat(SEED.read_bytes())
    # 204 lines: the header and 203 rows, 147 TCP then 56 UDP (counted with awk on field 1).
    assert sum(row.proto == "TCP" for row in rows) == 147
    assert sum(row.proto == "UDP" for row in rows) == 56
    assert len(rows) == 203


def test_seed_capture_listeners_and_their_pids():
    rows = parse_netstat(SEED.read_bytes())
    listeners = {
        (r.family, r.local_port, r.pid) for r in rows if r.proto == "TCP" and r.is_listener
    }
    for family in (4, 6):
        assert (family, 445, 4) in listeners
        assert (family, 5357, 4) in listeners
        assert (family, 7680, 7056) in listeners
    # 445 also appears as an ESTABLISHED SMB session (10.0.75.1:445 <- 10.0.75.2), not a listener
    smb = [r for r in rows if r.local_port == 445 and r.proto == "TCP"]
    assert [r.is_listener for r in smb] == [True, False, True]
    assert smb[1].remote_address == "10.0.75.2" and smb[1].remote_port == 44848


def test_seed_capture_keeps_ipv6_zone_ids():
    rows = parse_netstat(SEED.read_bytes())
    zoned = [r for r in rows if "%" in r.local_address]
    assert len(zoned) == 6
    first = zoned[0]
    assert first == Connection("UDP", "fe80::30eb:ad8f:f94a:b774%26", 1900, None, None, None, 2620)
    assert first.family == 6
    assert {r.local_address.rsplit("%", 1)[1] for r in zoned} == {"26", "23", "5"}


def test_seed_capture_aligned_equals_collapsed():
    collapsed = parse_netstat(SEED.read_bytes())
    aligned = render(collapsed, with_pid=True)
    assert "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1152" in aligned
    assert parse_netstat(aligned) == collapsed


# --- the corpus -------------------------------------------------------------------------------

CORPUS_FILES = sorted(CORPUS.glob("*.txt"))


def test_corpus_is_there():
    assert len(CORPUS_FILES) >= 8


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.stem for p in CORPUS_FILES])
def test_corpus_file_matches_by_eye_expectation(path: Path):
    expected_file = EXPECTED / f"{path.stem}.json"
    assert expected_file.is_file(), f"write tests/expected/netstat/{path.stem}.json by eye"
    rows = netstat_to_json(parse_netstat(path.read_bytes()))
    # The by-eye files predate canonical_state; it is checked against the printed word here.
    assert all(row["canonical_state"] in CANONICAL_STATES for row in rows if row["state"])
    got = [{key: value for key, value in row.items() if key != "canonical_state"} for row in rows]
    assert got == json.loads(expected_file.read_text(encoding="utf-8"))
    beside = path.with_name(f"{path.stem}.expected.json")
    if beside.is_file():
        assert got == json.loads(beside.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.stem for p in CORPUS_FILES])
def test_corpus_file_collapsed_parses_the_same(path: Path):
    text = path.read_text(encoding="utf-8")
    assert parse_netstat(collapse(text)) == parse_netstat(text)


def test_netstat_ab_attaches_image_names_to_the_row_before():
    rows = parse_netstat((CORPUS / "netstat-en-1.txt").read_bytes())
    by_port = {r.local_port: r.process for r in rows}
    assert by_port[135] == "svchost.exe"  # after the "RpcEptMapper" service line
    assert by_port[2179] == "vmms.exe"
    assert by_port[445] is None  # "Can not obtain ownership information"
    assert by_port[7680] is None
    assert by_port[49664] == "lsass.exe"
    # the foreign end is the host name netstat resolved; port 0 still marks a listener
    assert all(r.remote_address == "orion" and r.is_listener for r in rows)
    # the excerpt is cut after "TCP    0.0.0.0:49665": that half row is not invented
    assert 49665 not in by_port


def test_findstr_substring_match_rows_are_still_rows():
    rows = parse_netstat((CORPUS / "netstat-en-2.txt").read_bytes())
    assert [r.local_port for r in rows] == [8042, 80, 80]


def test_error_only_nettcpconnection_is_an_empty_answer():
    assert parse_netstat((CORPUS / "nettcpconnection-ru-1.txt").read_bytes()) == []


def test_bound_socket_is_not_a_listener():
    bound, established = parse_netstat((CORPUS / "nettcpconnection-ko-2.txt").read_bytes())
    assert bound.state == "Bound" and bound.normalized_state == "BOUND"
    assert bound.remote_address == "0.0.0.0" and bound.remote_port == 0
    assert not bound.is_listener
    assert established.normalized_state == "ESTABLISHED" and not established.is_listener


def test_nettcpconnection_listen_row_is_a_listener():
    (row,) = parse_netstat((CORPUS / "nettcpconnection-en-1.txt").read_bytes())
    assert row.is_listener and row.normalized_state == "LISTENING" and row.family == 4


# --- localized netstat ------------------------------------------------------------------------

# Only the state words matter to the parser; the headers show what a localized console prints
# around them (German from a real paste; Spanish and French headers as public parsers quote them).
EN = """
Active Connections

  Proto  Local Address          Foreign Address        State           PID
  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1044
  TCP    0.0.0.0:445            0.0.0.0:0              LISTENING       4
  TCP    127.0.0.1:5432         0.0.0.0:0              LISTENING       6120
  TCP    127.0.0.1:5432         127.0.0.1:50311        ESTABLISHED     6120
  TCP    127.0.0.1:50311        127.0.0.1:5432         ESTABLISHED     9184
  TCP    192.168.1.20:50402     52.96.10.1:443         TIME_WAIT       0
  TCP    192.168.1.20:50410     52.96.10.2:443         CLOSE_WAIT      9184
  TCP    [::]:135               [::]:0                 LISTENING       1044
  TCP    [::1]:5432             [::]:0                 LISTENING       6120
  UDP    0.0.0.0:5353           *:*                                    2212
  UDP    [fe80::1c2d:3e4f:5a6b:7c8d%12]:1900  *:*                      3300
"""

LOCALIZED = {
    "de": (
        "Aktive Verbindungen",
        "  Proto  Lokale Adresse         Remoteadresse          Status           PID",
        {
            "LISTENING": "ABHÖREN",
            "ESTABLISHED": "HERGESTELLT",
            "TIME_WAIT": "WARTEND",
            "CLOSE_WAIT": "SCHLIESSEN_WARTEN",
        },
    ),
    "es": (
        "Conexiones activas",
        "  Proto  Dirección local          Dirección remota       Estado           PID",
        {"LISTENING": "ESCUCHANDO", "ESTABLISHED": "ESTABLECIDO"},
    ),
    "fr": (
        "Connexions actives",
        "  Proto  Adresse locale         Adresse distante       État            PID",
        {"LISTENING": "ÉCOUTE", "ESTABLISHED": "ÉTABLIE"},
    ),
    "it": (
        "Connessioni attive",
        "  Proto  Indirizzo locale       Indirizzo esterno      Stato           PID",
        {"LISTENING": "IN ASCOLTO"},
    ),
}


def localize(language: str) -> str:
    title, header, words = LOCALIZED[language]
    lines = EN.split("\n")
    lines[1], lines[3] = title, header
    text = "\n".join(lines)
    for english, local in words.items():
        # the state column is 15 wide plus a space; longer words push the PID right
        text = text.replace(f"{english:<16}", f"{local:<15} ")
    return text


def _listeners(rows: list[Connection]) -> set[tuple[str, str, int, int | None]]:
    return {(r.proto, r.local_address, r.local_port, r.pid) for r in rows if r.is_listener}


@pytest.mark.parametrize("language", sorted(LOCALIZED))
def test_localized_states_give_the_same_listeners(language: str):
    english = parse_netstat(EN)
    local = parse_netstat(localize(language))
    assert len(local) == len(english) == 11
    assert _listeners(local) == _listeners(english)
    assert ("TCP", "0.0.0.0", 135, 1044) in _listeners(local)
    assert ("UDP", "fe80::1c2d:3e4f:5a6b:7c8d%12", 1900, 3300) in _listeners(local)
    # states stay as printed, and normalize back to English
    assert [r.state for r in local] != [r.state for r in english]
    assert [r.normalized_state for r in local] == [r.normalized_state for r in english]


def test_german_state_words_as_printed():
    rows = parse_netstat(localize("de"))
    assert rows[0].state == "ABHÖREN" and rows[0].normalized_state == "LISTENING"
    assert rows[5].state == "WARTEND" and rows[5].normalized_state == "TIME_WAIT"
    assert rows[6].state == "SCHLIESSEN_WARTEN" and rows[6].normalized_state == "CLOSE_WAIT"


def test_multi_word_state_is_kept_whole():
    rows = parse_netstat(localize("it"))
    assert rows[0].state == "IN ASCOLTO" and rows[0].pid == 1044
    assert rows[0].normalized_state == "LISTENING"


def test_unknown_state_word_stays_as_printed():
    text = "  TCP    0.0.0.0:135            0.0.0.0:0              DİNLENİYOR      1044\n"
    (row,) = parse_netstat(text)
    assert row.state == "DİNLENİYOR" and row.normalized_state == "DİNLENİYOR"
    assert row.is_listener


def test_nettcpconnection_state_names_normalize():
    names = {
        "Listen": "LISTENING",
        "TimeWait": "TIME_WAIT",
        "CloseWait": "CLOSE_WAIT",
        "SynSent": "SYN_SENT",
        "FinWait2": "FIN_WAIT_2",
        "DeleteTCB": "DELETE_TCB",
    }
    for printed, canonical in names.items():
        row = Connection("TCP", "10.0.0.1", 1, "10.0.0.2", 2, printed, 1)
        assert row.normalized_state == canonical


# --- encodings --------------------------------------------------------------------------------


def test_utf16_le_with_and_without_bom():
    text = EN.replace("\n", "\r\n")
    expected = parse_netstat(EN)
    assert parse_netstat(text.encode("utf-16")) == expected  # BOM, as PowerShell's ">" writes
    assert parse_netstat(text.encode("utf-16-le")) == expected


@pytest.mark.parametrize("codepage", ["cp437", "cp850"])
def test_oem_code_page_bytes_decode(codepage: str):
    data = localize("de").encode(codepage)
    assert b"ABH\x99REN" in data  # not UTF-8, so the named code page decides
    rows = parse_netstat(data, codepage=codepage)
    assert rows[0].state == "ABHÖREN" and rows[0].normalized_state == "LISTENING"


def test_cp850_spanish_header_decodes():
    data = localize("es").encode("cp850")
    assert "Dirección".encode("cp850") in data
    rows = parse_netstat(data, codepage="850")
    assert _listeners(rows) == _listeners(parse_netstat(EN))


def test_cp866_russian_title_and_header_decode():
    text = EN.replace("Active Connections", "Активные подключения").replace(
        "  Proto  Local Address          Foreign Address        State           PID",
        "  Имя    Локальный адрес        Внешний адрес          Состояние       PID",
    )
    data = text.encode("cp866")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert parse_netstat(data, codepage="cp866") == parse_netstat(EN)
    with pytest.raises(ParseError):
        parse_netstat(data, codepage="no-such-codepage")


# --- errors -----------------------------------------------------------------------------------


def test_port_out_of_range_names_the_line():
    text = EN.replace("127.0.0.1:5432         0.0.0.0:0", "127.0.0.1:70000        0.0.0.0:0")
    with pytest.raises(ParseError) as caught:
        parse_netstat(text)
    assert caught.value.line == 7
    assert "70000" in str(caught.value) and "line 7" in str(caught.value)


def test_port_out_of_range_after_comment_header_counts_file_lines():
    text = "# source: x\n# language/locale: en\n# command: netstat -ano\n" + EN.replace(
        "[::]:0                 LISTENING       1044", "[::]:70000             LISTENING       1044"
    )
    with pytest.raises(ParseError) as caught:
        parse_netstat(text)
    assert caught.value.line == 15


@pytest.mark.parametrize("pid", ["12a", "-1", "4294967296", "１２"])
def test_bad_pid_names_the_line(pid: str):
    text = EN.replace("ESTABLISHED     9184", f"ESTABLISHED     {pid}")
    with pytest.raises(ParseError) as caught:
        parse_netstat(text)
    assert caught.value.line == 9


def test_bad_udp_pid_names_the_line():
    text = EN.replace("*:*                                    2212", "*:*              x2212")
    with pytest.raises(ParseError) as caught:
        parse_netstat(text)
    assert caught.value.line == 14


@pytest.mark.parametrize(
    "row",
    [
        "  TCP    0.0.0.0:135",  # cut short, but not at the end of the text
        "  TCP    0.0.0.0:135            0.0.0.0:0",  # no state
        "  TCP    0.0.0.0:135            0.0.0.0:0              1044",  # PID but no state
        "  TCP    300.0.0.1:135          0.0.0.0:0              LISTENING       1044",
        "  TCP    ::1:135                0.0.0.0:0              LISTENING       1044",
        "  TCP    [::1]135               [::]:0                 LISTENING       1044",
        "  TCP    [zz::1]:135            [::]:0                 LISTENING       1044",
        "  TCP    host:135               0.0.0.0:0              LISTENING       1044",
        "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING 7     1044",
        "  TCP    0.0.0.0:http           0.0.0.0:0              LISTENING       1044",
        "  TCP    10.0.0.5:50000         some-host:weird-svc    ESTABLISHED     1044",
        "  UDP    0.0.0.0:5353           10.0.0.1:53                            2212",
        "  UDP    0.0.0.0:5353           *:*                    x     2212",
        "  udp",
        "12  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1044",
    ],
)
def test_unreadable_row_is_an_error_naming_it(row: str):
    text = f"\nActive Connections\n\n{row}\n  TCP    0.0.0.0:445   0.0.0.0:0   LISTENING   4\n"
    with pytest.raises(ParseError) as caught:
        parse_netstat(text)
    assert caught.value.line == 4
    assert caught.value.text == row


def test_cut_row_at_the_end_is_refused():
    head = "  TCP    0.0.0.0:445            0.0.0.0:0              LISTENING       4\n"
    for cut in (
        "  TCP    0.0.0.0:49665\n\n",
        "  TCP    0.0.0.0:49665   0.0.0.0:0",
        "  UDP 0.0.0.0:53",
    ):
        with pytest.raises(ParseError, match="ends inside this") as caught:
            parse_netstat(head + cut)
        assert caught.value.line == 2


def test_cut_row_in_a_declared_excerpt_is_dropped_with_a_warning_but_must_be_valid():
    head = "# command: netstat -ano  # truncated\n\n"
    row = "  TCP    0.0.0.0:445            0.0.0.0:0              LISTENING       4\n"
    warnings: list[ParseWarning] = []
    assert parse_netstat(head + row + "  TCP    0.0.0.0:49665", warnings=warnings) == parse_netstat(
        row
    )
    assert [(w.line, "declared truncated" in w.message) for w in warnings] == [(4, True)]
    with pytest.raises(ParseError) as caught:
        parse_netstat(head + row + "  TCP    0.0.0.0:4966x")
    assert caught.value.line == 4


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n   \n",
        "Active Connections\n\n  Proto  Local Address          Foreign Address        State\n",
        "hello world\nnothing here: at all\n",
        "PS C:\\> Get-NetTCPConnection -LocalPort 1\nGet-NetTCPConnection : Access denied\n"
        "    + FullyQualifiedErrorId : HRESULT 0x80041003,Get-NetTCPConnection\n",
    ],
)
def test_nothing_recognisable_is_an_error(text: str):
    with pytest.raises(ParseError):
        parse_netstat(text)


# --- Get-NetTCPConnection ---------------------------------------------------------------------

NETTCP_TABLE = """
LocalAddress                        LocalPort RemoteAddress                       RemotePort State       AppliedSetting OwningProcess
------------                        --------- -------------                       ---------- -----       -------------- -------------
::                                  445       ::                                  0          Listen                     4
fe80::1c2d:3e4f:5a6b:7c8d%12        139       ::                                  0          Listen                     4
192.168.1.20                        50410     52.96.10.2                          443        Established Internet       9184
0.0.0.0                             50400     0.0.0.0                             0          Bound                      9184

"""  # noqa: E501


def test_nettcpconnection_table_by_position():
    rows = parse_netstat(NETTCP_TABLE)
    assert rows == [
        Connection("TCP", "::", 445, "::", 0, "Listen", 4),
        Connection("TCP", "fe80::1c2d:3e4f:5a6b:7c8d%12", 139, "::", 0, "Listen", 4),
        Connection("TCP", "192.168.1.20", 50410, "52.96.10.2", 443, "Established", 9184),
        Connection("TCP", "0.0.0.0", 50400, "0.0.0.0", 0, "Bound", 9184),
    ]
    assert [r.is_listener for r in rows] == [True, True, False, False]
    assert [r.family for r in rows] == [6, 6, 4, 4]
    assert parse_netstat(collapse(NETTCP_TABLE)) == rows


def test_nettcpconnection_table_row_that_does_not_fit_is_an_error():
    text = NETTCP_TABLE.replace(
        "Established Internet       9184", "Established Internet x     9184"
    )
    with pytest.raises(ParseError) as caught:
        parse_netstat(text)
    assert caught.value.line == 6
    truncated = NETTCP_TABLE.replace("fe80::1c2d:3e4f:5a6b:7c8d%12", "fe80::1c2d:3e4f:5a6b:7c8d...")
    with pytest.raises(ParseError) as caught:
        parse_netstat(truncated)
    assert caught.value.line == 5


def test_format_list_block_missing_a_property_is_an_error():
    text = (CORPUS / "nettcpconnection-ko-1.txt").read_text(encoding="utf-8")
    broken = re.sub(r"(?m)^OwningProcess .*\n", "", text)
    with pytest.raises(ParseError) as caught:
        parse_netstat(broken)
    assert "OwningProcess" in str(caught.value)
    assert caught.value.line == 7  # the block's first line


def test_format_list_blocks_run_together_are_an_error():
    text = (CORPUS / "nettcpconnection-ko-1.txt").read_text(encoding="utf-8")
    block = text[text.index("LocalAddress") :]
    with pytest.raises(ParseError):
        parse_netstat(block + block)
    assert len(parse_netstat(block + "\n" + block)) == 2


# --- the Connection value and JSON --------------------------------------------------------------


def test_json_has_exactly_the_documented_keys():
    rows = parse_netstat((CORPUS / "netstat-en-3.txt").read_bytes())
    out = netstat_to_json(rows)
    assert all(set(item) == JSON_KEYS for item in out)
    assert out[1]["state"] is None and out[1]["remote_address"] is None
    assert json.loads(json.dumps(out)) == out


def test_connection_is_frozen_with_slots():
    row = Connection("TCP", "0.0.0.0", 135, "0.0.0.0", 0, "LISTENING", 4)
    with pytest.raises(AttributeError):
        row.pid = 5  # type: ignore[misc]
    assert not hasattr(row, "__dict__")


def test_listener_rule_uses_the_remote_end_only():
    assert Connection("TCP", "::", 1, "::", 0, "X", 1).is_listener
    assert Connection("TCP", "0.0.0.0", 1, "0.0.0.0", 0, None, 1).is_listener
    assert not Connection("TCP", "0.0.0.0", 1, "10.0.0.1", 0, "LISTENING", 1).is_listener
    assert not Connection("TCP", "0.0.0.0", 1, "0.0.0.0", 80, "LISTENING", 1).is_listener
    assert Connection("UDP", "0.0.0.0", 53, None, None, None, 1).is_listener


# --- properties ---------------------------------------------------------------------------------

NOISE = [
    "TCP",
    "udp",
    "0.0.0.0:135",
    "[::]:0",
    "[fe80::1%3]:1900",
    "*:*",
    "LISTENING",
    "ABHÖREN",
    "1044",
    "70000",
    "[svchost.exe]",
    "------------",
    "LocalAddress :",
    "LocalPort :",
    "OwningProcess : 4",
    "127.0.0.1",
    "0",
    "orion:0",
    "host:https",
    "CmdletizationQuery_NotFound_LocalPort,Get-NetTCPConnection",
    "x",
    "",
]

noisy_text = st.lists(
    st.lists(st.sampled_from(NOISE) | st.text(max_size=6), max_size=8).map(" ".join),
    max_size=12,
).map("\n".join)


def _result_or_parse_error(data: bytes | str) -> None:
    try:
        rows = parse_netstat(data)
    except ParseError:
        return
    assert isinstance(rows, list)
    assert all(isinstance(row, Connection) for row in rows)
    for row in rows:
        assert row.family in (4, 6)
        assert isinstance(row.is_listener, bool)
        assert set(netstat_to_json([row])[0]) == JSON_KEYS


@FUZZ
@given(st.text())
def test_any_text_gives_rows_or_parse_error(text: str):
    _result_or_parse_error(text)


@FUZZ
@given(noisy_text)
def test_netstat_like_noise_gives_rows_or_parse_error(text: str):
    _result_or_parse_error(text)


@FUZZ
@given(st.binary())
def test_any_bytes_give_rows_or_parse_error(data: bytes):
    _result_or_parse_error(data)


ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.tuples(
    st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n))),
    st.none() | st.integers(1, 99).map(str),
).map(lambda pair: pair[0] if pair[1] is None else f"{pair[0]}%{pair[1]}")
ports = st.integers(0, 65535)
pids = st.integers(0, 2**32 - 1)
states = st.sampled_from(
    ["LISTENING", "ESTABLISHED", "TIME_WAIT", "SYN_SENT", "ABHÖREN", "IN ASCOLTO", "ÉCOUTE"]
) | st.from_regex(r"[A-Z][A-Z_]{0,14}", fullmatch=True)


@st.composite
def netstat_tables(draw: st.DrawFn) -> tuple[list[Connection], bool]:
    with_pid = draw(st.booleans())
    rows: list[Connection] = []
    for _ in range(draw(st.integers(1, 12))):
        local = draw(ipv4 | ipv6)
        pid = draw(pids) if with_pid else None
        if draw(st.booleans()):
            rows.append(Connection("UDP", local, draw(ports), None, None, None, pid))
        else:
            remote = draw(ipv4 | ipv6)
            state = draw(states)
            rows.append(Connection("TCP", local, draw(ports), remote, draw(ports), state, pid))
    return rows, with_pid


@FUZZ
@given(netstat_tables())
def test_rendered_rows_parse_back_exactly(table: tuple[list[Connection], bool]):
    rows, with_pid = table
    text = render(rows, with_pid=with_pid)
    assert parse_netstat(text) == rows
    assert parse_netstat(collapse(text)) == rows
    assert parse_netstat(text.encode("utf-16")) == rows
