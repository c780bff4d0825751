"""Safe ports: the TCP port blocks a team can move its services to, from the whole history.

A port is safe when, on every host of the fleet (or of a group) and in every snapshot stored,
it was never inside an excluded range, never held by a listener, never failed a bind, and never
lay inside the host's TCP dynamic range, IPv4 or IPv6 (the default range counts where the
range was not captured: that is where Windows would have put it). Only snapshots that read the
excluded ranges or swept the ports count as evidence; a host without any such snapshot vouches
for nothing and is named. Ports below 1024 are left out: Windows' own services live there.

A wanted port that sits inside a host's dynamic range gets the ``netsh`` command that would
move the range off it, within what ``set dynamicport`` accepts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from collector.store.database import Store
from collector.windows import (
    DYNAMIC_MIN_COUNT,
    MAX_PORT,
    default_dynamic,
)
from reports import tables

LOWEST_PORT = 1024  # below it, ports are Windows' own services'
_FAMILIES = ("ipv4", "ipv6")


@dataclass(frozen=True, slots=True)
class PortRange:
    """Ports ``start``–``end``."""

    start: int
    end: int

    @property
    def ports(self) -> int:
        """How many ports the range holds."""
        return self.end - self.start + 1

    def __str__(self) -> str:
        if self.start == self.end:
            return str(self.start)
        return f"{self.start}–{self.end} ({self.ports:,} ports)"


@dataclass(frozen=True, slots=True)
class DynamicMove:
    """A wanted port inside a host's TCP dynamic range, and the range that would leave it out."""

    host: str
    port: int
    family: str
    current: PortRange
    proposed: PortRange | None  # None: no range netsh accepts leaves the port out

    def commands(self) -> list[str]:
        """Return the netsh command that sets the proposed range (run elevated on the host)."""
        if self.proposed is None:
            return []
        start, count = self.proposed.start, self.proposed.ports
        return [f"netsh int {self.family} set dynamicport tcp start={start} num={count}"]


@dataclass(slots=True)
class SafePorts:
    """The answer: safe ranges, largest first, and what backs them."""

    group: str | None
    ranges: list[PortRange]
    hosts: list[str]  # the hosts asked about
    unproven: list[str]  # hosts without a snapshot that read the ranges or swept the ports
    host_nights: int  # snapshots that are evidence
    nights: int  # distinct days they were taken on
    first: datetime | None
    last: datetime | None
    moves: list[DynamicMove] = field(default_factory=list)

    def to_json(self, count: int | None = None) -> dict[str, object]:
        """Return the answer as plain JSON values."""
        return {
            "group": self.group,
            "hosts": self.hosts,
            "unproven_hosts": self.unproven,
            "evidence": {
                "host_nights": self.host_nights,
                "nights": self.nights,
                "first": self.first.isoformat() if self.first else None,
                "last": self.last.isoformat() if self.last else None,
            },
            "ranges": [
                {"start": r.start, "end": r.end, "ports": r.ports} for r in self.ranges[:count]
            ],
            "dynamic_moves": [
                {
                    "host": move.host,
                    "port": move.port,
                    "family": move.family,
                    "current": {"start": move.current.start, "end": move.current.end},
                    "proposed": (
                        {"start": move.proposed.start, "end": move.proposed.end}
                        if move.proposed
                        else None
                    ),
                    "commands": move.commands(),
                }
                for move in self.moves
            ],
        }


class UnknownGroupError(LookupError):
    """No host of the store is in the group asked for."""


def find_safe_ports(
    store: Store, group: str | None = None, wanted_ports: Sequence[int] = ()
) -> SafePorts:
    """Read the whole history of the fleet (or ``group``) and return its safe port ranges.

    ``wanted_ports`` are the team's ports: those inside a host's dynamic range tonight get the
    command that moves the range off them.
    """
    with store.connect() as connection:
        hosts = tables.read(connection, "host_groups")
        if group is not None:
            hosts = hosts[hosts["groups"].map(lambda value: group in _groups(value))]
            if hosts.empty:
                raise UnknownGroupError(f"no host of the store is in the group {group!r}")
        # The evidence as state spans: each run of nights with the same sets, read once.
        evidence = tables.read(connection, "evidence_spans", hosts["host_id"].tolist())
        days = tables.read(connection, "evidence_days", hosts["host_id"].tolist())
        taken = _blocked(connection, hosts["host_id"].tolist())
        spans = tables.read(connection, "tcp_dynamic_spans", hosts["host_id"].tolist())
        latest = _latest(evidence)
        dynamic = tables.read(connection, "dynamic_ranges", latest["snapshot_id"].tolist())
    free = ~taken
    free[:LOWEST_PORT] = False
    for start, end in _dynamic_spans(spans):  # a few ranges, many snapshots
        free[start : end + 1] = False
    names = dict(zip(hosts["host_id"].astype(int), hosts["host"].astype(str), strict=True))
    proven = set(evidence["host_id"].astype(int))
    return SafePorts(
        group=group,
        ranges=sorted(_runs(free), key=lambda r: (-r.ports, r.start)),
        hosts=sorted(names.values()),
        unproven=sorted(name for host_id, name in names.items() if host_id not in proven),
        host_nights=int(evidence["nights"].sum()),
        nights=int(days["day"].nunique()),
        first=evidence["first_at"].min().to_pydatetime() if len(evidence) else None,
        last=evidence["last_at"].max().to_pydatetime() if len(evidence) else None,
        moves=_moves(latest, dynamic, names, wanted_ports),
    )


