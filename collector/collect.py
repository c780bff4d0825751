"""Nightly collection: every selected host, in parallel, one snapshot each, every try recorded.

One host's failure never touches another's data: each host runs in its own thread with its own
deadline, and each stored snapshot is one transaction with its attempt. One writer thread
records everything, so collecting threads never wait on the database.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.util
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from winrm import transport as winrm_transport

from collector.config import Credential, HostEntry, PortfleetConfig
from collector.document import DocumentError, load_document
from collector.framing import FrameError, unframe_document
from collector.importer import (
    finish_run,
    is_database_fault,
    now,
    record_failure,
    refused_message,
    register_hosts,
    start_run,
    store_document,
)
from collector.parsers.clixml import stderr_text
from collector.probe import probe_arguments, probe_script
from collector.runs import in_flight
from collector.store.database import Store
from collector.store.snapshots import PreparedSnapshot, prepare_snapshot
from collector.transport import (
    CONSTRAINED_MARKER,
    Endpoint,
    ProbeOutput,
    TransportError,
    refuse_plain_basic,
    run_probe,
)

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


@dataclass(frozen=True, slots=True)
class CollectPlan:
    """What ``collect`` does: which hosts, how many at once, how long each may take."""

    hosts: tuple[HostEntry, ...]
    concurrency: int
    deadline_seconds: float
    retries: int
    retry_delay_seconds: float
    probe_arguments: dict[str, Any]
    run_kind: str = "collect"


class SelectionError(ValueError):
    """Host selectors that match nothing, a config without hosts, or a missing extra."""


# Transports pywinrm supports only with an extra installed; it records which imported.
_EXTRAS = {
    "kerberos": ("HAVE_KERBEROS", "pykerberos builds against MIT Kerberos: libkrb5-dev"),
    "credssp": ("HAVE_CREDSSP", "requests-credssp"),
}
_KEYRING_HINT = "configure a backend (PYTHON_KEYRING_BACKEND) or use password_env"


def select_hosts(config: PortfleetConfig, selectors: Sequence[str]) -> tuple[HostEntry, ...]:
    """Pick hosts by name, glob pattern (``dev-ws-*``) or group (``@backend``); none = all."""
    if not config.hosts:
        raise SelectionError(
            "the config lists no hosts; add them under 'hosts:' (see config.example.yaml)"
        )
    if not selectors:
        return config.hosts
    chosen: dict[str, HostEntry] = {}
    for selector in selectors:
        if selector.startswith("@"):
            matches = [h for h in config.hosts if selector[1:] in h.groups]
        else:
            matches = [
                h for h in config.hosts if fnmatch.fnmatchcase(h.name.lower(), selector.lower())
            ]
        if not matches:
            raise SelectionError(
                f"no configured host matches {selector!r} (names, patterns like dev-*, or @group)"
            )
        chosen.update((h.name, h) for h in matches)
    return tuple(h for h in config.hosts if h.name in chosen)


def check_extras(config: PortfleetConfig, hosts: Sequence[HostEntry]) -> None:
    """Refuse, before reaching any host, transports or keyrings whose packages are missing."""
    needs: dict[tuple[str, str], list[str]] = {}  # (what needs it, the extra) -> hosts
    for entry in hosts:
        settings = entry.settings(config.defaults)
        transport = settings.transport
        flag, _ = _EXTRAS.get(transport, ("", ""))
        if flag and not getattr(winrm_transport, flag, False):
            needs.setdefault((f"transport {transport}", transport), []).append(entry.name)
        if settings.credential.keyring_service and importlib.util.find_spec("keyring") is None:
            needs.setdefault(("keyring_service", "keyring"), []).append(entry.name)
    if needs:
        raise SelectionError(
            "; ".join(_needs(what, extra, names) for (what, extra), names in sorted(needs.items()))
        )


def check_credentials(
    config: PortfleetConfig, hosts: Sequence[HostEntry], environ: Mapping[str, str] | None = None
) -> None:
    """Refuse, before reaching any host, credential variables that are not set.

    An unset variable is the same mistake for every host that names it: one configuration
    error, not an ``auth`` failure recorded per host.
    """
    environ = os.environ if environ is None else environ
    unset: dict[tuple[str, str], list[str]] = {}  # (variable, what it holds) -> hosts
    for entry in hosts:
        credential = entry.settings(config.defaults).credential
        wanted = []
        if credential.username is None and credential.username_env:
            wanted.append((credential.username_env, "user name"))
        if credential.password_env:
            wanted.append((credential.password_env, "password"))
        for variable, what in wanted:
            if not environ.get(variable) and (what == "user name" or variable not in environ):
                unset.setdefault((variable, what), []).append(entry.name)
    if unset:
        raise SelectionError(
            "; ".join(
                f"environment variable {variable} ({what}) is not set, needed by {_shown(names)}"
                for (variable, what), names in sorted(unset.items())
            )
            + ". Set it in the environment collect runs in (see README, Collecting every night)"
        )


def _shown(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _needs(what: str, extra: str, names: list[str]) -> str:
    shown = _shown(names)
    note = f" ({_EXTRAS[extra][1]})" if extra in _EXTRAS else ""
    return f"{what} for {shown} needs pip install 'portfleet[{extra}]'{note}"


def plan_collection(
    config: PortfleetConfig,
    selectors: Sequence[str],
    concurrency: int | None = None,
    deadline_seconds: float | None = None,
    retries: int | None = None,
    run_kind: str = "collect",
) -> CollectPlan:
    """Combine the config with command-line overrides (None keeps the config's value)."""
    arguments = probe_arguments(
        bind_sweep=config.probe.bind_sweep,
        sweep_udp=config.probe.sweep_udp,
        update_history_limit=config.probe.update_history_limit,
    )
    hosts = select_hosts(config, selectors)
    check_extras(config, hosts)
    check_credentials(config, hosts)
    return CollectPlan(
        hosts=hosts,
        concurrency=concurrency if concurrency is not None else config.collect.concurrency,
        deadline_seconds=deadline_seconds
        if deadline_seconds is not None
        else config.probe.deadline_seconds,
        retries=retries if retries is not None else config.collect.retries,
        retry_delay_seconds=config.collect.retry_delay_seconds,
        probe_arguments=arguments,
        run_kind=run_kind,
    )


def build_endpoint(
    entry: HostEntry, config: PortfleetConfig, environ: Mapping[str, str] | None = None
) -> Endpoint:
    """Resolve a host's URL, transport and credentials (from the environment or a keyring)."""
    settings = entry.settings(config.defaults)
    url = host_url(entry, settings.https, settings.port)
    # Before any credential is read, on the URL that will be sent.
    refuse_plain_basic(entry.name, url, settings.transport, settings.allow_unencrypted_basic)
    if settings.transport == "basic" and urlsplit(url).scheme.lower() != "https":
        log.warning(
            "%s: basic authentication over unencrypted HTTP (allow_unencrypted_basic)", entry.name
        )
    if not settings.verify_tls:
        log.warning(
            "%s: TLS certificate validation is off for this host (verify_tls: false)", entry.name
        )
    credential = settings.credential
    username, password = _credentials(
        entry.name, credential, os.environ if environ is None else environ
    )
    return Endpoint(
        host=entry.name,
        url=url,
        transport=settings.transport,
        username=username,
        password=password,
        verify_tls=settings.verify_tls,
        ca_file=str(settings.ca_file) if settings.ca_file else None,
        cert_pem=str(credential.cert_pem) if credential.cert_pem else None,
        cert_key_pem=str(credential.cert_key_pem) if credential.cert_key_pem else None,
        operation_timeout=config.probe.operation_timeout_seconds,
        allow_unencrypted_basic=settings.allow_unencrypted_basic,
    )


def collect(
    store: Store,
    config: PortfleetConfig,
    plan: CollectPlan,
    on_done: Callable[[HostOutcome], None] | None = None,
) -> list[HostOutcome]:
    """Collect every planned host, ``plan.concurrency`` at a time; return one outcome per host."""
    run_id = start_run(store, plan.run_kind)
    script = probe_script()
    outcomes: list[HostOutcome] = []
    try:
        host_ids = register_hosts(store, ((e.name, e.address, e.groups) for e in plan.hosts))
        with (
            _Recorder(store, run_id, limit=2 * plan.concurrency) as recorder,
            ThreadPoolExecutor(max_workers=plan.concurrency, thread_name_prefix="collect") as pool,
        ):
            for entry in plan.hosts:
                host_id = host_ids[entry.name]
                work = (collect_host, recorder, entry, config, plan, script, host_id)
                pool.submit(recorder.guard, *work)
            try:
                for _ in plan.hosts:
                    outcome = recorder.next_outcome()
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


class _Recorder:
    """The run's one writer thread: collecting threads hand it what they got and go on.

    SQLite takes one writer at a time anyway; queued here, no collecting thread sits waiting
    for the database when it could be talking to its next host. Each stored snapshot is still
    one transaction with its attempt. At most ``limit`` documents wait, so memory stays flat.
    """

    def __init__(self, store: Store, run_id: int, limit: int) -> None:
        self._db, self._run_id = store, run_id
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._room = threading.BoundedSemaphore(limit)
        self._finished: queue.SimpleQueue[HostOutcome | BaseException] = queue.SimpleQueue()

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
        """Mark a host in flight until its last try is recorded (a killed run leaves the mark)."""
        self._writer.submit(self.guard, self._begin, host_id, source, started_at)

    def _begin(self, host_id: int, source: str, started_at: datetime) -> None:
        with self._db.transaction() as connection:
            in_flight(connection, self._run_id, host_id, source, started_at)

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
                "winrm",
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
    entry: HostEntry,
    config: PortfleetConfig,
    plan: CollectPlan,
    script: str,
    host_id: int,
) -> None:
    """Try one host (registered as ``host_id``) up to 1 + retries times; record every try.

    Only transient faults are tried again. The recorder stores the result and reports the host.
    """
    began = time.monotonic()
    tries = 0
    recorder.begin(host_id, entry.address or entry.name, now())
    while True:
        tries += 1
        started_at = now()
        source = entry.address or entry.name
        try:
            endpoint = build_endpoint(entry, config)
            source = endpoint.url
            limit = config.probe.max_document_mb * 1024 * 1024
            parse = functools.partial(_parse_output, entry, limit, endpoint.url)
            got = _run_with_deadline(
                endpoint, script, plan.probe_arguments, plan.deadline_seconds, parse
            )
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


