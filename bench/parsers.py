"""Parser benchmark: about 10 MB of each shape a parser reads, median time per parser.

Every parser must be linear in its input: a quadratic one turns a big paste into minutes (the
hotfix parser once took 37 s on 8,000 ``key: value`` lines). The inputs are built here, repeating
real row shapes until they reach the size asked for; a shape a parser must refuse (the
``key: value`` flood, a bind-failure list longer than the ports there are) is timed up to its
refusal. Prints per shape the input size, the median wall and CPU times and what came out.
Target: under 2 s for each at 10 MB.

    python -m bench.parsers [--megabytes 10] [--repeat 3] [--only KIND]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count

from collector.parsers import PARSERS, ParseError, ParseWarning

TARGET_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Shape:
    """One input shape: the parser kind that reads it and how to build its lines."""

    kind: str
    name: str
    head: str
    rows: Callable[[int], str]
    tail: str = ""


def _excluded_row(i: int) -> str:
    start = 1024 + (i * 7) % 60000
    return f"{start:>10}{start + i % 100:>12}" + ("     *" if i % 13 == 0 else "")


def _dynamic_block(i: int) -> str:
    protocol = "tcp" if i % 2 else "udp"
    return (
        f"\nProtocol {protocol} Dynamic Port Range\n---------------------------------\n"
        f"Start Port      : {1025 + i % 1000}\nNumber of Ports : {16384 - i % 999}"
    )


def _netstat_row(i: int) -> str:
    local = f"10.{i % 256}.{i // 256 % 256}.{i % 7}:{1 + i % 65535}"
    remote = f"192.168.{i % 200}.{i % 250}:{443 if i % 3 else 0}"
    state = ("LISTENING", "ESTABLISHED", "TIME_WAIT", "ABHÖREN")[i % 4]
    return f"  TCP    {local:<23}{remote:<23}{state:<16}{i % 70000}"


def _tcp_table_row(i: int) -> str:
    local, remote = f"10.0.{i % 256}.{i % 7}", f"192.168.{i % 200}.{i % 250}"
    state = ("Listen", "Established", "Bound", "TimeWait")[i % 4]
    return f"{local:<15} {1 + i % 65535:<9} {remote:<15} {443:<10} {state:<11} {i % 70000}"


def _tcp_record(i: int) -> str:
    return (
        f"\nLocalAddress   : 10.0.{i % 256}.{i % 7}\nLocalPort      : {1 + i % 65535}\n"
        f"RemoteAddress  : 0.0.0.0\nRemotePort     : 0\nState          : Listen\n"
        f"AppliedSetting :\nOwningProcess  : {i % 70000}\nCreationTime   : 1/1/2024 9:00:00 AM"
    )


def _hotfix_row(i: int) -> str:
    return (
        f"HOST{i % 9:02d}        Security Update  KB{4000000 + i}     NT AUTHORITY\\SYSTEM  "
        f"{1 + i % 12}/{1 + i % 28}/20{10 + i % 15} 12:00:00 AM"
    )


def _wmic_row(i: int) -> str:
    return (
        f"http://support.microsoft.com/?kbid={4000000 + i}  HOST01        Update           "
        f"              KB{4000000 + i}               NT AUTHORITY\\SYSTEM  {1 + i % 12}/21/2016"
    )


def _record(i: int) -> str:
    return (
        f"\nSource      : HOST01\nDescription : Update\nHotFixID    : KB{4000000 + i}\n"
        f"InstalledBy : NT AUTHORITY\\SYSTEM\nInstalledOn : {1 + i % 12}/22/2018 12:00:00 AM"
    )


SHAPES = [
    Shape(
        "excluded",
        "excludedportrange table",
        "Protocol tcp Port Exclusion Ranges\n\nStart Port    End Port\n----------    --------",
        _excluded_row,
        "\n* - Administered port exclusions.\n",
    ),
    Shape("dynamicport", "dynamicport blocks", "", _dynamic_block),
    Shape(
        "netstat",
        "netstat -ano",
        "\nActive Connections\n\n  Proto  Local Address          Foreign Address        State"
        "           PID",
        _netstat_row,
    ),
    Shape(
        "netstat",
        "Get-NetTCPConnection table",
        "\nLocalAddress    LocalPort RemoteAddress   RemotePort State       OwningProcess\n"
        "------------    --------- -------------   ---------- -----       -------------",
        _tcp_table_row,
    ),
    Shape("netstat", "Get-NetTCPConnection | Format-List", "", _tcp_record),
    Shape(
        "hotfix",
        "Get-HotFix table",
        "Source        Description      HotFixID      InstalledBy          InstalledOn\n"
        "------        -----------      --------      -----------          -----------",
        _hotfix_row,
    ),
    Shape(
        "hotfix",
        "wmic qfe table",
        "Caption                                     CSName        Description      "
        "FixComments  HotFixID   InstallDate  InstalledBy          InstalledOn  Name  "
        "ServicePackInEffect  Status",
        _wmic_row,
    ),
    Shape("hotfix", "Get-HotFix | Format-List", "", _record),
    Shape(
        "hotfix",
        "systeminfo hotfix section",
        "Host Name:                 PC01\nHotfix(s):                 {count} Hotfix(s) Installed.",
        lambda i: f"                           [{i + 1:02d}]: KB{4000000 + i}",
        "\nNetwork Card(s):           1 NIC(s) Installed.\n",
    ),
    Shape("hotfix", "key: value flood (refused)", "", lambda i: f"key{i}: value {i}"),
    Shape("bind-failures", "bind-probe list (refused past 99,999)", "", lambda i: f"{i:5d}: 80"),
]


def build(shape: Shape, size: int) -> str:
    """Repeat the shape's rows until the text holds about ``size`` characters."""
    lines: list[str] = []
    total = len(shape.head) + len(shape.tail)
    for i in count():
        if total >= size:
            break
        line = shape.rows(i)
        lines.append(line)
        total += len(line) + 1
    head = shape.head.replace("{count}", str(len(lines)))
    return "\n".join([head, *lines]) + "\n" + shape.tail


