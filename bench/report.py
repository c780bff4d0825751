"""Report benchmark: a generated store of N hosts x M nights, then the report, in a child process.

The store comes from ``bench.fleet``. Each report run is a fresh process, so its peak RSS is the
report's alone. Prints the generation time and database size, then per run the wall time (with
the analysis and the rendering apart), the peak RSS and the HTML size, and the row count of
every report frame. Then the page is opened in headless Chromium (Debian's, through Playwright)
at 1366x768, once per run: how long until a click on Needs attention is answered, and until the
details (the timeline's rows) are written. It ends with the four figures, medians of the runs,
against their targets (issue 16, for 1,000 hosts x 365 nights on 2 cores): the report under
15 s, peak RSS under 1 GB, the page under 10 MB, the first screen answering under 3 s; above
1,000 hosts issue 17's (10,000 x 365 from PostgreSQL): under 2 minutes and 4 GB.

    python -m bench.report [--hosts 1000] [--nights 90] [--repeat 3] [--keep PATH [--reuse]]
                           [--blocks 5,40] [--seed 1] [--profile FILE] [--nightly]
                           [--db URL] [--jobs N]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from unittest.mock import patch

from sqlalchemy import text

from bench.fleet import generate_store, report_now, store_bytes
from collector.store.database import Store, describe_url

P = ParamSpec("P")


R = TypeVar("R")


WANTED_PORTS = (5000, 5432, 8080, 49786)


TARGET_SECONDS = 15.0


TARGET_MB = 1024.0


TARGET_PAGE_MB = 10.0


COMPANY_SECONDS = 120.0  # issue 17: 10,000 hosts x 365 nights from PostgreSQL


COMPANY_MB = 4096.0


@dataclass(frozen=True, slots=True)
class RunFigures:
    """One report run, measured inside its own process."""

    wall: float
    analysis: float
    render: float
    imports: float
    peak_mb: float
    html_bytes: int
    frames: tuple[tuple[str, int, float], ...]  # name, rows, MB (shared objects once)


def measure_report(
    url: str, out: Path, now: datetime, profile: Path | None = None, frames: bool = False
) -> RunFigures:
    """Build the report once in this process and measure it (call it in a fresh process)."""
    started = time.perf_counter()
    import reports.report as report
    from reports.analysis import build_report_data
    from reports.html import write_report

    imports = time.perf_counter() - started
    timings: dict[str, float] = {}
    results: list[object] = []
    profiler = cProfile.Profile() if profile is not None else None
    with (
        patch.object(report, "build_report_data",
                     _timed(build_report_data, "analysis", timings, results)),
        patch.object(report, "write_report", _timed(write_report, "render", timings, [])),
    ):  # fmt: skip
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        report.build_report(url, out, WANTED_PORTS, now=now)
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile)
    return RunFigures(
        wall=wall,
        analysis=timings.get("analysis", 0.0),
        render=timings.get("render", 0.0),
        imports=imports,
        peak_mb=peak_mb,
        html_bytes=out.stat().st_size,
        frames=_frame_sizes(results[0]) if frames and results else (),
    )


def _timed(
    function: Callable[P, R], name: str, timings: dict[str, float], results: list[object]
) -> Callable[P, R]:
    def timed(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        value = function(*args, **kwargs)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
        results.append(value)
        return value

    return timed


def _frame_sizes(data: object) -> tuple[tuple[str, int, float], ...]:
    import pandas as pd

    sizes = []
    for item in fields(data) if is_dataclass(data) else ():
        value = getattr(data, item.name)
        if isinstance(value, pd.DataFrame):
            sizes.append((item.name, len(value), _frame_mb(value)))
    return tuple(sizes)


def _frame_mb(frame: Any) -> float:
    """Return the MB a frame holds, counting each shared Python object once.

    ``memory_usage(deep=True)`` counts a string once per cell, which overstates frames whose
    cells point at a few shared strings (a reason repeated on a million ports) many times over.
    """
    total = float(frame.memory_usage(deep=False).sum())
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object or str(column.dtype) == "str":
            distinct = {id(value): value for value in column.to_numpy(dtype=object)}
            total += sum(sys.getsizeof(value) for value in distinct.values())
    return total / 2**20


def _run_child(
    url: str, out: Path, now: datetime, profile: Path | None, frames: bool
) -> RunFigures:
    """Measure one report in a fresh interpreter; return what it printed."""
    command = [sys.executable, "-m", "bench.report", "--measure", url, str(out), now.isoformat()]
    if profile is not None:
        command += ["--profile-out", str(profile)]
    if frames:
        command.append("--frames")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)}  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the report failed:\n{done.stderr}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return RunFigures(
        wall=float(raw["wall"]),
        analysis=float(raw["analysis"]),
        render=float(raw["render"]),
        imports=float(raw["imports"]),
        peak_mb=float(raw["peak_mb"]),
        html_bytes=int(raw["html_bytes"]),
        frames=tuple((str(n), int(r), float(m)) for n, r, m in raw["frames"]),
    )


@contextmanager
def _workspace(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="portfleet-bench-report-") as work:
        yield Path(work) / "bench.db"


def _hosts_in(store: Store) -> int:
    with store.connect() as connection:
        return int(connection.execute(text("SELECT COUNT(*) FROM hosts")).scalar_one())


def _print_profile(path: Path) -> None:
    stats = pstats.Stats(str(path))
    for order in ("tottime", "cumulative"):
        print(f"\nprofile, top 25 by {order} ({path}):")
        stats.sort_stats(order).print_stats(25)


CHROMIUM = Path("/usr/bin/chromium")
TARGET_FIRST_SCREEN = 3.0
# What the page's own clock says of its loading, in ms from the navigation's start.
_NAVIGATION = """() => {
  const entry = performance.getEntriesByType("navigation")[0];
  return {interactive: entry.domInteractive, loaded: entry.domContentLoadedEventEnd,
          load: entry.loadEventEnd};
}"""


@dataclass(frozen=True, slots=True)
class FirstScreen:
    """How long the report takes to show and answer in headless Chromium, in seconds."""

    interactive: float  # the DOM parsed (domInteractive)
    loaded: float  # DOMContentLoaded handlers done (the page's script ran)
    load: float  # the load event done
    answered: float  # a click on the first Needs-attention link handled (hash changed)
    ready: float  # the packed details inflated and the timeline's first rows written


def measure_first_screen(page_path: Path) -> FirstScreen | None:
    """Open the report in Debian's headless Chromium at 1366x768 and time its first screen.

    "Answered" is wall time from the navigation to a click on the first link of Needs
    attention having moved the page: the main thread is free to act on what is on screen.
    None when Playwright or Chromium is missing.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not CHROMIUM.exists():
        return None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        started = time.perf_counter()
        page.goto(page_path.as_uri(), wait_until="commit", timeout=600_000)
        link = page.locator("#attention a[href^='#']").first
        link.click(timeout=600_000)
        page.wait_for_function("() => location.hash !== ''", timeout=600_000)
        answered = time.perf_counter() - started
        page.wait_for_selector("html[data-ready]", state="attached", timeout=600_000)
        ready = time.perf_counter() - started
        page.wait_for_load_state("load", timeout=600_000)
        marks = page.evaluate(_NAVIGATION)
        browser.close()
    return FirstScreen(
        interactive=marks["interactive"] / 1000,
        loaded=marks["loaded"] / 1000,
        load=marks["load"] / 1000,
        answered=answered,
        ready=ready,
    )


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _print_figures(
    hosts: int, nights: int, runs: list[RunFigures], screens: list[FirstScreen]
) -> None:
    """Print the four figures, medians of the runs, each against its target.

    The targets are issue 16's for a team (up to 1,000 hosts), issue 17's for a company
    (10,000 hosts x 365 nights from PostgreSQL: under 2 minutes and 4 GB; no page target).
    """
    company = hosts > 1000
    seconds, megabytes = (COMPANY_SECONDS, COMPANY_MB) if company else (TARGET_SECONDS, TARGET_MB)
    wall = statistics.median(run.wall for run in runs)
    peak = statistics.median(run.peak_mb for run in runs)
    page = statistics.median(run.html_bytes for run in runs) / 2**20
    print(f"\nfigures, {hosts:,} hosts x {nights} nights, medians of {len(runs)} runs:")
    print(f"  report time   {wall:6.2f} s   of {_listed(r.wall for r in runs)} "
          f"(target < {seconds:.0f} s: {_verdict(wall < seconds)})")  # fmt: skip
    print(f"  peak RSS      {peak:6.0f} MB  of {_listed(r.peak_mb for r in runs)} "
          f"(target < {megabytes:.0f} MB: {_verdict(peak < megabytes)})")  # fmt: skip
    if company:
        print(f"  page          {page:6.1f} MB  (no target at this size)")
    else:
        print(f"  page          {page:6.1f} MB  (target < {TARGET_PAGE_MB:.0f} MB: "
              f"{_verdict(page < TARGET_PAGE_MB)})")  # fmt: skip
    if not screens:
        print(f"  first screen  not measured (needs Playwright and {CHROMIUM})")
        return
    answered = statistics.median(screen.answered for screen in screens)
    print(f"  first screen  {answered:6.2f} s   of {_listed(s.answered for s in screens)}, a "
          f"click on Needs attention answered in headless Chromium (target < "
          f"{TARGET_FIRST_SCREEN:.0f} s: {_verdict(answered < TARGET_FIRST_SCREEN)})")  # fmt: skip


