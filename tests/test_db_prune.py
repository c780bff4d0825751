"""`db prune`: old nights go, the history questions answer as before, collection goes on."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import text

from bench.fleet import generate_store
from collector.cli import cli
from collector.document import load_document
from collector.importer import import_paths
from collector.runs import refresh
from collector.store.database import Store
from collector.store.derived import derive_pending
from collector.store.locks import content_lock
from collector.store.prune import Pruned, prune
from collector.store.reparse import reparse
from collector.store.rows import prepare_snapshot
from collector.store.snapshots import store_set, write_snapshot
from collector.store.writer import ensure_host
from reports.analysis import build_report_data
from reports.explain import explain
from tests.conftest import new_pg_database
from tests.documents import probe_document
from tests.pgcluster import Cluster
from tests.test_report_analysis import excluded_text, save, sweep

_EVENTS = """
SELECT host, kind, at, previous_at, protocol, family, start_port, end_port, previous_start,
       previous_end, ports, administered
  FROM v_change_events ORDER BY host, at, kind, start_port, previous_start"""
_CAUSES = """
SELECT h.name, kind, cause, detail, at, cause_at, seen_at, window_start, exposure
  FROM candidate_causes c JOIN hosts h ON h.id = c.host_id
 ORDER BY h.name, seen_at, kind, cause, detail"""
_LATEST = "SELECT host, snapshot_id, taken_at FROM v_latest_snapshots ORDER BY host"
_FIRST_SEEN = """
SELECT h.name, u.update_key, s.taken_at FROM updates u
  JOIN hosts h ON h.id = u.host_id JOIN snapshots s ON s.id = u.first_snapshot_id
 ORDER BY h.name, u.update_key"""


def night(day: int) -> dict[str, Any]:
    """One night of dev-ws-01, ``day`` days after 1 November: the same reserved range each."""
    taken = datetime(2026, 11, 1, 2, tzinfo=UTC) + timedelta(days=day)
    document = probe_document(taken_at=taken.isoformat())
    document["raw"]["excluded_ipv4_tcp"] = excluded_text((5400, 5499, False))
    document["bind_sweep"] = [sweep((5400, 5499, 10013))]
    return document


def _answers(store: Store, now: datetime) -> dict[str, Any]:
    """Read what history questions answer: events, causes, first seen, explain's since when."""
    with store.connect() as connection:
        answers: dict[str, Any] = {
            name: [tuple(row) for row in connection.execute(text(query))]
            for name, query in (("events", _EVENTS), ("causes", _CAUSES), ("latest", _LATEST),
                                ("first seen", _FIRST_SEEN))
        }  # fmt: skip
        ports = connection.execute(
            text("SELECT DISTINCT host, start_port FROM v_change_events WHERE protocol = 'tcp' "
                 "AND start_port IS NOT NULL ORDER BY host, start_port")
        ).all()  # fmt: skip
    asked = [(str(host), int(port)) for host, port in ports[::7]]
    asked += [(host, port) for host, _, _ in answers["latest"][:4] for port in (5432, 8080)]
    for host, port in asked:
        found = explain(store, host, port, now=now)
        answers[f"explain {host} {port}"] = (
            found.status, found.classification, found.reason, found.snapshot_id, found.since,
            found.since_snapshot_id, [(s.status, s.first_at, s.last_at) for s in found.earlier],
            found.changes, found.causes,
        )  # fmt: skip
    return answers


_REPORT_FRAMES = (
    "hosts", "failed_attempts", "failures", "wanted", "port_map", "events", "correlation",
    "remediation", "attention",
)  # fmt: skip


def _report(url: str, now: datetime) -> dict[str, Any]:
    """Read what the report shows; safe ports without the count of host-nights behind them."""
    with Store.reader(url) as reader:
        data = build_report_data(reader, [5432, 8080], now=now)
    shown: dict[str, Any] = {
        # As JSON text: a missing value reads the same on both sides (NaN is not NaN). Events
        # are derived again, so their row ids are new.
        name: getattr(data, name)
        .drop(columns="event_id", errors="ignore")
        .to_json(orient="records", date_format="iso")
        for name in _REPORT_FRAMES
    }
    shown["odds"] = data.odds
    safe = data.safe_ports
    shown["safe ports"] = (safe.ranges, safe.nights, safe.first, safe.last)
    return shown


