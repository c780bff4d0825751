"""The store read as typed frames: each named query's SQL file, its columns and their kinds."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterator
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Connection

from collector.runs import finish_run, start_run
from collector.store.database import Store
from collector.windows import MIN_BLOCK
from reports import tables
from reports.attention import PortHistory
from reports.tables import QUERIES, Kind
from tests.conftest import REPO
from tests.report_store import fill_report_store


@pytest.fixture
def filled(db_url: str) -> Iterator[Store]:
    """A store (SQLite, then PostgreSQL) filled with the report tests' fleet, read-only."""
    with Store.open(db_url) as store:
        fill_report_store(store)
        # A collection that recorded its wanted ports, for the report to fall back on.
        finish_run(store, start_run(store, "collect", {5432: "postgres"}))
    with Store.reader(db_url) as reader:
        yield reader


def _arguments(connection: Connection, name: str) -> tuple[list[int] | None, dict[str, Any]]:
    """Return ids and parameters that make the named query answer with rows."""
    snapshots = tables.read(connection, "latest_snapshots")["snapshot_id"].tolist()
    meta = tables.read(connection, "snapshot_meta", snapshots)
    hosts = tables.read(connection, "hosts").set_index("host")["host_id"]
    events = tables.read(connection, "change_events")
    causes = tables.read(connection, "candidate_causes")
    finding_sets = meta["finding_set_id"].dropna().tolist()
    ids = {
        "snapshot_meta": snapshots, "features": snapshots, "services": snapshots,
        "dynamic_ranges": snapshots, "findings": finding_sets, "port_findings": finding_sets,
        "excluded_ranges": meta["excluded_set_id"].dropna().tolist(),
        "tcp_excluded_spans": hosts.tolist(), "tcp_failure_spans": hosts.tolist(),
        "tcp_listener_spans": hosts.tolist(),
        "evidence_spans": hosts.tolist(), "evidence_days": hosts.tolist(),
        "tcp_dynamic_spans": hosts.tolist(),
        "span_tails": tables.read(connection, "fleet_spans")["span_id"].tolist(),
    }  # fmt: skip
    params: dict[str, dict[str, Any]] = {
        "host_latest_snapshot": {"host_id": int(hosts["dev-ana"])},
        "host_snapshots": {"host_id": int(hosts["dev-ana"])},
        "host_causes": {"host_id": int(causes["host_id"].iloc[0])},
        "port_protection": {"host_id": int(hosts["dev-ana"]), "port": 2869},  # its '*' range
        "port_findings": {"port": 50051},
        "port_diagnoses": {"port": 50051},
        "fleet_ports_findings": {"p1": 50051, **{f"p{i}": None for i in range(2, 9)}},
        "snapshot_changes": {"snapshot_id": int(events["snapshot_id"].iloc[0])},
        "reservation_levels": {"min_block": MIN_BLOCK},
    }
    return ids.get(name), params.get(name, {})


def _holds(kind: Kind, column: pd.Series) -> bool:
    """Tell whether a column has the dtype (and, when never NULL, the values) of ``kind``."""
    dtype = column.dtype
    if kind == Kind.INT:
        return dtype == np.int64
    if kind == Kind.NULLABLE_INT:
        return isinstance(dtype, pd.Int64Dtype)
    if kind == Kind.BOOL:
        return dtype == np.bool_
    if kind == Kind.NULLABLE_BOOL:
        return isinstance(dtype, pd.BooleanDtype)
    if kind == Kind.UTC:
        return isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"
    texts = pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)
    values = column.dropna()
    whole = kind == Kind.NULLABLE_STR or len(values) == len(column)
    return texts and whole and all(isinstance(value, str) for value in values)


def test_every_query_has_its_sql_file_and_every_file_a_query() -> None:
    folder = resources.files("reports") / "sql"
    files = {entry.name.removesuffix(".sql") for entry in folder.iterdir() if entry.is_file()}
    assert files == set(QUERIES)
    for name in QUERIES:
        assert tables.sql(name).lstrip().startswith(("SELECT", "--"))
    with pytest.raises(KeyError, match="no query named"):
        tables.sql("v_secrets")


