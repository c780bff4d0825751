"""The ``db`` commands: the store's schema revision, and deriving stored data again."""

from __future__ import annotations

import click

from collector.cli.root import CONTEXT, Settings, cli


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
    from collector.store.fixes import refresh_fixes
    from collector.store.history import refresh_history
    from collector.store.spans import rebuild_spans

    with settings.open_store().transaction() as connection:
        result = reclassify(connection)
        history = refresh_history(connection)
        refresh_fixes(connection)
        rebuild_spans(connection)  # a span is a run of equal finding sets: they changed
    click.echo(result.describe())
    click.echo(f"history: {history.events} change events, {history.causes} candidate causes")


@db_group.command("reparse", context_settings=CONTEXT)
@click.pass_obj
def db_reparse(settings: Settings) -> None:
    """Read every stored document again with today's parsers, and store what they now read.

    Run it after upgrading portfleet when the CHANGELOG says a parser improved: the raw text of
    every snapshot is kept, so old nights benefit too. Findings and history follow. Each
    snapshot is rewritten in a transaction of its own, so a nightly collect is never held up
    and a stopped reparse leaves every snapshot whole: run it again to finish. Prints which
    parts of how many snapshots changed.

    \b
    Example:
      portfleet db reparse
    """
    from collector.store.reparse import reparse

    result = reparse(settings.open_store())
    click.echo(result.describe())


@db_group.command("prune", context_settings=CONTEXT)
@click.option(
    "--keep-days",
    type=click.IntRange(min=1),
    required=True,
    metavar="N",
    help="Keep every snapshot and raw document of the last N days.",
)
@click.pass_obj
def db_prune(settings: Settings, keep_days: int) -> None:
    """Drop snapshots and raw documents older than N days, keeping what history needs.

    Of the older nights it keeps, for each host, the first and last night of every state (the
    same ranges, failures, listeners, features, services, boot, versions), every night a change
    event, a candidate cause, an update or a fix names, and the host's latest snapshot: "since
    when", "first seen", the change events and the correlation answer as before. The kept old
    nights lose their raw document (`db reparse` skips them). Safe while `collect` runs: one
    short transaction per batch of hosts. Prints what it removed.

    \b
    Example:
      portfleet db prune --keep-days 90
    """
    from collector.store.prune import prune

    result = prune(settings.open_store(), keep_days)
    click.echo(result.describe(keep_days))
