"""The time portfleet stamps on what it records: the wall clock, or the demo's simulated nights.

Runs, attempts and hosts are stamped with ``now()``; a snapshot carries the time the host said.
The demo collects sixty nights in a minute, so it runs the clock from each simulated night
(``simulated``) and its attempts line up with the snapshots they belong to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_GUARD = threading.Lock()
_source: Callable[[], datetime] | None = None  # None: the wall clock


def now() -> datetime:
    """Return the current time in UTC, as portfleet stamps it."""
    source = _source
    return datetime.now(UTC) if source is None else source()


@contextmanager
def simulated(start: datetime) -> Iterator[None]:
    """Run ``now()`` from ``start``, at the wall clock's pace, for every thread of the process."""
    global _source
    began = time.monotonic()

    def clock() -> datetime:
        return start + timedelta(seconds=time.monotonic() - began)

    with _GUARD:
        if _source is not None:
            raise RuntimeError("the clock is simulated already")
        _source = clock
    try:
        yield
    finally:
        with _GUARD:
            _source = None
