"""Nightly collection: every planned host, in parallel, one snapshot each, every try recorded.

One host's failure never touches another's data: each host runs in its own thread with its own
deadline, and each stored snapshot is one transaction with its attempt. One writer thread
records everything, so collecting threads never wait on the database. How a host is reached is
the transport's (``collector.transport``); WinRM unless the caller gives another.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from collector.claims import NightTurns
from collector.clock import now
from collector.config import HostEntry, PortfleetConfig
from collector.document import DocumentError, load_document
from collector.framing import FrameError, unframe_document
from collector.parsers.clixml import stderr_text
from collector.plan import CollectPlan
from collector.probe import probe_script
from collector.runs import finish_run, in_flight_many, start_run
from collector.store.database import Store
from collector.store.rows import PreparedSnapshot, prepare_snapshot
from collector.store.writer import (
    is_database_fault,
    record_failure,
    refused_message,
    register_hosts,
    store_document,
)
from collector.transport import ProbeOutput, Transport, TransportError
from collector.winrm import WinrmTransport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostOutcome:
    """How one host's collection ended."""

    host: str
    status: str  # ok, partial or failed
    error_class: str | None
    message: str
    tries: int
    seconds: float
    snapshot_id: int | None


def collect(
    store: Store,
    config: PortfleetConfig,
    plan: CollectPlan,
    on_done: Callable[[HostOutcome], None] | None = None,
    transport: Transport | None = None,
) -> list[HostOutcome]:
    """Collect every planned host, ``plan.concurrency`` at a time; return one outcome per host.

    ``transport`` reaches the hosts: the WinRM one built from ``config`` unless given. A plan
    with a night collects only the hosts this run claims that night (``collector.claims``).
    """
    transport = transport or WinrmTransport(config)
    limit = config.probe.max_document_mb * 1024 * 1024
    started = now()
    run_id = start_run(store, plan.run_kind, config.wanted(), claims_nights=plan.night is not None)
    script = probe_script()
    outcomes: list[HostOutcome] = []
    try:
        host_ids = _register(store, plan)
        entries = {host_ids[entry.name]: entry for entry in plan.hosts}
        with (
            _Recorder(store, run_id, transport.kind, limit=2 * plan.concurrency) as recorder,
            ThreadPoolExecutor(max_workers=plan.concurrency, thread_name_prefix="collect") as pool,
        ):

            def start(host_id: int) -> None:
                work = (transport, entries[host_id], plan, script, host_id, limit)
                pool.submit(recorder.guard, collect_host, recorder, *work)

            try:
                for outcome in _work(store, plan, run_id, started, entries, start, recorder):
                    outcomes.append(outcome)
                    if on_done is not None:
                        on_done(outcome)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # hosts not yet started
                raise
    finally:
        finish_run(store, run_id)
    order = {entry.name: position for position, entry in enumerate(plan.hosts)}
    return sorted(outcomes, key=lambda o: order[o.host])


def _register(store: Store, plan: CollectPlan) -> dict[str, int]:
    """Register the planned hosts; a second pass when another collector added some at once."""
    hosts = [(e.name, e.address, e.groups) for e in plan.hosts]
    try:
        return register_hosts(store, hosts)
    except IntegrityError:  # its transaction inserted a name first; now they are there
        return register_hosts(store, hosts)


def _work(
    store: Store,
    plan: CollectPlan,
    run_id: int,
    started: datetime,
    entries: dict[int, HostEntry],
    start: Callable[[int], None],
    recorder: _Recorder,
) -> Iterator[HostOutcome]:
    """Start the run's hosts, yield each outcome: every planned host, or the night's share."""
    if plan.night is None:
        for host_id in entries:
            start(host_id)
        for _ in entries:
            yield recorder.next_outcome()
        return
    sources = {host_id: entry.address or entry.name for host_id, entry in entries.items()}
    with NightTurns(store, plan, run_id, started, sources) as turns:
        yield from turns.work(start, recorder.next_outcome)


