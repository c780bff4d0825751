"""`import` in batches: one transaction a batch, a savepoint a document, nothing half-written."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from collector.importer import import_paths
from collector.simulator.fleet import Fleet, FleetSpec
from collector.store.database import Store
from collector.store.findings import reclassify
from collector.store.models import (
    Attempt,
    BindFailure,
    Document,
    ExcludedRange,
    Feature,
    Host,
    Listener,
    Snapshot,
    Update,
)
from collector.store.rows import content_rows
from collector.store.snapshots import store_set
from tests.conftest import new_pg_database
from tests.documents import probe_document
from tests.pgcluster import Cluster

# What only the refused document and the one after it hold: sets the refused one creates
# first, under its savepoint, and that are gone when it is rolled back.
_FAILURES = [[135, 135, 10048], [61000, 61001, 10013]]
_LISTENERS = [{"protocol": "tcp", "address": "0.0.0.0", "port": 7777, "pid": 4242,
               "process": "rare"}]  # fmt: skip


def _document(name: str, **changes: Any) -> dict[str, Any]:
    document = probe_document(**changes)
    document["host"]["name"] = name
    return document


def _sharing(name: str, **changes: Any) -> dict[str, Any]:
    document = _document(name, listeners=_LISTENERS, **changes)
    document["bind_sweep"][0]["failures"] = _FAILURES
    return document


def _write(folder: Path, name: str, document: dict[str, Any]) -> Path:
    path = folder / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize("batch", [100, 2])
def test_a_refused_document_mid_batch_is_rolled_back_alone(
    store: Store, tmp_path: Path, batch: int
) -> None:
    twice = [{"name": "Microsoft-Hyper-V", "state": "Enabled"}] * 2
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\x00 not json")
    paths = [
        _write(tmp_path, "a.json", _document("dev-ws-a")),
        _write(tmp_path, "bad.json", _sharing("dev-ws-bad", features=twice)),
        garbage,
        _write(tmp_path, "b.json", _sharing("dev-ws-b")),
    ]
    results = import_paths(store, paths, batch=batch)

    assert [(Path(r.source).name, r.outcome) for r in results] == [
        ("a.json", "stored"),
        ("bad.json", "failed"),
        ("garbage.json", "failed"),
        ("b.json", "stored"),
    ]
    refused = results[1].message
    assert refused.startswith(f"{paths[1]}: the database refused the document"), refused
    assert "nothing of it was kept" in refused and "duplicated" in refused
    assert "not a JSON probe document" in results[2].message
    with store.connect() as connection:
        hosts = connection.scalars(select(Host.name).order_by(Host.name)).all()
        assert hosts == ["dev-ws-a", "dev-ws-b"]  # the refused one's host went with it
        assert connection.scalar(select(func.count()).select_from(Document)) == 2
        # Both kept documents list the same feature: one set, one row, pointed at twice.
        assert connection.scalar(select(func.count()).select_from(Feature)) == 1
        shared = select(func.count()).select_from(Snapshot)
        shared = shared.join(Feature, Feature.set_id == Snapshot.feature_set_id)
        assert connection.scalar(shared) == 2
        updated = connection.scalars(
            select(Host.name).join(Update, Update.host_id == Host.id).distinct()
        ).all()
        assert sorted(updated) == ["dev-ws-a", "dev-ws-b"]
        # b.json's content sets are the ones the refused document made first and lost: b must
        # point at sets that exist, with their rows.
        b_snapshot = connection.execute(
            select(Snapshot.bind_failure_set_id, Snapshot.listener_set_id).where(
                Snapshot.id == results[3].snapshot_id
            )
        ).one()
        failures = connection.execute(
            select(BindFailure.start_port).where(BindFailure.set_id == b_snapshot[0])
        ).scalars()
        assert sorted(failures) == [135, 61000]
        ports = connection.scalars(
            select(Listener.port).where(Listener.set_id == b_snapshot[1])
        ).all()
        assert ports == [7777]
        attempts = connection.execute(
            select(Attempt.source, Attempt.status, Attempt.error_class, Attempt.message)
            .order_by(Attempt.id)
        ).all()  # fmt: skip
    assert [(Path(a.source).name, a.status, a.error_class) for a in attempts] == [
        ("a.json", "ok", None),
        ("bad.json", "failed", "bad_document"),
        ("garbage.json", "failed", "bad_document"),
        ("b.json", "ok", None),
    ]  # every input tried is recorded, in order, and no in-flight mark is left
    assert attempts[1].message == refused


def test_the_same_document_twice_in_a_batch_is_stored_once(store: Store, tmp_path: Path) -> None:
    document = _document("dev-ws-a")
    first = _write(tmp_path, "first.json", document)
    again = _write(tmp_path, "again.json", document)
    later = _write(tmp_path, "later.json", _document("dev-ws-a", taken_at="2026-11-21T02:00:05Z"))
    results = import_paths(store, [first, again, later, first], batch=3)
    assert [r.outcome for r in results] == ["stored", "duplicate", "stored", "duplicate"]
    assert results[1].snapshot_id == results[0].snapshot_id == results[3].snapshot_id
    assert results[1].message == f"already stored as snapshot {results[0].snapshot_id}"
    with store.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Snapshot)) == 2
        statuses = connection.scalars(select(Attempt.status).order_by(Attempt.id)).all()
    assert statuses == ["ok", "ok", "ok", "ok"]


def test_documents_of_one_host_in_one_batch_share_the_host_and_its_updates(
    store: Store, tmp_path: Path
) -> None:
    nights = [
        _write(tmp_path, f"n{day}.json", _document("dev-ws-a", taken_at=f"2026-11-{day}T02:00:05Z"))
        for day in (20, 21, 22)
    ]
    results = import_paths(store, nights)
    assert [r.outcome for r in results] == ["stored"] * 3
    with store.connect() as connection:
        assert connection.scalars(select(Host.name)).all() == ["dev-ws-a"]
        first_seen = connection.execute(select(Update.update_key, Update.first_snapshot_id)).all()
    assert {snapshot for _, snapshot in first_seen} == {results[0].snapshot_id}


def test_an_older_document_imported_in_a_later_batch_dates_the_updates(
    store: Store, tmp_path: Path
) -> None:
    later = _write(tmp_path, "n22.json", _document("dev-ws-a", taken_at="2026-11-22T02:00:05Z"))
    older = _write(tmp_path, "n20.json", _document("dev-ws-a", taken_at="2026-11-20T02:00:05Z"))
    other = _write(tmp_path, "b.json", _document("dev-ws-b"))
    (first,) = import_paths(store, [later])
    _, second = import_paths(store, [other, older])  # one document of dev-ws-a in this batch
    with store.connect() as connection:
        first_seen = connection.execute(
            select(Host.name, Update.first_snapshot_id).join(Host, Host.id == Update.host_id)
        ).all()
    assert first.snapshot_id != second.snapshot_id
    assert {snapshot for name, snapshot in first_seen if name == "dev-ws-a"} == {second.snapshot_id}


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_writers_storing_one_content_at_once_share_its_set(store: Store) -> None:
    content = content_rows([("tcp", "ipv4", 50000, 50059, True)])
    found: list[int | BaseException] = []

    def second() -> None:
        try:
            with store.engine.begin() as connection:
                found.append(store_set(connection, "excluded_set_id", content))
        except BaseException as exc:  # handed to the test
            found.append(exc)

    with store.engine.connect() as first:
        with first.begin():
            made = store_set(first, "excluded_set_id", content)
            rival = threading.Thread(target=second)
            rival.start()  # it waits on the set's unique digest until this commits
        rival.join(timeout=60)
    assert found == [made]
    with store.connect() as connection:
        ranges = connection.scalars(select(ExcludedRange.set_id)).all()
    assert ranges == [made]  # the rows once, by the writer that made the set


def test_findings_remembered_across_an_import_are_the_diagnosis_of_each_document(
    store: Store, tmp_path: Path
) -> None:
    fleet = Fleet(FleetSpec(seed=3, hosts=4, nights=10))
    paths = []
    for night in range(6):
        for host in fleet.hosts:
            if fleet.outage(host.name, night) is None:
                name = f"{host.name}-{night}.json"
                paths.append(_write(tmp_path, name, fleet.document(host, night)))
    # The same inputs but winnat's state, which decides whether restarting it is a fix.
    for day, status in ((20, "Running"), (21, "Stopped")):
        services = [{"name": "winnat", "status": status, "start_type": "Manual"}]
        document = _document("dev-ws-w", taken_at=f"2026-11-{day}T02:00:05Z", services=services)
        paths.append(_write(tmp_path, f"w{day}.json", document))
    results = import_paths(store, paths)
    assert {r.outcome for r in results} == {"stored"}
    with store.transaction() as connection:
        again = reclassify(connection)
    assert again.snapshots == len(paths) and again.changed == 0


def test_two_imports_meeting_on_new_sets_in_opposite_orders_both_store(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    """Batch A holds hosts with features one then two, batch B two then one (PostgreSQL).

    Each stops after creating its first set until the other has created one (or 2 s have
    passed). Taken host by host, A would then wait for B's sets and B for A's, and
    PostgreSQL would fail one import whole as a deadlock; taken in one order, B waits for A.
    """
    one = [{"name": "Microsoft-Hyper-V", "state": "Enabled"}]
    two = [{"name": "VirtualMachinePlatform", "state": "Enabled"}]
    with Store.open(new_pg_database(pg_cluster)) as store:
        warm = _write(tmp_path, "w.json", _document("dev-ws-w", features=[]))
        assert [r.outcome for r in import_paths(store, [warm])] == ["stored"]  # the other sets
        batches = [
            [_write(tmp_path, f"{n}.json", _document(f"dev-ws-{n}", features=f)) for n, f in pair]
            for pair in ([("a", one), ("b", two)], [("c", two), ("d", one)])
        ]
        met = threading.Barrier(2, timeout=2)
        first_set: set[int] = set()

        def hold(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            thread = threading.get_ident()
            is_set = statement.startswith("INSERT INTO") and "_sets " in statement[:40]
            if is_set and thread not in first_set:
                first_set.add(thread)
                with contextlib.suppress(threading.BrokenBarrierError):
                    met.wait()

        outcomes: dict[int, list[str] | BaseException] = {}

        def run(index: int) -> None:
            try:
                outcomes[index] = [r.outcome for r in import_paths(store, batches[index])]
            except BaseException as exc:  # handed to the test
                outcomes[index] = exc

        event.listen(store.engine, "after_cursor_execute", hold)
        try:
            threads = [threading.Thread(target=run, args=(index,)) for index in (0, 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        finally:
            event.remove(store.engine, "after_cursor_execute", hold)
        assert outcomes == {0: ["stored", "stored"], 1: ["stored", "stored"]}
        assert len(first_set) == 2
