"""Ingest benchmark: probe documents stored per second by `portfleet import`.

The simulated fleet writes N hosts x M nights of probe documents (JSON files, as a scheduled
task would leave them on a share); each repeat imports them all into an empty store, night by
night as files would arrive, and the figure is documents per second over the whole import
(reading, parsing, the diagnosis, the store and each import's end included). SQLite in a
temporary file by default, or the empty database `--db` names (SQLite or PostgreSQL: one import
per fresh database, --repeat 1). Targets: >= 1,000 documents/s on SQLite, >= 500 on PostgreSQL.

    python -m bench.ingest [--hosts 200] [--nights 5] [--repeat 3] [--db URL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from collector.importer import import_paths
from collector.simulator.fleet import Fleet, FleetSpec
from collector.store.database import Store, describe_url

TARGETS = {"sqlite": 1000.0, "postgresql": 500.0}


def write_documents(folder: Path, hosts: int, nights: int, seed: int) -> list[list[Path]]:
    """Write every host's document of every night; return the files night by night."""
    fleet = Fleet(FleetSpec(seed=seed, hosts=hosts, nights=max(nights, 10)))
    by_night = []
    for night in range(nights):
        files = []
        for host in fleet.hosts:
            if fleet.outage(host.name, night) is not None:
                continue  # an offline host leaves no file
            path = folder / f"{host.name}-{night:03d}.json"
            path.write_text(json.dumps(fleet.document(host, night)), encoding="utf-8")
            files.append(path)
        by_night.append(files)
    return by_night


def measure(url: str, by_night: list[list[Path]]) -> tuple[float, int]:
    """Import every night's files into the store at ``url``; return (seconds, documents)."""
    seconds, _, stored = measure_cpu(url, by_night)
    return seconds, stored


def measure_cpu(url: str, by_night: list[list[Path]]) -> tuple[float, float, int]:
    """Import every night's files into ``url``; return (seconds, CPU seconds, documents).

    The CPU time is this process's: on a shared machine it varies less than the wall clock.
    """
    with Store.open(url) as store:
        with store.connect() as connection:
            if connection.execute(text("SELECT COUNT(*) FROM hosts")).scalar_one():
                raise SystemExit(f"{store.name} holds hosts already: give an empty database")
        started, cpu = time.perf_counter(), time.process_time()
        stored = 0
        for files in by_night:
            results = import_paths(store, files)
            failed = [r for r in results if r.outcome == "failed"]
            if failed:
                raise SystemExit(f"{failed[0].source}: {failed[0].message}")
            stored += len(results)
        return time.perf_counter() - started, time.process_time() - cpu, stored


def main() -> None:
    """Write the documents, import them, print documents per second."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--nights", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", metavar="URL", help="an empty database (default: a temp file)")
    args = parser.parse_args()
    if args.db and args.repeat != 1:
        parser.error("--db measures one import into an empty database: use --repeat 1")
    with tempfile.TemporaryDirectory(prefix="portfleet-bench-ingest-") as work:
        folder = Path(work)
        by_night = write_documents(folder, args.hosts, args.nights, args.seed)
        count = sum(len(files) for files in by_night)
        size = sum(path.stat().st_size for files in by_night for path in files) / count
        print(f"{count} documents ({args.hosts} hosts x {args.nights} nights, "
              f"{size / 1024:.0f} KB each on average)")  # fmt: skip
        rates = []
        backend = "sqlite"
        for attempt in range(args.repeat):
            url = args.db or f"sqlite:///{folder / f'store-{attempt}.db'}"
            backend = "postgresql" if url.startswith("postgresql") else "sqlite"
            seconds, cpu, stored = measure_cpu(url, by_night)
            rates.append(stored / seconds)
            print(f"run {attempt + 1}: {stored} documents in {seconds:.2f} s into "
                  f"{describe_url(url)}: {stored / seconds:.0f} documents/s "
                  f"({cpu / stored * 1000:.2f} ms of CPU a document)")  # fmt: skip
        median = statistics.median(rates)
        target = TARGETS[backend]
        verdict = "met" if median >= target else "MISSED"
        print(f"ingest: {median:.0f} documents/s median of {[round(r) for r in rates]} "
              f"(target >= {target:.0f}/s on {backend}: {verdict}; {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
