"""Build the HTML report of a store: the analysis, then the page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from collector.store.database import Store
from reports.analysis import DEFAULT_STALE_DAYS, build_report_data
from reports.html import write_report
from reports.wanted import last_wanted


def build_report(
    url: str,
    out: Path,
    wanted_ports: Sequence[int],
    now: datetime | None = None,
    wanted_services: Mapping[int, str] | None = None,
    stale_days: float = DEFAULT_STALE_DAYS,
    wanted_source: str = "config",
) -> Path:
    """Read the store at ``url`` (never writing it) and write the self-contained report.

    Without wanted ports, those the fleet was last collected with are used (``reports.wanted``).

    Raise ``StoreNotReadable`` when there is no store there, or one at another schema revision.
    """
    with Store.reader(url) as store:
        recorded = last_wanted(store) if not wanted_ports else None
        if recorded is not None:
            # Neither the command line nor the config named any: those of the last collection.
            wanted_ports, wanted_services = recorded.ports, recorded.services
            wanted_source = "store"
        data = build_report_data(
            store, wanted_ports, now, stale_days, wanted_services, wanted_source
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_report(data, out)
    return out
