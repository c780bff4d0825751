"""The report benchmark's generated store goes through the store's own writer and diagnosis."""

from __future__ import annotations

from sqlalchemy import text

from bench.fleet import generate_store
from collector.store.database import Store
from collector.store.findings import reclassify
from reports.analysis import build_report_data


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
