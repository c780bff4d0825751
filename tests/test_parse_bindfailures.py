"""The seed's bind-probe list: `index: port` lines, gaps refused, runs encoded."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.parsers.bindfailures import encode_runs, parse_bind_failures
from collector.parsers.errors import ParseError
from tests.conftest import SEED_CAPTURE


def test_the_seed_list_has_183_ports_in_nine_runs() -> None:
    ports = parse_bind_failures((SEED_CAPTURE / "bind-failures.txt").read_bytes())
    assert len(ports) == 183 and ports[:3] == [445, 5357, 7680] and 49786 in ports
    assert encode_runs(ports, 10013) == [
        (445, 445, 10013),
        (5357, 5357, 10013),
        (7680, 7680, 10013),
        (49670, 49689, 10013),
        (49710, 49759, 10013),
        (49770, 49799, 10013),
        (49825, 49864, 10013),
        (49866, 49885, 10013),
        (50274, 50293, 10013),
    ]


def test_printf_padding_and_bare_ports_are_read() -> None:
    assert parse_bind_failures("    0: 445\n    1: 5357\n") == [445, 5357]
    assert parse_bind_failures("445\r\n5357\r\n\r\n") == [445, 5357]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("0: 445\n2: 5357\n", 2, "lines are missing"),
        ("0: 445\n1: 70000\n", 2, "outside 1-65535"),
        ("0: 445\nAn attempt was made\n", 2, "expected 'index: port'"),
        ("\n\n", None, "no failing port"),
    ],
)
def test_bad_lists_raise_with_the_line(text: str, line: int | None, reason: str) -> None:
    with pytest.raises(ParseError, match=reason) as caught:
        parse_bind_failures(text)
    assert caught.value.line == line


@settings(max_examples=200, derandomize=True)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_arbitrary_input_gives_ports_or_parse_error(data: str | bytes) -> None:
    try:
        ports = parse_bind_failures(data)
    except ParseError:
        return
    assert ports and all(1 <= p <= 65535 for p in ports)


@settings(max_examples=200, derandomize=True)
@given(st.lists(st.integers(1, 65535), min_size=1, max_size=300))
def test_runs_cover_exactly_the_ports(ports: list[int]) -> None:
    runs = encode_runs(ports, 10013)
    covered = [p for start, end, _ in runs for p in range(start, end + 1)]
    assert covered == sorted(set(ports))
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(runs))
