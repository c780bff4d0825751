"""Collection runs: open and close them, and close the ones a killed process left open.

A run holds a liveness lock from its start to its end: a byte-range lock on ``<db>-runs`` beside
a SQLite file, a session advisory lock on PostgreSQL. The operating system or the server drops
it when the process dies, however it dies, so the next run can tell a run still going (another
``collect`` at the same time) from one that was killed, and close only the latter.

The hosts a run is working on carry an *in flight* attempt (failed, ``timeout``, a message
that starts with ``in flight``) until their last try is recorded; a killed run leaves them, and
the next run rewrites them as interrupted.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)

from collector import __version__
from collector.clock import now
from collector.store.database import Store
from collector.store.leases import mark_done
from collector.store.models import Attempt, CollectionRun, Host

log = logging.getLogger(__name__)

IN_FLIGHT = "in flight"
# Advisory lock space of portfleet runs on PostgreSQL ("pf" 1): the run id is the second key.
_PG_LOCK_SPACE = 0x70660001
# Where no lock can tell (no fcntl: Windows), a run this old is taken as interrupted.
_UNLOCKED_AGE = timedelta(hours=24)

_GUARD = threading.Lock()
_FILES: dict[str, int] = {}  # lock file -> the one descriptor this process keeps open
_HELD: dict[tuple[str, int], Any] = {}  # (database, run id) -> what holds its lock
# (database, run id) of the runs this process opened that claim no night: no claim to mark done.
_NIGHTLESS: set[tuple[str, int]] = set()


def start_run(
    store: Store,
    kind: str,
    wanted: Mapping[int, str | None] | None = None,
    claims_nights: bool = True,
) -> int:
    """Close runs a killed process left open (saying so), then open this one and hold its lock.

    ``wanted`` is the config's wanted ports, each with the process that serves it (or None):
    recorded on the run, for a report made without the config (``reports.wanted``).
    ``claims_nights=False`` says the run collects its planned hosts without claiming a night:
    its hosts' records then skip looking for a claim to mark done.
    """
    for notice in close_interrupted_runs(store):
        log.warning("%s", notice)
    values: dict[str, Any] = {"kind": kind, "started_at": now(), "portfleet_version": __version__}
    if wanted:
        values["wanted_ports"] = json.dumps({str(port): wanted[port] for port in sorted(wanted)})
    run_id: int | None = None
    try:
        with store.transaction() as connection:
            run_id = int(
                connection.execute(
                    insert(CollectionRun).values(values).returning(CollectionRun.id)
                ).scalar_one()
            )
            # Held before the run is visible: a collector looking for dead runs must never
            # see this one open without its lock.
            _hold(store.engine, run_id)
    except BaseException:
        if run_id is not None:
            _release(store.engine, run_id)
        raise
    if not claims_nights:
        with _GUARD:
            _NIGHTLESS.add((_key(store.engine), run_id))
    return run_id


def finish_run(store: Store, run_id: int) -> None:
    """Record the end of a run, extend the fleet's history with its snapshots, let go of the lock.

    The history is extended once, in one transaction, with every snapshot stored since it was
    last derived (this run's and any a failed run left), in whatever order they came.
    """
    with store.transaction() as connection:
        # Hosts still in flight when a run ends early (Ctrl-C, an error) were not finished.
        message = f"interrupted: run {run_id} was stopped before this was done"
        connection.execute(
            update(Attempt).where(_flying(run_id)).values(message=message, finished_at=now())
        )
        connection.execute(
            update(CollectionRun).where(CollectionRun.id == run_id).values(finished_at=now())
        )
    with _GUARD:
        _NIGHTLESS.discard((_key(store.engine), run_id))
    try:
        refresh(store)
    finally:
        _release(store.engine, run_id)


def refresh(store: Store) -> None:
    """Derive the change events, candidate causes and fix checks of the new snapshots."""
    from collector.store.derived import derive_pending

    with store.transaction() as connection:
        derive_pending(connection)


def close_interrupted_runs(store: Store) -> list[str]:
    """Close every unfinished run whose process is gone; return one sentence per run closed.

    Its in-flight attempts become interrupted failures; the run ends at its last record.
    """
    unfinished = (
        select(CollectionRun.id, CollectionRun.kind, CollectionRun.started_at)
        .where(CollectionRun.finished_at.is_(None))
        .order_by(CollectionRun.id)
    )
    with store.connect() as connection:
        open_runs = connection.execute(unfinished).all()
    notices = []
    for run_id, kind, started_at in open_runs:
        if _alive(store.engine, int(run_id), started_at):
            continue
        notices.append(_close(store, int(run_id), kind, started_at))
    return notices


def live_runs(store: Store, kind: str) -> list[tuple[int, datetime]]:
    """Return (id, start) of the unfinished runs of ``kind`` whose process still runs them."""
    query = (
        select(CollectionRun.id, CollectionRun.started_at)
        .where(CollectionRun.finished_at.is_(None), CollectionRun.kind == kind)
        .order_by(CollectionRun.id)
    )
    with store.connect() as connection:
        open_runs = connection.execute(query).all()
    return [
        (int(run_id), started_at)
        for run_id, started_at in open_runs
        if _alive(store.engine, int(run_id), started_at)
    ]


def _flying(run_id: int | BindParameter[Any]) -> Any:
    return (Attempt.run_id == run_id) & Attempt.message.like(f"{IN_FLIGHT}%")


def _close(store: Store, run_id: int, kind: str, started_at: datetime) -> str:
    with store.transaction() as connection:
        hosts = [
            row.name or row.source
            for row in connection.execute(
                select(Host.name, Attempt.source)
                .select_from(Attempt)
                .outerjoin(Host, Host.id == Attempt.host_id)
                .where(_flying(run_id))
                .order_by(Attempt.id)
            )
        ]
        message = (
            f"interrupted: run {run_id} stopped (killed or crashed) before this was done; "
            "the next run closed it"
        )
        connection.execute(
            update(Attempt).where(_flying(run_id)).values(message=message, finished_at=now())
        )
        last = connection.execute(
            select(func.max(Attempt.finished_at)).where(Attempt.run_id == run_id)
        ).scalar_one()
        connection.execute(
            update(CollectionRun)
            .where(CollectionRun.id == run_id)
            .values(finished_at=last or started_at)
        )
    in_flight = f"{len(hosts)} in flight: {', '.join(hosts)}" if hosts else "nothing in flight"
    return (
        f"run {run_id} ({kind}, started {started_at:%Y-%m-%d %H:%M:%S} UTC) never finished; "
        f"closed it as interrupted ({in_flight})"
    )


def in_flight(
    connection: Connection, run_id: int, host_id: int | None, source: str, started_at: datetime
) -> None:
    """Mark a host (or an input) as being worked on by the run, until its last record."""
    in_flight_many(connection, run_id, [(host_id, source, started_at)])


def in_flight_many(
    connection: Connection, run_id: int, marks: Sequence[tuple[int | None, str, datetime]]
) -> None:
    """Mark hosts (or inputs), each (host id, source, start), in flight in one statement."""
    rows = [_in_flight_row(run_id, *mark) for mark in marks]
    if rows:
        connection.execute(insert(Attempt), rows)


def _in_flight_row(
    run_id: int, host_id: int | None, source: str, started_at: datetime
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "host_id": host_id,
        "source": source[:255],
        "started_at": started_at,
        "finished_at": started_at,
        "status": "failed",
        "error_class": "timeout",
        "message": f"{IN_FLIGHT} in run {run_id}: not finished yet, or interrupted if that "
        "run is over",
    }


def landed(connection: Connection, run_id: int, host_id: int | None, source: str) -> None:
    """Drop the in-flight mark of a host (or, without a host, an input) now recorded.

    A host's mark is found by run and host, which one index serves (migration 0012): by the
    run alone, each host read every attempt of the run so far.
    """
    if host_id is None:
        which = Attempt.host_id.is_(None) & (Attempt.source == source[:255])
        connection.execute(delete(Attempt).where(_flying(run_id) & which))
        return
    connection.execute(_DROP_MARK, {"run": run_id, "host": host_id})
    with _GUARD:
        nightless = (_key(connection.engine), run_id) in _NIGHTLESS
    if not nightless:  # the host's turn tonight, if the run claimed one, is over
        mark_done(connection, run_id, host_id)


# Built once, so each host's record reuses the compiled statement (see store.snapshots).
_DROP_MARK = delete(Attempt).where(
    _flying(bindparam("run")) & (Attempt.host_id == bindparam("host"))
)


def _key(engine: Engine) -> str:
    # By lock file where there is one: two spellings of one SQLite path are one database, and
    # testing a byte this process holds would release it (POSIX locks are per process).
    return _lock_file(engine) or engine.url.render_as_string(hide_password=True)


def _lock_file(engine: Engine) -> str | None:
    """Return the liveness lock file of a SQLite store, None for other databases."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    return str(Path(database).expanduser().absolute()) + "-runs"


def _hold(engine: Engine, run_id: int) -> None:
    key = (_key(engine), run_id)
    if engine.dialect.name == "postgresql":
        connection = engine.connect()
        connection.execute(
            text("SELECT pg_advisory_lock(:space, :run)"), {"space": _PG_LOCK_SPACE, "run": run_id}
        )
        connection.commit()
        with _GUARD:
            _HELD[key] = connection
        return
    path = _lock_file(engine)
    descriptor = _descriptor(path) if path else None
    if descriptor is not None:
        import fcntl

        fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, run_id)
    with _GUARD:
        _HELD[key] = descriptor


