"""Storage benchmark: bytes a host costs on a night where nothing on it changed.

N simulated hosts are imported for a first night, then for M nights on which each host is
unchanged as a real one would be: the probe ran at another time and took another while, and
netstat lists other short-lived connections, but no range, listener, feature, service, update
or fact moved. The figure is the store's growth over those nights divided by host-nights, beside
the target: only the snapshots and attempts tables grow (a snapshot row, with the patch its
document is kept as, and its attempt row). The store is compacted before each
measure (SQLite ``VACUUM``; PostgreSQL ``VACUUM FULL``), so free pages and dead rows left by the
in-flight marks do not count. SQLite in a temporary file by default, or the empty database
``--db`` names (SQLite or PostgreSQL).

    python -m bench.storage [--hosts 200] [--nights 5] [--db URL]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import re
import sqlite3
import tempfile
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from collector.importer import import_paths
from collector.simulator.fleet import Fleet, FleetSpec
from collector.store.database import Store, describe_url

# The tables an unchanged host-night may grow: its snapshot and its attempt, nothing more.
TARGET_TABLES = frozenset({"snapshots", "attempts"})

_EPHEMERAL = re.compile(r"^(\s*TCP\s+\S+\s+\S+:)(\d+)(\s+(?:TIME_WAIT|ESTABLISHED|CLOSE_WAIT)\b)")


def unchanged_night(first: dict[str, Any], night: int, rng: random.Random) -> dict[str, Any]:
    """Return the host's first document as a later night on which nothing changed would give it."""
    document = copy.deepcopy(first)
    taken = datetime.fromisoformat(first["taken_at"]) + timedelta(
        days=night, seconds=rng.randint(0, 90)
    )
    document["taken_at"] = taken.isoformat()
    if document.get("duration_ms") is not None:
        document["duration_ms"] = rng.randint(30_000, 90_000)
    for sweep in document.get("bind_sweep") or []:
        if sweep.get("duration_ms") is not None:
            sweep["duration_ms"] = rng.randint(15_000, 45_000)
    raw = document.get("raw", {})
    if "netstat" in raw:
        lines = raw["netstat"].split("\n")
        raw["netstat"] = "\n".join(
            _EPHEMERAL.sub(lambda m: f"{m[1]}{rng.randint(49152, 65535)}{m[3]}", line)
            for line in lines
        )
    return document


def write_nights(folder: Path, hosts: int, nights: int, seed: int) -> list[list[Path]]:
    """Write every host's first night and ``nights`` unchanged ones; return the files by night."""
    fleet = Fleet(FleetSpec(seed=seed, hosts=hosts, nights=10))
    rng = random.Random(seed)
    firsts = [fleet.document(host, 0) for host in fleet.hosts]
    by_night = []
    for night in range(nights + 1):
        files = []
        for index, first in enumerate(firsts):
            document = first if night == 0 else unchanged_night(first, night, rng)
            path = folder / f"host-{index:04d}-{night:03d}.json"
            path.write_text(json.dumps(document), encoding="utf-8")
            files.append(path)
        by_night.append(files)
    return by_night


def table_bytes(store: Store) -> dict[str, int]:
    """Return the bytes each table takes with its indexes, once the store is compacted."""
    if store.path is not None:
        # VACUUM needs a connection outside any transaction: the driver's own, in autocommit.
        with closing(sqlite3.connect(store.path, isolation_level=None)) as raw:
            raw.execute("VACUUM")
            return _sqlite_tables(raw)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM FULL")
        rows = connection.execute(
            text(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND n.nspname = current_schema()"
            )
        )
        return {str(name): int(size) for name, size in rows}


def _sqlite_tables(connection: sqlite3.Connection) -> dict[str, int]:
    """Sum each table's pages and its indexes' pages (SQLite's dbstat)."""
    owners = {
        str(name): str(table)
        for name, table in connection.execute(
            "SELECT name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')"
        )
    }
    sizes: dict[str, int] = {}
    for name, size in connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
        owner = owners.get(str(name), str(name))
        sizes[owner] = sizes.get(owner, 0) + int(size)
    return sizes


def measure(url: str, by_night: list[list[Path]]) -> tuple[dict[str, int], dict[str, int], float]:
    """Import the first night, measure, import the others, measure; return both and the patch.

    The patch is the mean size of the unchanged nights' document patches (compressed).
    """
    with Store.open(url) as store:
        with store.connect() as connection:
            if connection.execute(text("SELECT COUNT(*) FROM hosts")).scalar_one():
                raise SystemExit(f"{store.name} holds hosts already: give an empty database")
        for index, files in enumerate(by_night):
            results = import_paths(store, files)
            failed = [r for r in results if r.outcome == "failed"]
            if failed:
                raise SystemExit(f"{failed[0].source}: {failed[0].message}")
            if index == 0:
                before = table_bytes(store)
        with store.connect() as connection:
            patch = connection.execute(
                text("SELECT AVG(LENGTH(document_delta)) FROM snapshots")
            ).scalar()
        return before, table_bytes(store), float(patch or 0)


def main() -> None:
    """Store a first night and unchanged ones, print bytes per unchanged host-night."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--nights", type=int, default=5, help="unchanged nights after the first")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", metavar="URL", help="an empty database (default: a temp file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="portfleet-bench-storage-") as work:
        folder = Path(work)
        by_night = write_nights(folder, args.hosts, args.nights, args.seed)
        url = args.db or f"sqlite:///{folder / 'store.db'}"
        before, after, patch = measure(url, by_night)
    host_nights = args.hosts * args.nights
    grown = {name: after.get(name, 0) - before.get(name, 0) for name in after | before}
    total = sum(grown.values())
    print(f"{args.hosts} hosts: a first night, then {args.nights} unchanged nights "
          f"into {describe_url(url)}")  # fmt: skip
    print(f"first night: {sum(before.values()) / args.hosts:,.0f} bytes a host")
    for name, size in sorted(grown.items(), key=lambda item: -item[1]):
        if size:
            print(f"  {name:<22} {size / host_nights:>8,.0f} bytes a host-night")
    others = sorted(name for name, size in grown.items() if size > 0 and name not in TARGET_TABLES)
    verdict = f"MISSED: {', '.join(others)} grew too" if others else "met"
    print(f"storage: {total / host_nights:,.0f} bytes per unchanged host-night, of which "
          f"{patch:,.0f} the document's patch (target: a snapshot row and its attempt, "
          f"nothing more: {verdict})")  # fmt: skip


if __name__ == "__main__":
    main()
