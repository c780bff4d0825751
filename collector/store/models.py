"""Typed SQLAlchemy models of the store.

Content that repeats night after night (a host's excluded ranges, bind failures, listeners,
dynamic ranges, features, services, findings) is stored once, as a *set* keyed by the digest of
its rows; snapshots point at sets. A snapshot whose set pointer is NULL did not capture that
content (unknown), which is not the same as a set with no rows (captured, and empty). Probe
documents are shared too: a snapshot points at a base document and keeps only a small patch
(``collector.store.documents``), so a night where nothing changed costs its snapshot row and
its attempt.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from collector.store.types import UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ATTEMPT_STATUSES = ("ok", "partial", "failed")
ERROR_CLASSES = ("auth", "unreachable", "timeout", "protocol", "probe_error", "bad_document")


class Base(DeclarativeBase):
    """Declarative base with a constraint naming convention (stable names for Alembic)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Host(Base):
    """A workstation of the fleet, known by its configured (or imported) name."""

    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    address: Mapped[str | None] = mapped_column(String(255))
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CollectionRun(Base):
    """One invocation of ``collect``, ``import`` or ``demo`` that made attempts."""

    __tablename__ = "collection_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    portfleet_version: Mapped[str] = mapped_column(String(32))
    # Who ran it (machine:pid or collect.collector_name), for which night and site, if any.
    collector: Mapped[str | None] = mapped_column(String(255))
    night: Mapped[str | None] = mapped_column(String(32))
    site: Mapped[str | None] = mapped_column(String(64))
    # The config's wanted ports the run collected for, as JSON {"5432": "postgres", "8080":
    # null} (port: the process serving it); a report without a config reads the latest.
    wanted_ports: Mapped[str | None] = mapped_column(Text())

    __table_args__ = (CheckConstraint("kind IN ('collect', 'import', 'demo')", name="kind"),)


