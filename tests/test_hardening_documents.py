"""Bad probe documents: each is refused as that one input, the others are stored (issue 12)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from collector.cli import cli
from collector.document import _MAX_DEPTH, DocumentError, _check_values, _shallow, load_document
from collector.exitcodes import ExitCode
from collector.runs import start_run
from collector.simulator.responder import ProbeResponder
from collector.simulator.wsman import WsmanServer
from collector.store.database import Store, create_store_engine
from collector.store.writer import store_document
from tests.documents import probe_document


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode("ascii")  # a lone surrogate travels escaped


def _with(change: Callable[[dict[str, Any]], None]) -> bytes:
    document = probe_document()
    change(document)
    return _json(document)


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        node: Any = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


HOST = ("host", "name")
PASSWORD = "n1ghtly-S3cret"
# Each: the bytes of one document, and words the refusal must hold.
MALFORMED: dict[str, tuple[bytes, str]] = {
    "leap second": (_with(_set(("taken_at",), "2026-12-31T23:59:60Z")), "$.taken_at"),
    "lowercase z": (_with(_set(("taken_at",), "2026-11-20T02:00:05z")), "upper-case T and Z"),
    "year 1 with an offset": (
        _with(_set(("host", "last_boot"), "0001-01-01T00:00:00+01:00")),
        "$.host.last_boot",
    ),
    "year 9999 with an offset": (
        _with(_set(("update_history", 0, "date"), "9999-12-31T23:59:59-01:00")),
        "$.update_history[0].date",
    ),
    "zero FILETIME hotfix date": (
        _with(_set(("hotfixes", 0, "installed_on"), "1601-01-01")),
        "outside 1980-2200",
    ),
    "lone surrogate in the host name": (_with(_set(HOST, "caf\udce9")), "surrogate"),
    "NUL in the host name": (_with(_set(HOST, "dev\x00ws")), "NUL"),
    "100,000-deep nesting": (
        b'{"schema": "portfleet.probe/1", "nat": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "nests deeper",
    ),
    "deep nesting Python can read": (
        _with(_set(("nat",), [{"name": "n", "x": json.loads("[" * 200 + "]" * 200)}])),
        "nested more than",
    ),
    "5,000-digit port": (
        _with(_set(("listeners", 0, "port"), 7)).replace(b'"port": 7', b'"port": ' + b"9" * 5000),
        "5000 digits",
    ),
    "PID of 2^63": (_with(_set(("listeners", 0, "pid"), 2**63)), "$.listeners[0].pid"),
    "result code of 2^63": (
        _with(_set(("update_history", 0, "result_code"), 2**63)),
        "$.update_history[0].result_code",
    ),
    "error code of 2^63": (
        _with(_set(("bind_sweep", 0, "failures", 0, 2), 2**63)),
        "$.bind_sweep[0].failures[0][2]",
    ),
    "failure run ending before it starts": (
        _with(_set(("bind_sweep", 0, "failures", 1, 1), 1)),
        "$.bind_sweep[0].failures[1]",
    ),
    "process name longer than its column": (
        _with(_set(("listeners", 0, "process"), "p" * 256)),
        "$.listeners[0].process",
    ),
    "NAT port past 65535": (_with(_set(("nat",), [{"name": "n", "port_end": 70000}])), "70000"),
    "invalid UTF-8": (_with(_set(HOST, "café")).replace(b"caf\\u00e9", b"caf\xe9"), "not UTF-8"),
    "duplicate key": (
        _with(lambda _d: None).replace(b'"raw": {', b'"raw": {"netstat": "a", "netstat": "b", '),
        "appears twice",
    ),
    "NaN": (
        _with(_set(("duration_ms",), 1)).replace(b'"duration_ms": 1', b'"duration_ms": NaN'),
        "NaN",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_import_refuses_only_the_bad_input_and_stores_the_others(
    case: str, tmp_path: Path, sqlite_url: str
) -> None:
    body, words = MALFORMED[case]
    good_a = tmp_path / "a.json"
    good_a.write_bytes(_with(_set(HOST, "dev-ws-a")))
    bad = tmp_path / "bad.json"
    bad.write_bytes(body)
    good_b = tmp_path / "b.json"
    good_b.write_bytes(_with(_set(HOST, "dev-ws-b")))
    result = CliRunner().invoke(
        cli,
        ["--db", sqlite_url, "import", str(good_a), str(bad), str(good_b)],
        catch_exceptions=False,
    )
    assert result.exit_code == ExitCode.SOME_FAILED, result.output
    assert f"failed {bad}" in " ".join(result.stderr.split()), result.stderr
    assert words in result.stderr.replace("\n", " "), result.stderr
    engine = create_store_engine(sqlite_url, writer=False)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT host FROM v_latest_snapshots ORDER BY 1")).all()
        attempts = connection.execute(
            text("SELECT source, status, error_class FROM attempts ORDER BY id")
        ).all()
    engine.dispose()
    assert [row.host for row in stored] == ["dev-ws-a", "dev-ws-b"]
    assert [(a.status, a.error_class) for a in attempts] == [
        ("ok", None),
        ("failed", "bad_document"),
        ("ok", None),
    ]
    assert attempts[1].source == str(bad)


def test_collect_records_a_hosts_out_of_range_document_and_goes_on(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PID of 2^63 from one host: its attempt is bad_document, later hosts are collected."""
    monkeypatch.setenv("PF_TEST_USER", "portfleet")
    monkeypatch.setenv("PF_TEST_PASSWORD", PASSWORD)
    servers: list[WsmanServer] = []
    hosts = []
    for name in ("dev-ws-01", "dev-ws-02", "dev-ws-03"):

        def make(name: str = name) -> dict[str, Any]:
            document = probe_document()
            document["host"]["name"] = name.upper()
            if name == "dev-ws-02":
                document["listeners"][0]["pid"] = 2**63
            return document

        server = WsmanServer(ProbeResponder(make), username="portfleet", password=PASSWORD)
        servers.append(server.start())
        hosts.append({"name": name, "address": server.url})
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "defaults": {
                    "https": False,
                    "credential": {
                        "username_env": "PF_TEST_USER",
                        "password_env": "PF_TEST_PASSWORD",
                    },
                },
                "probe": {"deadline_seconds": 10},
                "collect": {"concurrency": 1, "retries": 0},
                "hosts": hosts,
            }
        ),
        encoding="utf-8",
    )
    try:
        result = CliRunner().invoke(
            cli, ["--db", sqlite_url, "--config", str(config), "collect"], catch_exceptions=False
        )
    finally:
        for server in servers:
            server.stop()
    assert result.exit_code == ExitCode.SOME_FAILED, result.output
    engine = create_store_engine(sqlite_url, writer=False)
    with engine.connect() as connection:
        attempts = connection.execute(
            text("SELECT host, status, error_class, message FROM v_attempts ORDER BY host")
        ).all()
    engine.dispose()
    assert [(a.host, a.status, a.error_class) for a in attempts] == [
        ("dev-ws-01", "ok", None),
        ("dev-ws-02", "failed", "bad_document"),
        ("dev-ws-03", "ok", None),
    ]
    assert "$.listeners[0].pid" in attempts[1].message