def _listed(values: Iterator[float] | Any) -> str:
    return "[" + ", ".join(f"{value:.2f}" for value in values) + "]"


def _measure_main(args: argparse.Namespace) -> None:
    url, out, now = args.measure
    figures = measure_report(
        url, Path(out), datetime.fromisoformat(now), args.profile_out, args.frames
    )
    payload = {
        "wall": figures.wall, "analysis": figures.analysis, "render": figures.render,
        "imports": figures.imports, "peak_mb": figures.peak_mb,
        "html_bytes": figures.html_bytes, "frames": [list(f) for f in figures.frames],
    }  # fmt: skip
    print(json.dumps(payload))


def _print_derivation(seconds: Sequence[float]) -> None:
    """Print what deriving the history cost each run's end, early nights against late ones."""
    tenth = max(1, len(seconds) // 10)
    early, late = statistics.median(seconds[:tenth]), statistics.median(seconds[-tenth:])
    print(f"history at each run's end: median {early:.2f} s over the first {tenth} nights, "
          f"{late:.2f} s over the last {tenth} (it should not grow with the nights kept; "
          f"max {max(seconds):.2f} s)")  # fmt: skip


def main() -> None:
    """Generate the store, build the report in child processes, print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--nights", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--blocks",
        default="5,40",
        help="LOW,HIGH run-time 100-port blocks per Hyper-V host (WSL-only: up to 3/8 HIGH)",
    )
    parser.add_argument("--keep", type=Path, help="write the store (and report) here and keep it")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="generate into this database (SQLite or PostgreSQL, empty) instead of a file",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="use the store already at --keep or --db (made with the same --nights)",
    )
    parser.add_argument(
        "--profile", type=Path, help="after the timed runs, one cProfile'd run; stats to this file"
    )
    parser.add_argument(
        "--nightly",
        action="store_true",
        help="derive the history at each night's end, as each run's end does, and print its time",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="generate with this many processes, each a part of the fleet (PostgreSQL only)",
    )
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--frames", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        _measure_main(args)
        return
    if args.reuse and args.keep is None and args.db is None:
        parser.error("--reuse needs --keep PATH or --db URL")
    if args.hosts < 1 or args.nights < 2 or args.repeat < 1 or args.jobs < 1:
        parser.error("--hosts, --repeat and --jobs must be at least 1, --nights at least 2")
    if args.jobs > 1 and not (args.db or "").startswith("postgresql"):
        parser.error("--jobs needs --db with a PostgreSQL URL: SQLite takes one writer at a time")
    try:
        low, high = (int(part) for part in args.blocks.split(","))
    except ValueError:
        parser.error("--blocks wants LOW,HIGH, e.g. 5,40")
    if not 0 <= low <= high:
        parser.error("--blocks wants 0 <= LOW <= HIGH")
    cpus = len(os.sched_getaffinity(0))
    with _workspace(args.keep) as database:
        url = args.db or f"sqlite:///{database}"
        out = database.with_suffix(".html")
        with Store.open(url) as store:
            hosts = _hosts_in(store)
            if args.reuse:
                if not hosts:
                    parser.error(f"--reuse: no generated store at {store.name}")
                now = report_now(args.nights)
                size = store_bytes(store) / 2**20
                print(f"hosts={hosts} nights={args.nights} (as given) cpus={cpus}")
                print(f"store: reused {store.name} ({size:.0f} MB)")
            elif hosts:
                parser.error(f"{store.name} holds hosts already; use an empty one or --reuse")
        if not args.reuse:
            print(f"hosts={args.hosts} nights={args.nights} blocks={low}-{high} "
                  f"seed={args.seed} jobs={args.jobs} cpus={cpus}")  # fmt: skip
            generated = generate_store(
                url, args.hosts, args.nights, args.seed, (low, high), args.nightly, args.jobs
            )
            now = generated.now
            if args.nightly:
                _print_derivation(generated.derive_seconds)
            else:
                print(f"history derived once for the whole store: "
                      f"{generated.derive_seconds[-1]:.2f} s")  # fmt: skip
            rows = ", ".join(f"{name} {count:,}" for name, count in generated.rows.items())
            print(f"generated in {generated.seconds:.1f} s: "
                  f"{generated.database_bytes / 2**20:.0f} MB at {describe_url(url)}")  # fmt: skip
            print(f"rows: {rows}")
        runs = [
            _run_child(url, out, now, None, frames=attempt == 0) for attempt in range(args.repeat)
        ]
        for number, run in enumerate(runs, 1):
            print(f"run {number}: {run.wall:.2f} s (analysis {run.analysis:.2f} s, "
                  f"render {run.render:.2f} s; imports {run.imports:.2f} s before), "
                  f"peak RSS {run.peak_mb:.0f} MB")  # fmt: skip
        print(f"HTML:     {runs[-1].html_bytes / 2**20:.1f} MB ({out})")
        print("frames:   " + ", ".join(f"{n} {r:,} rows/{m:.0f} MB" for n, r, m in runs[0].frames))
        screens = [screen for _ in runs if (screen := measure_first_screen(out)) is not None]
        for number, screen in enumerate(screens, 1):
            print(f"first screen {number} (headless Chromium, 1366x768): DOM parsed "
                  f"{screen.interactive:.2f} s, script ran {screen.loaded:.2f} s, load "
                  f"{screen.load:.2f} s; a click on Needs attention answered after "
                  f"{screen.answered:.2f} s, details written {screen.ready:.2f} s")  # fmt: skip
        _print_figures(args.hosts if not args.reuse else hosts, args.nights, runs, screens)
        if args.profile is not None:
            profiled = _run_child(url, out, now, args.profile.resolve(), frames=False)
            print(f"\nprofiled run: {profiled.wall:.2f} s (cProfile overhead included)")
            _print_profile(args.profile.resolve())


if __name__ == "__main__":
    main()