class NightClaim(Base):
    """A host's turn in a night: which collector run has it, until when, and whether it is done.

    One row per night and host; collectors sharing a store take rows whose lease ran out
    (``collector.store.leases``), so each host is collected once a night.
    """

    __tablename__ = "night_claims"

    night: Mapped[str] = mapped_column(String(32), primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), primary_key=True, index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("collection_runs.id"), index=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Attempt(Base):
    """One try to get one snapshot of one host; every try is kept, failed ones too."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("collection_runs.id"))
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"), index=True)
    source: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(16))
    error_class: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    # Indexed, as every column naming a snapshot: deleting one (db prune) looks them all up.
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id"), index=True)

    __table_args__ = (
        CheckConstraint("status IN ('ok', 'partial', 'failed')", name="status"),
        CheckConstraint(
            "error_class IS NULL OR error_class IN "
            "('auth', 'unreachable', 'timeout', 'protocol', 'probe_error', 'bad_document')",
            name="error_class",
        ),
        # A host's in-flight mark is found by run and host when its record lands (runs.landed).
        Index("ix_attempts_run_id_host_id", "run_id", "host_id"),
    )


class Document(Base):
    """A probe document exactly as received, zlib-compressed: the base snapshots patch.

    ``sha256`` names these bytes; each snapshot keeps the digest of its own document
    (``snapshots.document_sha256``), which is this one's when it holds no patch.
    """

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)


class _ContentSet:
    """A distinct set of rows, stored once and shared by every snapshot that saw it."""

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)


class ExcludedSet(_ContentSet, Base):
    """A distinct set of excluded port ranges (the rows hang off it)."""

    __tablename__ = "excluded_sets"


class ExcludedRange(Base):
    """A range from ``netsh int ipvX show excludedportrange``; ``administered`` is the ``*``."""

    __tablename__ = "excluded_ranges"

    id: Mapped[int] = mapped_column(primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("excluded_sets.id"), index=True)
    protocol: Mapped[str] = mapped_column(String(3))
    family: Mapped[str] = mapped_column(String(4))
    start_port: Mapped[int] = mapped_column(Integer)
    end_port: Mapped[int] = mapped_column(Integer)
    administered: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        CheckConstraint("start_port BETWEEN 0 AND 65535 AND end_port BETWEEN 0 AND 65535", "ports"),
        CheckConstraint("start_port <= end_port", name="order"),
    )


class BindFailureSet(_ContentSet, Base):
    """A distinct set of bind-failure ranges."""

    __tablename__ = "bind_failure_sets"


class BindFailure(Base):
    """A run of consecutive ports whose bind failed with the same Winsock error code."""

    __tablename__ = "bind_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("bind_failure_sets.id"), index=True)
    protocol: Mapped[str] = mapped_column(String(3))
    family: Mapped[str] = mapped_column(String(4))
    start_port: Mapped[int] = mapped_column(Integer)
    end_port: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint("start_port BETWEEN 1 AND 65535 AND end_port BETWEEN 1 AND 65535", "ports"),
        CheckConstraint("start_port <= end_port", name="order"),
    )


class ListenerSet(_ContentSet, Base):
    """A distinct set of listening endpoints."""

    __tablename__ = "listener_sets"


class Listener(Base):
    """A bound endpoint: a listening TCP socket or a bound UDP socket, with its owner."""

    __tablename__ = "listeners"

    id: Mapped[int] = mapped_column(primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("listener_sets.id"), index=True)
    protocol: Mapped[str] = mapped_column(String(3))
    address: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    pid: Mapped[int | None] = mapped_column(Integer)
    process: Mapped[str | None] = mapped_column(String(255))


class FindingSet(_ContentSet, Base):
    """A distinct set of findings: the diagnosis of a snapshot (``collector.diagnosis``)."""

    __tablename__ = "finding_sets"


class Finding(Base):
    """Ports ``start_port``–``end_port`` that share one diagnosis, with its evidence and fixes.

    ``diagnosis`` is ``reserved``, ``probably-reserved``, ``in-use``, ``unexplained`` or
    ``at-risk``; a port no finding covers is free (the sweep ran) or unknown (it did not).
    ``error_code`` is NULL for a port that did not fail; ``fixes`` lists fix kinds, first first.
    """

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("finding_sets.id"), index=True)
    protocol: Mapped[str] = mapped_column(String(3))
    family: Mapped[str] = mapped_column(String(4))
    start_port: Mapped[int] = mapped_column(Integer)
    end_port: Mapped[int] = mapped_column(Integer)
    diagnosis: Mapped[str] = mapped_column(String(32))
    dynamic_start: Mapped[int] = mapped_column(Integer)
    dynamic_end: Mapped[int] = mapped_column(Integer)
    dynamic_captured: Mapped[bool] = mapped_column(Boolean)
    error_code: Mapped[int | None] = mapped_column(Integer)
    administered: Mapped[bool | None] = mapped_column(Boolean)
    range_start: Mapped[int | None] = mapped_column(Integer)
    range_end: Mapped[int | None] = mapped_column(Integer)
    block_start: Mapped[int | None] = mapped_column(Integer)
    block_end: Mapped[int | None] = mapped_column(Integer)
    pid: Mapped[int | None] = mapped_column(Integer)
    process: Mapped[str | None] = mapped_column(String(255))
    holder: Mapped[str | None] = mapped_column(String(16))
    fixes: Mapped[str] = mapped_column(String(255))
    in_dynamic: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        CheckConstraint("start_port BETWEEN 0 AND 65535 AND end_port BETWEEN 0 AND 65535", "ports"),
        CheckConstraint("start_port <= end_port", name="order"),
        CheckConstraint(
            "diagnosis IN ('reserved', 'probably-reserved', 'in-use', 'unexplained', 'at-risk')",
            name="diagnosis",
        ),
    )


class DynamicSet(_ContentSet, Base):
    """A distinct set of dynamic port ranges."""

    __tablename__ = "dynamic_sets"


class FeatureSet(_ContentSet, Base):
    """A distinct set of optional feature states."""

    __tablename__ = "feature_sets"


class ServiceSet(_ContentSet, Base):
    """A distinct set of service states."""

    __tablename__ = "service_sets"


class Snapshot(Base):
    """One host's state at one moment, as its probe (or a capture folder) saw it."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"))
    # The base document and the patch that makes this snapshot's document from it (NULL: the
    # base is it). Both NULL once ``db prune`` dropped an old snapshot's document.
    document_id: Mapped[int | None] = mapped_column(ForeignKey("documents.id"), index=True)
    document_delta: Mapped[bytes | None] = mapped_column(LargeBinary)
    document_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    probe_version: Mapped[str | None] = mapped_column(String(32))
    os_build: Mapped[str | None] = mapped_column(String(32))
    last_boot_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    bios_version: Mapped[str | None] = mapped_column(String(255))
    bios_date: Mapped[date | None] = mapped_column(Date)
    fast_startup: Mapped[bool | None] = mapped_column(Boolean)
    docker_version: Mapped[str | None] = mapped_column(String(64))
    wsl_version: Mapped[str | None] = mapped_column(String(64))
    sweep_seconds: Mapped[float | None] = mapped_column()
    excluded_set_id: Mapped[int | None] = mapped_column(ForeignKey("excluded_sets.id"))
    bind_failure_set_id: Mapped[int | None] = mapped_column(ForeignKey("bind_failure_sets.id"))
    listener_set_id: Mapped[int | None] = mapped_column(ForeignKey("listener_sets.id"))
    dynamic_set_id: Mapped[int | None] = mapped_column(ForeignKey("dynamic_sets.id"))
    feature_set_id: Mapped[int | None] = mapped_column(ForeignKey("feature_sets.id"))
    service_set_id: Mapped[int | None] = mapped_column(ForeignKey("service_sets.id"))
    # Set when the snapshot is stored; NULL only inside the upgrade that classifies old ones.
    finding_set_id: Mapped[int | None] = mapped_column(ForeignKey("finding_sets.id"))
    # Not yet in the derived history (``collector.store.pending``): 1 to extend the host's
    # history with it, 2 to derive the host's history again; NULL once derived.
    history_pending: Mapped[int | None] = mapped_column(SmallInteger, server_default="1")

    __table_args__ = (
        Index("ix_snapshots_host_id_taken_at", "host_id", "taken_at"),
        Index(
            "ix_snapshots_history_pending",
            "host_id",
            sqlite_where=text("history_pending IS NOT NULL"),
            postgresql_where=text("history_pending IS NOT NULL"),
        ),
        CheckConstraint("source IN ('winrm', 'file', 'capture')", name="source"),
    )


