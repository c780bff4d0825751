"""The ``portfleet`` command: thin click wrappers over the library, data on stdout."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from collector import __version__
from collector.config import ConfigError, PortfleetConfig, find_config_path, load_config
from collector.exitcodes import ExitCode
from collector.parsers.text import DEFAULT_CODEPAGE

if TYPE_CHECKING:
    from collector.store.database import Store

err = Console(stderr=True, highlight=False)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Settings:
    """Global options, resolved on first use so ``--help`` never touches files."""

    def __init__(self, db: str | None, config_path: Path | None) -> None:
        self._db = db
        self._config_path = config_path
        self._config: PortfleetConfig | None = None
        self._stores: list[Store] = []

    def close(self) -> None:
        """Close every store this command opened (connections are not left to the GC)."""
        for store in self._stores:
            store.close()

    @property
    def config(self) -> PortfleetConfig:
        """Return the validated config (defaults when there is no file)."""
        if self._config is None:
            try:
                self._config = load_config(find_config_path(self._config_path))
            except ConfigError as exc:
                fail(str(exc), ExitCode.USAGE)
        return self._config

    @property
    def database_url(self) -> str:
        """Return the database URL by the documented order of precedence."""
        from collector.store.database import resolve_database_url

        return resolve_database_url(self._db, self.config.database)

    def require_database(self) -> None:
        """Exit with a clear message when a reading command names a SQLite file that is absent.

        Reading commands never create a database: a mistyped --db must not answer "0 rows".
        """
        from collector.store.database import sqlite_path

        path = sqlite_path(self.database_url)
        if path is not None and not path.is_file():
            fail(
                f"no database at {path}; check --db (or $PORTFLEET_DB, the config's database:), "
                "or create one with `portfleet collect`, `portfleet import` or `portfleet demo`",
                ExitCode.DATABASE,
            )

    def open_store(self, how: Callable[[str], Store] | None = None) -> Store:
        """Open the store (migrated to head unless ``how`` says otherwise), or exit clearly."""
        from sqlalchemy.exc import SQLAlchemyError

        from collector.store.database import Store, StoreNotReadable, describe_url

        url = self.database_url
        try:
            store = (how or Store.open)(url)
        except StoreNotReadable as exc:
            fail(str(exc), ExitCode.DATABASE)
        except (SQLAlchemyError, OSError) as exc:
            reason = f"{type(exc).__name__}: {_first_line(exc)}"
            fail(f"cannot open the database {describe_url(url)}: {reason}", ExitCode.DATABASE)
        self._stores.append(store)
        return store

    def read_store(self) -> Store:
        """Open the store for reading only: it must exist and be at this schema, or exit."""
        from collector.store.database import Store

        self.require_database()
        return self.open_store(Store.reader)


def fail(message: str, code: ExitCode) -> NoReturn:
    """Print an error on stderr and exit with a named code."""
    from collector.console import plain

    # Messages quote hosts, files and queries: printed as text, never as markup.
    err.print(Text.assemble(("error:", "bold red"), " ", plain(message)), soft_wrap=True)
    sys.exit(int(code))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="portfleet")
@click.option(
    "--db",
    "db",
    metavar="URL",
    help="Database URL or SQLite file (else $PORTFLEET_DB, the config, the default file).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="Config file (else $PORTFLEET_CONFIG, ./config.yaml).",
)
@click.pass_context
def cli(ctx: click.Context, db: str | None, config_path: Path | None) -> None:
    """Find out why Windows workstations cannot bind their ports, across the whole fleet.

    \b
    Examples:
      portfleet import ./capture --host dev-ws-07 --taken-at 2024-03-01T09:30+01:00
      portfleet sql "SELECT * FROM v_failing_ports WHERE classification = 'unexplained'"
      portfleet parse excluded netsh-output.txt --json
    """
    ctx.obj = Settings(db, config_path)
    ctx.call_on_close(ctx.obj.close)


@cli.command("parse", context_settings=CONTEXT)
@click.argument(
    "kind", type=click.Choice(["excluded", "dynamicport", "netstat", "hotfix", "bind-failures"])
)
@click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--codepage",
    default=DEFAULT_CODEPAGE,
    show_default=True,
    help="OEM code page of non-UTF bytes (437, 850, 932, …).",
)
def parse_command(kind: str, file: Path, as_json: bool, codepage: str) -> None:
    """Print what a saved Windows command output holds.

    KIND is the command that printed FILE (- reads stdin). Any display language, aligned or
    pasted with collapsed spaces, UTF-8, UTF-16 or an OEM code page. A paste cut short or with
    a damaged row is refused, naming the line (exit 2); a note after a row is stripped with a
    warning. To read a known excerpt, start FILE with a comment line such as
    "# command: netstat -ano  # truncated".

    \b
    Example:
      netsh int ipv4 show excludedportrange protocol=tcp > ex.txt   (on Windows)
      portfleet parse excluded ex.txt --json
    """
    from rich.markup import escape

    from collector.parsers import PARSERS, ParseError, ParseWarning

    data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    parser = PARSERS[kind]
    warnings: list[ParseWarning] = []
    try:
        result = parser.parse(data, codepage, warnings=warnings)
    except ParseError as exc:
        # The quoted line is the host's text: "[svchost.exe]" must not be read as markup.
        fail(
            escape(f"{file}: {exc}; FILE should hold the output of: {parser.command}"),
            ExitCode.USAGE,
        )
    # Stripped notes and doubtful ends go to stderr, one line each; stdout keeps only the data.
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(f'{file}: {warning}')}", soft_wrap=True)
    rows = parser.to_json(result)
    if as_json:
        click.echo(json.dumps(rows, indent=1, ensure_ascii=False))
        return
    _print_parsed(kind, rows)


def _print_parsed(kind: str, rows: list[Any]) -> None:
    console = Console()
    if kind == "excluded":
        for table_json in rows:
            ranges = table_json["ranges"]
            _print_rows(
                console,
                f"excluded ranges, protocol {table_json['protocol'] or 'unknown'}",
                [
                    {
                        "start": r["start"],
                        "end": r["end"],
                        "ports": r["end"] - r["start"] + 1,
                        "administered": "*" if r["administered"] else "",
                    }
                    for r in ranges
                ],
            )
        return
    _print_rows(console, kind, rows)


def _print_rows(console: Console, title: str, rows: Sequence[dict[str, Any]]) -> None:
    from collector.console import plain

    table = Table(title=f"{title} ({len(rows)})", title_justify="left")
    for column in rows[0] if rows else ["(none)"]:
        table.add_column(str(column), overflow="fold")
    for row in rows:
        table.add_row(*(plain("" if v is None else v) for v in row.values()))
    console.print(table)


@cli.command("import", context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--host", "host_name", metavar="NAME", help="Host a capture folder belongs to.")
@click.option(
    "--taken-at",
    "taken_at",
    metavar="ISO-TIME",
    help="When a capture folder's commands ran, with offset.",
)
@click.option(
    "--codepage",
    default=DEFAULT_CODEPAGE,
    show_default=True,
    help="OEM code page of captured non-UTF bytes.",
)
@click.pass_obj
def import_command(
    settings: Settings,
    paths: tuple[Path, ...],
    host_name: str | None,
    taken_at: str | None,
    codepage: str,
) -> None:
    """Store probe documents (JSON files) or folders of raw captures.

    A probe document is what `portfleet probe-script` writes on a host without WinRM. A capture
    folder holds command outputs copied by hand, named after their command: netstat-ano.txt,
    bind-failures.txt, excludedportrange-ipv4-tcp.txt, dynamicport-ipv4-tcp.txt, get-hotfix.txt.
    Other files are named and skipped. Each input is one transaction; importing the same input
    twice stores it once.

    \b
    Examples:
      portfleet import nightly/*.json
      portfleet import ./capture --host dev-ws-07 --taken-at 2024-03-01T09:30:00+01:00
    """
    from collector.console import plain
    from collector.importer import import_paths

    when = _parse_taken_at(taken_at)
    store = settings.open_store()
    results = import_paths(store, paths, host_name, when, codepage)
    failed = 0
    for result in results:
        for name in result.skipped:
            err.print(plain(f"skipped {name}: not named after a known command"))
        if result.outcome == "failed":
            failed += 1
            err.print(Text.assemble(("failed", "red"), " ", plain(result.message)), soft_wrap=True)
        else:
            verb = "stored" if result.outcome == "stored" else "already stored"
            line = f"{verb} {result.source} → host {result.host}, snapshot {result.snapshot_id}"
            err.print(plain(line), soft_wrap=True)
            for problem in result.problems:
                kept = Text.assemble("  ", ("kept, but unreadable:", "yellow"), " ", plain(problem))
                err.print(kept, soft_wrap=True)
    if failed:
        sys.exit(int(ExitCode.SOME_FAILED))


def _parse_taken_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(
            f"--taken-at {value!r} is not an ISO time; write e.g. 2024-03-01T09:30:00+01:00",
            ExitCode.USAGE,
        )
    if parsed.tzinfo is None:
        fail(
            f"--taken-at {value!r} has no offset; write e.g. {value}+01:00 or {value}Z",
            ExitCode.USAGE,
        )
    return parsed


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
        reason = f"{type(exc).__name__}: {_first_line(exc)}"
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


@cli.group("db", context_settings=CONTEXT)
def db_group() -> None:
    """Look after the store's schema."""


@db_group.command("upgrade", context_settings=CONTEXT)
@click.pass_obj
def db_upgrade(settings: Settings) -> None:
    """Bring the database to the newest schema (every command does this itself too)."""
    store = settings.open_store()
    click.echo(f"{store.name} is at revision {store.revision()}")


@db_group.command("current", context_settings=CONTEXT)
@click.pass_obj
def db_current(settings: Settings) -> None:
    """Print the database's schema revision without changing anything."""
    from collector.store.database import Store, head_revision

    store = settings.open_store(Store.unmigrated)
    current = store.revision()
    state = "up to date" if current == head_revision() else f"head is {head_revision()}"
    click.echo(f"{store.name}: revision {current or '(empty)'}, {state}")


@db_group.command("reclassify", context_settings=CONTEXT)
@click.pass_obj
def db_reclassify(settings: Settings) -> None:
    """Diagnose every stored snapshot again with today's rules, and derive the history again.

    Run it after upgrading portfleet when the CHANGELOG says a diagnosis rule changed. One
    transaction: a failure changes nothing. Prints how many snapshots got new findings.

    \b
    Example:
      portfleet db reclassify
    """
    from collector.store.findings import reclassify
    from collector.store.history import refresh_history

    with settings.open_store().transaction() as connection:
        result = reclassify(connection)
        history = refresh_history(connection)
    click.echo(result.describe())
    click.echo(f"history: {history.events} change events, {history.causes} candidate causes")


@db_group.command("reparse", context_settings=CONTEXT)
@click.pass_obj
def db_reparse(settings: Settings) -> None:
    """Read every stored document again with today's parsers, and store what they now read.

    Run it after upgrading portfleet when the CHANGELOG says a parser improved: the raw text of
    every snapshot is kept, so old nights benefit too. Findings and history follow. One
    transaction: a failure changes nothing. Prints which parts of how many snapshots changed.

    \b
    Example:
      portfleet db reparse
    """
    from collector.store.reparse import reparse

    with settings.open_store().transaction() as connection:
        result = reparse(connection)
    click.echo(result.describe())


@cli.command("collect", context_settings=CONTEXT)
@click.argument("selectors", nargs=-1, metavar="[HOST|PATTERN|@GROUP]...")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 512),
    help="Hosts at once (config: collect.concurrency).",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=1),
    help="Seconds one host may take (config: probe.deadline_seconds).",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    help="Retries of transient faults (config: collect.retries).",
)
@click.option(
    "--log",
    "log_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append plain log lines to this file.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug lines too.")
@click.pass_obj
def collect_command(
    settings: Settings,
    selectors: tuple[str, ...],
    concurrency: int | None,
    deadline: float | None,
    retries: int | None,
    log_file: Path | None,
    verbose: bool,
) -> None:
    """Take one snapshot of every configured host (or the selected ones) over WinRM.

    Run it nightly from cron, a systemd timer or Task Scheduler (see README). Every attempt is
    stored, failed ones too; exit code 1 means some hosts failed and the others were stored.

    \b
    Examples:
      portfleet --config /etc/portfleet/config.yaml collect
      portfleet collect @backend dev-ws-1* --concurrency 8 --log /var/log/portfleet.log
    """
    from collector.collect import collect
    from collector.console import configure_logging, print_summary, progress_bar
    from collector.plan import plan_collection
    from collector.transport import SelectionError

    config = settings.config
    try:
        plan = plan_collection(
            config, selectors, concurrency=concurrency, deadline_seconds=deadline, retries=retries
        )
    except SelectionError as exc:
        fail(str(exc), ExitCode.USAGE)
    configure_logging(log_file, verbose)
    store = settings.open_store()
    with progress_bar(len(plan.hosts), "collecting") as bar:
        outcomes = collect(
            store, config, plan, on_done=(lambda _o: bar.advance(bar.task_ids[0])) if bar else None
        )
    print_summary(outcomes, Console())
    if any(o.status == "failed" for o in outcomes):
        sys.exit(int(ExitCode.SOME_FAILED))


@cli.command("probe-script", context_settings=CONTEXT)
def probe_script_command() -> None:
    """Print the PowerShell probe, for hosts where WinRM is off.

    Save it on the host and run it from Task Scheduler as an administrator; it writes one probe
    document that `portfleet import` takes.

    \b
    Example (on the host, nightly):
      powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\\ProgramData\\portfleet\\probe.ps1
        -OutFile \\\\fileserver\\portfleet\\%COMPUTERNAME%.json
    """
    from collector.probe import probe_script

    click.echo(probe_script(), nl=False)


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

    Sections: fleet summary and data freshness, wanted ports per host, the port map, a
    timeline per host, updates and changes that go with new reservations across the fleet,
    unexplained failures, and the commands that fix each host.

    \b
    Example:
      portfleet report --out /srv/www/portfleet/index.html
    """
    from collector.store.database import StoreNotReadable
    from reports.report import build_report

    settings.require_database()
    config = settings.config
    wanted = ports or tuple(sorted({*config.wanted_ports, *config.wanted_services}))
    try:
        path = build_report(
            settings.database_url, out, wanted, None, config.wanted_services,
            config.report.stale_days,
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


@cli.command("simulate", context_settings=CONTEXT)
@click.option(
    "--hosts", type=click.IntRange(1, 2000), default=12, show_default=True, help="Simulated hosts."
)
@click.option(
    "--nights",
    type=click.IntRange(10, 365),
    default=60,
    show_default=True,
    help="Nights the model covers.",
)
@click.option(
    "--night",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Night the hosts answer for.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulated fleet.")
@click.option(
    "--https/--http",
    default=True,
    show_default=True,
    help="Serve WinRM over HTTPS (self-signed CA).",
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds per request.",
)
@click.option(
    "--dir",
    "work_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("portfleet-sim"),
    show_default=True,
    help="Where to write the config, the credentials file and the CA certificate.",
)
def simulate_command(
    hosts: int, nights: int, night: int, seed: int, https: bool, latency: float, work_dir: Path
) -> None:
    """Serve simulated Windows hosts over WinRM on loopback until Ctrl-C.

    Writes DIR/config.yaml (hosts, outages of that night included) and DIR/simulate.env (the
    throwaway credentials, readable by you only). In another shell:

    \b
      set -a; . portfleet-sim/simulate.env; set +a
      portfleet --config portfleet-sim/config.yaml --db sim.db collect
    """
    import os
    import signal
    import threading

    import yaml

    from collector.simulator.cluster import (
        PASSWORD_ENV,
        USER_ENV,
        WRONG_PASSWORD_ENV,
        SimulatedFleet,
        fleet_config,
    )
    from collector.simulator.fleet import Fleet, FleetSpec

    if night >= nights:
        fail(f"--night {night} is past the model's {nights} nights", ExitCode.USAGE)
    work_dir.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(FleetSpec(seed=seed, hosts=hosts, nights=nights))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SimulatedFleet(fleet, work_dir, lambda: night, https=https, latency=latency) as served:
        addresses = served.addresses()
        checked = PortfleetConfig.model_validate(fleet_config(fleet, addresses, night))
        config = checked.model_dump(mode="json", exclude_none=True)
        if addresses.ca_file:  # relative to the config, as every path in a config is
            ca_file = os.path.relpath(Path(addresses.ca_file).absolute(), work_dir.absolute())
            config["defaults"]["ca_file"] = ca_file
        (work_dir / "config.yaml").write_text(
            yaml.safe_dump(config, sort_keys=False), encoding="utf-8"
        )
        env = work_dir / "simulate.env"
        env.touch(mode=0o600)
        os.chmod(env, 0o600)
        values = {
            USER_ENV: "portfleet",
            PASSWORD_ENV: addresses.password,
            WRONG_PASSWORD_ENV: "wrong",
        }
        env.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
        err.print(f"serving {hosts} hosts (night {night}); config: {work_dir / 'config.yaml'}")
        err.print(f"credentials for the collector: {env}")
        err.print("Ctrl-C to stop")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass


@cli.command("demo", context_settings=CONTEXT)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("portfleet-demo"),
    show_default=True,
    help="Folder for the demo database and report.",
)
@click.option(
    "--hosts", type=click.IntRange(8, 200), default=12, show_default=True, help="Simulated hosts."
)
@click.option(
    "--nights",
    type=click.IntRange(1, 365),
    default=60,
    show_default=True,
    help="Nights to collect.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulated fleet.")
def demo_command(out_dir: Path, hosts: int, nights: int, seed: int) -> None:
    """Run the whole pipeline on a simulated fleet, over real WinRM on loopback.

    Simulated Windows hosts in several display languages get updates, reboot, install Docker
    and WSL, and see WinNAT reserve port blocks; one update is planted to cause new
    reservations on the hosts that run Hyper-V. portfleet collects every night into a fresh
    SQLite file, imports the bundled real capture of the seed report, and builds the report.
    """
    from collector.demo import run_demo
    from collector.simulator.fleet import FleetSpec

    run_demo(out_dir, Console(stderr=True), FleetSpec(seed=seed, hosts=hosts, nights=nights))


def main() -> None:
    """Run the ``portfleet`` command line."""
    try:
        cli.main(prog_name="portfleet", standalone_mode=True)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))


if __name__ == "__main__":
    main()
