"""The wanted ports a report falls back on: those the fleet was last collected with.

``collect`` records its config's wanted ports on its run (``collection_runs.wanted_ports``), so
a report made where the config is not (another machine, a colleague) still checks the ports
the team wants, and says where they came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from collector.store.database import Store
from collector.windows import MAX_PORT
from reports import tables


@dataclass(frozen=True, slots=True)
class RecordedWanted:
    """The wanted ports of one run, with the process that serves each (where the config said)."""

    ports: tuple[int, ...]
    services: dict[int, str]
    run_id: int
    started_at: datetime


def last_wanted(store: Store) -> RecordedWanted | None:
    """Return the wanted ports of the latest run that recorded some, or None."""
    with store.connect() as connection:
        rows = tables.read(connection, "last_wanted_ports")
    if rows.empty:
        return None
    row = rows.iloc[0]
    ports, services = _read(str(row["wanted_ports"]))
    started = row["started_at"].to_pydatetime()
    return RecordedWanted(ports, services, int(row["run_id"]), started) if ports else None


def _read(text: str) -> tuple[tuple[int, ...], dict[int, str]]:
    """Read the recorded JSON; a value that is not ports and process names counts as none."""
    try:
        recorded = json.loads(text)
    except ValueError:
        return (), {}
    if not isinstance(recorded, dict):
        return (), {}
    ports: list[int] = []
    services: dict[int, str] = {}
    for key, process in recorded.items():
        if not (isinstance(key, str) and key.isdigit() and 1 <= int(key) <= MAX_PORT):
            return (), {}
        ports.append(int(key))
        if isinstance(process, str) and process:
            services[int(key)] = process
    return tuple(sorted(ports)), services
