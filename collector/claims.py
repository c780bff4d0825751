"""A collector's share of a night: take hosts as hands free up, keep their leases, wait.

``collect`` hands its run to ``NightTurns`` when the plan names a night: instead of every
planned host, the run works on the hosts it claims (``collector.store.leases``), a few at a
time, and stays until every planned host is done tonight, so it takes over the hosts of a
collector that died: as soon as it finds that collector's process gone, or once their lease
runs out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import TypeVar

from sqlalchemy import Connection

from collector.clock import now
from collector.plan import CollectPlan
from collector.runs import close_interrupted_runs, in_flight_many, live_runs
from collector.store import leases
from collector.store.database import Store

log = logging.getLogger(__name__)

T = TypeVar("T")
# How often a collector looks for collectors that died holding hosts of the night.
_LOOK_SECONDS = 2.0


class NightTurns:
    """One run's claims on a night's hosts, renewed by a thread of their own while it works."""

    def __init__(
        self,
        store: Store,
        plan: CollectPlan,
        run_id: int,
        run_started: datetime,
        sources: Mapping[int, str],
    ) -> None:
        """Share ``plan``'s night; ``sources`` names where each planned host id is reached."""
        assert plan.night is not None
        self._store, self._plan, self._run_id = store, plan, run_id
        self._night = plan.night
        self._started = run_started
        self._sources = dict(sources)
        self._ids = sorted(sources)
        # The planned hosts this run has not taken yet: the only ones it may still claim. A
        # claim sends its candidates to the database, so taken ones are dropped from it, and a
        # run never takes a host twice (not even one whose lease ran out while in its hands).
        self._open = list(self._ids)
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name="leases", daemon=True)
        # Claim in small batches: each claim is a transaction; waiting for one free hand each
        # time would make as many as there are hosts.
        self._batch = max(1, plan.concurrency // 8)

    def __enter__(self) -> NightTurns:
        store, plan = self._store, self._plan
        leases.label_run(store, self._run_id, plan.collector, self._night, plan.site)
        if store.dialect == "sqlite":
            for run_id, started in live_runs(store, plan.run_kind):
                if run_id != self._run_id:
                    log.warning(
                        "another collector is running on this SQLite store (run %d, started "
                        "%s UTC): SQLite serves one collector at a time; this one takes only the "
                        "hosts that one has not, and both queue for one writer. Point several "
                        "collectors at PostgreSQL.",
                        run_id,
                        f"{started:%Y-%m-%d %H:%M:%S}",
                    )
        leases.offer(store, self._night, self._ids)
        self._renewer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The run's end frees what it did not finish (a finished run's claims can be taken).
        self._stop.set()
        self._renewer.join()

    def work(self, start: Callable[[int], None], finished: Callable[[], T]) -> Iterator[T]:
        """Claim hosts and ``start`` them, yield each ``finished`` one, until the night is done."""
        in_hand = 0
        limit = self._plan.concurrency
        # Often enough that a collector done with its share does not keep the night waiting.
        poll = min(self._plan.lease_seconds / 4, 0.5)
        waiting = False
        while True:
            free = limit - in_hand
            if free >= self._batch or in_hand == 0:
                for host_id in self._claim(free):
                    start(host_id)
                    in_hand += 1
            if in_hand:
                yield finished()
                in_hand -= 1
                continue
            left = leases.undone(self._store, self._night, self._ids)
            if not left:
                return
            if not waiting:
                log.info(
                    "night %s: %d hosts held by other collectors; waiting for them to finish or "
                    "for their lease to run out",
                    self._night,
                    left,
                )
                waiting = True
            if self._stop.wait(poll):
                return

    def _claim(self, limit: int) -> list[int]:
        plan = self._plan
        taken = leases.claim(
            self._store,
            self._night,
            self._run_id,
            self._open,
            limit,
            plan.lease_seconds,
            self._started,
            again=plan.again,
            mark=self._mark,
        )
        if taken:
            gone = set(taken)
            self._open = [host_id for host_id in self._open if host_id not in gone]
        return taken

    def _mark(self, connection: Connection, taken: list[int]) -> None:
        # In flight from the claim on, not from when a thread gets to the host: a collector
        # killed in between leaves its claim on the record, and the lease runs out.
        at = now()
        marks = [(host_id, self._sources[host_id], at) for host_id in taken]
        in_flight_many(connection, self._run_id, marks)

    def _renew(self) -> None:
        """Renew this run's leases every third of a lease; look for dead collectors between.

        A collector killed half-way leaves its hosts leased. Its process held its run's
        liveness lock, which went with it: closing its run (``close_interrupted_runs``) lets
        the survivors take those hosts at once, not when the lease runs out.
        """
        every = self._plan.lease_seconds / 3
        look = min(every, _LOOK_SECONDS)
        due = time.monotonic() + every
        while not self._stop.wait(look):
            try:
                if time.monotonic() >= due:
                    leases.renew(self._store, self._night, self._run_id, self._plan.lease_seconds)
                    due = time.monotonic() + every
                for notice in close_interrupted_runs(self._store):
                    log.warning("night %s: %s; its hosts are taken over now", self._night, notice)
            except Exception:  # the database is away: try again at the next turn
                log.exception(
                    "night %s: could not renew the leases of run %d", self._night, self._run_id
                )
