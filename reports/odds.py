"""At-risk odds: how often the fleet saw a port that was at risk get reserved soon after.

A port is at risk on a night when the stored diagnosis says so: free, inside the TCP dynamic
range of a host where Hyper-V/WinNAT reserve blocks. Of all such host-nights of the fleet, the
odds count those after which the same host had the port reserved (``reserved`` or
``probably-reserved``) within the next 7 or 30 days. Only nights whose whole window lies inside
the host's stored history count, so the last nights never pass for "nothing happened". Below
``MIN_NIGHTS`` host-nights the answer is "too little history", not a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from collector.diagnosis import Diagnosis
from collector.store.database import Store
from reports import tables

if TYPE_CHECKING:
    from reports.attention import PortHistory

WINDOWS = (7, 30)  # days ahead
MIN_NIGHTS = 20  # host-nights under which a rate says too little

_RESERVED = (Diagnosis.RESERVED, Diagnosis.PROBABLY_RESERVED)


@dataclass(frozen=True, slots=True)
class Odds:
    """How often an at-risk port was reserved within ``days``, and on how many host-nights."""

    port: int
    days: int
    nights: int  # at-risk host-nights with the whole window observed
    reserved: int  # of those, how many were followed by a reservation within the window

    @property
    def rate(self) -> float | None:
        """The observed rate, or None when it rests on too few host-nights."""
        return self.reserved / self.nights if self.nights >= MIN_NIGHTS else None

    def describe(self) -> str:
        """Say it in one sentence."""
        if self.rate is None:
            return (
                f"within {self.days} days: too little history ({self.nights} at-risk "
                f"host-nights observed, {MIN_NIGHTS} needed)"
            )
        return (
            f"within {self.days} days: reserved after {self.rate:.0%} of at-risk nights "
            f"({self.reserved} of {self.nights} host-nights)"
        )


def at_risk_odds(
    store: Store, ports: Sequence[int], history: PortHistory | None = None
) -> dict[int, tuple[Odds, ...]]:
    """Return, per port, the fleet's odds for each of ``WINDOWS``.

    ``history`` is the fleet's history of these ports when the caller read it already (the
    report does, for the runs): then nothing more is read.
    """
    if history is not None:
        snapshots = history.snapshots.loc[:, ["snapshot_id", "host_id", "taken_at",
                                              "finding_set_id"]]  # fmt: skip
        covering = {port: _diagnoses(history.findings[port]) for port in ports}
    else:
        with store.connect() as connection:
            snapshots = tables.read(connection, "snapshot_findings")
            covering = {port: tables.read(connection, "port_diagnoses", port=port)
                        for port in ports}  # fmt: skip
    return {port: _odds(port, snapshots, covering[port]) for port in ports}


def _diagnoses(findings: pd.DataFrame) -> pd.DataFrame:
    """Return what ``port_diagnoses`` reads, from the TCP findings that cover the port."""
    kinds = [kind.value for kind in (Diagnosis.AT_RISK, *_RESERVED)]
    mine = findings[(findings["family"] == "ipv4") & findings["diagnosis"].isin(kinds)]
    return mine.loc[:, ["set_id", "diagnosis"]].drop_duplicates(ignore_index=True)


def _odds(port: int, snapshots: pd.DataFrame, covering: pd.DataFrame) -> tuple[Odds, ...]:
    """Count the at-risk host-nights of one port and what followed them."""
    state = snapshots.merge(
        covering.rename(columns={"set_id": "finding_set_id"}), on="finding_set_id", how="left"
    )
    risky = state[state["diagnosis"] == Diagnosis.AT_RISK]
    taken = state[state["diagnosis"].isin(list(_RESERVED))]
    ends = snapshots.groupby("host_id")["taken_at"].max()
    # Each host's reservation times once, sorted: not a scan of them all per host.
    by_host = taken.groupby("host_id")["taken_at"]
    reserved: dict[object, np.ndarray] = {
        host_id: np.sort(times.to_numpy()) for host_id, times in by_host
    }
    found = []
    for days in WINDOWS:
        window = pd.Timedelta(timedelta(days=days))
        observed = risky[risky["taken_at"] + window <= risky["host_id"].map(ends)]
        hit = 0
        for host_id, nights in observed.groupby("host_id")["taken_at"]:
            times = reserved.get(host_id)
            if times is None:
                continue
            starts = nights.to_numpy()
            # The first reservation after each night, if any, and whether it came in time.
            after = np.searchsorted(times, starts, side="right")
            present = after < len(times)
            soon = times[np.minimum(after, len(times) - 1)] - starts <= np.timedelta64(window)
            hit += int(np.count_nonzero(present & soon))
        found.append(Odds(port, days, len(observed), hit))
    return tuple(found)
