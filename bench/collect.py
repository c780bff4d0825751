"""Collection benchmark: N simulated hosts, a latency per WinRM request, C hosts at a time.

Prints the wall time, the ideal (ceil(N / C) x one host's time alone), their ratio, and the
collector's peak RSS; the simulated hosts run in a child process and are not counted. Each
repeat collects a first night into an empty store, then measures the next night into it (the
nightly case, where most content sets are already stored); the first night is printed too.
Target: 200 hosts, 100 ms per request, C = 32 -> within 1.3x the ideal, peak RSS < 400 MB.

    python -m bench.collect [--hosts 200] [--latency 0.1] [--concurrency 32] [--repeat 3]
                            [--transport basic|ntlm|kerberos] [--probe-seconds 3] [--db URL]
                            [--collectors N [--kill-one] [--lease S]]

Every probe runs 3 s on its host (--probe-seconds): about what the bind sweep of both families
takes on this machine's sockets (the Mono run of the probe's C#, tests/test_probe_sweep_mono.py,
takes 1-2 s per family), shorter than a real probe's other sections. OperationTimeout is 20 s,
so the probes answer without a w:TimedOut fault; the progress record streams first.

--db URL collects into that database (SQLite or PostgreSQL) instead of a new SQLite file per
repeat; its first night is then into the store as it was. --collectors N runs N collector
processes at once on the one store, sharing each night (each host once): the ideal is then
ceil(N_hosts / (N x C)) x one host's time, and each collector's host count is printed.
--kill-one kills the first collector (SIGKILL) once half the nightly run's hosts are done, checks
that every host was then stored exactly once, and compares the night with a 1/N share of one
collector's night (measured after it; target 1.3x); leases are 10 s then (--lease).

Basic (over HTTPS) by default, to measure the collector; NTLM adds its handshake's CPU, most of
it pyspnego computing an LM hash in pure-Python DES for every connection. Kerberos starts a
throwaway MIT realm on loopback (collector/simulator/realm.py; needs krb5-kdc and the kerberos
extra), joins the hosts to it, and the collector gets its ticket once from the password: each
host then costs a service ticket from the KDC and the AP-REQ/AP-REP exchange.

The simulated hosts stand for other machines, so on Linux they get a core of their own (the
last one this process may use) and the collector the others; --shared-cores lets both run
anywhere, as they would if the fleet were simulated on the collector's own box.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from collector.collect import collect
from collector.config import PortfleetConfig
from collector.plan import plan_collection
from collector.simulator.cluster import PASSWORD_ENV, USER_ENV, FleetAddresses, FleetProcess
from collector.simulator.fleet import FleetSpec
from collector.simulator.realm import Realm
from collector.store.database import Store, describe_url


def _split_cores(shared: bool) -> tuple[set[int], set[int]] | None:
    """Return (the hosts' cores, the collector's cores), or None to leave placement alone."""
    if shared or not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    return {cores[-1]}, set(cores[:-1])


def _config(
    addresses: FleetAddresses, names: list[str], transport: str, lease: float | None = None
) -> PortfleetConfig:
    hosts: list[dict[str, Any]] = [
        {"name": name, "address": addresses.urls[name]} for name in names
    ]
    for host in hosts:
        if addresses.kerberos_names is not None:
            host["kerberos_hostname"] = addresses.kerberos_names[host["name"]]
    return PortfleetConfig.model_validate(
        {
            "defaults": {
                "transport": transport,
                "ca_file": addresses.ca_file,
                "credential": {
                    "username_env": USER_ENV,
                    "password_env": PASSWORD_ENV,
                },
            },
            "probe": {"deadline_seconds": 120, "operation_timeout_seconds": 20},
            "collect": {"lease_seconds": lease} if lease else {},
            "hosts": hosts,
        }
    )


def _run(url: str, config: PortfleetConfig, concurrency: int) -> float:
    with Store.open(url) as store:
        plan = plan_collection(config, [], concurrency=concurrency, retries=0)
        started = time.perf_counter()
        outcomes = collect(store, config, plan)
        elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise SystemExit(f"{len(failed)} hosts failed, e.g. {failed[0].host}: {failed[0].message}")
    return elapsed


def _cpu_seconds(pid: int | None) -> float:
    """Return the CPU time (user + system) a process has used, from /proc (0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class _Peaks:
    """Sample this process's threads and open files while a run goes on; keep the peaks."""

    def __init__(self) -> None:
        self.threads = 0
        self.files = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Peaks:
        # A thread per run: the peaks carry over from one repeat to the next.
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="peaks", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.threads = max(self.threads, threading.active_count())
            with contextlib.suppress(OSError):
                self.files = max(self.files, len(os.listdir("/proc/self/fd")))


@dataclass(slots=True)
class _Costs:
    """CPU seconds of the nightly runs: the collector's own and the simulated fleet's."""

    collector: float = 0.0
    fleet: float = 0.0
    hosts: int = 0

    @contextlib.contextmanager
    def measure(self, fleet_pid: int | None, hosts: int) -> Iterator[None]:
        """Add the CPU a run takes, here and in the collector and fleet processes."""
        mine, children = time.process_time(), _children_cpu()
        fleet = _cpu_seconds(fleet_pid)
        yield
        self.collector += time.process_time() - mine + _children_cpu() - children
        self.fleet += _cpu_seconds(fleet_pid) - fleet
        self.hosts += hosts


def _children_cpu() -> float:
    """Return the CPU of the collector processes ended so far (``--collectors``)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


@dataclass(frozen=True, slots=True)
class _Shared:
    """What one of several collector processes did: its name, hosts and time."""

    name: str
    hosts: int
    failed: list[str]
    seconds: float


def _collector(
    url: str, config: PortfleetConfig, concurrency: int, night: str, go: Any, done: Any
) -> None:
    """Run in a child: open the store, wait for the others, collect the night's share."""
    with Store.open(url) as store:
        plan = plan_collection(config, [], concurrency=concurrency, retries=0, night=night)
        go.wait()  # a barrier: every collector and the parent ready
        started = time.perf_counter()
        outcomes = collect(store, config, plan)
        elapsed = time.perf_counter() - started
    failed = [f"{o.host}: {o.message}" for o in outcomes if o.status == "failed"]
    done.put(_Shared(plan.collector, len(outcomes), failed, elapsed))


def _run_shared(
    url: str, config: PortfleetConfig, concurrency: int, collectors: int, kill_one: bool = False
) -> tuple[float, list[_Shared]]:
    """Run ``collectors`` processes on one store and night; return the wall time and shares.

    ``kill_one`` kills the first collector (SIGKILL) once half the night's hosts are done; the
    others take its hosts when their leases run out. Every host must then be stored once.
    """
    context = multiprocessing.get_context("spawn")
    go, done = context.Barrier(collectors + 1), context.Queue()
    night = f"bench-{os.getpid()}-{time.time_ns()}"
    processes = [
        context.Process(
            target=_collector,
            args=(url, config, concurrency, night, go, done),
            name=f"collector-{number}",
        )
        for number in range(1, collectors + 1)
    ]
    Store.open(url).close()  # migrated once, before the collectors start
    for process in processes:
        process.start()
    go.wait(timeout=600)  # imports done and the store open in every collector
    started = time.perf_counter()
    if kill_one:
        _kill_half_way(url, night, len(config.hosts), processes[0])
    shares = [done.get(timeout=3600) for _ in processes[1 if kill_one else 0 :]]
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join()
    failed = [line for share in shares for line in share.failed]
    if failed:
        raise SystemExit(f"{len(failed)} hosts failed, e.g. {failed[0]}")
    if kill_one:
        _check_once(url, night, len(config.hosts))
    return elapsed, sorted(shares, key=lambda share: share.name)


def _done(url: str, night: str) -> int:
    """Return how many hosts of the night are done (their last try stored)."""
    with Store.reader(url) as store, store.connect() as connection:
        query = "SELECT COUNT(*) FROM night_claims WHERE night = :night AND done_at IS NOT NULL"
        return int(connection.execute(text(query), {"night": night}).scalar_one())


def _kill_half_way(url: str, night: str, hosts: int, victim: Any) -> None:
    """Kill ``victim`` (SIGKILL, as a machine that dies) once half the night's hosts are done."""
    while _done(url, night) < hosts // 2:
        if not victim.is_alive():
            raise SystemExit("the collector to kill ended before half the night was done")
        time.sleep(0.1)
    victim.kill()
    print(f"killed {victim.name} with {_done(url, night)} of {hosts} hosts done")


def _check_once(url: str, night: str, hosts: int) -> None:
    """Exit unless every host of the night has exactly one stored snapshot."""
    query = (
        "SELECT a.host_id, COUNT(*) FROM attempts a JOIN collection_runs r ON r.id = a.run_id "
        "WHERE r.night = :night AND a.status IN ('ok', 'partial') GROUP BY a.host_id"
    )
    with Store.reader(url) as store, store.connect() as connection:
        rows = connection.execute(text(query), {"night": night}).all()
    counts: dict[int, int] = {int(host): int(count) for host, count in rows}
    twice = sorted(host for host, count in counts.items() if count != 1)
    if len(counts) != hosts or twice:
        raise SystemExit(f"{len(counts)} of {hosts} hosts stored, {len(twice)} more than once")
    print(f"exactly once:     every one of the {hosts} hosts has one snapshot tonight")


def _rss_target(hosts: int) -> int:
    """Return the peak-RSS target in MB: 400 for the 200-host run, 1 GB at 10,000 hosts."""
    return 400 if hosts <= 2000 else 1024


def main() -> None:
    """Measure and print; exit non-zero only when a host fails."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--transport", choices=("basic", "ntlm", "kerberos"), default="basic")
    parser.add_argument("--shared-cores", action="store_true", help="do not pin the hosts")
    parser.add_argument("--probe-seconds", type=float, default=3.0, help="each probe's run time")
    parser.add_argument("--db", metavar="URL", help="collect into this database")
    parser.add_argument("--collectors", type=int, default=1, help="collector processes")
    parser.add_argument(
        "--kill-one",
        action="store_true",
        help="kill one collector half-way through the nightly run (needs --collectors 2+)",
    )
    parser.add_argument(
        "--lease", type=float, help="collect.lease_seconds (default 120; 10 with --kill-one)"
    )
    args = parser.parse_args()
    if args.kill_one and args.collectors < 2:
        parser.error("--kill-one needs --collectors 2 or more: the others take its hosts")
    lease = args.lease or (10.0 if args.kill_one else None)
    loads = os.getloadavg()
    shares: list[list[_Shared]] = []
    spec = FleetSpec(hosts=args.hosts, nights=10)
    split = _split_cores(args.shared_cores)
    with tempfile.TemporaryDirectory(prefix="portfleet-bench-") as work, ExitStack() as stack:
        # A child process inherits the CPU affinity of its parent at start.
        realm = None
        if args.transport == "kerberos":
            realm = stack.enter_context(Realm(Path(work) / "realm"))
            os.environ.update(realm.environment())  # for the hosts' process and this one
        if split is not None:
            os.sched_setaffinity(0, split[0])
        begun = time.perf_counter()
        served = stack.enter_context(
            FleetProcess(
                spec,
                Path(work),
                https=True,
                latency=args.latency,
                time_scale=1.0,
                probe_seconds=args.probe_seconds,
                realm=realm,
            )
        )
        if split is not None:
            os.sched_setaffinity(0, split[1])
        assert served.addresses is not None
        served.addresses.export_credentials()
        names = sorted(served.addresses.urls)
        one_host = _config(served.addresses, names[:1], args.transport, lease)
        whole = _config(served.addresses, names, args.transport, lease)
        singles, firsts, fleets, alone = [], [], [], []
        costs, peaks = _Costs(), _Peaks()
        print(f"fleet of {args.hosts} hosts served in {time.perf_counter() - begun:.1f} s")
        for attempt in range(args.repeat):
            database = args.db or f"sqlite:///{Path(work) / f'bench-{attempt}.db'}"
            # The first night into an empty store: every content set is new.
            served.night = 0
            if args.collectors > 1:
                firsts.append(_run_shared(database, whole, args.concurrency, args.collectors)[0])
            else:
                firsts.append(_run(database, whole, args.concurrency))
            # The nightly case: the next night, into the store the first one filled.
            served.night = 1
            singles.append(_run(database, one_host, 1))
            with costs.measure(served.pid, args.hosts), peaks:
                if args.collectors > 1:
                    wall, night_shares = _run_shared(
                        database, whole, args.concurrency, args.collectors, args.kill_one
                    )
                    fleets.append(wall)
                    shares.append(night_shares)
                else:
                    fleets.append(_run(database, whole, args.concurrency))
            if args.kill_one:
                # What the survivors are held to: a third (1/N) of one collector's night.
                served.night = 2
                alone.append(_run(database, whole, args.concurrency))
    one = statistics.median(singles)
    wall = statistics.median(fleets)
    first = statistics.median(firsts)
    hands = args.concurrency * args.collectors
    ideal = math.ceil(args.hosts / hands) * one
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    latency_ms = args.latency * 1000
    print(f"hosts={args.hosts} latency={latency_ms:.0f}ms concurrency={args.concurrency}", end=" ")
    print(f"transport={args.transport} probe={args.probe_seconds:g}s", end=" ")
    if split is not None:
        print(f"cores: hosts {sorted(split[0])}, collector {sorted(split[1])}", end=" ")
    print(f"runs={args.repeat}")
    print(f"one host alone:   {one:.2f} s (median)")
    print(f"whole fleet:      {wall:.2f} s (median of {[round(f, 2) for f in fleets]})")
    print(f"ideal:            {ideal:.2f} s = ceil({args.hosts}/{hands}) x {one:.2f} s")
    print(f"ratio:            {wall / ideal:.2f} (target <= 1.30)")
    print(f"first night:      {first:.2f} s, ratio {first / ideal:.2f}", end=" ")
    print(f"(into an empty store; median of {[round(f, 2) for f in firsts]})")
    print(f"peak RSS:         {peak_mb:.0f} MB (target < {_rss_target(args.hosts)} MB)")
    per_host = costs.collector / max(costs.hosts, 1) * 1000
    print(f"collector CPU:    {per_host:.1f} ms per host, nightly runs", end=" ")
    print(f"({costs.collector:.1f} s for {costs.hosts} host-runs)")
    fleet_ms = costs.fleet / max(costs.hosts, 1) * 1000
    print(
        f"fleet CPU:        {fleet_ms:.1f} ms per host ({costs.fleet:.1f} s; the simulated hosts,",
        end=" ",
    )
    print("not counted above)")
    print(f"peaks:            {peaks.threads} threads, {peaks.files} open files (this process)")
    # CPU per host rises with what else runs on the machine's cores: say how loaded they were.
    print(f"load average:     {loads[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    if args.collectors > 1:
        print(f"store:            {describe_url(database)}, {args.collectors} collectors")
        for night_shares in shares:
            counts = ", ".join(f"{s.name} {s.hosts} in {s.seconds:.2f} s" for s in night_shares)
            print(f"per collector:    {counts}")
    if alone:
        by_one = statistics.median(alone)
        share = by_one / args.collectors
        print(f"one collector:    {by_one:.2f} s (median of {[round(a, 2) for a in alone]})")
        print(f"killed one:       {wall / share:.2f} x a 1/{args.collectors} share of it", end=" ")
        print(f"({share:.2f} s; target <= 1.30; the lease was {lease:g} s)")


if __name__ == "__main__":
    main()