class SnapshotError(Base):
    """A section of a snapshot that could not be taken or read, and why."""

    __tablename__ = "snapshot_errors"

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    section: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)


class DynamicRange(Base):
    """The dynamic (ephemeral) port range of one protocol and family, in a set of them."""

    __tablename__ = "dynamic_ranges"

    id: Mapped[int] = mapped_column(primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("dynamic_sets.id"), index=True)
    protocol: Mapped[str] = mapped_column(String(3))
    family: Mapped[str] = mapped_column(String(4))
    start_port: Mapped[int] = mapped_column(Integer)
    port_count: Mapped[int] = mapped_column(Integer)

    __table_args__ = (UniqueConstraint("set_id", "protocol", "family"),)


class Feature(Base):
    """An optional feature's state (Microsoft-Hyper-V, VirtualMachinePlatform, …)."""

    __tablename__ = "features"

    id: Mapped[int] = mapped_column(primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("feature_sets.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(32))

    __table_args__ = (UniqueConstraint("set_id", "name"),)


class Service(Base):
    """A service's status and start type (vmms, hns, winnat, …); absence is not stored."""

    __tablename__ = "services"

    id: Mapped[int] = mapped_column(primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("service_sets.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32))
    start_type: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (UniqueConstraint("set_id", "name"),)


class Update(Base):
    """One update known on one host, from Get-HotFix and/or the Windows Update history."""

    __tablename__ = "updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"))
    update_key: Mapped[str] = mapped_column(String(80))
    kb: Mapped[str | None] = mapped_column(String(32))
    title: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(255))
    installed_by: Mapped[str | None] = mapped_column(String(255))
    installed_on: Mapped[date | None] = mapped_column(Date)
    installed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    result_code: Mapped[int | None] = mapped_column(Integer)
    first_snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)

    __table_args__ = (UniqueConstraint("host_id", "update_key"),)


class Port(Base):
    """Every port number 1–65535, so views can turn port ranges into ports portably."""

    __tablename__ = "ports"

    port: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class ChangeEvent(Base):
    """A change between two consecutive snapshots of a host that captured what changed.

    ``kind``: ``range-appeared``, ``range-disappeared``, ``range-moved`` (the blocks one boot
    moved, folded into one event spanning them) or ``dynamic-changed``. Derived from the
    snapshots by ``collector.store.history.derive_history``; never edited by hand.
    """

    __tablename__ = "change_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), index=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    previous_snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    protocol: Mapped[str] = mapped_column(String(3))
    family: Mapped[str | None] = mapped_column(String(4))  # dynamic changes only
    start_port: Mapped[int | None] = mapped_column(Integer)
    end_port: Mapped[int | None] = mapped_column(Integer)
    previous_start: Mapped[int | None] = mapped_column(Integer)
    previous_end: Mapped[int | None] = mapped_column(Integer)
    ports: Mapped[int | None] = mapped_column(Integer)
    administered: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (
        CheckConstraint(
            "kind IN ('range-appeared', 'range-disappeared', 'range-moved', 'dynamic-changed')",
            name="kind",
        ),
    )


