"""``portfleet demo``: run the main job end to end on bundled real data."""

from __future__ import annotations

import shutil
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from collector.importer import import_paths
from collector.store.database import open_store

if TYPE_CHECKING:
    from reports.blocked import BlockedBlock

# The seed report's capture (see collector/data/seed/README.md); its time is not known exactly.
SEED_HOST = "seed-workstation"
SEED_TAKEN_AT = datetime.fromisoformat("2018-06-01T12:00:00+02:00")


def seed_capture_folder() -> Path:
    """Return the folder of the bundled seed capture."""
    return Path(str(resources.files("collector").joinpath("data/seed/capture")))


def run_demo(out_dir: Path, console: Console) -> Path:
    """Import the seed capture into a fresh database under ``out_dir`` and print the result."""
    from reports.blocked import list_blocked

    out_dir.mkdir(parents=True, exist_ok=True)
    database = out_dir / "portfleet.db"
    for stale in out_dir.glob("portfleet.db*"):
        stale.unlink()
    engine = open_store(f"sqlite:///{database.resolve()}")
    capture = out_dir / "seed-capture"
    shutil.rmtree(capture, ignore_errors=True)
    shutil.copytree(seed_capture_folder(), capture)
    (result,) = import_paths(engine, [capture], SEED_HOST, SEED_TAKEN_AT)
    if result.outcome == "failed":
        raise RuntimeError(f"the bundled seed capture did not import: {result.message}")
    table = Table(title="What is blocked where (latest snapshot per host)", title_justify="left")
    for column in ("host", "ports", "count", "why", "evidence"):
        table.add_column(column)
    for block in list_blocked(engine):
        span = (
            str(block.first_port) if block.ports == 1 else f"{block.first_port}-{block.last_port}"
        )
        table.add_row(
            block.host,
            span,
            str(block.ports),
            _why(block.classification, block.excluded_known),
            _evidence(block),
        )
    console.print(table)
    console.print(f"database: {database}")
    console.print(f'try: portfleet --db {database} sql "SELECT * FROM v_failing_ports"')
    engine.dispose()
    return database


def _why(classification: str, excluded_known: bool) -> str:
    if classification == "unexplained" and not excluded_known:
        return "unexplained (no excludedportrange captured)"
    return classification


def _evidence(block: BlockedBlock) -> str:
    if block.pid is not None:
        owner = f"held by PID {block.pid} ({block.process or 'unknown process'})"
    else:
        owner = "nothing listens"
    return f"bind error {block.error_code}; {owner}"
