"""Terminal output: progress bars, plain log lines, and host strings made safe to print.

Everything a host sent (names, process names, update titles, messages quoting them) is printed
as plain text: never read as rich markup, and with control characters shown as ``\\x1b``-style
escapes, so no escape sequence (a screen clear, an OSC-8 link, a title change) reaches a terminal.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# C0 and C1 controls but line feed and tab, DEL, and the bidirectional overrides that reorder
# what a reader sees.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(value: object) -> str:
    """Return ``value`` as a string whose control characters are shown as escapes."""
    return _CONTROLS.sub(_escape, str(value))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(value: object, style: str = "") -> Text:
    """Return ``value`` as rich Text that is never read as markup, controls made visible."""
    return Text(visible(value), style=style)


class _VisibleFormatter(logging.Formatter):
    """Format log lines with every control character visible (messages quote hosts)."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record))


class Outcome(Protocol):
    """What the summary table shows of one host."""

    @property
    def host(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def error_class(self) -> str | None: ...
    @property
    def message(self) -> str: ...
    @property
    def tries(self) -> int: ...
    @property
    def seconds(self) -> float: ...
    @property
    def snapshot_id(self) -> int | None: ...


def configure_logging(log_file: Path | None, verbose: bool) -> None:
    """Send plain log lines to ``log_file`` and, when stderr is not a terminal, to stderr."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_portfleet", False):
            root.removeHandler(handler)
            handler.close()  # a log file left to the garbage collector warns (ResourceWarning)
    handlers: list[logging.Handler] = []
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    if not sys.stderr.isatty():
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(_VisibleFormatter(LOG_FORMAT))
        handler._portfleet = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    # pywinrm and urllib3 are chatty at INFO about every connection.
    for noisy in ("urllib3", "requests_ntlm", "spnego"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Alembic announces every migration step at INFO; only -v wants to read that.
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Progress | None]:
    """Yield a live progress bar on a terminal, None elsewhere (the log has the lines)."""
    if not sys.stderr.isatty():
        yield None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        progress.add_task(label, total=total)
        yield progress


def print_summary(outcomes: Sequence[Outcome], console: Console) -> None:
    """Print one row per host: status, error class, tries, time, snapshot, message."""
    table = Table(title="collection summary", title_justify="left")
    for column in ("host", "status", "error", "tries", "seconds", "snapshot", "message"):
        table.add_column(column, overflow="fold")
    colours = {"ok": "green", "partial": "yellow", "failed": "red"}
    for outcome in outcomes:
        table.add_row(
            plain(outcome.host),
            plain(outcome.status, colours.get(outcome.status, "white")),
            plain(outcome.error_class or ""),
            str(outcome.tries),
            f"{outcome.seconds:.1f}",
            "" if outcome.snapshot_id is None else str(outcome.snapshot_id),
            plain(outcome.message[:160]),
        )
    console.print(table)
    counts = {
        status: sum(o.status == status for o in outcomes) for status in ("ok", "partial", "failed")
    }
    console.print(", ".join(f"{n} {status}" for status, n in counts.items()))


class Share(Protocol):
    """How many hosts one collector run finished tonight."""

    @property
    def run_id(self) -> int: ...
    @property
    def collector(self) -> str: ...
    @property
    def site(self) -> str | None: ...
    @property
    def hosts(self) -> int: ...


def print_night(
    night: str,
    collector: str,
    planned: int,
    mine: int,
    shares: Sequence[Share],
    console: Console,
) -> None:
    """Say who collected the night's planned hosts: this collector, the others, earlier runs."""
    console.print(
        plain(
            f"night {night}: {planned} hosts planned, {mine} collected by this collector "
            f"({collector})"
        )
    )
    for share in shares:
        site = f", site {share.site}" if share.site else ""
        line = f"  run {share.run_id} ({share.collector}{site}): {share.hosts} hosts"
        console.print(plain(line))
    done = sum(share.hosts for share in shares)
    if done < planned:
        console.print(plain(f"  {planned - done} not done tonight yet (held by a collector)"))
    if mine < planned:
        console.print(
            plain("  hosts another run collected tonight were skipped; --again collects them")
        )
