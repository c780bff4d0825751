"""The notifications outbox: each event worth telling, queued once per channel, sent once.

An ``Event`` is plain data (``reports.alerts`` finds them in the stored nights). Its ``key``
comes from the stored nights alone (a host, a port, the snapshot a streak began in), so finding
the events again after a re-run of the same night gives the same keys, and ``queue`` adds
nothing. A row is *pending* until ``mark_sent``; each failed try counts (``mark_failed``), and a
row that failed ``max_tries`` times is given up (kept, with its redacted reason).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from collector.store.models import Notification

EVENT_KINDS = ("blocked", "freed", "fix-held", "fix-regressed", "host-failing")


@dataclass(frozen=True, slots=True)
class Event:
    """Something worth telling the team, worded once; host strings are raw here, escaped later.

    ``lines`` are the facts (since when, the range and its owner, the causes); ``commands`` the
    first fix, to copy; ``at`` when it happened (ISO, UTC).
    """

    key: str
    kind: str
    title: str
    host: str | None = None
    port: int | None = None
    at: str | None = None
    lines: tuple[str, ...] = ()
    commands: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """Return the event as JSON-ready data (what the outbox keeps)."""
        return {
            "key": self.key, "kind": self.kind, "title": self.title, "host": self.host,
            "port": self.port, "at": self.at, "lines": list(self.lines),
            "commands": list(self.commands),
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        """Read an event back from the outbox."""
        return cls(
            key=str(data["key"]), kind=str(data["kind"]), title=str(data["title"]),
            host=data.get("host"), port=data.get("port"), at=data.get("at"),
            lines=tuple(data.get("lines") or ()), commands=tuple(data.get("commands") or ()),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Pending:
    """A queued notification not yet sent, with how often it was tried."""

    id: int
    channel: str
    event: Event
    tries: int


def told(connection: Connection) -> set[str]:
    """Return the keys of every event already queued (sent or not), on any channel."""
    return set(connection.execute(select(Notification.event_key).distinct()).scalars())


def sent_keys(connection: Connection) -> set[str]:
    """Return the keys of the events sent on at least one channel."""
    query = select(Notification.event_key).where(Notification.sent_at.is_not(None)).distinct()
    return set(connection.execute(query).scalars())


def queue(
    connection: Connection, events: Sequence[Event], channels: Iterable[str], now: datetime
) -> int:
    """Queue each event for each channel that does not have it yet; return how many rows."""
    names = list(channels)
    have = {
        (str(row.event_key), str(row.channel))
        for row in connection.execute(select(Notification.event_key, Notification.channel))
    }
    rows = [
        {"event_key": event.key[:255], "channel": name, "kind": event.kind,
         "host": None if event.host is None else event.host[:255], "port": event.port,
         "payload": event.to_json(), "queued_at": now, "tries": 0}
        for event in events
        for name in names
        if (event.key[:255], name) not in have
    ]  # fmt: skip
    if rows:
        connection.execute(insert(Notification), rows)
    return len(rows)


def pending(connection: Connection, max_tries: int) -> list[Pending]:
    """Return the notifications still to send (tried fewer than ``max_tries`` times), in order."""
    query = (
        select(Notification.id, Notification.channel, Notification.payload, Notification.tries)
        .where(Notification.sent_at.is_(None), Notification.tries < max_tries)
        .order_by(Notification.id)
    )
    return [
        Pending(int(row.id), str(row.channel), Event.from_json(row.payload), int(row.tries))
        for row in connection.execute(query)
    ]


def given_up(connection: Connection, max_tries: int) -> int:
    """Return how many notifications failed ``max_tries`` times and are no longer tried."""
    query = select(Notification.id).where(
        Notification.sent_at.is_(None), Notification.tries >= max_tries
    )
    return len(connection.execute(query).all())


def mark_sent(connection: Connection, ids: Sequence[int], now: datetime) -> None:
    """Record that these notifications were delivered."""
    if ids:
        connection.execute(
            update(Notification)
            .where(Notification.id.in_(list(ids)))
            .values(sent_at=now, last_tried_at=now, tries=Notification.tries + 1, last_error=None)
        )


def mark_failed(connection: Connection, ids: Sequence[int], now: datetime, reason: str) -> None:
    """Record a failed try of these notifications, with a reason free of credentials."""
    if ids:
        connection.execute(
            update(Notification)
            .where(Notification.id.in_(list(ids)))
            .values(last_tried_at=now, tries=Notification.tries + 1, last_error=reason[:2000])
        )
