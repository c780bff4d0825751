"""Tests for the excludedportrange parser: corpus, decoding, languages, errors and properties."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.parsers.errors import ParseError
from collector.parsers.excluded import (
    ExcludedRange,
    ExcludedTable,
    excluded_to_json,
    parse_excluded,
)
from collector.parsers.notes import ParseWarning
from tests.parser_helpers import (
    BY_EYE_ROOT,
    CORPUS_ROOT,
    HEADER_COMMENT,
    PROPERTY_SETTINGS,
    accept_or_refuse,
    collapse,
    find_stale_by_eye_files,
    load_expected_json,
)

CORPUS = CORPUS_ROOT / "excluded"
BY_EYE = BY_EYE_ROOT / "excluded"
CORPUS_FILES = sorted(CORPUS.glob("*.txt"))


def _expected_json(path: Path) -> object:
    """Return the expected JSON of an excludedportrange corpus file."""
    return load_expected_json(path, BY_EYE)


def _row(start: int, end: int, administered: bool = False) -> str:
    """Render one row exactly as the console prints it."""
    return f"{start:>10}{end:>12}" + ("     *" if administered else " " * 6)


def _table_text(title: str | None, header: str, dashes: str, footer: str, rows: list[str]) -> str:
    """Render a whole console table with CRLF line ends, as netsh writes it."""
    lines = ([title, ""] if title is not None else []) + [header, dashes, *rows, "", footer, ""]
    return "\r\n".join(lines)


R = ExcludedRange
SAMPLE_ROWS = [(80, 80, False), (5357, 5357, False), (13128, 13130, True), (50000, 50059, True)]
SAMPLE = [ExcludedTable("tcp", tuple(R(s, e, a) for s, e, a in SAMPLE_ROWS))]
SAMPLE_ROW_TEXT = [_row(*item) for item in SAMPLE_ROWS]

# ---------------------------------------------------------------------------------------------
# Corpus


def test_corpus_is_there() -> None:
    assert len(CORPUS_FILES) >= 20


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda path: path.stem)
def test_corpus_file_parses_to_its_expectation(path: Path) -> None:
    assert excluded_to_json(parse_excluded(path.read_bytes())) == _expected_json(path)


def test_by_eye_expectations_belong_to_corpus_files_without_official_ones() -> None:
    assert find_stale_by_eye_files(CORPUS, BY_EYE) == []


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda path: path.stem)
def test_corpus_file_collapsed_parses_the_same(path: Path) -> None:
    collapsed = collapse(path.read_text(encoding="utf-8"))
    assert excluded_to_json(parse_excluded(collapsed)) == _expected_json(path)


# ---------------------------------------------------------------------------------------------
# Decoding

FRENCH = _table_text(
    "Protocole tcp Plages d'exclusion de ports",
    "Port de début    Port de fin",
    "-------------    -----------",
    "* - Exclusions de ports administrés.",
    SAMPLE_ROW_TEXT,
)
JAPANESE = _table_text(
    "プロトコル tcp ポート除外範囲",
    "開始ポート    終了ポート",
    "----------    --------",
    "* - 管理されているポート除外。",
    SAMPLE_ROW_TEXT,
)
KOREAN = _table_text(
    "프로토콜 tcp 포트 제외 범위",
    "시작 포트    끝 포트",
    "----------    --------",
    "* - 관리 포트 제외입니다.",
    SAMPLE_ROW_TEXT,
)
CHINESE = _table_text(
    "协议 tcp 端口排除范围",
    "开始端口    结束端口",
    "----------    --------",
    "* - 管理的端口排除。",
    SAMPLE_ROW_TEXT,
)


@pytest.mark.parametrize(
    ("data", "codepage"),
    [
        pytest.param(codecs.BOM_UTF16_LE + FRENCH.encode("utf-16-le"), "cp437", id="utf16le-bom"),
        pytest.param(FRENCH.encode("utf-16-le"), "cp437", id="utf16le-no-bom"),
        pytest.param(FRENCH.encode("utf-8-sig"), "cp437", id="utf8-bom"),
        pytest.param(FRENCH.encode("utf-8"), "cp437", id="utf8"),
        pytest.param(FRENCH.encode("cp850"), "cp850", id="cp850-french"),
        pytest.param(FRENCH.encode("cp850"), "850", id="cp850-french-number"),
        pytest.param(JAPANESE.encode("cp932"), "cp932", id="cp932-japanese"),
        pytest.param(codecs.BOM_UTF16_LE + JAPANESE.encode("utf-16-le"), "cp437", id="ja-utf16"),
        pytest.param(KOREAN.encode("cp949"), "cp949", id="cp949-korean"),
        pytest.param(KOREAN.encode("utf-8-sig"), "cp437", id="ko-utf8-bom"),
        pytest.param(CHINESE.encode("cp936"), "cp936", id="cp936-chinese"),
        pytest.param(codecs.BOM_UTF16_LE + CHINESE.encode("utf-16-le"), "cp437", id="zh-utf16"),
    ],
)
def test_encodings_parse_the_same(data: bytes, codepage: str) -> None:
    assert parse_excluded(data, codepage) == SAMPLE


def test_code_page_cases_really_need_the_code_page() -> None:
    # The é of "Port de début" is 0x82 in cp850; none of these byte strings is UTF-8.
    assert b"Port de d\x82but" in FRENCH.encode("cp850")
    for text, codepage in ((FRENCH, "cp850"), (JAPANESE, "cp932"), (KOREAN, "cp949")):
        with pytest.raises(UnicodeDecodeError):
            text.encode(codepage).decode("utf-8")
    with pytest.raises(UnicodeDecodeError):
        CHINESE.encode("cp936").decode("utf-8")


# ---------------------------------------------------------------------------------------------
# Languages that are not in the corpus (header words unverified: the parser must not need them)

OTHER_LANGUAGES = {
    "ja": (
        "プロトコル tcp ポート除外範囲",
        "開始ポート    終了ポート",
        "----------    --------",
        "* - 管理されているポート除外。",
    ),
    "ru": (
        "Диапазоны исключенных портов для протокола tcp",
        "Начальный порт    Конечный порт",
        "--------------    -------------",
        "* - Управляемые исключения портов.",
    ),
    "pt": (
        "Intervalos de Exclusão de Porta do Protocolo tcp",
        "Porta Inicial    Porta Final",
        "-------------    -----------",
        "* - Exclusões de porta administradas.",
    ),
    "it": (
        "Intervalli di esclusione delle porte per il protocollo tcp",
        "Porta iniziale    Porta finale",
        "--------------    ------------",
        "* - Esclusioni di porte amministrate.",
    ),
    "pl": (
        "Zakresy wykluczeń portów dla protokołu tcp",
        "Port początkowy    Port końcowy",
        "---------------    ------------",
        "* - Administrowane wykluczenia portów.",
    ),
    "tr": (
        "tcp Protokolü Bağlantı Noktası Dışlama Aralıkları",
        "Başlangıç Bağlantı Noktası    Bitiş Bağlantı Noktası",
        "--------------------------    ----------------------",
        "* - Yönetilen bağlantı noktası dışlamaları.",
    ),
}


@pytest.mark.parametrize("language", sorted(OTHER_LANGUAGES))
@pytest.mark.parametrize("collapsed", [False, True], ids=["console", "collapsed"])
def test_languages_not_in_the_corpus(language: str, collapsed: bool) -> None:
    title, header, dashes, footer = OTHER_LANGUAGES[language]
    prompt = "PS C:\\Windows\\system32> netsh int ipv4 show excludedportrange protocol=tcp\r\n"
    text = prompt + _table_text(title, header, dashes, footer, SAMPLE_ROW_TEXT)
    if collapsed:
        text = collapse(text)
    assert parse_excluded(text) == SAMPLE


def test_protocol_token_glued_to_cjk_text() -> None:
    text = _table_text(
        "プロトコルudpのポート除外範囲", "開始ポート 終了ポート", "---- ----", "*", ["1 2"]
    )
    assert parse_excluded(text) == [ExcludedTable("udp", (R(1, 2, False),))]


# ---------------------------------------------------------------------------------------------
# Shapes seen in pastes


def test_udp_from_the_command_line_when_the_title_is_missing() -> None:
    text = "C:\\> netsh int ipv6 show excludedportrange protocol=udp\n\n" + _table_text(
        None, "Start Port    End Port", "----------    --------", "", [_row(5353, 5353)]
    )
    assert parse_excluded(text) == [ExcludedTable("udp", (R(5353, 5353, False),))]


def test_short_command_form_and_int_ip() -> None:
    text = "> netsh int ip show excludedportrange udp\n----------    --------\n 1 2\n"
    assert parse_excluded(text) == [ExcludedTable("udp", (R(1, 2, False),))]


def test_command_protocol_is_used_once() -> None:
    text = (
        "netsh int ipv4 show excludedportrange protocol=udp\n"
        "---------- --------\n1 2\n"
        "---------- --------\n3 4\n"
    )
    assert parse_excluded(text) == [
        ExcludedTable("udp", (R(1, 2, False),)),
        ExcludedTable(None, (R(3, 4, False),)),
    ]


def test_title_outranks_the_command() -> None:
    text = (
        "netsh int ipv4 show excludedportrange protocol=udp\nProtocol tcp Port Exclusion Ranges\n"
    )
    assert parse_excluded(text) == [ExcludedTable("tcp", ())]


def test_line_naming_both_protocols_is_not_a_title() -> None:
    text = "Reserved ports for tcp and udp\n---------- --------\n5 6\n"
    assert parse_excluded(text) == [ExcludedTable(None, (R(5, 6, False),))]


def test_no_protocol_anywhere_is_none() -> None:
    text = "Start Port    End Port\n----------    --------\n" + _row(1, 1) + "\n"
    assert parse_excluded(text) == [ExcludedTable(None, (R(1, 1, False),))]


def test_title_without_rows_is_an_empty_table() -> None:
    text = _table_text(
        "Protocol udp Port Exclusion Ranges",
        "Start Port    End Port",
        "----------    --------",
        "* - Administered port exclusions.",
        [],
    )
    assert parse_excluded(text) == [ExcludedTable("udp", ())]
    assert parse_excluded("Protocol tcp Port Exclusion Ranges\n") == [ExcludedTable("tcp", ())]


def test_empty_table_between_two_others_is_kept() -> None:
    text = (
        "Protocol tcp Port Exclusion Ranges\n---------- --------\n1 2\n"
        "Protocol udp Port Exclusion Ranges\n---------- --------\n\n* - Administered.\n"
        "Protocol tcp Port Exclusion Ranges\n---------- --------\n3 4 *\n"
    )
    assert parse_excluded(text) == [
        ExcludedTable("tcp", (R(1, 2, False),)),
        ExcludedTable("udp", ()),
        ExcludedTable("tcp", (R(3, 4, True),)),
    ]


def test_second_dash_block_without_rows_starts_a_new_table() -> None:
    text = "---------- --------\n\n---------- --------\n1 2\n"
    assert parse_excluded(text) == [
        ExcludedTable(None, ()),
        ExcludedTable(None, (R(1, 2, False),)),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n   \n",
        "The requested operation requires elevation (Run as administrator).\n",
        "Error response from daemon: listen tcp 0.0.0.0:1888: bind: access forbidden\n",
        "1\n2\n3\n",
        "* - Administered port exclusions.\n",
        "# source: nothing\n# language/locale: en\n# command: none\n",
    ],
    ids=["empty", "blank", "elevation", "docker-error", "gutter-only", "footer-only", "header"],
)
def test_no_table_is_an_error(text: str) -> None:
    with pytest.raises(ParseError, match="no excludedportrange table found"):
        parse_excluded(text)


def test_lines_with_digits_that_are_not_rows_are_ignored() -> None:
    text = (
        "Error response from daemon: Ports are not available: exposing port TCP "
        "0.0.0.0:1888 -> 127.0.0.1:0: listen tcp 0.0.0.0:1888: bind: forbidden\n"
        "PS C:\\> docker run --rm -d -p 8080:80 nginx\n"
        "4a0e695f8ab568d2181a8b0c8a838747e9862df48d3036a63cc75527127f4469\n"
        "> netsh int ipv4 add excludedportrange protocol=tcp startport=1888 numberofports=1\n"
        "Protocol tcp Port Exclusion Ranges\n"
        "Start Port    End Port\n----------    --------\n" + _row(1888, 1888, True) + "\n"
    )
    assert parse_excluded(text) == [ExcludedTable("tcp", (R(1888, 1888, True),))]


def test_error_line_with_a_word_and_colon_is_not_a_tool_prefix() -> None:
    text = "Error: listen tcp failed\n" + _table_text(
        "Protocol udp Port Exclusion Ranges", "Start Port    End Port", DASHES, "", [_row(7, 7)]
    )
    assert parse_excluded(text) == [ExcludedTable("udp", (R(7, 7, False),))]


def test_prefixes_quotes_indents_and_tool_prefixes() -> None:
    text = (
        "    vhd: Protocol tcp Port Exclusion Ranges\n"
        "    vhd:\n"
        "    vhd: Start Port    End Port\n"
        "    vhd: ----------    --------\n"
        "    vhd:      50000       50059     *\n"
        "> " + _row(50060, 50159) + "\n"
        "\t  " + _row(50160, 50259) + "\n"
    )
    assert parse_excluded(text) == [
        ExcludedTable(
            "tcp", (R(50000, 50059, True), R(50060, 50159, False), R(50160, 50259, False))
        )
    ]


def test_footer_glued_to_the_last_row() -> None:
    glued = "Protocol tcp Port Exclusion Ranges\n---------- --------\n1 1 * - Administered.\n"
    starred = "Protocol tcp Port Exclusion Ranges\n---------- --------\n2 2 ** - Administered.\n"
    assert parse_excluded(glued) == [ExcludedTable("tcp", (R(1, 1, False),))]
    assert parse_excluded(starred) == [ExcludedTable("tcp", (R(2, 2, True),))]


def test_dynamicport_block_in_the_same_paste_is_not_a_table() -> None:
    text = (
        "Protocol tcp Dynamic Port Range\n---------------------------------\n"
        "Start Port      : 49152\nNumber of Ports : 16384\n\n"
        "Protocol tcp Port Exclusion Ranges\n\nStart Port    End Port\n"
        "----------    --------\n" + _row(50000, 50059, True) + "\n"
    )
    assert parse_excluded(text) == [ExcludedTable("tcp", (R(50000, 50059, True),))]


def test_rows_keep_their_order_and_bounds() -> None:
    text = "---------- --------\n0 0\n65535 65535 *\n1 65535\n"
    assert parse_excluded(text) == [
        ExcludedTable(None, (R(0, 0, False), R(65535, 65535, True), R(1, 65535, False)))
    ]


def test_json_shape() -> None:
    assert excluded_to_json([ExcludedTable(None, (R(1, 2, True),))]) == [
        {"protocol": None, "ranges": [{"start": 1, "end": 2, "administered": True}]}
    ]


# ---------------------------------------------------------------------------------------------
# Errors name the line

TABLE_TOP = ["Protocol tcp Port Exclusion Ranges", "", "Start Port    End Port"]
DASHES = "----------    --------"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        pytest.param(_row(5000, 4000), "start port is greater than end port", id="start>end"),
        pytest.param(_row(65000, 65536), "port out of range", id="end>65535"),
        pytest.param(_row(70000, 70001, True), "port out of range", id="both>65535"),
        pytest.param("      5000        5100     *     *", "not a row", id="two-stars"),
        pytest.param("      5000        5100        5200", "not a row", id="three-numbers"),
        pytest.param("      5000     *", "not a row", id="number-star"),
        pytest.param("     1" + "9" * 5000 + "        5", "port out of range", id="huge"),
        pytest.param("     6365", "one number only", id="cut-row"),
    ],
)
def test_bad_row_names_its_line(bad: str, message: str) -> None:
    lines = [*HEADER_COMMENT, *TABLE_TOP, DASHES, _row(80, 80), bad, _row(90, 90), "", "* - x."]
    with pytest.raises(ParseError, match=message) as caught:
        parse_excluded("\r\n".join(lines))
    assert caught.value.line == 10
    assert lines[caught.value.line - 1] == bad


def test_first_bad_line_is_reported() -> None:
    text = "---------- --------\n1 2 3\n5 4\n"
    with pytest.raises(ParseError) as caught:
        parse_excluded(text)
    assert caught.value.line == 2


def test_cut_row_at_the_very_end_is_refused() -> None:
    text = "\n".join([*TABLE_TOP, DASHES, _row(80, 80), "     6365"])
    with pytest.raises(ParseError, match="ends inside a row") as caught:
        parse_excluded(text)
    assert caught.value.line == len(TABLE_TOP) + 3


def test_cut_row_in_a_declared_excerpt_is_reported() -> None:
    header = ["# command: netsh int ipv4 show excludedportrange protocol=tcp  # truncated", ""]
    text = "\n".join([*header, *TABLE_TOP, DASHES, _row(80, 80), "     6365"])
    warnings: list[ParseWarning] = []
    assert parse_excluded(text, warnings=warnings) == [ExcludedTable("tcp", (R(80, 80, False),))]
    last_row = len(header) + len(TABLE_TOP) + 2
    assert [w.line for w in warnings] == [last_row + 1, last_row]
    assert "declared truncated" in warnings[0].message and "no footer" in warnings[1].message


def test_cut_row_before_the_footer_is_an_error() -> None:
    text = "\n".join([*TABLE_TOP, DASHES, _row(80, 80), "     6365", "", "* - Administered."])
    with pytest.raises(ParseError, match="one number only") as caught:
        parse_excluded(text)
    assert caught.value.line == 6


def test_gutter_numbers_before_the_table_are_ignored() -> None:
    text = "\n".join(["1", "2", "3", *TABLE_TOP, DASHES, "50000 50059 *"])
    assert parse_excluded(text) == [ExcludedTable("tcp", (R(50000, 50059, True),))]


def test_undecodable_bytes_are_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_excluded(b"\xff\xfe" + b"\x00\xd8")


# ---------------------------------------------------------------------------------------------
# Properties


def _accepts_or_refuses(data: bytes | str) -> None:
    """Parse ``data``: a complete, valid result or ParseError, never another exception."""
    for table in accept_or_refuse(parse_excluded, data):
        assert table.protocol in ("tcp", "udp", None)
        for item in table.ranges:
            assert 0 <= item.start <= item.end <= 65535


@PROPERTY_SETTINGS
@given(st.text())
def test_any_text_parses_or_raises_parse_error(text: str) -> None:
    _accepts_or_refuses(text)


@PROPERTY_SETTINGS
@given(st.binary())
def test_any_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    _accepts_or_refuses(data)


FRAGMENTS = [
    "Protocol tcp Port Exclusion Ranges",
    "协议 udp 端口排除范围",
    "Start Port    End Port",
    "----------    --------",
    "---------- --------",
    "* - Administered port exclusions.",
    "PS C:\\> netsh int ipv4 show excludedportrange protocol=udp",
    "Start Port      : 49152",
    "    vhd:",
    "> ",
    "",
    " ",
    "*",
    "**",
    "-",
]


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.one_of(
            st.sampled_from(FRAGMENTS),
            st.integers(0, 70000).map(str),
            st.tuples(st.integers(0, 70000), st.integers(0, 70000), st.booleans()).map(
                lambda item: _row(*item)
            ),
            st.text(alphabet=" *-0123456789tcpud:>\t", max_size=12),
        ),
        max_size=30,
    )
)
def test_table_like_soup_parses_or_raises_parse_error(lines: list[str]) -> None:
    _accepts_or_refuses("\n".join(lines))


TITLES = [
    "Protocol {} Port Exclusion Ranges",
    'Portausschlussbereiche für das Protokoll "{}"',
    "Protocole {} Plages d'exclusion de ports",
    "Protocolo {} Intervalos de exclusión de puertos",
    "协议 {} 端口排除范围",
    "프로토콜 {} 포트 제외 범위",
    *(title.replace("tcp", "{}") for title, _, _, _ in OTHER_LANGUAGES.values()),
]

ranges_strategy = st.tuples(st.integers(0, 65535), st.integers(0, 65535), st.booleans()).map(
    lambda item: R(min(item[0], item[1]), max(item[0], item[1]), item[2])
)
tables_strategy = st.lists(
    st.tuples(
        st.sampled_from(TITLES),
        st.sampled_from(["tcp", "udp"]),
        st.lists(ranges_strategy, max_size=12),
    ),
    min_size=1,
    max_size=3,
)


@PROPERTY_SETTINGS
@given(tables_strategy)
def test_console_layout_round_trips(tables: list[tuple[str, str, list[ExcludedRange]]]) -> None:
    text = "".join(
        _table_text(
            title.format(protocol),
            "Start Port    End Port",
            "----------    --------",
            "* - Administered port exclusions.",
            [_row(item.start, item.end, item.administered) for item in ranges],
        )
        for title, protocol, ranges in tables
    )
    expected = [ExcludedTable(protocol, tuple(ranges)) for _, protocol, ranges in tables]
    assert parse_excluded(text) == expected
    assert parse_excluded(text.encode("utf-16")) == expected
