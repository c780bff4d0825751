"""State spans: derived whole, extended night by night, filled by the upgrade, kept by prune."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from alembic import command
from click.testing import CliRunner
from sqlalchemy import Connection, delete, event, func, select, text

from bench.fleet import generate_store
from collector.cli import cli
from collector.store.database import Store, alembic_config
from collector.store.models import Snapshot, StateSpan
from collector.store.pending import Pending
from collector.store.prune import prune
from collector.store.spans import SPAN_COLUMNS, TAIL_DAYS, read_tail, rebuild_spans, refresh_spans

_SPAN_FIELDS = ("host_id", "first_snapshot_id", "first_at", "last_snapshot_id", "last_at",
                "nights", "tail", *SPAN_COLUMNS)  # fmt: skip


def _spans(connection: Connection) -> list[tuple[Any, ...]]:
    """Return every stored span, without its id, in time order per host."""
    rows = connection.execute(
        select(*(getattr(StateSpan, name) for name in _SPAN_FIELDS)).order_by(
            StateSpan.host_id, StateSpan.first_at
        )
    )
    return [tuple(row) for row in rows]


def _nights(connection: Connection) -> dict[int, list[Any]]:
    """Return each host's snapshots, oldest first."""
    columns = [getattr(Snapshot, name) for name in SPAN_COLUMNS]
    rows = connection.execute(
        select(Snapshot.id, Snapshot.host_id, Snapshot.taken_at, *columns).order_by(
            Snapshot.host_id, Snapshot.taken_at, Snapshot.id
        )
    )
    found: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        found[int(row.host_id)].append(row)
    return found


def test_rebuilt_spans_are_the_maximal_runs_of_equal_nights(db_url: str) -> None:
    generate_store(db_url, hosts=6, nights=40, seed=5)
    with Store.open(db_url) as store, store.transaction() as connection:
        written = rebuild_spans(connection)
        spans = connection.execute(
            select(StateSpan).order_by(StateSpan.host_id, StateSpan.first_at)
        ).all()
        nights = _nights(connection)
    assert written == len(spans) and 6 < len(spans) < sum(len(n) for n in nights.values())
    by_host: dict[int, list[Any]] = defaultdict(list)
    for span in spans:
        by_host[int(span.host_id)].append(span)
    for host_id, rows in nights.items():
        position = 0
        previous = None
        for span in by_host[host_id]:
            state = tuple(getattr(span, name) for name in SPAN_COLUMNS)
            assert state != previous, "two neighbouring spans of one state: not maximal"
            mine = rows[position : position + span.nights]
            assert {tuple(getattr(r, n) for n in SPAN_COLUMNS) for r in mine} == {state}
            assert (mine[0].id, mine[0].taken_at) == (span.first_snapshot_id, span.first_at)
            assert (mine[-1].id, mine[-1].taken_at) == (span.last_snapshot_id, span.last_at)
            window = [r.taken_at for r in mine if span.last_at - r.taken_at <= timedelta(TAIL_DAYS)]
            assert read_tail(span) == window
            position += span.nights
            previous = state
        assert position == len(rows)


def test_extending_night_by_night_gives_the_spans_a_rebuild_gives(db_url: str) -> None:
    generate_store(db_url, hosts=6, nights=40, seed=7)
    with Store.open(db_url) as store, store.transaction() as connection:
        rebuild_spans(connection)
        whole = _spans(connection)
        nights = _nights(connection)
        connection.execute(delete(StateSpan))
        # One run's end per night: every host's snapshot of that night extends its spans; the
        # last host is derived again from scratch on each run, as a backfilled host would be.
        last = max(nights)
        written = 0
        for night in range(max(len(rows) for rows in nights.values())):
            extend = {
                host_id: (rows[night].id,)
                for host_id, rows in nights.items()
                if night < len(rows) and host_id != last
            }
            written += refresh_spans(connection, Pending(extend=extend, rebuild={last}))
        assert _spans(connection) == whole
    assert written >= len(whole)


def test_one_new_night_for_many_hosts_is_a_few_statements(sqlite_url: str) -> None:
    generate_store(sqlite_url, hosts=30, nights=6, seed=11)
    with Store.open(sqlite_url) as store, store.transaction() as connection:
        rebuild_spans(connection)
        whole = _spans(connection)
        nights = _nights(connection)
        newest = {host_id: rows[-1].id for host_id, rows in nights.items()}
        # Take the last night back out of the spans, then extend with it again.
        connection.execute(delete(StateSpan))
        for host_id, rows in nights.items():
            extend = {host_id: tuple(r.id for r in rows[:-1])}
            refresh_spans(connection, Pending(extend=extend))
        statements: list[str] = []
        engine = connection.engine

        def count(*args: Any) -> None:
            statements.append(str(args[2]))

        event.listen(engine, "before_cursor_execute", count)
        try:
            refresh_spans(connection, Pending(extend={h: (i,) for h, i in newest.items()}))
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert _spans(connection) == whole
    assert len(statements) <= 5, statements


def test_the_upgrade_fills_the_spans_a_rebuild_gives(db_url: str) -> None:
    generate_store(db_url, hosts=5, nights=35, seed=13)
    with Store.open(db_url) as store:
        with store.transaction() as connection:
            rebuild_spans(connection)
            whole = _spans(connection)
        with store.engine.begin() as connection:
            config = alembic_config(store.engine)
            config.attributes["connection"] = connection
            command.downgrade(config, "0008")
            command.upgrade(config, "0009")
        with store.connect() as connection:
            assert _spans(connection) == whole and len(whole) > 5


def test_prune_keeps_every_span_and_the_snapshots_it_names(db_url: str) -> None:
    generated = generate_store(db_url, hosts=6, nights=45, seed=17)
    with Store.open(db_url) as store:
        with store.transaction() as connection:
            rebuild_spans(connection)
            before = _spans(connection)
            snapshots = connection.scalar(select(func.count()).select_from(Snapshot)) or 0
        pruned = prune(store, keep_days=10, now=generated.now)
        with store.connect() as connection:
            after = _spans(connection)
            left = set(connection.scalars(select(Snapshot.id)))
    assert pruned.snapshots > 0 and len(left) == snapshots - pruned.snapshots
    assert after == before
    named = {span[1] for span in after} | {span[3] for span in after}
    assert named <= left
    # The nights prune removed are still counted by the spans that held them.
    assert sum(span[5] for span in after) == snapshots


def test_db_reclassify_gives_the_spans_the_new_finding_sets(sqlite_url: str) -> None:
    generate_store(sqlite_url, hosts=4, nights=20, seed=19)
    with Store.open(sqlite_url) as store, store.transaction() as connection:
        rebuild_spans(connection)
        # As an older rule would have left them: every finding set gets made again.
        connection.execute(text("UPDATE finding_sets SET sha256 = 'older rule ' || id"))
        old = set(connection.scalars(select(StateSpan.finding_set_id)))
    path = sqlite_url.removeprefix("sqlite:///")
    result = CliRunner().invoke(cli, ["--db", path, "db", "reclassify"])
    assert result.exit_code == 0, result.output
    with Store.open(sqlite_url) as store, store.connect() as connection:
        spans = set(connection.scalars(select(StateSpan.finding_set_id)))
        stored = set(connection.scalars(select(Snapshot.finding_set_id)))
        whole = _spans(connection)
    assert spans == stored and not spans & old
    with Store.open(sqlite_url) as store, store.transaction() as connection:
        rebuild_spans(connection)
        assert _spans(connection) == whole
