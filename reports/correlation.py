"""Fleet correlation: which candidate causes are followed by new reservations, across hosts.

The event explained is **reservation growth**: a window in which a host's run-time reservations
(excluded ranges without ``*`` of at least ``MIN_BLOCK`` ports, every protocol, families merged)
reach more ports than the host ever held before in the observed period. Moves are left out on
purpose: every full boot of a WinNAT host places its blocks anew (facts C), so anything followed
by a reboot — a cumulative update every host got — would be followed by moves everywhere. So are
ranges that come back after a ``net stop winnat`` (facts B1): they restore an earlier level.

For each cause (``kind`` and ``cause`` of ``reports.events.list_causes``) the hosts that can
show growth (two or more snapshots with excluded ranges) fall in a 2×2 table:

- exposed with event: the cause was seen, and growth followed within ``window_days`` of it
  (same window or later; the lag runs from the install/boot time, else the window's start);
- exposed without event: no growth within the window after any occurrence, and the host was
  observed for the whole window after its first occurrence (otherwise it is *pending*, left out
  of the table and listed in ``pending_hosts``);
- unexposed with / without event: the other hosts, with growth at any time / never.

``p_value`` is Fisher's exact test, one-sided (``greater``): is growth more common among exposed
hosts? A cause every host had leaves no unexposed host, so Fisher gives p = 1: no evidence.
Causes with fewer than ``min_hosts`` exposed hosts in the table get ``enough_hosts=False`` and
no rank, and are listed after the ranked ones. Ranking: p-value, then causes that have an
unexposed group, then the odds ratio, then the count of exposed hosts with an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cache

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact
from sqlalchemy import Connection

from collector.windows import MIN_BLOCK
from reports import tables
from reports.model import COLUMNS

DEFAULT_WINDOW_DAYS = 7.0
DEFAULT_MIN_HOSTS = 3
CORRELATION_COLUMNS = (*COLUMNS["correlation"], "hosts_unexposed_with_event", "pending_hosts")


def measure_reservations(spans: pd.DataFrame, levels: pd.DataFrame) -> pd.DataFrame:
    """Return, per state span with known excluded ranges, the ports held in run-time blocks.

    ``spans`` and ``levels`` are the ``reservation_spans`` and ``reservation_levels`` tables
    (``reports.tables``): a set with no run-time block has no level, so none. A span's nights
    share its level: ``snapshot_id`` and ``taken_at`` are its first night's, ``last_at`` and
    ``nights`` say how far it went.
    """
    per_set = levels.set_index("set_id")["ports"]
    # Growth compares each span with the host's earlier ones: oldest first.
    known = spans.sort_values(["host_id", "taken_at", "snapshot_id"], kind="stable")
    found = known[["host_id", "host", "snapshot_id", "taken_at", "last_at", "nights"]].copy()
    found["level"] = known["excluded_set_id"].map(per_set).fillna(0).astype("int64").to_numpy()
    return found.reset_index(drop=True)


def find_growth(levels: pd.DataFrame) -> pd.DataFrame:
    """Return the snapshots where a host's reserved block ports exceed every earlier level.

    Within a span the level stays, so only a span's first night can exceed what came before.
    """
    grouped = levels.groupby("host_id", sort=False)["level"]
    highest = grouped.cummax().groupby(levels["host_id"], sort=False).shift()
    grown = highest.notna() & (levels["level"] > highest)
    events = levels[grown].drop(columns=["last_at", "nights"]).rename(columns={"taken_at": "at"})
    events["previous_level"] = highest[grown].astype("int64")
    return events.reset_index(drop=True)


def list_observed_hosts(levels: pd.DataFrame) -> pd.DataFrame:
    """Return the hosts that can show growth (two or more known snapshots), with their span."""
    span = levels.groupby(["host_id", "host"]).agg(
        min=("taken_at", "min"), max=("last_at", "max"), count=("nights", "sum")
    )
    span = span[span["count"] >= 2].reset_index()
    return span.rename(columns={"min": "first_at", "max": "last_at"}).drop(columns="count")


def correlate(
    causes: pd.DataFrame,
    growth: pd.DataFrame,
    hosts: pd.DataFrame,
    window_days: float = DEFAULT_WINDOW_DAYS,
    min_hosts: int = DEFAULT_MIN_HOSTS,
) -> pd.DataFrame:
    """Return the ``correlation`` frame: one row per candidate cause, best first."""
    window = pd.Timedelta(timedelta(days=window_days))
    exposures = causes[causes["exposure"] & causes["host_id"].isin(hosts["host_id"])]
    keys = ["cause_kind", "cause", "host_id"]
    exposures = exposures.rename(columns={"kind": "cause_kind"})
    per_host = exposures.groupby(keys)["cause_at"].min().rename("first_at").reset_index()
    pairs = exposures[[*keys, "cause_at", "seen_at"]].merge(growth[["host_id", "at"]], on="host_id")
    lag = pairs["at"] - pairs["cause_at"]
    pairs = pairs.assign(lag=lag)[(pairs["at"] >= pairs["seen_at"]) & (lag <= window)]
    lags = pairs.groupby(keys)["lag"].min().rename("lag").reset_index()
    per_host = per_host.merge(lags, on=keys, how="left").merge(
        hosts[["host_id", "host", "last_at"]], on="host_id"
    )
    per_host["event"] = per_host["lag"].notna()
    per_host["pending"] = ~per_host["event"] & (per_host["last_at"] - per_host["first_at"] < window)
    host_names = dict(zip(hosts["host_id"], hosts["host"], strict=True))
    grown = set(growth["host_id"]) & set(host_names)
    rows = []
    for (kind, cause), group in per_host.groupby(["cause_kind", "cause"], sort=False):
        exposed_ids = set(group["host_id"])
        with_event = group[group["event"]]
        without = group[~group["event"] & ~group["pending"]]
        unexposed_grown = sorted(host_names[h] for h in grown - exposed_ids)
        a, b = len(with_event), len(without)
        c = len(unexposed_grown)
        d = len(host_names) - len(exposed_ids) - c
        p_value, odds = _fisher(a, b, c, d)
        median = with_event["lag"].dt.total_seconds().median() / 86400 if a else np.nan
        rows.append(
            {
                "cause": cause, "cause_kind": kind, "exposed_with_event": a,
                "exposed_without_event": b, "unexposed_with_event": c,
                "unexposed_without_event": d, "p_value": p_value, "odds_ratio": odds,
                "median_lag_days": round(float(median), 2) if a else np.nan,
                "hosts_with_event": sorted(with_event["host"]),
                "hosts_without_event": sorted(without["host"]),
                "enough_hosts": a + b >= min_hosts, "rank": pd.NA,
                "hosts_unexposed_with_event": unexposed_grown,
                "pending_hosts": sorted(group.loc[group["pending"], "host"]),
            }
        )  # fmt: skip
    return _ranked(pd.DataFrame(rows, columns=list(CORRELATION_COLUMNS)))


@cache
def _fisher(a: int, b: int, c: int, d: int) -> tuple[float, float]:
    """Return the one-sided p-value and the sample odds ratio (NaN when undefined)."""
    result = fisher_exact(np.array([[a, b], [c, d]]), alternative="greater")
    odds = float(result.statistic)
    return float(result.pvalue), odds


def _ranked(frame: pd.DataFrame) -> pd.DataFrame:
    """Order causes best first; only those with enough hosts get a rank."""
    no_contrast = frame["unexposed_with_event"] + frame["unexposed_without_event"] == 0
    frame = frame.assign(
        _no_contrast=no_contrast,
        _odds=frame["odds_ratio"].fillna(-1.0),
        _ranked=~frame["enough_hosts"].astype(bool),
    )
    frame = frame.sort_values(
        ["_ranked", "p_value", "_no_contrast", "_odds", "exposed_with_event", "cause"],
        ascending=[True, True, True, False, False, True],
        kind="stable",
    )
    ranked = frame["enough_hosts"].astype(bool).to_numpy()
    frame["rank"] = pd.array(np.where(ranked, np.cumsum(ranked), 0), dtype="Int64")
    frame.loc[~ranked, "rank"] = pd.NA
    return frame.drop(columns=["_no_contrast", "_odds", "_ranked"]).reset_index(drop=True)


@dataclass(frozen=True, slots=True)
class Reservations:
    """What the correlation and the protected ports read of the excluded ranges' history."""

    snapshots: pd.DataFrame  # reservation_spans: every state span with captured ranges
    levels: pd.DataFrame  # reservation_levels: each set's run-time block ports
    administered: pd.DataFrame  # administered_tcp_ranges: each set's '*' TCP ranges


def load_reservations(connection: Connection, min_block: int = MIN_BLOCK) -> Reservations:
    """Read the state spans whose excluded ranges were captured, and what their sets hold.

    The report reads them once for the correlation and the protected ports alike. The sets'
    ranges are summed in the database: they grow with every change, their levels do not.
    """
    return Reservations(
        snapshots=tables.read(connection, "reservation_spans"),
        levels=tables.read(connection, "reservation_levels", min_block=min_block),
        administered=tables.read(connection, "administered_tcp_ranges"),
    )


def correlate_fleet(
    connection: Connection,
    causes: pd.DataFrame,
    window_days: float = DEFAULT_WINDOW_DAYS,
    min_hosts: int = DEFAULT_MIN_HOSTS,
    reservations: Reservations | None = None,
) -> pd.DataFrame:
    """Correlate candidate causes with reservation growth over the whole fleet.

    ``reservations`` is what ``load_reservations`` read, when the caller has it already.
    """
    read = reservations or load_reservations(connection)
    levels = measure_reservations(read.snapshots, read.levels)
    return correlate(
        causes, find_growth(levels), list_observed_hosts(levels), window_days, min_hosts
    )