class CandidateCause(Base):
    """Something that changed on a host, first seen in the window ending at ``snapshot_id``.

    ``kind``: ``update``, ``reboot``, ``fast-startup``, ``feature``, ``service``, ``docker``,
    ``wsl``, ``bios`` or ``dynamic-range``; ``cause`` names it as the fleet correlation counts
    it; ``at`` is when the host says it happened, ``cause_at`` that or the window's start.
    """

    __tablename__ = "candidate_causes"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"))
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    cause: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    cause_at: Mapped[datetime] = mapped_column(UtcDateTime())
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    window_start: Mapped[datetime] = mapped_column(UtcDateTime())
    exposure: Mapped[bool] = mapped_column(Boolean)

    # An event's causes are its host's first seen within its window (v_event_causes).
    __table_args__ = (Index("ix_candidate_causes_host_id_seen_at", "host_id", "seen_at"),)


class StateSpan(Base):
    """A run of one host's consecutive snapshots whose content sets are the same.

    Derived by ``collector.store.spans``: an unchanged night extends the host's last span, a
    change starts a new one, so rows grow with changes, not nights. The snapshot ids are not
    foreign keys: ``db prune`` removes nights inside a span, and the span keeps counting them.
    ``tail`` holds the times of the span's nights within ``TAIL_DAYS`` of ``last_at`` (as
    microseconds before it, comma-separated, oldest first): what a count of nights near a
    window's edge needs, without a row per night.
    """

    __tablename__ = "state_spans"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"))
    first_snapshot_id: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_snapshot_id: Mapped[int] = mapped_column(Integer)
    last_at: Mapped[datetime] = mapped_column(UtcDateTime())
    nights: Mapped[int] = mapped_column(Integer)
    tail: Mapped[str] = mapped_column(Text)
    finding_set_id: Mapped[int | None] = mapped_column(Integer)
    excluded_set_id: Mapped[int | None] = mapped_column(Integer)
    bind_failure_set_id: Mapped[int | None] = mapped_column(Integer)
    listener_set_id: Mapped[int | None] = mapped_column(Integer)
    dynamic_set_id: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_state_spans_host_id_first_at", "host_id", "first_at"),)


FIX_ACTIONS = ("reserve", "restart-winnat", "hyperv-cycle", "other", "administered-range")
FIX_OUTCOMES = ("holds", "regressed", "unknown")


class Fix(Base):
    """A fix applied to TCP ports ``start_port``–``end_port`` of a host, to be checked nightly.

    ``source`` is ``recorded`` (``portfleet fix``: who, when, what, a note; kept) or
    ``detected`` (an administered ``*`` range that appeared between two snapshots: derived from
    ``change_events`` when a run ends, like them). ``key`` names it across derivations.
    """

    __tablename__ = "fixes"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), index=True)
    source: Mapped[str] = mapped_column(String(8))
    action: Mapped[str] = mapped_column(String(24))
    start_port: Mapped[int] = mapped_column(Integer)
    end_port: Mapped[int] = mapped_column(Integer)
    applied_at: Mapped[datetime] = mapped_column(UtcDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())
    recorded_by: Mapped[str | None] = mapped_column(String(255))
    note: Mapped[str | None] = mapped_column(Text)
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id"), index=True)

    __table_args__ = (
        CheckConstraint("source IN ('recorded', 'detected')", name="source"),
        CheckConstraint(
            "action IN ('reserve', 'restart-winnat', 'hyperv-cycle', 'other', "
            "'administered-range')",
            name="action",
        ),
        CheckConstraint("start_port BETWEEN 1 AND 65535 AND end_port BETWEEN 1 AND 65535", "ports"),
        CheckConstraint("start_port <= end_port", name="order"),
    )


class FixCheck(Base):
    """Whether a fix held in one snapshot of its host taken after it (``collector.store.fixes``).

    ``outcome``: ``holds`` (every port of the fix binds, or only an administered range covers
    it), ``regressed`` (a run-time range, a probable reservation or an unexplained failure
    blocks one of them: ``port`` and ``diagnosis`` say which) or ``unknown`` (not swept, and no
    excluded range says). Derived when a run ends and when a fix is recorded.
    """

    __tablename__ = "fix_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    fix_id: Mapped[int] = mapped_column(ForeignKey("fixes.id"), index=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime())
    outcome: Mapped[str] = mapped_column(String(10))
    port: Mapped[int | None] = mapped_column(Integer)
    diagnosis: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        UniqueConstraint("fix_id", "snapshot_id"),
        CheckConstraint("outcome IN ('holds', 'regressed', 'unknown')", name="outcome"),
    )


class Notification(Base):
    """One event worth telling, for one channel: queued, sent once, retried a bounded number.

    ``event_key`` names the event from the stored nights (the same night gives the same key, so
    a re-run queues nothing new); ``payload`` is the event's data, never a credential;
    ``last_error`` is the redacted reason of the last failed try.
    """

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_key: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(24))
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    queued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    tries: Mapped[int] = mapped_column(Integer, default=0)
    last_tried_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("event_key", "channel"),)
