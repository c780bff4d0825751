"""Shared fixtures: real SQLite files and a real PostgreSQL server, one fresh database per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from collector.simulator.wsman import WsmanServer
from collector.store.database import Store, create_store_engine
from tests.pgcluster import Cluster, start_cluster

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "collector" / "data"
SEED_CAPTURE = DATA / "seed" / "capture"


SEED_TIME = "2018-06-01T12:00:00+02:00"


def import_seed(url: str) -> str:
    """Import the seed capture as host seed-workstation through the CLI; return the URL."""
    from click.testing import CliRunner

    from collector.cli import cli

    arguments = ["--db", url, "import", str(SEED_CAPTURE), "--host", "seed-workstation"]
    result = CliRunner().invoke(cli, [*arguments, "--taken-at", SEED_TIME])
    assert result.exit_code == 0, result.output
    return url


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """Start one PostgreSQL cluster for the whole session."""
    cluster = start_cluster()
    yield cluster
    cluster.stop()


def new_pg_database(cluster: Cluster) -> str:
    """Create an empty database on the cluster and return its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{cluster.url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{cluster.url}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return new_pg_database(cluster)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL of an empty SQLite file."""
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def empty_engine(db_url: str) -> Iterator[Engine]:
    """An engine on an empty (unmigrated) database."""
    engine = create_store_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A store migrated to head, open for writing."""
    with Store.open(db_url) as opened:
        yield opened


@pytest.fixture
def servers() -> Iterator[list[WsmanServer]]:
    """Simulated WinRM listeners a test starts (append them); every one stopped after it."""
    started: list[WsmanServer] = []
    yield started
    for server in started:
        server.stop()
