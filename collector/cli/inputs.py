"""Commands that bring data in: ``parse``, ``import``, ``collect``, ``probe-script``."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from collector.cli.root import CONTEXT, Settings, cli, err, fail, parse_time_option
from collector.exitcodes import ExitCode
from collector.parsers.text import DEFAULT_CODEPAGE


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
    Other files are named and skipped. Inputs are stored a hundred to a transaction, each whole
    or not at all: one the database refuses is reported and the others are kept. Importing the
    same input twice stores it once.

    \b
    Examples:
      portfleet import nightly/*.json
      portfleet import ./capture --host dev-ws-07 --taken-at 2024-03-01T09:30:00+01:00
    """
    from collector.console import plain
    from collector.importer import import_paths

    when = parse_time_option("--taken-at", taken_at, "2024-03-01T09:30:00+01:00")
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
@click.option("--notify", "then_notify", is_flag=True, help="Then run `portfleet notify`.")
@click.option("--site", metavar="NAME", help="Collect only the hosts of this site (config: site).")
@click.option(
    "--again",
    is_flag=True,
    help="Collect the selected hosts even if collected earlier tonight.",
)
@click.option(
    "--night",
    metavar="KEY",
    help="The night to share with other collectors (default: the UTC date it began).",
)
@click.pass_obj
def collect_command(
    settings: Settings,
    selectors: tuple[str, ...],
    concurrency: int | None,
    deadline: float | None,
    retries: int | None,
    log_file: Path | None,
    verbose: bool,
    then_notify: bool,
    site: str | None,
    again: bool,
    night: str | None,
) -> None:
    """Take one snapshot of every configured host (or the selected ones) over WinRM.

    Run it nightly from cron, a systemd timer or Task Scheduler (see README). Every attempt is
    stored, failed ones too; exit code 1 means some hosts failed and the others were stored.
    With --notify, it then tells what changed (see `portfleet notify`); exit code 4 means the
    night was stored but some messages wait for the next run.

    Each host is collected once a night, however many collectors share the database: a night
    runs from collect.night_starts_utc_hour (12:00 UTC) to the same hour the next day. Running
    collect again the same night tries the hosts that failed and skips those collected;
    --again collects them anyway. With several collectors, run one per site with --site.

    \b
    Examples:
      portfleet --config /etc/portfleet/config.yaml collect --notify
      portfleet collect @backend dev-ws-1* --concurrency 8 --log /var/log/portfleet.log
      portfleet --db postgresql+psycopg://pf@db/portfleet collect --site paris
    """
    from collector.clock import now
    from collector.collect import collect
    from collector.console import configure_logging, print_night, print_summary, progress_bar
    from collector.plan import plan_collection
    from collector.store.leases import night_key, night_shares
    from collector.transport import SelectionError

    config = settings.config
    night = night or night_key(now(), config.collect.night_starts_utc_hour)
    try:
        plan = plan_collection(
            config,
            selectors,
            concurrency=concurrency,
            deadline_seconds=deadline,
            retries=retries,
            night=night,
            again=again,
            site=site,
        )
    except SelectionError as exc:
        fail(str(exc), ExitCode.USAGE)
    configure_logging(log_file, verbose)
    store = settings.open_store()
    with progress_bar(len(plan.hosts), "collecting") as bar:
        outcomes = collect(
            store, config, plan, on_done=(lambda _o: bar.advance(bar.task_ids[0])) if bar else None
        )
    console = Console()
    print_summary(outcomes, console)
    shares = night_shares(store, night, [entry.name for entry in plan.hosts])
    print_night(night, plan.collector, len(plan.hosts), len(outcomes), shares, console)
    delivered = True
    if then_notify:
        from collector.cli.watch import notify_after_collect

        delivered = notify_after_collect(settings)
    if any(o.status == "failed" for o in outcomes):
        sys.exit(int(ExitCode.SOME_FAILED))
    if not delivered:
        sys.exit(int(ExitCode.NOT_DELIVERED))


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
