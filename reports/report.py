"""Build the HTML report of a store: the analysis, then the page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from collector.store.database import describe_url, open_reader
from reports.analysis import DEFAULT_STALE_DAYS, build_report_data
from reports.html import write_report


def build_report(
    url: str,
    out: Path,
    wanted_ports: Sequence[int],
    now: datetime | None = None,
    wanted_services: Mapping[int, str] | None = None,
    stale_days: float = DEFAULT_STALE_DAYS,
) -> Path:
    """Read the store at ``url`` (never writing it) and write the self-contained report.

    Raise ``StoreNotReadable`` when there is no store there, or one at another schema revision.
    """
    engine = open_reader(url)
    try:
        data = build_report_data(
            engine, describe_url(url), wanted_ports, now, stale_days, wanted_services
        )
    finally:
        engine.dispose()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_report(data, out)
    return out