# Fuzzing: values at and past every bound the document has, in every place that holds one.
_NUMBER_PLACES: tuple[tuple[Any, ...], ...] = (
    ("listeners", 0, "port"),
    ("listeners", 0, "pid"),
    ("duration_ms",),
    ("host", "os", "build"),
    ("bind_sweep", 0, "failures", 1, 2),
    ("bind_sweep", 0, "failures", 1, 1),
    ("update_history", 0, "result_code"),
    ("update_history", 0, "operation"),
)
_TIME_PLACES: tuple[tuple[Any, ...], ...] = (
    ("taken_at",),
    ("host", "last_boot"),
    ("update_history", 0, "date"),
)
_DATE_PLACES: tuple[tuple[Any, ...], ...] = (
    ("hotfixes", 0, "installed_on"),
    ("host", "bios", "release_date"),
)
_edges = st.sampled_from([0, -1, 65535, 65536, 2**31 - 1, 2**31, 2**32, 2**63, -(2**63), 10**30])
_numbers = st.one_of(_edges, st.integers())
_times = st.builds(
    lambda year, month, day, hour, second, sep, zone: (
        f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:00:{second:02d}{zone}"
    ),
    st.sampled_from([1, 2, 1601, 1979, 1980, 2026, 2200, 2201, 9998, 9999]),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.sampled_from([0, 59, 60]),
    st.sampled_from(["T", "t", " "]),
    st.sampled_from(["Z", "z", "+00:00", "+01:00", "-01:00", "+14:00", "-12:00", ""]),
)
_dates = st.builds(
    lambda year, month, day: f"{year:04d}-{month:02d}-{day:02d}",
    st.sampled_from([1, 1601, 1979, 1980, 2024, 2200, 2201, 9999]),
    st.integers(1, 12),
    st.integers(1, 28),
)
_texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
_changes = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(_NUMBER_PLACES), _numbers),
        st.tuples(st.sampled_from(_TIME_PLACES), _times),
        st.tuples(st.sampled_from(_DATE_PLACES), _dates),
        st.tuples(st.sampled_from([HOST, ("listeners", 0, "process")]), _texts),
        st.tuples(st.just(("raw", "netstat")), st.text(max_size=20_000)),
    ),
    min_size=1,
    max_size=4,
)


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, int]]:
    with Store.open(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'store.db'}") as store:
        yield store, start_run(store, "import")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=_changes)
def test_fuzzed_documents_are_stored_or_refused_clearly(
    fuzz_store: tuple[Store, int], changes: list[tuple[tuple[Any, ...], Any]]
) -> None:
    store, run_id = fuzz_store
    document = probe_document()
    for path, value in changes:
        _set(path, value)(document)
    body = json.dumps(document).encode("ascii")
    try:
        loaded = load_document(body, "fuzz.json")
    except DocumentError as exc:
        assert str(exc).startswith("fuzz.json: ")
        return
    # Accepted: the store must keep it whole (a parse problem is kept as a section error).
    store_document(store, run_id, body, loaded, "fuzz.json", "file", datetime.now(UTC))


@pytest.mark.parametrize("kind", [list, dict])
@pytest.mark.parametrize("extra", [-1, 0, 1, 2])
@pytest.mark.parametrize(
    "leaf", [1, "x", [], {}], ids=["number", "text", "empty list", "empty object"]
)
def test_the_quick_depth_check_agrees_with_the_walk_that_names_the_place(
    kind: type, extra: int, leaf: Any
) -> None:
    # Documents without a suspicious escape skip the walk when the quick check passes: both
    # must draw the line at the same depth.
    value: Any = leaf
    for _ in range(_MAX_DEPTH + extra):
        value = [value] if kind is list else {"k": value}
    try:
        _check_values(value, "doc.json")
        walked = True
    except DocumentError:
        walked = False
    assert _shallow(value) is walked
    assert walked is (extra <= 0)  # the leaf lies _MAX_DEPTH + extra levels down
