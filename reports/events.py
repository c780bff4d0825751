"""Read the change events and candidate causes the store derived (``collector.store.history``).

The report, ``explain`` and the views ``v_change_events`` / ``v_event_causes`` read the same
rows: an event's causes are the ones ``v_event_causes`` gives it, oldest first, each a dict
``{"kind", "cause", "detail", "at"}`` (``at``: when the host said it happened, ISO, or None).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Connection

from collector.store.history import CAUSE_COLUMNS, EVENT_COLUMNS
from reports import tables


def load_events(connection: Connection) -> pd.DataFrame:
    """Return the ``events`` frame: every stored change event, oldest first, with its causes."""
    events = tables.read(connection, "change_events")
    causes = tables.read(connection, "event_causes")
    causes = causes.sort_values(["event_id", "cause_at", "kind", "cause"], kind="stable")
    lists = causes_by(causes, "event_id")
    events["causes"] = pd.Series(
        [lists.get(event, []) for event in events["event_id"].tolist()], index=events.index,
        dtype=object,
    )  # fmt: skip
    return events.loc[:, [*EVENT_COLUMNS, "event_id"]]


def causes_by(causes: pd.DataFrame, key: str) -> dict[int, list[dict[str, Any]]]:
    """Return the causes of each value of column ``key``, in order, as the module doc words them."""
    lists: dict[int, list[dict[str, Any]]] = {}
    # Column by column: a dict per row from the frame costs more than the lists themselves.
    for owner, kind, cause, detail, at in zip(
        causes[key].tolist(), causes["kind"], causes["cause"], causes["detail"], causes["at"],
        strict=True,
    ):  # fmt: skip
        lists.setdefault(int(owner), []).append(
            {"kind": kind, "cause": cause, "detail": detail,
             "at": None if pd.isna(at) else at.isoformat()}
        )  # fmt: skip
    return lists


def causes_before(
    causes: pd.DataFrame, host: str, began_at: pd.Timestamp, window_days: float
) -> pd.DataFrame:
    """Return a host's causes seen in the ``window_days`` up to ``began_at``, oldest first.

    What changed in the correlation's window before a status began: a cause often acts at
    the next boot, nights after it was installed. ``explain`` and the report's needs-attention
    lines both tell these (the report asks for all its lines at once: ``causes_in_windows``).
    """
    asked = pd.DataFrame({"host": [host], "began_at": [pd.Timestamp(began_at)]})
    return causes_in_windows(causes, asked, window_days).drop(columns="asked")


def causes_in_windows(
    causes: pd.DataFrame, asked: pd.DataFrame, window_days: float
) -> pd.DataFrame:
    """Return the causes of each ``asked`` row (``host``, ``began_at``), as ``causes_before``.

    One row per cause and asking row, whose index label is in ``asked``; sorted by it, then
    oldest first.
    """
    keyed = pd.DataFrame({
        "asked": asked.index.to_numpy(), "host": asked["host"].to_numpy(),
        "began_at": pd.to_datetime(asked["began_at"], utc=True).array,
    })  # fmt: skip
    merged = keyed.merge(causes, on="host", how="inner")
    seen = merged["seen_at"]
    since = merged["began_at"] - pd.Timedelta(days=window_days)
    inside = merged[(seen <= merged["began_at"]) & (seen > since)]
    ordered = inside.sort_values(["asked", "cause_at", "kind", "cause"], kind="stable")
    return ordered.drop(columns="began_at").reset_index(drop=True)


def load_causes(connection: Connection, host_id: int | None = None) -> pd.DataFrame:
    """Return the stored candidate causes (``CAUSE_COLUMNS``): the fleet's, or one host's."""
    if host_id is None:
        causes = tables.read(connection, "candidate_causes")
    else:
        causes = tables.read(connection, "host_causes", host_id=host_id)
    return causes.loc[:, list(CAUSE_COLUMNS)]