def _groups(value: object) -> list[str]:
    """Return a host's groups, whichever way the driver gave the JSON column."""
    if isinstance(value, str):
        loaded = json.loads(value)
        return [str(item) for item in loaded] if isinstance(loaded, list) else []
    return [str(item) for item in value] if isinstance(value, list) else []


def _blocked(connection: Connection, host_ids: list[int]) -> np.ndarray:
    """Mark every port that was ever reserved, held or failing in these hosts' evidence."""
    taken = np.zeros(MAX_PORT + 1, dtype=bool)
    for name in ("tcp_excluded_spans", "tcp_failure_spans", "tcp_listener_spans"):
        for start, end in tables.read(connection, name, host_ids).itertuples(index=False):
            taken[start : end + 1] = True
    return taken


def _dynamic_spans(spans: pd.DataFrame) -> set[tuple[int, int]]:
    """Return the TCP dynamic ranges the evidence held: (first, last) port.

    Windows' default counts too for a family some snapshot did not capture (no start).
    """
    found = set()
    for family, start, count in zip(spans["family"], spans["start"], spans["count"], strict=True):
        if start is pd.NA:
            start, count = default_dynamic("tcp", str(family))
        found.add((int(start), int(start) + int(count) - 1))
    return found


def _latest(evidence: pd.DataFrame) -> pd.DataFrame:
    """Return each host's latest evidence snapshot: the last of its latest evidence span."""
    ordered = evidence.sort_values(["host_id", "last_at", "snapshot_id"])
    return ordered.groupby("host_id").tail(1)


def _dynamic_ranges(
    evidence: pd.DataFrame, rows: pd.DataFrame
) -> dict[tuple[int, str], tuple[int, int]]:
    """Return each evidence snapshot's TCP dynamic range per family: (first, last) port.

    A family whose range was not captured gets Windows' default, where it would have been.
    """
    found: dict[tuple[int, str], tuple[int, int]] = {}
    tcp = rows[rows["protocol"] == "tcp"]
    for snapshot_id, family, start, count in zip(
        tcp["snapshot_id"], tcp["family"], tcp["start"], tcp["count"], strict=True
    ):
        found[(int(snapshot_id), str(family))] = (int(start), int(start) + int(count) - 1)
    for snapshot_id in evidence["snapshot_id"].astype(int):
        for family in _FAMILIES:
            if (snapshot_id, family) not in found:
                start, count = default_dynamic("tcp", family)
                found[(snapshot_id, family)] = (start, start + count - 1)
    return found


def _moves(
    latest: pd.DataFrame,
    dynamic: pd.DataFrame,
    names: dict[int, str],
    wanted_ports: Sequence[int],
) -> list[DynamicMove]:
    """Return, per host's latest evidence (``latest``), each wanted port its range holds."""
    if not wanted_ports or latest.empty:
        return []
    ranges = _dynamic_ranges(latest, dynamic)
    moves = []
    for host_id, snapshot_id in zip(latest["host_id"], latest["snapshot_id"], strict=True):
        for family in _FAMILIES:
            current = PortRange(*ranges[(int(snapshot_id), family)])
            proposed = propose_dynamic_range(current, wanted_ports)
            moves += [
                DynamicMove(names[int(host_id)], port, family, current, proposed)
                for port in sorted(set(wanted_ports))
                if current.start <= port <= current.end
            ]
    return sorted(moves, key=lambda m: (m.host, m.port, m.family))


def _runs(free: np.ndarray) -> list[PortRange]:
    """Return the runs of True in ``free`` as port ranges."""
    edges = np.diff(np.concatenate(([0], free.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [PortRange(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def propose_dynamic_range(current: PortRange, ports: Sequence[int]) -> PortRange | None:
    """Return the largest range netsh accepts, within ``current``, that holds none of ``ports``.

    Shrinking the range beats moving it: ports outside the current range may be reserved or
    served on the host already, and the ports left inside stay where Windows expects them.
    """
    inside = sorted({p for p in ports if current.start <= p <= current.end})
    if not inside:
        return current
    gaps = [
        PortRange(low, high)
        for low, high in zip(
            [current.start, *(p + 1 for p in inside)],
            [*(p - 1 for p in inside), current.end],
            strict=True,
        )
    ]
    allowed = [gap for gap in gaps if gap.ports >= DYNAMIC_MIN_COUNT]
    return max(allowed, key=lambda gap: (gap.ports, gap.start), default=None)
