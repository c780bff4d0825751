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

import pandas as pd
from sqlalchemy import Connection

from collector.diagnosis import Diagnosis
from collector.store.database import Store
from collector.store.spans import TAIL_DAYS
from reports import tables

if TYPE_CHECKING:
    from reports.attention import PortHistory

WINDOWS = (7, 30)  # days ahead
MIN_NIGHTS = 20  # host-nights under which a rate says too little

_RESERVED = (Diagnosis.RESERVED, Diagnosis.PROBABLY_RESERVED)
# A night is counted from its span's tail only near a window's edge: the tail must reach that far.
assert max(WINDOWS) <= TAIL_DAYS


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
    report does, for the runs): then only the tails of the spans near a window's edge are read.
    """
    with store.connect() as connection:
        if history is not None:
            spans = history.spans
            covering = {port: _diagnoses(history.findings[port]) for port in ports}
        else:
            spans = tables.read(connection, "fleet_spans")
            covering = {port: tables.read(connection, "port_diagnoses", port=port)
                        for port in ports}  # fmt: skip
        spans = spans.sort_values(["host_id", "first_at", "first_snapshot_id"], ignore_index=True)
        risky = {port: _risky(spans, covering[port]) for port in ports}
        edges = {int(i) for frame in risky.values() for i in frame.loc[frame["edge"], "span_id"]}
        tails = _tails(connection, sorted(edges))
    return {port: _odds(port, risky[port], tails) for port in ports}


def _diagnoses(findings: pd.DataFrame) -> pd.DataFrame:
    """Return what ``port_diagnoses`` reads, from the TCP findings that cover the port."""
    kinds = [kind.value for kind in (Diagnosis.AT_RISK, *_RESERVED)]
    mine = findings[(findings["family"] == "ipv4") & findings["diagnosis"].isin(kinds)]
    return mine.loc[:, ["set_id", "diagnosis"]].drop_duplicates(ignore_index=True)


def _risky(spans: pd.DataFrame, covering: pd.DataFrame) -> pd.DataFrame:
    """Return the spans (by host, oldest first) in which the port was at risk, with what follows.

    Each gets ``end``, its host's last night, and ``reserved_at``, the first night of the
    host's next span that had the port reserved (NaT: none): the first reservation after every
    night of the span. ``edge`` marks the spans with a night within ``max(WINDOWS)`` days of
    either: only theirs need counting night by night.
    """
    diagnoses = covering.rename(columns={"set_id": "finding_set_id"})
    reserved_sets = set(
        diagnoses.loc[diagnoses["diagnosis"].isin(list(_RESERVED)), "finding_set_id"]
    )
    risky_sets = set(diagnoses.loc[diagnoses["diagnosis"] == Diagnosis.AT_RISK, "finding_set_id"])
    hosts = spans["host_id"]
    reserved_at = spans["first_at"].where(spans["finding_set_id"].isin(reserved_sets))
    following = reserved_at.groupby(hosts).shift(-1).groupby(hosts).bfill()
    frame = spans.assign(end=spans.groupby("host_id")["last_at"].transform("max"),
                         reserved_at=following)  # fmt: skip
    frame = frame[frame["finding_set_id"].isin(risky_sets)]
    reach = pd.Timedelta(timedelta(days=max(WINDOWS)))
    near = (frame["last_at"] > frame["end"] - reach) | (
        frame["last_at"] >= frame["reserved_at"] - reach
    )
    return frame.assign(edge=near.fillna(False).astype(bool))


def _tails(connection: Connection, span_ids: list[int]) -> pd.DataFrame:
    """Return the nights of some spans within ``TAIL_DAYS`` of their last: ``span_id``, ``at``."""
    if not span_ids:
        return pd.DataFrame({"span_id": pd.Series(dtype="int64"),
                             "at": pd.Series(dtype="datetime64[us, UTC]")})  # fmt: skip
    read = tables.read(connection, "span_tails", span_ids)
    offsets = read.assign(offset=read["tail"].str.split(",")).explode("offset")
    offsets = offsets[offsets["offset"].fillna("") != ""]
    before = pd.to_timedelta(offsets["offset"].astype("int64"), unit="us")
    return pd.DataFrame({"span_id": offsets["span_id"].to_numpy(),
                         "at": (offsets["last_at"] - before).to_numpy()})  # fmt: skip


def _odds(port: int, risky: pd.DataFrame, tails: pd.DataFrame) -> tuple[Odds, ...]:
    """Count the at-risk host-nights of one port and what followed them.

    A night counts when its whole window lies before its host's last night, and is reserved
    soon when the first reservation after it comes within the window. A span's nights are
    counted night by night only near those edges, from its tail (``TAIL_DAYS`` >= every window,
    and both edges lie after the span's last night); the nights before them count whole.
    """
    nights = tails.merge(risky.loc[risky["edge"], ["span_id", "end", "reserved_at"]], on="span_id")
    found = []
    for days in WINDOWS:
        window = pd.Timedelta(timedelta(days=days))
        late = nights[nights["at"] > nights["end"] - window]
        observed = int(risky["nights"].sum()) - len(late)
        seen = nights[nights["at"] <= nights["end"] - window]
        hit = int((seen["at"] >= seen["reserved_at"] - window).sum())
        found.append(Odds(port, days, observed, hit))
    return tuple(found)
