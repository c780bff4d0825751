"""The report benchmark's generated store goes through the store's own writer and diagnosis."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from bench.fleet import generate_store
from collector.store.database import Store
from collector.store.findings import reclassify
from collector.store.models import Base, Document, Host, Snapshot
from collector.store.snapshots import SETS
from reports.analysis import build_report_data
from tests.conftest import new_pg_database
from tests.pgcluster import Cluster


def test_a_generated_store_is_stored_as_collection_stores_it(db_url: str) -> None:
    """On SQLite and PostgreSQL, as `bench.report --db URL` generates into either."""
    url = db_url
    generated = generate_store(url, hosts=12, nights=15, seed=3)
    assert generated.rows["snapshots"] > 150 and generated.rows["change_events"] > 0
    assert generated.database_bytes > 100_000
    with Store.open(url) as store:
        with store.connect() as connection:
            orphans = connection.execute(
                text("SELECT COUNT(*) FROM snapshots WHERE finding_set_id IS NULL")
            ).scalar_one()
            attempts = connection.execute(
                text("SELECT status, COUNT(*) FROM attempts GROUP BY status")
            ).all()
        assert orphans == 0
        by_status = {str(status): int(count) for status, count in attempts}
        assert by_status["ok"] == generated.rows["snapshots"]
        # The findings the writer stored are the ones today's diagnosis gives.
        with store.transaction() as connection:
            assert reclassify(connection).changed == 0
    with Store.reader(url) as store:
        data = build_report_data(store, [5432, 8080], now=generated.now)
    assert not data.failures.empty and len(data.hosts) == 12


def test_a_fleet_written_in_parts_is_the_fleet_written_whole(pg_cluster: Cluster) -> None:
    """`--jobs 2` splits the hosts between processes; the history stored is the same."""
    whole, parts = new_pg_database(pg_cluster), new_pg_database(pg_cluster)
    one = generate_store(whole, hosts=14, nights=12, seed=5, nightly=True)
    two = generate_store(parts, hosts=14, nights=12, seed=5, nightly=True, jobs=2)
    assert two.rows["collection_runs"] == 2 * one.rows["collection_runs"]  # a run a part a night
    assert one.rows["change_events"] > 0 and one.rows["state_spans"] > 14
    assert _content(whole) == _content(parts)


def test_parts_need_postgresql(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="need PostgreSQL"):
        generate_store(sqlite_url, hosts=4, nights=2, seed=1, jobs=2)


def _content(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every table but the runs, sorted, with ids replaced by what they name.

    Ids depend on which part wrote first: a set becomes its digest, a snapshot its host and
    time, a host its name, a document its digest; a row's own id and its run are left out.
    """
    with Store.open(url) as store, store.connect() as connection:

        def names(*columns: Any) -> dict[object, object]:
            return {row[0]: row[1:] for row in connection.execute(select(*columns))}

        hosts = names(Host.id, Host.name)
        named: dict[str, dict[object, object]] = {
            "host_id": hosts,
            "document_id": names(Document.id, Document.sha256),
            "snapshot_id": {
                key: (hosts[host], taken)
                for key, host, taken in connection.execute(
                    select(Snapshot.id, Snapshot.host_id, Snapshot.taken_at)
                )
            },
        }
        owner: dict[str, str] = {}
        for column, (model, rows, _) in SETS.items():
            named[column] = names(model.id, model.sha256)
            owner[rows.__tablename__] = column
        tables: dict[str, list[tuple[object, ...]]] = {}
        for table in Base.metadata.sorted_tables:
            if table.name == "collection_runs":
                continue
            columns = [
                c.name for c in table.columns if c.name not in ("id", "run_id", "created_at")
            ]
            kinds = [
                owner[table.name] if column == "set_id" else
                "snapshot_id" if column.endswith("snapshot_id") else column
                for column in columns
            ]  # fmt: skip
            tables[table.name] = sorted(
                (
                    tuple(
                        named[kind][value] if kind in named and value is not None else value
                        for kind, value in zip(kinds, row, strict=True)
                    )
                    for row in connection.execute(select(*(table.c[c] for c in columns)))
                ),
                key=repr,
            )
    return tables
