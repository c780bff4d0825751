"""Commands that read the store out: ``sql``, ``report``, ``explain`` (they never write)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Column, Table

from collector.cli.root import CONTEXT, Settings, cli, err, fail, first_line
from collector.exitcodes import ExitCode


@cli.command("sql", context_settings=CONTEXT)
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--timeout",
    "timeout",
    type=click.FloatRange(min=0.1),
    default=60,
    show_default=True,
    help="Seconds the query may run.",
)
@click.option(
    "--max-memory",
    "max_memory",
    type=click.IntRange(min=16),
    default=512,
    show_default=True,
    metavar="MB",
    help="Memory the query may take (SQLite).",
)
@click.pass_obj
def sql_command(settings: Settings, query: str, fmt: str, timeout: float, max_memory: int) -> None:
    """Run one read-only SQL statement on the store.

    Writes, ATTACH, state-changing PRAGMAs and functions that reach into the connection are
    refused, and the database file is never changed. A query is stopped at its time limit, its
    memory limit (SQLite) or Ctrl-C. The views (v_latest_snapshots, v_failing_ports,
    v_excluded_ranges, v_listeners, v_updates, v_attempts) are described in docs/views.md.
    Outside a terminal the table shows whole values; on one, long values wrap.

    \b
    Example:
      portfleet sql "SELECT host, port, classification FROM v_failing_ports" --format csv
    """
    from collector.store.database import head_revision
    from reports.query import QueryError, QueryInterrupted, QueryLimits, StoreNotReady, run_query

    if not query.strip():
        raise click.UsageError(
            'QUERY is empty; give one statement, e.g. "SELECT * FROM v_attempts"'
        )
    settings.require_database()
    url = settings.database_url
    limits = QueryLimits(seconds=timeout, memory_bytes=max_memory * 1024 * 1024)
    # Read-only from the start: no migration, no journal-mode switch, no file created.
    revision = head_revision()
    if not url.startswith("sqlite"):
        _require_revision(url, revision)
    try:
        with run_query(url, query, limits, revision=revision) as result:
            _write_rows(fmt, result.columns, result.rows)
    except QueryInterrupted as exc:
        fail(str(exc), ExitCode.INTERRUPTED)
    except StoreNotReady as exc:
        fail(str(exc), ExitCode.DATABASE)
    except QueryError as exc:
        fail(str(exc), ExitCode.USAGE)


def _require_revision(url: str, revision: str) -> None:
    """Refuse a server database that is not at ``revision``, reading only."""
    from sqlalchemy.exc import SQLAlchemyError

    from collector.store.database import Store, describe_url

    try:
        with Store.unmigrated(url, writer=False) as store:
            current = store.revision()
    except SQLAlchemyError as exc:
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        fail(f"cannot open the database {describe_url(url)}: {reason}", ExitCode.DATABASE)
    if current != revision:
        fail(
            f"{describe_url(url)} is at schema revision {current or '(none)'}, this portfleet "
            f"needs {revision}; run `portfleet db upgrade` (sql never changes the database)",
            ExitCode.DATABASE,
        )


def _write_rows(fmt: str, columns: tuple[str, ...], rows: Iterator[Sequence[Any]]) -> None:
    from collector.console import plain, visible

    terminal = sys.stdout.isatty()

    def shown(value: Any) -> Any:
        # Data to a file stays exact; on a terminal, escape sequences from hosts are shown.
        return visible(value) if terminal and isinstance(value, str) else value

    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([shown(v) for v in row])
    elif fmt == "json":
        # Streamed row by row so a large result never sits in memory twice.
        sys.stdout.write("[")
        for position, row in enumerate(rows):
            sys.stdout.write(",\n" if position else "\n")
            record = {c: shown(v) for c, v in zip(columns, row, strict=True)}
            sys.stdout.write(json.dumps(record, default=_json_default, ensure_ascii=False))
        sys.stdout.write("\n]\n")
    elif terminal:
        # Headers as text too (an alias may hold brackets); long values wrap, never cut.
        table = Table(*(Column(header=plain(c), overflow="fold") for c in columns))
        count = 0
        for row in rows:
            table.add_row(*(plain("" if v is None else v) for v in row))
            count += 1
        Console().print(table)
        err.print(f"{count} row{'s' if count != 1 else ''}")
    else:
        count = _write_plain_table(columns, rows)
        err.print(f"{count} row{'s' if count != 1 else ''}")


def _write_plain_table(columns: tuple[str, ...], rows: Iterator[Sequence[Any]]) -> int:
    """Write rows as aligned text with every value whole (no terminal width to fit)."""
    from collector.console import visible

    # One line per row: a line feed or tab inside a value is shown, not obeyed.
    cells = [
        [visible("" if v is None else v).replace("\n", "\\n").replace("\t", "\\t") for v in row]
        for row in rows
    ]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    for line in ([*columns], ["-" * w for w in widths], *cells):
        text = "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        sys.stdout.write(text.rstrip() + "\n")
    return len(cells)


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


@cli.command("report", context_settings=CONTEXT)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("portfleet-report.html"),
    show_default=True,
    help="Where to write the HTML file.",
)
@click.option(
    "--port",
    "ports",
    type=click.IntRange(1, 65535),
    multiple=True,
    help="Wanted port (else the config's).",
)
@click.pass_obj
def report_command(settings: Settings, out: Path, ports: tuple[int, ...]) -> None:
    """Write the fleet report: one self-contained HTML file that works offline.

    First what needs attention: each wanted port reserved on a host now (since when, the
    range and its owner, the likely causes, the first fix), what changed since the previous
    night, hosts whose collection failed or that were not seen lately, wanted ports at risk
    and those blocked earlier and free now. Then the fleet summary and data freshness, the
    wanted ports per host, safe ports and at-risk odds, the port map, a timeline per host,
    updates and changes that go with new reservations across the fleet, unexplained
    failures, and the commands that fix each host. Wanted ports come from --port, else the
    config (wanted_ports, wanted_services), else those the last collection recorded from its
    config; the page says which.

    \b
    Example:
      portfleet report --out /srv/www/portfleet/index.html
    """
    from collector.store.database import StoreNotReadable
    from reports.report import build_report

    settings.require_database()
    config = settings.config
    wanted = ports or tuple(config.wanted())
    # The page says where its wanted ports came from, and how to give some when none were.
    source = "command line" if ports else "config" if wanted else "none"
    try:
        path = build_report(
            settings.database_url, out, wanted, None, config.wanted_services,
            config.report.stale_days, source,
        )  # fmt: skip
    except StoreNotReadable as exc:
        fail(str(exc), ExitCode.DATABASE)
    click.echo(str(path))


@cli.command("explain", context_settings=CONTEXT)
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def explain_command(settings: Settings, host: str, port: int, as_json: bool) -> None:
    """Say why PORT can or cannot be bound on HOST, from its latest snapshot, and the fix.

    \b
    Example:
      portfleet explain dev-ws-07 49786
    """
    from reports.explain import UnknownHostError, explain

    store = settings.read_store()
    config = settings.config
    try:
        answer = explain(
            store,
            host,
            port,
            wanted_process=config.wanted_services.get(port),
            stale_days=config.report.stale_days,
        )
    except UnknownHostError as exc:
        fail(str(exc), ExitCode.USAGE)
    if as_json:
        click.echo(
            json.dumps(answer.to_json(), indent=1, ensure_ascii=False, default=_json_default)
        )
    else:
        from collector.console import visible

        click.echo(visible(answer.to_text()))  # process names and KB titles come from hosts


@cli.command("safe-ports", context_settings=CONTEXT)
@click.option("--group", metavar="G", help="Only the hosts of this config group.")
@click.option(
    "--count",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Show the N largest ranges.",
)
@click.option(
    "--port",
    "ports",
    type=click.IntRange(1, 65535),
    multiple=True,
    help="A wanted port to check against the dynamic ranges (repeatable; else the config's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def safe_ports_command(
    settings: Settings, group: str | None, count: int, ports: tuple[int, ...], as_json: bool
) -> None:
    """List the TCP port ranges a team can move its services to, from the whole history.

    A range is safe when, on every host (of the group) and every night stored, none of its
    ports was reserved, held by a program or failing, and none lay in a dynamic range.

    \b
    Example:
      portfleet safe-ports --group developers --count 5
    """
    from reports.safeports import UnknownGroupError, find_safe_ports

    store = settings.read_store()
    wanted = ports or settings.config.wanted_ports
    try:
        answer = find_safe_ports(store, group, wanted)
    except UnknownGroupError as exc:
        fail(str(exc), ExitCode.USAGE)
    if as_json:
        click.echo(json.dumps(answer.to_json(count), indent=1, ensure_ascii=False))
        return
    from collector.console import visible

    click.echo(visible(_safe_ports_text(answer, count)))


def _safe_ports_text(answer: Any, count: int) -> str:
    """Word the safe-ports answer for a terminal."""
    from collector.windows import DYNAMIC_MOVE_CAVEATS

    who = f"group {answer.group}" if answer.group else "the fleet"
    if not answer.host_nights:
        return (
            f"No snapshot of {who} read the excluded ranges or swept the ports yet: nothing can "
            "be called safe. "
            "Collect first (portfleet collect, or portfleet import)."
        )
    span = f"{answer.first:%Y-%m-%d} – {answer.last:%Y-%m-%d}"
    lines = [
        f"Safe TCP ports for {who}: free on {len(answer.hosts) - len(answer.unproven)} hosts in "
        f"{answer.host_nights:,} host-nights over {answer.nights} nights ({span}), outside "
        "every dynamic range:"
    ]
    lines += [f"  {rank}. {item}" for rank, item in enumerate(answer.ranges[:count], 1)]
    if not answer.ranges:
        lines.append("  none: every port from 1024 up was reserved, held or dynamic somewhere")
    if answer.unproven:
        lines.append("Not proven on (no excluded ranges read yet): " + ", ".join(answer.unproven))
    if answer.moves:
        lines.append("Wanted ports inside a dynamic range, and the range that leaves them out:")
        for move in answer.moves:
            where = f"  {move.host} port {move.port} ({move.family}, range {move.current})"
            commands = move.commands()
            lines.append(f"{where}: {commands[0] if commands else 'no range netsh accepts'}")
        lines += ["Before running it:", *(f"  - {caveat}" for caveat in DYNAMIC_MOVE_CAVEATS)]
    return "\n".join(lines)