def time_parse(kind: str, text: str, repeat: int) -> tuple[float, float, str]:
    """Return the median wall and CPU seconds of ``repeat`` parses and what the last one gave."""
    walls: list[float] = []
    cpus: list[float] = []
    outcome = ""
    for _ in range(repeat):
        warnings: list[ParseWarning] = []
        started, cpu = time.perf_counter(), time.process_time()
        try:
            result = PARSERS[kind].parse(text, warnings=warnings)
            outcome = f"{_count(result)} rows, {len(warnings)} warnings"
        except ParseError as error:
            outcome = f"refused at line {error.line}"
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), outcome


def _count(result: object) -> int:
    """Count the rows of any parser's result (excludedportrange nests them in tables)."""
    if isinstance(result, list) and result and hasattr(result[0], "ranges"):
        return sum(len(table.ranges) for table in result)
    return len(result) if isinstance(result, list) else 0


def run(megabytes: float, repeat: int, only: str | None) -> Iterator[str]:
    """Yield one printed line per shape."""
    # CPU time beside wall time: on a shared machine the wall time also counts other work.
    yield f"{'parser':<14}{'shape':<40}{'MB':>6}{'wall s':>8}{'cpu s':>7}  result"
    for shape in SHAPES:
        if only and shape.kind != only:
            continue
        text = build(shape, int(megabytes * 1_000_000))
        wall, cpu, outcome = time_parse(shape.kind, text, repeat)
        flag = "" if wall < TARGET_SECONDS else f"  SLOW (target {TARGET_SECONDS} s)"
        size = len(text.encode("utf-8")) / 1e6
        yield (
            f"{shape.kind:<14}{shape.name:<40}{size:>6.1f}{wall:>8.2f}{cpu:>7.2f}  {outcome}{flag}"
        )


def main() -> None:
    """Build each input, time its parser and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=10.0, help="input size (10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per input; median (3)")
    parser.add_argument("--only", choices=sorted(PARSERS), help="time one parser kind only")
    options = parser.parse_args()
    for line in run(options.megabytes, options.repeat, options.only):
        print(line, flush=True)


if __name__ == "__main__":
    main()