def _parse_output(entry: HostEntry, limit: int, url: str, output: ProbeOutput) -> _Document:
    """Unframe, validate and parse a host's output; whatever parsing raises is a bad document."""
    body, document = _document_from(entry, output, limit)
    try:
        prepared = prepare_snapshot(body, document, "winrm")
    except Exception as exc:
        raise TransportError("bad_document", refused_message(entry.name, exc)) from None
    return _Document(body, document, url, prepared)


def _run_with_deadline(
    endpoint: Endpoint,
    script: str,
    arguments: dict[str, Any],
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
            box.append(parse(run_probe(endpoint, script, arguments, deadline)))
        except BaseException as exc:  # handed to the waiting thread
            box.append(exc)

    # A daemon thread: one that is blocked on a silent host must not keep the process alive.
    worker = threading.Thread(target=work, name=f"winrm-{endpoint.host}", daemon=True)
    worker.start()
    worker.join(timeout=seconds + 0.2)
    if not box:
        raise TransportError(
            "timeout",
            f"{endpoint.host}: no answer (probe and parsing) within the {seconds:g} s deadline; "
            "cut",
        )
    result = box[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _document_from(
    entry: HostEntry, output: ProbeOutput, limit: int
) -> tuple[bytes, dict[str, Any]]:
    if CONSTRAINED_MARKER.encode() in output.stdout:
        raise TransportError(
            "probe_error",
            f"{entry.name}: PowerShell runs in ConstrainedLanguage mode (AppLocker/WDAC) for this "
            "account; allow the probe (sign it, or an exemption for the collecting account) or run "
            "it from a scheduled task as SYSTEM and import its file",
        )
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


def _credentials(
    host: str, credential: Credential, environ: Mapping[str, str]
) -> tuple[str | None, str | None]:
    username = credential.username
    if username is None and credential.username_env:
        username = environ.get(credential.username_env)
        if not username:
            raise TransportError(
                "auth",
                f"{host}: environment variable {credential.username_env} (user name) is not set",
            )
    password: str | None = None
    if credential.password_env:
        password = environ.get(credential.password_env)
        if password is None:
            raise TransportError(
                "auth",
                f"{host}: environment variable {credential.password_env} (password) is not set",
            )
    elif credential.keyring_service:
        password = _keyring_password(host, credential.keyring_service, username or "")
    return username, password


def _keyring_password(host: str, service: str, username: str) -> str:
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        raise TransportError(
            "auth", f"{host}: keyring_service needs `pip install 'portfleet[keyring]'`"
        ) from None
    try:
        password: str | None = keyring.get_password(service, username)
    except KeyringError as exc:  # no backend, a locked one, a D-Bus failure
        raise TransportError(
            "auth",
            f"{host}: the keyring gave no answer for service {service!r} "
            f"({type(exc).__name__}: {exc}); {_KEYRING_HINT}",
        ) from None
    if password is None:
        raise TransportError(
            "auth", f"{host}: no password for {username!r} in keyring service {service!r}"
        )
    return password


def host_url(entry: HostEntry, https: bool, port: int | None) -> str:
    """Return the one URL a host is reached at: its address's own, else built from settings.

    A scheme written in the address wins over ``https``; whoever checks the transport's safety
    reads the scheme of this URL, never the setting.
    """
    address = entry.address or entry.name
    if "://" in address:
        return address
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"  # an IPv6 literal
    scheme = "https" if https else "http"
    return f"{scheme}://{address}:{port or (5986 if https else 5985)}/wsman"


def _stderr_text(stderr: bytes) -> str:
    text = stderr_text(stderr)
    return f"; stderr: {text[:300]}" if text else ""


def _section_errors(document: dict[str, Any]) -> str:
    errors: Iterable[dict[str, str]] = document.get("errors", [])
    return "; ".join(f"{e['section']}: {e['code']}" for e in errors)
