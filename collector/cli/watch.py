"""Commands that watch the fleet: ``fix`` records a fix, ``notify`` tells what changed."""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING

import click
from rich.text import Text

from collector.cli.root import CONTEXT, Settings, cli, err, fail, first_line, parse_time_option
from collector.exitcodes import ExitCode

if TYPE_CHECKING:
    from collector.notify import NotifyResult
    from collector.store.outbox import Event


@cli.command("fix", context_settings=CONTEXT)
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@click.option(
    "--action",
    required=True,
    type=click.Choice(["reserve", "restart-winnat", "hyperv-cycle", "other"]),
    help="What was done on the host.",
)
@click.option("--note", metavar="TEXT", help="What else to remember (a ticket, the command).")
@click.option("--by", "by", metavar="NAME", help="Who applied it (default: this account).")
@click.option(
    "--at", "at", metavar="ISO-TIME", help="When it was applied, with offset (default: now)."
)
@click.pass_obj
def fix_command(
    settings: Settings,
    host: str,
    port: int,
    action: str,
    note: str | None,
    by: str | None,
    at: str | None,
) -> None:
    """Record that a fix was applied to TCP PORT on HOST; every later night checks it.

    A night holds the fix when the port binds, or only an administered (*) range covers it; a
    night that finds it reserved at run time, probably reserved or failing unexplained again
    is a regression, which `portfleet notify` tells at once. An administered range that
    appears on a host is recorded as a fix by itself. `portfleet explain HOST PORT` shows the
    fix history.

    \b
    Examples:
      portfleet fix dev-ws-07 5432 --action reserve --note "netsh add excludedportrange, INC-4711"
      portfleet fix dev-ws-07 49786 --action restart-winnat --at 2026-11-20T09:30:00+01:00
    """
    from collector.console import visible
    from collector.store.fixes import UnknownHostError, record_fix

    applied = parse_time_option("--at", at, "2026-11-20T09:30+01:00")
    store = settings.open_store()
    try:
        recorded = record_fix(
            store, host, port, action, note=note, by=by or _account(), applied_at=applied
        )
    except UnknownHostError as exc:
        fail(f'{exc}; see `portfleet sql "SELECT name FROM hosts"`', ExitCode.USAGE)
    line = (
        f"recorded fix {recorded.id}: {recorded.host} TCP {recorded.port} {recorded.action} "
        f"at {recorded.applied_at:%Y-%m-%d %H:%M} UTC; checked against {recorded.checks} "
        "stored night(s) since"
    )
    click.echo(visible(line))


@cli.command("notify", context_settings=CONTEXT)
@click.option("--dry-run", is_flag=True, help="Print what would be sent; send and store nothing.")
@click.pass_obj
def notify_command(settings: Settings, dry_run: bool) -> None:
    """Tell the team what changed: blocked and freed wanted ports, fixes, failing hosts.

    Each event is sent once to every channel of the config's notify: section (e-mail, a JSON
    webhook, Slack, a Teams workflow); what was sent is kept in the store, so running it again
    sends nothing new. A channel that fails is retried on the next run (notify.max_tries times);
    exit code 4 says some messages wait for it. `portfleet collect --notify` runs it after the
    night.

    \b
    Examples:
      portfleet notify --dry-run
      portfleet --config /etc/portfleet/config.yaml notify
    """
    if dry_run:
        events = pending_events(settings, dry_run=True)
        for event in events:
            click.echo(describe_event(event))
        channels = len(settings.config.notify.channels)
        err.print(f"notify --dry-run: {len(events)} event(s), {channels} channel(s); nothing sent")
        return
    result = run_notify(settings)
    if result is not None and result.failed:
        sys.exit(int(ExitCode.NOT_DELIVERED))


def pending_events(settings: Settings, *, dry_run: bool = False) -> list[Event]:
    """Return the events the store holds that were not queued yet (and, dry, those queued)."""
    from collector.store.outbox import pending, told
    from reports.alerts import find_events

    config = settings.config
    store = settings.read_store() if dry_run else settings.open_store()
    with store.connect() as connection:
        keys = told(connection)
        waiting = [item.event for item in pending(connection, config.notify.max_tries)]
    events: list[Event] = find_events(
        store,
        config.wanted_ports,
        config.wanted_services,
        failing_nights=config.notify.failing_nights,
        told=keys,
    )
    if dry_run:
        retried = {event.key: event for event in waiting}
        events = list(retried.values()) + [e for e in events if e.key not in retried]
    return events


def run_notify(settings: Settings) -> NotifyResult | None:
    """Find what is new, queue it, send what is pending; say how it went on stderr."""
    from collector.console import plain
    from collector.notify import notify

    config = settings.config
    if not config.notify.channels:
        err.print("notify: no channel in the config's notify: section; nothing sent")
        return None
    events = pending_events(settings)
    result = notify(settings.open_store(), config.notify, events)
    err.print(plain(result.describe()), soft_wrap=True)
    for channel in result.channels:
        for reason in channel.reasons:
            line = Text.assemble(
                ("not delivered", "yellow"),
                " ",
                plain(f"via {channel.name}: {reason} (kept; retried on the next run)"),
            )
            err.print(line, soft_wrap=True)
    return result


def notify_after_collect(settings: Settings) -> bool:
    """Run ``notify`` after a collection; return False when something was not delivered.

    Whatever goes wrong here is logged and counted; the night is already stored.
    """
    import logging

    try:
        result = run_notify(settings)
    except Exception as exc:  # never fail the collection over its messages
        logging.getLogger(__name__).exception("notify failed after the collection")
        err.print(f"notify failed: {type(exc).__name__}: {first_line(exc)}")
        return False
    return result is None or not result.failed


def describe_event(event: Event) -> str:
    """Return an event as plain lines for the terminal."""
    from collector.console import visible

    lines = [f"[{event.kind}] {event.title}", *(f"  - {line}" for line in event.lines)]
    lines += [f"    {command}" for command in event.commands]
    return "\n".join(visible(line) for line in lines)


def _account() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