def test_an_installed_portfleet_finds_its_sql_templates_and_static_files() -> None:
    # An installed (not editable) copy holds only what package data names.
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["reports"]
    root = REPO / "reports"
    shipped = [
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc")
    ]
    assert {path.split("/")[0] for path in shipped} == {"sql", "templates", "static"}
    missing = [p for p in shipped if not any(fnmatch.fnmatch(p, glob) for glob in patterns)]
    assert missing == []


def test_every_query_reads_rows_of_its_declared_kinds(filled: Store) -> None:
    with filled.connect() as connection:
        for name, query in QUERIES.items():
            ids, params = _arguments(connection, name)
            frame = tables.read(connection, name, ids, **params)
            assert list(frame.columns) == list(query.columns), name
            assert not frame.empty, name
            wrong = [c for c, kind in query.columns.items() if not _holds(kind, frame[c])]
            assert wrong == [], (name, frame.dtypes[wrong].to_dict())


def test_an_empty_store_reads_the_same_kinds(store: Store) -> None:
    with store.connect() as connection:
        for name, query in QUERIES.items():
            keys = ("host_id", "snapshot_id", "port", "min_block", *(f"p{i}" for i in range(1, 9)))
            params = {key: 1 for key in keys if f":{key}" in tables.sql(name)}
            ids = [1] if ":ids" in tables.sql(name) else None
            frame = tables.read(connection, name, ids, **params)
            assert frame.empty, name
            wrong = [c for c, kind in query.columns.items() if not _holds(kind, frame[c])]
            assert wrong == [], (name, frame.dtypes[wrong].to_dict())


def test_reports_read_the_store_only_through_named_queries() -> None:
    # query.py runs the ad-hoc `sql` statement; tables.py every other read.
    readers = []
    for path in sorted((REPO / "reports").glob("*.py")):
        if path.name in ("tables.py", "query.py"):
            continue
        source = path.read_text(encoding="utf-8")
        if re.search(r"\bread_frame\b|\bread_sql\b|\.execute\(|\btext\(|\bSELECT\b", source):
            readers.append(path.name)
    assert readers == []


def test_conform_casts_once_and_refuses_a_null_where_none_may_be() -> None:
    kinds = {"port": Kind.INT, "pid": Kind.NULLABLE_INT, "known": Kind.BOOL, "at": Kind.UTC}
    # As SQLite gives them: a NULL makes floats, a flag is 0/1.
    at = pd.to_datetime(pd.Series(["2024-05-14T03:00:00Z", None]), utc=True)
    read = pd.DataFrame({"port": [80, 443], "pid": [4.0, np.nan], "known": [1, 0], "at": at})
    typed = tables.conform(read, kinds)
    assert [str(dtype) for dtype in typed.dtypes[:3]] == ["int64", "Int64", "bool"]
    assert typed.pid.tolist() == [4, pd.NA] and typed.known.tolist() == [True, False]
    assert tables.conform(typed, kinds) is typed  # nothing left to convert
    with pytest.raises((ValueError, TypeError)):
        tables.conform(read.assign(port=[80.0, np.nan]), kinds)


def test_the_findings_of_many_ports_are_each_ports_own(filled: Store) -> None:
    # Eleven ports take two passes of eight; each port gets exactly the findings covering it,
    # as reading the findings port by port gives them.
    ports = [80, 2869, 5000, 5432, 8080, 49786, 50000, 50051, 50100, 52000, 60000]
    with filled.connect() as connection:
        history = PortHistory.read(connection, ports)
        everything = pd.read_sql(
            'SELECT set_id, family, start_port AS start, end_port AS "end", diagnosis '
            "FROM findings WHERE protocol = 'tcp' ORDER BY id",
            connection,
        )
    covered = 0
    for port in ports:
        mine = everything[(everything["start"] <= port) & (everything["end"] >= port)]
        got = history.findings[port][["set_id", "family", "start", "end", "diagnosis"]]
        assert got.values.tolist() == mine.values.tolist(), port
        covered += len(got) > 0
    assert covered >= 3
