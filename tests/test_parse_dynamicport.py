"""Tests for the dynamicport parser: corpus, decoding, languages, errors and properties."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.parsers.dynamicport import (
    DynamicPortRange,
    dynamicport_to_json,
    parse_dynamicport,
)
from collector.parsers.errors import ParseError
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

CORPUS = CORPUS_ROOT / "dynamicport"
BY_EYE = BY_EYE_ROOT / "dynamicport"
CORPUS_FILES = sorted(CORPUS.glob("*.txt"))

D = DynamicPortRange
DASH_LINE = "-" * 33


def _expected_json(path: Path) -> object:
    """Return the expected JSON of a dynamicport corpus file."""
    return load_expected_json(path, BY_EYE)


def _block(title: str | None, start_label: str, count_label: str, start: int, count: int) -> str:
    """Render one block as the console prints it (labels padded to one colon column)."""
    width = max(len(start_label), len(count_label)) + 1
    lines = [title, DASH_LINE] if title is not None else []
    lines += [f"{start_label:<{width}}: {start}", f"{count_label:<{width}}: {count}"]
    return "\r\n".join(["", *lines, ""])


# ---------------------------------------------------------------------------------------------
# Corpus


def test_corpus_is_there() -> None:
    assert len(CORPUS_FILES) >= 5


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda path: path.stem)
def test_corpus_file_parses_to_its_expectation(path: Path) -> None:
    assert dynamicport_to_json(parse_dynamicport(path.read_bytes())) == _expected_json(path)


def test_by_eye_expectations_belong_to_corpus_files_without_official_ones() -> None:
    assert find_stale_by_eye_files(CORPUS, BY_EYE) == []


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda path: path.stem)
def test_corpus_file_collapsed_parses_the_same(path: Path) -> None:
    collapsed = collapse(path.read_text(encoding="utf-8"))
    assert dynamicport_to_json(parse_dynamicport(collapsed)) == _expected_json(path)


# ---------------------------------------------------------------------------------------------
# Decoding

SAMPLE = [D("tcp", 49152, 16384)]
FRENCH = _block(
    "Protocole tcp Plage de ports dynamique", "Port de début", "Nombre de ports", 49152, 16384
)
# Japanese and Chinese strings are the verified ones (facts.md); Korean ones are a guess.
JAPANESE = _block("プロトコル tcp の動的ポートの範囲", "開始ポート", "ポート数", 49152, 16384)
CHINESE = _block("协议 tcp 动态端口范围", "启动端口", "端口数", 49152, 16384)
KOREAN = _block("프로토콜 tcp 동적 포트 범위", "시작 포트", "포트 수", 49152, 16384)


@pytest.mark.parametrize(
    ("data", "codepage"),
    [
        pytest.param(codecs.BOM_UTF16_LE + FRENCH.encode("utf-16-le"), "cp437", id="utf16le-bom"),
        pytest.param(FRENCH.encode("utf-16-le"), "cp437", id="utf16le-no-bom"),
        pytest.param(FRENCH.encode("utf-8-sig"), "cp437", id="utf8-bom"),
        pytest.param(FRENCH.encode("cp850"), "cp850", id="cp850-french"),
        pytest.param(JAPANESE.encode("cp932"), "cp932", id="cp932-japanese"),
        pytest.param(codecs.BOM_UTF16_LE + JAPANESE.encode("utf-16-le"), "cp437", id="ja-utf16"),
        pytest.param(KOREAN.encode("cp949"), "cp949", id="cp949-korean"),
        pytest.param(CHINESE.encode("cp936"), "cp936", id="cp936-chinese"),
        pytest.param(CHINESE.encode("utf-8-sig"), "cp437", id="zh-utf8-bom"),
    ],
)
def test_encodings_parse_the_same(data: bytes, codepage: str) -> None:
    assert parse_dynamicport(data, codepage) == SAMPLE


def test_code_page_cases_really_need_the_code_page() -> None:
    assert b"Port de d\x82but" in FRENCH.encode("cp850")
    for text, codepage in ((FRENCH, "cp850"), (JAPANESE, "cp932"), (KOREAN, "cp949")):
        with pytest.raises(UnicodeDecodeError):
            text.encode(codepage).decode("utf-8")
    with pytest.raises(UnicodeDecodeError):
        CHINESE.encode("cp936").decode("utf-8")


# ---------------------------------------------------------------------------------------------
# Languages that are not in the corpus (labels unverified: the parser must not need them)

OTHER_LANGUAGES = {
    "ja": ("プロトコル tcp の動的ポートの範囲", "開始ポート", "ポート数"),
    "ru": ("Диапазон динамических портов протокола tcp", "Начальный порт", "Число портов"),
    "pt": ("Intervalo de Portas Dinâmicas do Protocolo tcp", "Porta Inicial", "Número de Portas"),
    "it": (
        "Intervallo di porte dinamiche per il protocollo tcp",
        "Porta iniziale",
        "Numero di porte",
    ),
    "pl": ("Zakres portów dynamicznych protokołu tcp", "Port początkowy", "Liczba portów"),
    "de": ('Dynamischer Portbereich für das Protokoll "tcp"', "Startport", "Anzahl von Ports"),
}


@pytest.mark.parametrize("language", sorted(OTHER_LANGUAGES))
@pytest.mark.parametrize("collapsed", [False, True], ids=["console", "collapsed"])
def test_languages_not_in_the_corpus(language: str, collapsed: bool) -> None:
    title, start_label, count_label = OTHER_LANGUAGES[language]
    text = "C:\\> netsh int ipv4 show dynamicport tcp\r\n" + _block(
        title, start_label, count_label, 1024, 13977
    )
    if collapsed:
        text = collapse(text)
    assert parse_dynamicport(text) == [D("tcp", 1024, 13977)]


@pytest.mark.parametrize(
    "text",
    [
        "Anzahl von Ports: 16384",
        "ポート数：16384",
        "ポート数 ： 16384",
        "Number of Ports\t:\t16384",
    ],
    ids=["no-space-before-colon", "fullwidth-colon", "fullwidth-colon-spaced", "tabs"],
)
def test_label_spacing_variants(text: str) -> None:
    assert parse_dynamicport(f"Protocol udp Dynamic Port Range\nStart : 49152\n{text}\n") == [
        D("udp", 49152, 16384)
    ]


# ---------------------------------------------------------------------------------------------
# Shapes seen in pastes


def test_blocks_without_titles_take_the_command_protocol() -> None:
    text = (
        "netsh int ipv6 show dynamicport udp\n"
        "Start Port      : 49152\nNumber of Ports : 16384\n"
        "Start Port      : 1024\nNumber of Ports : 64511\n"
    )
    assert parse_dynamicport(text) == [D("udp", 49152, 16384), D(None, 1024, 64511)]


def test_no_protocol_anywhere_is_none() -> None:
    assert parse_dynamicport("Start Port : 49152\nNumber of Ports : 16384\n") == [
        D(None, 49152, 16384)
    ]


def test_title_outranks_the_command() -> None:
    text = "netsh int ipv4 show dynamicport udp\n" + _block(
        "Protocol tcp Dynamic Port Range", "Start Port", "Number of Ports", 1, 2
    )
    assert parse_dynamicport(text) == [D("tcp", 1, 2)]


def test_interactive_netsh_and_abbreviated_command() -> None:
    text = (
        "PS C:\\> netsh\nnetsh>int\nnetsh interface>ipv6\n"
        "netsh interface ipv6>sh dynamicportrange protocol=udp\n\n"
        "Start Port      : 49152\nNumber of Ports : 16384\n\nnetsh interface ipv6>exit\n"
    )
    assert parse_dynamicport(text) == [D("udp", 49152, 16384)]


def test_packer_prefixes_and_noise() -> None:
    text = (
        "==> vhd: Provisioning with powershell script: C:\\agent\\_work\\9\\s\\Install-VS.ps1\n"
        "    vhd: Display ports\n    vhd:\n"
        "    vhd: Protocol udp Dynamic Port Range\n    vhd: " + DASH_LINE + "\n"
        "    vhd: Start Port      : 10000\n    vhd: Number of Ports : 1000\n    vhd:\n"
        "    vhd: Elapsed: 00:01\n    vhd: listening on localhost:8080\n"
    )
    assert parse_dynamicport(text) == [D("udp", 10000, 1000)]


def test_error_lines_mentioning_tcp_are_not_titles() -> None:
    text = (
        "Error: listen tcp failed\n"
        "Error response from daemon: listen tcp 0.0.0.0:1888: bind: forbidden\n"
        + _block("Protocol udp Dynamic Port Range", "Start Port", "Number of Ports", 1, 2)
    )
    assert parse_dynamicport(text) == [D("udp", 1, 2)]


def test_gutter_numbers_and_quotes() -> None:
    text = "1\n2\n3\n4\n> Protocol tcp Dynamic Port Range\n> Start : 5000\n> Count : 100\n"
    assert parse_dynamicport(text) == [D("tcp", 5000, 100)]


def test_excluded_table_in_the_same_paste_is_not_a_block() -> None:
    text = (
        "Protocol tcp Port Exclusion Ranges\n\nStart Port    End Port\n----------    --------\n"
        "     50000       50059     *\n\n* - Administered port exclusions.\n\n"
        + _block("Protocol tcp Dynamic Port Range", "Start Port", "Number of Ports", 49152, 16384)
    )
    assert parse_dynamicport(text) == [D("tcp", 49152, 16384)]


def test_end_property_and_json_shape() -> None:
    item = D("tcp", 1024, 64511)
    assert item.end == 65534
    assert D(None, 49152, 16384).end == 65535
    assert dynamicport_to_json([item]) == [{"protocol": "tcp", "start": 1024, "count": 64511}]


def test_limits_are_accepted() -> None:
    text = "Start : 65535\nCount : 1\nStart : 1\nCount : 65535\n"
    assert parse_dynamicport(text) == [D(None, 65535, 1), D(None, 1, 65535)]


# ---------------------------------------------------------------------------------------------
# Errors name the line


@pytest.mark.parametrize(
    ("lines", "bad_line", "message"),
    [
        pytest.param(
            ["Start Port      : 49152", "Number of Ports : 0"], 6, "at least 1", id="count-zero"
        ),
        pytest.param(
            ["Start Port      : 60000", "Number of Ports : 10000"], 6, "past port", id="overflow"
        ),
        pytest.param(
            ["Start Port      : 65536", "Number of Ports : 1"],
            5,
            "start port out of range",
            id="start-too-big",
        ),
        pytest.param(
            ["Start Port      : 1" + "0" * 5000, "Number of Ports : 1"],
            5,
            "out of range",
            id="start-huge",
        ),
        pytest.param(
            ["Start Port      : 49152", "Number of Ports : 16.384"],
            6,
            "cannot read",
            id="separator",
        ),
        pytest.param(
            ["Start Port      : 49152", "Number of Ports :"],
            6,
            "without a number",
            id="empty-count",
        ),
        pytest.param(["Start Port      : 49152"], 5, "without a number of ports", id="no-count"),
        pytest.param(
            ["Start Port      : 49152", "", "Protocol udp Dynamic Port Range", "Start : 1"],
            5,
            "without a number of ports",
            id="no-count-before-next-title",
        ),
        pytest.param(
            ["Start Port      : 49152", "netsh int ipv4 show dynamicport udp"],
            5,
            "without a number of ports",
            id="no-count-before-next-command",
        ),
        pytest.param(
            ["Protocol tcp Dynamic Port Range", DASH_LINE], 5, "title without", id="title-only"
        ),
        pytest.param(
            ["Protocol tcp Dynamic Port Range", "Start Port      : -1"],
            6,
            "cannot read",
            id="negative",
        ),
    ],
)
def test_bad_block_names_its_line(lines: list[str], bad_line: int, message: str) -> None:
    with pytest.raises(ParseError, match=message) as caught:
        parse_dynamicport("\r\n".join([*HEADER_COMMENT, *lines]))
    assert caught.value.line == bad_line


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Ok.\n",
        "1\n2\n3\n",
        "0: 445\n1: 5357\n",
        "The requested operation requires elevation (Run as administrator).\n",
        "     50000       50059     *\n",
    ],
    ids=["empty", "ok", "gutter-only", "bind-probe-list", "elevation", "excluded-row"],
)
def test_no_block_is_an_error(text: str) -> None:
    with pytest.raises(ParseError, match="no dynamicport block found"):
        parse_dynamicport(text)


# ---------------------------------------------------------------------------------------------
# Properties


def _accepts_or_refuses(data: bytes | str) -> None:
    """Parse ``data``: a complete, valid result or ParseError, never another exception."""
    for item in accept_or_refuse(parse_dynamicport, data):
        assert item.protocol in ("tcp", "udp", None)
        assert item.count >= 1
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
    "Protocol tcp Dynamic Port Range",
    "协议 udp 动态端口范围",
    DASH_LINE,
    "Start Port      :",
    "Number of Ports : 16.384",
    "netsh interface ipv4>show dynamicport tcp",
    "    vhd:",
    "     50000       50059     *",
    "----------    --------",
    "",
    " ",
]


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.one_of(
            st.sampled_from(FRAGMENTS),
            st.integers(0, 70000).map(str),
            st.integers(0, 70000).map(lambda value: f"Start Port      : {value}"),
            st.integers(0, 70000).map(lambda value: f"    vhd: Number of Ports : {value}"),
            st.text(alphabet=" :：-0123456789tcpud>\t.", max_size=12),
        ),
        max_size=30,
    )
)
def test_block_like_soup_parses_or_raises_parse_error(lines: list[str]) -> None:
    _accepts_or_refuses("\n".join(lines))


LANGUAGES = [
    ("Protocol {} Dynamic Port Range", "Start Port", "Number of Ports"),
    ("协议 {} 动态端口范围", "启动端口", "端口数"),
    ("Protocole {} Plage de ports dynamique", "Port de début", "Nombre de ports"),
    *(
        (title.replace("tcp", "{}"), start, count)
        for title, start, count in OTHER_LANGUAGES.values()
    ),
]

block_strategy = st.tuples(
    st.sampled_from(LANGUAGES),
    st.sampled_from(["tcp", "udp"]),
    st.integers(1, 65535).flatmap(
        lambda start: st.tuples(st.just(start), st.integers(1, 65536 - start))
    ),
)


@PROPERTY_SETTINGS
@given(st.lists(block_strategy, min_size=1, max_size=4))
def test_console_layout_round_trips(
    blocks: list[tuple[tuple[str, str, str], str, tuple[int, int]]],
) -> None:
    text = "".join(
        _block(title.format(protocol), start_label, count_label, start, count)
        for (title, start_label, count_label), protocol, (start, count) in blocks
    )
    expected = [D(protocol, start, count) for _, protocol, (start, count) in blocks]
    assert parse_dynamicport(text) == expected
    assert parse_dynamicport(collapse(text)) == expected


@pytest.mark.parametrize("start", ["0", "99999999999999999999"])
def test_impossible_starts_and_overlong_counts_are_refused(start: str) -> None:
    text = (
        "Protocol tcp Dynamic Port Range\n---------\n"
        f"Start Port      : {start}\nNumber of Ports : 99999999\n"
    )
    with pytest.raises(ParseError, match=r"out of range|past port") as caught:
        parse_dynamicport(text)
    assert caught.value.line == 3
