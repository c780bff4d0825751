"""In-flight marks are dropped by run and host through one index, never another host's.

Real SQLite files and a real PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, event, select

from collector.claims import NightTurns
from collector.collect import _Recorder
from collector.plan import CollectPlan
from collector.runs import IN_FLIGHT, finish_run, in_flight_many, landed, start_run
from collector.store import leases
from collector.store.database import Store
from collector.store.models import Attempt
from collector.store.writer import register_hosts

AT = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)


@contextmanager
def _statements(store: Store) -> Iterator[list[str]]:
    """Record the SQL the store's engine sends while the block runs."""
    statements: list[str] = []

    def seen(conn: object, cursor: object, sql: str, *args: object) -> None:
        statements.append(sql)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)


def _marked(store: Store, run_id: int) -> list[int]:
    """Return the host ids with an in-flight mark in the run."""
    query = select(Attempt.host_id).where(
        Attempt.run_id == run_id, Attempt.message.like(f"{IN_FLIGHT}%")
    )
    with store.connect() as connection:
        return sorted(int(host or 0) for host in connection.execute(query).scalars())


def _hosts(store: Store, count: int) -> list[int]:
    ids = register_hosts(store, [(f"dev-ws-{n:02d}", None, ()) for n in range(count)])
    return sorted(ids.values())


def _marking_run(store: Store, hosts: list[int]) -> int:
    """Start a run and mark its hosts in flight, as a claim does; return the run."""
    run_id = start_run(store, "collect")
    with store.transaction() as connection:
        in_flight_many(connection, run_id, [(host, "src", AT) for host in hosts])
    return run_id


def test_landed_drops_only_the_host_s_own_mark(store: Store) -> None:
    hosts = _hosts(store, 3)
    run_id = _marking_run(store, hosts)
    with store.transaction() as connection:
        landed(connection, run_id, hosts[1], "src")
    assert _marked(store, run_id) == [hosts[0], hosts[2]]
    finish_run(store, run_id)


def test_an_id_a_rolled_back_mark_left_never_drops_another_host_s_mark(store: Store) -> None:
    first, second = _hosts(store, 2)
    run_id = start_run(store, "collect")
    with pytest.raises(RuntimeError), store.transaction() as connection:
        in_flight_many(connection, run_id, [(first, "src", AT)])
        raise RuntimeError("the claim's transaction fails after the mark")
    # SQLite hands the rolled-back id out again: here to the second host's mark.
    with store.transaction() as connection:
        in_flight_many(connection, run_id, [(second, "src", AT)])
    with store.transaction() as connection:
        landed(connection, run_id, first, "src")
    assert _marked(store, run_id) == [second]
    with store.transaction() as connection:
        landed(connection, run_id, second, "src")
    assert _marked(store, run_id) == []
    finish_run(store, run_id)


def test_a_host_s_mark_is_found_by_run_and_host_alone(store: Store) -> None:
    hosts = _hosts(store, 3)
    run_id = _marking_run(store, hosts)
    with _statements(store) as statements, store.transaction() as connection:
        landed(connection, run_id, hosts[1], "src")
        if connection.dialect.name == "sqlite":
            # The host's own rows through one index, not a scan of the run's attempts.
            drop = next(sql for sql in statements if sql.startswith("DELETE FROM attempts"))
            plan = connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {drop}", (run_id, f"{IN_FLIGHT}%", hosts[1])
            ).all()
            assert "(run_id=? AND host_id=?)" in " ".join(str(row[-1]) for row in plan)
    assert _marked(store, run_id) == [hosts[0], hosts[2]]
    finish_run(store, run_id)


def test_hosts_that_start_together_are_marked_in_flight_in_one_transaction(store: Store) -> None:
    hosts = _hosts(store, 5)
    run_id = start_run(store, "collect")
    commits: list[object] = []

    def committed(connection: object) -> None:
        commits.append(connection)

    event.listen(store.engine, "commit", committed)
    held = threading.Event()
    with _Recorder(store, run_id, "winrm", limit=4) as recorder:
        recorder._writer.submit(held.wait)  # the writer busy, as while it stores a document
        for host in hosts:
            recorder.begin(host, f"src-{host}", AT)
        held.set()
    event.remove(store.engine, "commit", committed)
    assert len(commits) == 1
    assert _marked(store, run_id) == hosts
    finish_run(store, run_id)


@pytest.mark.parametrize("claims_nights", [True, False])
def test_only_a_run_that_claims_nights_marks_its_hosts_done_when_they_land(
    store: Store, claims_nights: bool
) -> None:
    (host,) = _hosts(store, 1)
    run_id = start_run(store, "collect", claims_nights=claims_nights)
    leases.label_run(store, run_id, "test", "n1", None)  # as NightTurns does before it claims
    leases.offer(store, "n1", [host])

    def mark(connection: Connection, taken: list[int]) -> None:
        in_flight_many(connection, run_id, [(taken_id, "src", AT) for taken_id in taken])

    assert leases.claim(store, "n1", run_id, [host], 1, 60.0, AT, mark=mark) == [host]
    with store.transaction() as connection:
        landed(connection, run_id, host, "src")
    # A run without a night (collect with no --night plan) skips the claim look-up per host.
    assert leases.undone(store, "n1", [host]) == (0 if claims_nights else 1)
    assert _marked(store, run_id) == []
    finish_run(store, run_id)


def test_a_run_never_claims_a_host_it_took_again(store: Store) -> None:
    hosts = _hosts(store, 3)
    started = datetime.now(UTC)
    run_id = start_run(store, "collect")
    # Leases that run out at once: every claimed host is takeable again at the next claim.
    plan = CollectPlan((), 8, 10.0, 0, 0.0, {}, night="n1", lease_seconds=0.0)
    turns = NightTurns(store, plan, run_id, started, {host: f"src-{host}" for host in hosts})
    leases.offer(store, "n1", hosts)
    assert turns._claim(2) == hosts[:2]
    # Only the host it has not taken: the two in its hands are not started a second time.
    assert turns._claim(8) == hosts[2:]
    assert turns._claim(8) == []
    finish_run(store, run_id)


def test_a_host_is_marked_done_by_its_claim_s_key_alone(store: Store) -> None:
    hosts = _hosts(store, 3)
    run_id = start_run(store, "collect")
    leases.label_run(store, run_id, "test", "n1", None)  # as NightTurns does before it claims
    leases.offer(store, "n1", hosts)
    assert sorted(leases.claim(store, "n1", run_id, hosts, 3, 60.0, AT)) == hosts
    with _statements(store) as statements, store.transaction() as connection:
        leases.mark_done(connection, run_id, hosts[1])
        if connection.dialect.name == "sqlite":
            # Each host's own row by the primary key, not a scan of the run's claims.
            update = next(sql for sql in statements if sql.startswith("UPDATE night_claims"))
            plan = connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {update}", (None, run_id, hosts[1], run_id)
            ).all()
            assert "(night=? AND host_id=?)" in " ".join(str(row[-1]) for row in plan)
    assert leases.undone(store, "n1", hosts) == 2
    finish_run(store, run_id)