def _count(store: Store, table: str) -> int:
    with store.connect() as connection:
        return int(connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def test_prune_keeps_every_history_answer(db_url: str) -> None:
    generated = generate_store(db_url, hosts=10, nights=40, seed=5)
    with Store.open(db_url) as store:
        before = _answers(store, generated.now)
        report = _report(db_url, generated.now)
        snapshots = _count(store, "snapshots")
        assert len(before["events"]) > 10 and before["causes"]

        result = prune(store, keep_days=10, now=generated.now)
        with store.transaction() as connection:  # as `db reclassify` derives it from what is left
            derive_pending(connection, everything=True)
        after = _answers(store, generated.now)
        # The report shows the same; only counts of nights over the pruned time are smaller.
        assert _report(db_url, generated.now) == report

        assert result.snapshots > snapshots // 3
        assert _count(store, "snapshots") == snapshots - result.snapshots
        assert result.stripped == result.kept > 0
        for question, answer in before.items():
            assert after[question] == answer, question
        with store.connect() as connection:
            old = connection.execute(
                text("SELECT COUNT(*) FROM snapshots s WHERE s.taken_at < :cutoff "
                     "AND s.document_id IS NOT NULL AND s.id NOT IN "
                     "(SELECT snapshot_id FROM v_latest_snapshots)"),
                {"cutoff": generated.now - timedelta(days=10)},
            ).scalar_one()  # fmt: skip
            recent = connection.execute(
                text("SELECT COUNT(*) FROM snapshots WHERE taken_at >= :cutoff "
                     "AND document_id IS NULL"),
                {"cutoff": generated.now - timedelta(days=10)},
            ).scalar_one()  # fmt: skip
            orphans = connection.execute(
                text("SELECT COUNT(*) FROM documents WHERE id NOT IN "
                     "(SELECT document_id FROM snapshots WHERE document_id IS NOT NULL)")
            ).scalar_one()  # fmt: skip
        assert (old, recent, orphans) == (0, 0, 0)
        # Nothing left to prune: a second run removes nothing.
        again = prune(store, keep_days=10, now=generated.now)
        assert (again.snapshots, again.stripped, again.documents) == (0, 0, 0)


def test_prune_runs_while_a_collector_stores_nights(db_url: str) -> None:
    with Store.open(db_url) as store:
        save(store, *(night(day) for day in range(30)))
        now = datetime.fromisoformat("2026-12-01T00:00:00+00:00")
        results: list[Any] = []

        def collector() -> None:
            # Later nights arrive while the prune goes through the older ones.
            results.extend(save(store, *(night(day) for day in range(30, 45))))

        thread = threading.Thread(target=collector)
        thread.start()
        pruned = prune(store, keep_days=1, now=now)
        thread.join()
        assert len(results) == 15
        assert pruned.snapshots > 0
        refresh(store)
        with store.connect() as connection:
            latest = connection.execute(text("SELECT taken_at FROM v_latest_snapshots")).scalar()
            dangling = connection.execute(
                text("SELECT COUNT(*) FROM snapshots s LEFT JOIN documents d "
                     "ON d.id = s.document_id WHERE s.document_id IS NOT NULL AND d.id IS NULL")
            ).scalar_one()  # fmt: skip
        assert latest is not None and dangling == 0


def test_db_prune_prints_what_it_removed(store: Store, db_url: str) -> None:
    save(store, *(night(day) for day in range(7)))
    done = CliRunner().invoke(cli, ["--db", db_url, "db", "prune", "--keep-days", "1"])
    assert done.exit_code == 0, done.output
    # Seven equal nights: the first and the last stay, the last one whole; its document is
    # the base the first one had, so it stays.
    assert done.output == (
        "5 snapshots older than 1 days removed, 1 kept (the first and last night of each "
        "state); 1 kept snapshots lost their raw document; 0 documents and 0 content sets "
        "removed\n"
    )
    # reparse reads the documents kept, and leaves the night that lost its own as it is.
    assert reparse(store).describe() == (
        "1 snapshots read again; nothing changed (1 older ones kept as they are: db prune "
        "dropped their documents)"
    )
    refused = CliRunner().invoke(cli, ["--db", db_url, "db", "prune"])
    assert refused.exit_code == 2 and "--keep-days" in refused.output


# --- removing unused content while writers reuse it (PostgreSQL: SQLite has one writer) ------


def _wait_for_advisory_waiter(store: Store, what: str) -> None:
    """Return once some session waits for an advisory lock; fail after 20 s."""
    deadline = time.monotonic() + 20
    query = text("SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event = 'advisory'")
    while time.monotonic() < deadline:
        with store.connect() as connection:
            if connection.execute(query).scalar_one():
                return
        time.sleep(0.05)
    raise AssertionError(f"{what} never waited for the content lock")


def test_prune_waits_for_a_writer_reusing_a_set_it_would_drop(pg_cluster: Cluster) -> None:
    url = new_pg_database(pg_cluster)
    with Store.open(url) as store:
        save(store, *(night(day) for day in range(3)))
        later = night(3)
        later["raw"]["excluded_ipv4_tcp"] = excluded_text((6100, 6199, False))
        body = json.dumps(later).encode()
        prepared = prepare_snapshot(body, load_document(body, "test"), "file")
        excluded = prepared.sets["excluded_set_id"]
        assert excluded is not None
        with store.transaction() as connection:
            # Left unused, as a reparse leaves an old set: prune would drop it.
            orphan = store_set(connection, "excluded_set_id", excluded)
        pruned: list[Pruned] = []
        with store.transaction() as connection:
            content_lock(connection)  # a writer's transaction, as store_document opens it
            thread = threading.Thread(target=lambda: pruned.append(prune(store, keep_days=1)))
            thread.start()
            _wait_for_advisory_waiter(store, "prune")
            host_id = ensure_host(connection, "dev-ws-01")
            stored = write_snapshot(connection, prepared, host_id, datetime.now(UTC))
        thread.join(timeout=30)
        assert pruned and not thread.is_alive()
        with store.connect() as connection:
            kept = connection.execute(
                text("SELECT excluded_set_id FROM snapshots WHERE id = :id"),
                {"id": stored.snapshot_id},
            ).scalar_one()
            still = connection.execute(
                text("SELECT COUNT(*) FROM excluded_sets WHERE id = :id"), {"id": orphan}
            ).scalar_one()
        assert (kept, still) == (orphan, 1)


def test_writers_wait_while_unused_content_is_removed(pg_cluster: Cluster, tmp_path: Path) -> None:
    url = new_pg_database(pg_cluster)
    file = tmp_path / "night.json"
    file.write_text(json.dumps(night(4)), encoding="utf-8")
    with Store.open(url) as store:
        save(store, night(0))
        outcomes: list[str] = []
        with store.transaction() as connection:
            content_lock(connection, exclusive=True)  # as prune holds it while it deletes
            writers = [
                threading.Thread(target=lambda: save(store, night(1))),
                threading.Thread(
                    target=lambda: outcomes.extend(r.outcome for r in import_paths(store, [file]))
                ),
            ]
            for writer in writers:
                writer.start()
            for name in ("store_document", "import"):
                _wait_for_advisory_waiter(store, name)
            time.sleep(0.2)
            waiting = connection.execute(
                text("SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event = 'advisory'")
            ).scalar_one()
            assert waiting == 2
        for writer in writers:
            writer.join(timeout=30)
        assert outcomes == ["stored"]
        with store.connect() as connection:
            nights = connection.execute(text("SELECT COUNT(*) FROM snapshots")).scalar_one()
        assert nights == 3
