"""Read the change events and candidate causes the store derived (``collector.store.history``).

The report, ``explain`` and the views ``v_change_events`` / ``v_event_causes`` read the same
rows: an event's causes are the ones ``v_event_causes`` gives it, oldest first, each a dict
``{"kind", "cause", "detail", "at"}`` (``at``: when the host said it happened, ISO, or None).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Connection

from collector.store.frames import read_frame, to_utc
from collector.store.history import CAUSE_COLUMNS, EVENT_COLUMNS

_EVENTS = """
SELECT event_id, host, kind, at, previous_at, protocol, family, start_port AS start,
       end_port AS "end", previous_start, previous_end, ports, administered, snapshot_id,
       previous_snapshot_id
  FROM v_change_events ORDER BY event_id"""
_EVENT_CAUSES = """
SELECT event_id, cause_kind AS kind, cause, detail, reported_at AS at, cause_at
  FROM v_event_causes"""
_CAUSES = """
SELECT c.host_id, h.name AS host, c.snapshot_id, c.seen_at, c.window_start, c.cause_at,
       c.kind, c.cause, c.detail, c.at, c.exposure
  FROM candidate_causes c JOIN hosts h ON h.id = c.host_id ORDER BY c.id"""
_INTEGERS = ("start", "end", "previous_start", "previous_end", "ports", "snapshot_id",
             "previous_snapshot_id")  # fmt: skip


def load_events(connection: Connection) -> pd.DataFrame:
    """Return the ``events`` frame: every stored change event, oldest first, with its causes."""
    events = read_frame(connection, _EVENTS)
    for column in ("at", "previous_at"):
        events[column] = to_utc(events[column])
    events = events.astype(dict.fromkeys(_INTEGERS, "Int64"))
    events["administered"] = events["administered"].astype("boolean")
    causes = read_frame(connection, _EVENT_CAUSES)
    for column in ("at", "cause_at"):
        causes[column] = to_utc(causes[column])
    causes = causes.sort_values(["event_id", "cause_at", "kind", "cause"], kind="stable")
    lists: dict[int, list[dict[str, Any]]] = {}
    for row in causes.to_dict("records"):
        at = row["at"]
        lists.setdefault(int(row["event_id"]), []).append(
            {"kind": row["kind"], "cause": row["cause"], "detail": row["detail"],
             "at": None if pd.isna(at) else at.isoformat()}
        )  # fmt: skip
    events["causes"] = pd.Series(
        [lists.get(int(event), []) for event in events["event_id"]], index=events.index,
        dtype=object,
    )  # fmt: skip
    return events.loc[:, [*EVENT_COLUMNS, "event_id"]]


def load_causes(connection: Connection) -> pd.DataFrame:
    """Return every stored candidate cause (``CAUSE_COLUMNS``), for the fleet correlation."""
    causes = read_frame(connection, _CAUSES)
    for column in ("seen_at", "window_start", "cause_at", "at"):
        causes[column] = to_utc(causes[column])
    causes["exposure"] = causes["exposure"].astype(bool)
    return causes.loc[:, list(CAUSE_COLUMNS)]
