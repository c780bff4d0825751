"""Exit codes of every portfleet command, named in one place."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a portfleet process tells cron, systemd or Task Scheduler."""

    OK = 0
    SOME_FAILED = 1  # some hosts or inputs failed; the others were stored
    USAGE = 2  # bad arguments or a bad config file; nothing was done
    DATABASE = 3  # the database could not be opened or migrated
    NOT_DELIVERED = 4  # all was collected and stored; some notifications wait for the next run
    INTERRUPTED = 130