class _Recorder:
    """The run's one writer thread: collecting threads hand it what they got and go on.

    SQLite takes one writer at a time anyway; queued here, no collecting thread sits waiting
    for the database when it could be talking to its next host. Each stored snapshot is still
    one transaction with its attempt. At most ``limit`` documents wait, so memory stays flat.
    """

    def __init__(self, store: Store, run_id: int, kind: str, limit: int) -> None:
        self._db, self._run_id, self._kind = store, run_id, kind
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._room = threading.BoundedSemaphore(limit)
        self._finished: queue.SimpleQueue[HostOutcome | BaseException] = queue.SimpleQueue()
        self._marks: list[tuple[int | None, str, datetime]] = []  # in flight, not yet written
        self._marking = threading.Lock()

    def __enter__(self) -> _Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.shutdown(wait=True)

    def next_outcome(self) -> HostOutcome:
        """Wait for the next host to be done and recorded; raise what went wrong unexpectedly."""
        item = self._finished.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def guard(self, work: Callable[..., None], *args: Any) -> None:
        """Run a collecting thread's work; an unexpected error ends the run, not just it."""
        try:
            work(*args)
        except BaseException as exc:
            self._finished.put(exc)

    def begin(self, host_id: int, source: str, started_at: datetime) -> None:
        """Mark a host in flight until its last try is recorded (a killed run leaves the mark).

        Marks wait for the writer together and are written in one transaction, not one each:
        the first mark of a batch queues the write, the ones after it join it. The writer keeps
        order, so a host's mark is always written before its record.
        """
        with self._marking:
            self._marks.append((host_id, source, started_at))
            first = len(self._marks) == 1
        if first:
            self._writer.submit(self.guard, self._begin)

    def _begin(self) -> None:
        with self._marking:
            marks, self._marks = self._marks, []
        with self._db.transaction() as connection:
            in_flight_many(connection, self._run_id, marks)

    def failure(
        self,
        entry: HostEntry,
        host_id: int,
        source: str,
        started_at: datetime,
        exc: TransportError,
        last: bool,
    ) -> None:
        """Record a failed try, after everything handed over before it; the last lands the host."""
        landing = (host_id, source) if last else None
        args = (exc.error_class, str(exc), entry.name, host_id, landing)
        self._writer.submit(
            self.guard, record_failure, self._db, self._run_id, source, started_at, *args
        )

    def finish(self, outcome: HostOutcome) -> None:
        """Report a host as done once its tries are recorded (the writer keeps order)."""
        self._writer.submit(self._finished.put, outcome)

    def store(self, entry: HostEntry, host_id: int, took: _Took, output: _Document) -> None:
        """Store a host's document and report the host as done; wait only if many are queued."""
        self._room.acquire()
        self._writer.submit(self.guard, self._store, entry, host_id, took, output)

    def _store(self, entry: HostEntry, host_id: int, took: _Took, output: _Document) -> None:
        try:
            stored = store_document(
                self._db,
                self._run_id,
                output.body,
                output.document,
                output.source,
                self._kind,
                took.started_at,
                host_name=entry.name,
                host_id=host_id,
                landing=(host_id, output.source),
                prepared=output.prepared,
            )
        except Exception as exc:  # whatever a host's document raises is that host's failure
            if is_database_fault(exc):
                raise
            message = refused_message(output.source, exc)
            record_failure(
                self._db,
                self._run_id,
                output.source,
                took.started_at,
                "bad_document",
                message,
                entry.name,
                host_id,
                (host_id, output.source),
            )
            self._finished.put(took.outcome(entry, "failed", "bad_document", message, None))
            return
        finally:
            self._room.release()
        if stored.outcome == "failed":  # its lease was lost: another run has the host tonight
            self._finished.put(took.outcome(entry, "failed", "timeout", stored.message, None))
            return
        document = output.document
        status = "partial" if stored.problems or document.get("errors") else "ok"
        message = "; ".join(stored.problems) or _section_errors(document) or stored.message
        log.info("%s: %s, snapshot %s (try %d)", entry.name, status, stored.snapshot_id, took.tries)
        self._finished.put(took.outcome(entry, status, None, message, stored.snapshot_id))


@dataclass(frozen=True, slots=True)
class _Took:
    """How long a host has taken so far, and in how many tries."""

    began: float
    tries: int
    started_at: datetime

    def outcome(
        self,
        entry: HostEntry,
        status: str,
        error_class: str | None,
        message: str,
        snapshot_id: int | None,
    ) -> HostOutcome:
        seconds = time.monotonic() - self.began
        return HostOutcome(
            entry.name, status, error_class, message, self.tries, seconds, snapshot_id
        )


@dataclass(frozen=True, slots=True)
class _Document:
    """A validated probe document as it came from a host, parsed into its rows."""

    body: bytes
    document: dict[str, Any]
    source: str
    prepared: PreparedSnapshot


