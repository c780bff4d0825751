"""The ``portfleet`` group: global options, the store and config they name, errors, exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
from rich.console import Console
from rich.text import Text

from collector import __version__
from collector.config import ConfigError, PortfleetConfig, find_config_path, load_config
from collector.exitcodes import ExitCode

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
            reason = f"{type(exc).__name__}: {first_line(exc)}"
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


def first_line(exc: BaseException) -> str:
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


def main() -> None:
    """Run the ``portfleet`` command line."""
    try:
        cli.main(prog_name="portfleet", standalone_mode=True)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))


def parse_time_option(option: str, value: str | None, example: str) -> datetime | None:
    """Read an ISO time from the command line, with its offset, or exit saying how to write it."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not an ISO time; write e.g. {example}", ExitCode.USAGE)
    if parsed.tzinfo is None:
        fail(
            f"{option} {value!r} has no offset; write e.g. {value}+01:00 or {value}Z",
            ExitCode.USAGE,
        )
    return parsed
