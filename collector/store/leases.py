"""Night claims: collectors that share a store collect each host once a night.

A *night* is a key, the UTC date it began on (``night_key``): by default from 12:00 UTC to
12:00 UTC the next day, so a run at 23:00 and one at 03:00 share it. Each planned host has one
row per night in ``night_claims``. A collector run takes a few rows at a time (``claim``), as
many as it has free hands, by a lease it renews while it works (``renew``); the host's last
recorded try marks the row done, in the same transaction (``collector.runs.landed``).

A row can be taken when it is not done and its lease ran out (its collector died or hangs), or
its run is over (closed: stopped, or found dead by a later run). A host that failed every try
tonight may be taken again by a run started after it failed; with ``again``, by a run started
after it was done, whatever its result. Collectors running at the same time never take what
another one finished.

On PostgreSQL the rows are picked with ``SELECT … FOR UPDATE SKIP LOCKED``: two collectors
claiming at once pass over each other's rows instead of waiting for them. SQLite has one writer
at a time (every transaction begins immediate), so the same statements are serial there. Lease
times come from the database's clock on PostgreSQL, so collector clocks need not agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    and_,
    any_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from collector.store.database import Store
from collector.store.models import Attempt, CollectionRun, Host, NightClaim


def _planned(dialect: str, host_ids: Sequence[int]) -> ColumnElement[bool]:
    """Return "the row's host is planned", with every id in one parameter, not one each."""
    ids = sorted(host_ids)
    if dialect == "postgresql":
        return NightClaim.host_id == any_(bindparam("planned", ids, type_=ARRAY(Integer)))
    listed = func.json_each(bindparam("planned", json.dumps(ids)))
    return NightClaim.host_id.in_(select(literal_column("value")).select_from(listed))


def night_key(at: datetime, starts_utc_hour: int) -> str:
    """Return the night ``at`` belongs to: the UTC date it began on (``YYYY-MM-DD``)."""
    start = at.astimezone(UTC) - timedelta(hours=starts_utc_hour)
    return start.date().isoformat()


def database_now(connection: Connection) -> datetime:
    """Return the time by the database's clock (PostgreSQL), else this machine's, in UTC."""
    if connection.dialect.name == "postgresql":
        value = connection.execute(text("SELECT timezone('UTC', clock_timestamp())")).scalar_one()
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
    return datetime.now(UTC)


def label_run(store: Store, run_id: int, collector: str, night: str, site: str | None) -> None:
    """Record who runs ``run_id``, for which night and site."""
    with store.transaction() as connection:
        connection.execute(
            update(CollectionRun)
            .where(CollectionRun.id == run_id)
            .values(collector=collector, night=night, site=site)
        )


def offer(store: Store, night: str, host_ids: Sequence[int]) -> None:
    """Give every planned host a row for the night (kept as it is when one exists)."""
    rows = [{"night": night, "host_id": host_id} for host_id in sorted(host_ids)]
    if not rows:
        return
    with store.transaction() as connection:
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(NightClaim).values(rows).on_conflict_do_nothing()
        connection.execute(statement)


def claim(
    store: Store,
    night: str,
    run_id: int,
    host_ids: Sequence[int],
    limit: int,
    lease_seconds: float,
    run_started: datetime,
    again: bool = False,
    mark: Callable[[Connection, list[int]], None] | None = None,
) -> list[int]:
    """Take up to ``limit`` of the planned hosts for ``run_id``; return their ids.

    ``mark`` writes, in the claim's own transaction, what the run records of the hosts it
    took (their in-flight attempts): a run killed right after claiming leaves them marked,
    and its lease runs out like any other.
    """
    if limit <= 0 or not host_ids:
        return []
    with store.transaction() as connection:
        at = database_now(connection)
        free = or_(
            NightClaim.lease_until.is_(None),
            NightClaim.lease_until < at,
            NightClaim.run_id.in_(
                select(CollectionRun.id).where(CollectionRun.finished_at.is_not(None))
            ),
        )
        succeeded = exists().where(
            (Attempt.run_id == NightClaim.run_id)
            & (Attempt.host_id == NightClaim.host_id)
            & Attempt.status.in_(("ok", "partial"))
        )
        done_before = NightClaim.done_at < run_started
        redo = done_before if again else and_(done_before, ~succeeded)
        takeable = or_(and_(NightClaim.done_at.is_(None), free), redo)
        picked = (
            select(NightClaim.host_id)
            .where(NightClaim.night == night, _planned(store.dialect, host_ids), takeable)
            .order_by(NightClaim.host_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        taken = [int(host_id) for host_id in connection.execute(picked).scalars()]
        if taken:
            connection.execute(
                update(NightClaim)
                .where(NightClaim.night == night, NightClaim.host_id.in_(taken))
                .values(
                    run_id=run_id,
                    claimed_at=at,
                    lease_until=at + timedelta(seconds=lease_seconds),
                    done_at=None,
                )
            )
            if mark is not None:
                mark(connection, taken)
    return taken


def renew(store: Store, night: str, run_id: int, lease_seconds: float) -> int:
    """Extend the leases ``run_id`` holds on hosts not done yet; return how many it holds."""
    with store.transaction() as connection:
        until = database_now(connection) + timedelta(seconds=lease_seconds)
        result = connection.execute(
            update(NightClaim)
            .where(
                NightClaim.night == night,
                NightClaim.run_id == run_id,
                NightClaim.done_at.is_(None),
            )
            .values(lease_until=until)
        )
    return int(result.rowcount)


def mark_done(connection: Connection, run_id: int, host_id: int) -> None:
    """Mark the host done for the night ``run_id`` claimed it in, in the caller's transaction.

    Found by the claim's key (the run's night, which ``label_run`` recorded before the run
    claimed anything, and the host), one row: by the run, SQLite read every claim of the run
    for every host, a cost that grew with the night's hosts.
    """
    night = select(CollectionRun.night).where(CollectionRun.id == run_id).scalar_subquery()
    connection.execute(
        update(NightClaim)
        .where(
            NightClaim.night == night,
            NightClaim.host_id == host_id,
            NightClaim.run_id == run_id,
            NightClaim.done_at.is_(None),
        )
        .values(done_at=datetime.now(UTC))
    )


def lost_to(connection: Connection, run_id: int, host_id: int) -> int | None:
    """Return the run that now holds the host ``run_id`` claimed tonight, None if it still does.

    None too when the run claims no night (every planned host is its own). The row is locked
    until the caller's transaction ends (PostgreSQL), so no other run takes the host between
    this check and the host's record, which marks it done.
    """
    night = select(CollectionRun.night).where(CollectionRun.id == run_id).scalar_subquery()
    holder = connection.execute(
        select(NightClaim.run_id)
        .where(NightClaim.night == night, NightClaim.host_id == host_id)
        .with_for_update()
    ).first()
    if holder is None or holder.run_id == run_id:
        return None
    return int(holder.run_id) if holder.run_id is not None else None


def undone(store: Store, night: str, host_ids: Sequence[int]) -> int:
    """Count the planned hosts not done tonight (held by a collector, or not yet taken)."""
    query = select(func.count()).where(
        NightClaim.night == night,
        _planned(store.dialect, host_ids),
        NightClaim.done_at.is_(None),
    )
    with store.connect() as connection:
        return int(connection.execute(query).scalar_one())


@dataclass(frozen=True, slots=True)
class NightShare:
    """How many of the planned hosts one collector run finished tonight."""

    run_id: int
    collector: str
    site: str | None
    hosts: int


def night_shares(store: Store, night: str, host_names: Sequence[str]) -> list[NightShare]:
    """Return who collected the named hosts tonight: one line per run that finished any."""
    query = (
        select(
            CollectionRun.id,
            CollectionRun.collector,
            CollectionRun.site,
            func.count(NightClaim.host_id),
        )
        .select_from(NightClaim)
        .join(CollectionRun, CollectionRun.id == NightClaim.run_id)
        .join(Host, Host.id == NightClaim.host_id)
        .where(
            NightClaim.night == night,
            NightClaim.done_at.is_not(None),
            Host.name.in_(host_names),
        )
        .group_by(CollectionRun.id, CollectionRun.collector, CollectionRun.site)
        .order_by(CollectionRun.id)
    )
    with store.connect() as connection:
        return [
            NightShare(int(run_id), collector or f"run {run_id}", site, int(count))
            for run_id, collector, site, count in connection.execute(query)
        ]