def collect_host(
    recorder: _Recorder,
    transport: Transport,
    entry: HostEntry,
    plan: CollectPlan,
    script: str,
    host_id: int,
    limit: int,
) -> None:
    """Try one host (registered as ``host_id``) up to 1 + retries times; record every try.

    Only transient faults are tried again. The recorder stores the result and reports the host;
    a document over ``limit`` bytes is refused.
    """
    began = time.monotonic()
    tries = 0
    if plan.night is None:  # with a night, the claim marked it in flight already
        recorder.begin(host_id, entry.address or entry.name, now())
    while True:
        tries += 1
        started_at = now()
        source = entry.address or entry.name
        try:
            source = transport.where(entry)
            parse = functools.partial(_parse_output, entry, limit, source, transport.kind)
            run = functools.partial(transport.run, entry, script, plan.probe_arguments)
            got = _run_with_deadline(entry, run, plan.deadline_seconds, parse)
        except TransportError as exc:
            again = exc.transient and tries <= plan.retries
            recorder.failure(entry, host_id, source, started_at, exc, last=not again)
            log.info("%s: try %d failed (%s): %s", entry.name, tries, exc.error_class, exc)
            if again:
                time.sleep(plan.retry_delay_seconds)
                continue
            took = _Took(began, tries, started_at)
            recorder.finish(took.outcome(entry, "failed", exc.error_class, str(exc), None))
            return
        recorder.store(entry, host_id, _Took(began, tries, started_at), got)
        return


def _parse_output(
    entry: HostEntry, limit: int, source: str, kind: str, output: ProbeOutput
) -> _Document:
    """Unframe, validate and parse a host's output; whatever parsing raises is a bad document."""
    body, document = _document_from(entry, output, limit)
    try:
        prepared = prepare_snapshot(body, document, kind)
    except Exception as exc:
        raise TransportError("bad_document", refused_message(entry.name, exc)) from None
    return _Document(body, document, source, prepared)


def _run_with_deadline(
    entry: HostEntry,
    run: Callable[[float], ProbeOutput],
    seconds: float,
    parse: Callable[[ProbeOutput], _Document],
) -> _Document:
    """Run the probe and parse what it printed in a thread, given up at the deadline.

    Parsing counts against the host's own deadline, in its own thread: a document that is slow
    to parse holds back that host only, never the writer that stores everyone.
    """
    deadline = time.monotonic() + seconds
    box: list[_Document | BaseException] = []

    def work() -> None:
        try:
            box.append(parse(run(deadline)))
        except BaseException as exc:  # handed to the waiting thread
            box.append(exc)

    # A daemon thread: one that is blocked on a silent host must not keep the process alive.
    worker = threading.Thread(target=work, name=f"probe-{entry.name}", daemon=True)
    worker.start()
    worker.join(timeout=seconds + 0.2)
    if not box:
        raise TransportError(
            "timeout",
            f"{entry.name}: no answer (probe and parsing) within the {seconds:g} s deadline; cut",
        )
    result = box[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _document_from(
    entry: HostEntry, output: ProbeOutput, limit: int
) -> tuple[bytes, dict[str, Any]]:
    try:
        body = unframe_document(output.stdout, limit)
    except FrameError as exc:
        detail = _stderr_text(output.stderr)
        raise TransportError(
            "probe_error", f"{entry.name}: the probe exited with {output.exit_code}: {exc}{detail}"
        ) from None
    try:
        document = load_document(body, entry.name)
    except DocumentError as exc:
        raise TransportError("bad_document", str(exc)) from None
    reported = str(document["host"]["name"]).split(".")[0].upper()
    expected = {entry.name.split(".")[0].upper()}
    if entry.address:
        expected.add(entry.address.split(".")[0].upper())
    if reported not in expected:
        raise TransportError(
            "bad_document",
            f"{entry.name}: the machine at {entry.address or entry.name} says it is {reported!r}; "
            "check the address (a reused IP would file its data under the wrong host)",
        )
    return body, document


def _stderr_text(stderr: bytes) -> str:
    text = stderr_text(stderr)
    return f"; stderr: {text[:300]}" if text else ""


def _section_errors(document: dict[str, Any]) -> str:
    errors: Iterable[dict[str, str]] = document.get("errors", [])
    return "; ".join(f"{e['section']}: {e['code']}" for e in errors)