def _release(engine: Engine, run_id: int) -> None:
    with _GUARD:
        holder = _HELD.pop((_key(engine), run_id), None)
    if holder is None:
        return
    if engine.dialect.name == "postgresql":
        holder.execute(
            text("SELECT pg_advisory_unlock(:space, :run)"),
            {"space": _PG_LOCK_SPACE, "run": run_id},
        )
        holder.close()
        return
    import fcntl

    fcntl.lockf(holder, fcntl.LOCK_UN, 1, run_id)


def _alive(engine: Engine, run_id: int, started_at: Any) -> bool:
    """Tell whether the run's process still holds its liveness lock."""
    with _GUARD:
        if (_key(engine), run_id) in _HELD:
            return True  # this very process runs it
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            free = connection.execute(
                text("SELECT pg_try_advisory_lock(:space, :run)"),
                {"space": _PG_LOCK_SPACE, "run": run_id},
            ).scalar_one()
            if free:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:space, :run)"),
                    {"space": _PG_LOCK_SPACE, "run": run_id},
                )
            connection.commit()
        return not free
    path = _lock_file(engine)
    descriptor = _descriptor(path) if path else None
    if descriptor is None:
        started = started_at if isinstance(started_at, datetime) else now()
        started = started if started.tzinfo else started.replace(tzinfo=UTC)
        return now() - started < _UNLOCKED_AGE
    import fcntl

    try:
        fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, run_id)
    except OSError:
        return True  # another process holds it
    fcntl.lockf(descriptor, fcntl.LOCK_UN, 1, run_id)
    return False


@atexit.register
def _let_go() -> None:
    """Close the connections of runs never finished (a library caller's), before teardown."""
    with _GUARD:
        holders = list(_HELD.values())
        _HELD.clear()
    for holder in holders:
        if isinstance(holder, Connection):
            holder.close()


def _descriptor(path: str) -> int | None:
    """Return this process's one descriptor of a lock file (POSIX locks die with any close)."""
    try:
        import fcntl  # noqa: F401  (POSIX only)
    except ImportError:
        return None
    with _GUARD:
        if path not in _FILES:
            _FILES[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        return _FILES[path]
