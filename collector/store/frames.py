"""Read the store into pandas frames: chunked ``IN`` lists, timestamps as aware UTC.

The history derivation reads through these, and the reports through ``reports.tables``, which
declares each query's columns; importing this module costs pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Connection, bindparam, text

_CHUNK = 5000


def read_frame(
    connection: Connection, sql: str, ids: Sequence[int] | None = None, **params: Any
) -> pd.DataFrame:
    """Run one query into a frame; an ``:ids`` list in ``sql`` is sent in chunks."""
    if ids is None:
        return pd.read_sql(text(sql), connection, params=params or None)
    statement = text(sql).bindparams(bindparam("ids", expanding=True))
    unique = sorted({int(i) for i in ids})
    chunks = [unique[i : i + _CHUNK] for i in range(0, len(unique), _CHUNK)] or [[]]
    frames = [pd.read_sql(statement, connection, params={**params, "ids": c}) for c in chunks]
    filled = [frame for frame in frames if not frame.empty]
    return pd.concat(filled, ignore_index=True) if len(filled) > 1 else (filled or frames)[0]


def to_utc(values: pd.Series) -> pd.Series:
    """Return timestamps as aware UTC (SQLite gives text, PostgreSQL naive UTC datetimes)."""
    return pd.to_datetime(values, utc=True, format="ISO8601")
