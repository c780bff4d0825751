"""`portfleet sql`: reads work on SQLite and PostgreSQL; anything that writes is refused."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text

from collector.cli import cli
from collector.exitcodes import ExitCode
from collector.store.database import open_store
from tests.conftest import import_seed

WRITES = [
    "DELETE FROM hosts",
    "UPDATE hosts SET name = 'x'",
    "INSERT INTO hosts (name, groups, created_at) VALUES ('x', '[]', CURRENT_TIMESTAMP)",
    "DROP VIEW v_failing_ports",
    "CREATE TABLE evil (x INTEGER)",
    "SELECT 1; DELETE FROM hosts",
]
SQLITE_ONLY = [
    "ATTACH DATABASE '/tmp/portfleet-evil.db' AS evil",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA user_version = 7",
    "VACUUM",
]
POSTGRES_ONLY = [
    "COMMIT; DROP TABLE hosts",
    "SET default_transaction_read_only = off",
    "SELECT pg_terminate_backend(pg_backend_pid()); DELETE FROM hosts",
]


def _sql(db_url: str, query: str, *options: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, "sql", query, *options], catch_exceptions=False)


@pytest.fixture
def seeded(store: Engine, db_url: str) -> str:
    return import_seed(db_url)


def _fingerprint(db_url: str) -> list[tuple[object, ...]]:
    from collector.store.database import create_store_engine

    engine = create_store_engine(db_url)
    with engine.connect() as connection:
        rows = [
            tuple(connection.execute(text(f"SELECT COUNT(*) FROM {table}")).one())
            for table in ("hosts", "snapshots", "attempts", "listeners", "bind_failures", "ports")
        ]
    engine.dispose()
    return rows


def test_reads_in_every_format(seeded: str) -> None:
    query = (
        "SELECT port, classification FROM v_failing_ports WHERE port IN (445, 49786) ORDER BY port"
    )
    as_json = _sql(seeded, query, "--format", "json")
    assert json.loads(as_json.stdout) == [
        {"port": 445, "classification": "in-use"},
        {"port": 49786, "classification": "probably-reserved"},
    ]
    as_csv = _sql(seeded, query, "--format", "csv")
    assert as_csv.stdout == "port,classification\n445,in-use\n49786,probably-reserved\n"
    as_table = _sql(seeded, query)
    assert "49786" in as_table.stdout and "probably-reserved" in as_table.stdout
    percent = _sql(
        seeded, "SELECT COUNT(*) AS n FROM hosts WHERE name LIKE 'seed%'", "--format", "csv"
    )
    assert percent.stdout == "n\n1\n"


@pytest.mark.parametrize("query", WRITES)
def test_writes_are_refused_and_nothing_changes(seeded: str, query: str) -> None:
    before = _fingerprint(seeded)
    result = _sql(seeded, query)
    assert result.exit_code == ExitCode.USAGE
    assert "error:" in result.output
    assert _fingerprint(seeded) == before


def test_engine_specific_writes_are_refused(seeded: str) -> None:
    queries = SQLITE_ONLY if seeded.startswith("sqlite") else POSTGRES_ONLY
    before = _fingerprint(seeded)
    for query in queries:
        result = _sql(seeded, query)
        assert result.exit_code == ExitCode.USAGE, query
        assert "error:" in result.output
    assert _fingerprint(seeded) == before


def test_reporting_pragmas_are_allowed_on_sqlite(sqlite_url: str) -> None:
    open_store(sqlite_url).dispose()  # sql never creates the store it reads
    result = _sql(sqlite_url, "PRAGMA table_info(hosts)", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("0,id,INTEGER")
