"""What needs attention tonight, as sentences an admin can act on, each pointing at its evidence.

Nothing here classifies: a port's status in each snapshot is the stored diagnosis, chosen as
``reports.findings.port_statuses`` chooses it (the rule of ``answer_ports``), its causes are the
stored candidate causes of the week before its status began, as ``explain`` tells them
(``reports.events.causes_before``), best fleet-correlation rank first, and its fix is the first
fix kind the diagnosis stored for it, worded by ``reports.remediation``. The ``attention`` frame
has one row per line, in the order the report shows them, grouped by ``kind``, newest first:

- ``reserved`` / ``blocked``: a wanted port that cannot be bound on a host now (reserved or
  probably reserved; failing with no captured cause), since when, the range and its owner, the
  top causes of the change that brought it, and the first fix;
- ``newly-blocked`` / ``newly-freed``: what the last night changed, for hosts seen last night;
- ``ranges``: hosts whose stored change events (excluded or dynamic ranges) are last night's;
- ``failed`` / ``stale``: hosts whose last collection failed (the error class), hosts not seen
  for ``report.stale_days``;
- ``at-risk``: a wanted port free tonight but inside the dynamic range of a host where
  Hyper-V/WinNAT reserve blocks, with the fleet's odds (``reports.odds``);
- ``cleared``: a wanted port blocked earlier in the history and free now;
- ``protected``: a wanted port an administered ('*') range has covered in every captured
  snapshot since a date (the prevent script's, or an administrator's): WinNAT/Hyper-V will not
  take it, and it still binds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from collector.diagnosis import Diagnosis, PortStatus
from collector.windows import RUNTIME_OWNER
from reports import tables
from reports.correlation import DEFAULT_WINDOW_DAYS, Reservations
from reports.events import causes_by, causes_in_windows
from reports.findings import port_statuses, unbroken_since
from reports.odds import Odds

# Statuses a wanted port cannot be bound in; those it can.
BLOCKING = (PortStatus.RESERVED.value, PortStatus.BLOCKED.value)
OPEN = (PortStatus.FREE.value, PortStatus.AT_RISK.value)
# A host's latest snapshot counts as last night's when it is this close to the fleet's newest.
LAST_NIGHT = timedelta(hours=36)
TOP_CAUSES = 3
# The order of the groups on the page, with their titles and how a count of one, or more, reads.
KINDS = (
    ("reserved", "Reserved wanted ports", "reserved wanted port", "reserved wanted ports"),
    ("blocked", "Wanted ports failing, cause unknown", "failing, cause unknown",
     "failing, cause unknown"),
    ("newly-blocked", "Blocked since the previous night", "newly blocked", "newly blocked"),
    ("newly-freed", "Freed since the previous night", "newly freed", "newly freed"),
    ("ranges", "Reserved ranges that changed last night", "host whose ranges changed",
     "hosts whose ranges changed"),
    ("failed", "Collections that failed", "failed collection", "failed collections"),
    ("stale", "Hosts not seen lately", "host not seen lately", "hosts not seen lately"),
    ("at-risk", "Wanted ports at risk", "port at risk", "ports at risk"),
    ("cleared", "Blocked earlier, free now", "blocked earlier, free now",
     "blocked earlier, free now"),
    ("protected", "Protected by an administered range", "protected wanted port",
     "protected wanted ports"),
)  # fmt: skip
PROTECTED_COLUMNS = ("host", "port", "start", "end", "since")
ATTENTION_COLUMNS = (
    "kind", "host", "port", "at", "text", "causes", "fix", "fix_commands", "event_id",
)  # fmt: skip


_PORTS_A_PASS = 8  # the ports fleet_ports_findings takes


@dataclass(frozen=True, slots=True)
class PortHistory:
    """Every state span of the fleet, and the TCP findings of any set that cover each port."""

    spans: pd.DataFrame  # fleet_spans: each host's runs of nights with the same sets
    findings: Mapping[int, pd.DataFrame]  # port -> the TCP findings that cover it

    @classmethod
    def read(cls, connection: Connection, ports: Sequence[int]) -> PortHistory:
        """Read the history of ``ports``: the runs and the at-risk odds both take it."""
        wanted = sorted({int(port) for port in ports})
        found: dict[int, pd.DataFrame] = {}
        # One pass over the findings for eight ports: each pass reads every finding stored.
        for start in range(0, len(wanted), _PORTS_A_PASS):
            some = wanted[start : start + _PORTS_A_PASS]
            named = {f"p{i + 1}": (some[i] if i < len(some) else None)
                     for i in range(_PORTS_A_PASS)}  # fmt: skip
            rows = tables.read(connection, "fleet_ports_findings", None, **named)
            for port in some:
                mine = (rows["start"] <= port) & (rows["end"] >= port)
                found[port] = rows[mine].reset_index(drop=True)
        return cls(tables.read(connection, "fleet_spans"), found)


def span_statuses(history: PortHistory) -> Iterator[tuple[int, pd.DataFrame, pd.Series]]:
    """Yield each port, the fleet's spans (by host, oldest first), and the port's status in each.

    A port's status depends on the span's finding set and sweep alone: each distinct pair is
    answered once (they grow with changes), as ``reports.findings.port_statuses`` answers it.
    """
    spans = history.spans.sort_values(["host_id", "first_at", "first_snapshot_id"],
                                      ignore_index=True)  # fmt: skip
    keys = spans[["finding_set_id", "swept"]].drop_duplicates(ignore_index=True)
    keys["snapshot_id"] = np.arange(len(keys), dtype=np.int64)
    pointers = keys[["snapshot_id", "finding_set_id"]].dropna().astype("int64")
    for port, found in history.findings.items():
        findings = pointers.merge(found, left_on="finding_set_id", right_on="set_id")
        cells = keys.assign(port=int(port))
        answered = keys.assign(status=port_statuses(findings, cells)).drop(columns="snapshot_id")
        yield (
            int(port),
            spans,
            spans[["finding_set_id", "swept"]].merge(answered, how="left")["status"],
        )


def port_runs(history: PortHistory) -> pd.DataFrame:
    """Return every host's history of each TCP port as runs of one status, oldest first.

    One row per run: ``host_id``, ``host``, ``port``, ``status``, ``first_at``, ``last_at``,
    ``snapshots``, ``first_snapshot_id``, ``run`` (0 for a host and port's first run) and
    ``current`` (the run of its latest snapshot). Runs are folded from the state spans: a span
    is a run of nights of one state, so of one status for every port.
    """
    columns = ["host_id", "host", "port", "status", "first_at", "last_at", "snapshots",
               "first_snapshot_id", "run", "current"]  # fmt: skip
    if history.spans.empty or not history.findings:
        empty = pd.DataFrame({column: [] for column in columns})
        return empty.astype({"run": "int64", "snapshots": "int64", "current": bool})
    folded = [_runs(spans, statuses, port) for port, spans, statuses in span_statuses(history)]
    runs = pd.concat(folded, ignore_index=True)
    runs = runs.sort_values(["host_id", "port"], kind="stable", ignore_index=True)
    runs["run"] = runs.groupby(["host_id", "port"]).cumcount()
    last = runs.groupby(["host_id", "port"])["run"].transform("max")
    runs["current"] = runs["run"] == last
    return runs.loc[:, columns]


def _runs(spans: pd.DataFrame, statuses: pd.Series, port: int) -> pd.DataFrame:
    """Fold one port's spans (oldest first per host) into runs of one status."""
    starts = (spans["host_id"] != spans["host_id"].shift()) | (statuses != statuses.shift())
    frame = spans.assign(status=statuses.to_numpy(), run_id=starts.cumsum().to_numpy())
    runs = frame.groupby("run_id", sort=True).agg(
        host_id=("host_id", "first"), host=("host", "first"), status=("status", "first"),
        first_at=("first_at", "min"), last_at=("last_at", "max"),
        snapshots=("nights", "sum"), first_snapshot_id=("first_snapshot_id", "first"),
    )  # fmt: skip
    return runs.reset_index(drop=True).assign(port=port)


def build_attention(
    runs: pd.DataFrame,
    wanted: pd.DataFrame,
    hosts: pd.DataFrame,
    events: pd.DataFrame,
    causes: pd.DataFrame,
    ranks: Mapping[tuple[str, str], int],
    remediation: pd.DataFrame,
    odds: Mapping[int, tuple[Odds, ...]],
    stale_days: float,
    protected: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Return the ``attention`` frame: the report's first section, line by line.

    ``wanted`` is the analysis's wanted matrix with its findings, ``hosts`` its hosts frame,
    ``events`` the stored change events with ``event_id``, ``causes`` the stored candidate
    causes (``reports.events.load_causes``), ``ranks`` the fleet correlation's rank per (kind,
    cause), ``remediation`` the worded fixes with their ports, ``protected`` what
    ``protected_ports`` found.
    """
    shielded = _shielded(protected)
    rows: list[dict[str, Any]] = []
    now = runs[runs["current"]]
    current: dict[tuple[str, int], Mapping[str, Any]] = {
        (str(host), int(port)): {"first_at": first_at, "snapshots": snapshots, "run": run}
        for host, port, first_at, snapshots, run in zip(
            now["host"], now["port"], now["first_at"], now["snapshots"], now["run"], strict=True
        )
    }
    fixes = _first_fixes(remediation)
    # A host not seen lately may have changed since: its lines say when it was last seen.
    stale = {
        str(host): taken
        for host, taken, old in zip(hosts["host"], hosts["taken_at"], hosts["stale"], strict=True)
        if old and not pd.isna(taken)
    }
    blocked = wanted[wanted["status"].isin(BLOCKING)].sort_values(["host", "port"])
    cells = cast(list[dict[str, Any]], blocked.to_dict("records"))
    sinces = [_since(current.get((str(cell["host"]), int(cell["port"])))) for cell in cells]
    # The cells whose status began with a change (not with the host's first snapshot): their
    # events and causes are looked up for all of them at once.
    began = pd.DataFrame(
        [(str(cell["host"]), int(cell["port"]), pd.Timestamp(since["first_at"]))
         for cell, since in zip(cells, sinces, strict=True) if since["previous"]],
        columns=["host", "port", "began_at"],
        index=[i for i, since in enumerate(sinces) if since["previous"]],
    )  # fmt: skip
    event_ids = _events_began(events, began)
    told = _causes_told(causes, began, ranks)
    for index, (cell, since) in enumerate(zip(cells, sinces, strict=True)):
        host = str(cell["host"])
        first = cell["fixes"][0] if cell["fixes"] else None
        worded = fixes.get((str(cell["host"]), int(cell["port"]), str(first)))
        action, commands = worded if worded is not None else (None, None)
        rows.append({
            "kind": "reserved" if cell["status"] == PortStatus.RESERVED else "blocked",
            "host": cell["host"], "port": cell["port"], "at": since["first_at"],
            "text": _blocked_text(cell, since) + (
                f" Last seen {stale[host]:%Y-%m-%d}: it may have changed since."
                if host in stale else ""),
            "causes": told.get(index, []), "fix": action,
            "fix_commands": commands,
            "event_id": event_ids.get(index),
        })  # fmt: skip
    rows += _changes(runs, hosts)
    rows += _range_changes(events, hosts)
    rows += _collection(hosts, stale_days)
    rows += _at_risk(wanted, odds)
    rows += _cleared(runs, shielded)
    rows += _protected(shielded)
    frame = pd.DataFrame(rows, columns=list(ATTENTION_COLUMNS))
    order = {kind: index for index, (kind, *_) in enumerate(KINDS)}
    frame = frame.assign(_order=frame["kind"].map(order))
    # Within a group the newest first: what just happened is what to look at first.
    frame = frame.sort_values(["_order", "at", "host"], ascending=[True, False, True],
                              na_position="last", kind="stable", ignore_index=True)  # fmt: skip
    return frame.drop(columns=["_order"])


def word_cause(cause: Mapping[str, Any], rank: int | None = None) -> str:
    """Word a stored cause ``{"kind", "cause", "detail", "at"}``, with its fleet rank if any."""
    text = str(cause["cause"])
    if cause.get("detail") and cause["detail"] != cause["cause"]:
        text += f" — {cause['detail']}"
    at = cause.get("at")
    when = None if not at else str(at).replace("T", " ")[:16]
    if when and when not in text:  # a reboot's detail says when it booted already
        text += f" ({when})"
    if rank is not None:
        text += f"; #{rank} in the fleet correlation"
    return text


def _since(run: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the current run of a host's port (its start and length)."""
    if run is None:  # no snapshot of the host
        return {"first_at": None, "snapshots": 0, "previous": False}
    return {"first_at": run["first_at"], "snapshots": int(run["snapshots"]),
            "previous": int(run["run"]) > 0}  # fmt: skip


def _events_began(events: pd.DataFrame, began: pd.DataFrame) -> dict[int, int]:
    """Return, per ``began`` row, the change event that began its port's status, if any.

    The host's event at the moment the status began, one whose range covers the port first,
    else the first of that moment's (in the stored order).
    """
    if events.empty or began.empty:
        return {}
    stored = pd.DataFrame({
        "host": events["host"].to_numpy(), "began_at": _utc(events["at"]),
        "start": events["start"].to_numpy(), "end": events["end"].to_numpy(),
        "event_id": events["event_id"].to_numpy(), "order": np.arange(len(events)),
    })  # fmt: skip
    asked = began.assign(began_at=_utc(began["began_at"]), asked=began.index.to_numpy())
    found = asked.merge(stored, on=["host", "began_at"], how="inner")
    covers = ((found["start"] <= found["port"]) & (found["end"] >= found["port"])).fillna(False)
    found = found.assign(elsewhere=~covers.astype(bool))
    chosen = found.sort_values(["asked", "elsewhere", "order"]).drop_duplicates("asked")
    return dict(zip(chosen["asked"].tolist(), chosen["event_id"].astype(int).tolist(),
                    strict=True))  # fmt: skip


def _utc(values: pd.Series) -> np.ndarray:
    """Return times as naive UTC nanoseconds, so frames of either resolution join."""
    return pd.to_datetime(values, utc=True).dt.tz_localize(None).to_numpy("datetime64[ns]")


def _causes_told(
    causes: pd.DataFrame, began: pd.DataFrame, ranks: Mapping[tuple[str, str], int]
) -> dict[int, list[str]]:
    """Return, per ``began`` row, the top causes of the week before its status began, as words.

    The same causes ``explain`` tells (``reports.events.causes_before``), ranked ones first;
    a status that goes back to the host's first snapshot is not asked (nothing is known of
    what came before).
    """
    if began.empty:
        return {}
    windows = causes_in_windows(causes, began, DEFAULT_WINDOW_DAYS)
    found = causes_by(windows, "asked")
    return {asked: _top_causes(listed, ranks) for asked, listed in found.items()}


def _top_causes(found: list[dict[str, Any]], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    """Word the best ``TOP_CAUSES`` of a window's causes: best rank first, then the latest."""
    ordered = sorted(
        enumerate(found),
        key=lambda item: (ranks.get((item[1]["kind"], item[1]["cause"]), 10**9), -item[0]),
    )
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for _, cause in ordered:
        unique.setdefault((cause["kind"], cause["cause"]), cause)
    return [word_cause(cause, ranks.get(key)) for key, cause in list(unique.items())[:TOP_CAUSES]]


def _first_fixes(remediation: pd.DataFrame) -> dict[tuple[str, int, str], tuple[str, str]]:
    """Return, per (host, port, fix kind), the worded fix: its action and its commands."""
    worded: dict[tuple[str, int, str], tuple[str, str]] = {}
    for row in remediation.to_dict("records"):
        for port in row["ports"]:
            key = (str(row["host"]), int(port), str(row["action"]))
            worded.setdefault(key, (str(row["action"]), str(row["commands"])))
    return worded


def _blocked_text(cell: Mapping[str, Any], since: Mapping[str, Any]) -> str:
    finding = cell["finding"] or {}
    port, kind = cell["port"], cell["classification"]
    if kind == Diagnosis.RESERVED and finding.get("range_start") is not None:
        start, end = int(finding["range_start"]), int(finding["range_end"])
        owner = "an administrator ('*')" if finding.get("administered") else RUNTIME_OWNER
        what = f"reserved: excluded range {span(start, end)}, held by {owner}"
        if finding.get("administered"):
            what += " (an administrator's range keeps a port for a service: was it for this one?)"
    elif kind == Diagnosis.PROBABLY_RESERVED:
        start, end = int(finding["block_start"]), int(finding["block_end"])
        what = (
            f"probably reserved by {RUNTIME_OWNER}: it lies in a block of failing ports "
            f"{span(start, end)}, and this host's excluded ranges were not captured"
        )
    else:
        code = finding.get("error_code")
        what = f"fails to bind{'' if code is None else f' ({code})'} and nothing captured says why"
    return f"TCP {port} {what}{_since_text(since)}."


def _since_text(since: Mapping[str, Any]) -> str:
    if since["first_at"] is None:
        return ""
    nights = since["snapshots"]
    first = "since the first snapshot, " if not since["previous"] else "since "
    return f", {first}{since['first_at']:%Y-%m-%d} ({_count(nights, 'snapshot')})"


def _changes(runs: pd.DataFrame, hosts: pd.DataFrame) -> list[dict[str, Any]]:
    """Return the wanted ports whose status flipped at each host's last-night snapshot."""
    if runs.empty:
        return []
    newest = hosts["taken_at"].max()
    seen = set(hosts.loc[hosts["taken_at"] >= newest - LAST_NIGHT, "host"])
    previous = runs[["host_id", "port", "run", "status", "first_at", "last_at"]].rename(
        columns={"status": "before", "first_at": "before_first", "last_at": "before_last"}
    )
    previous = previous.assign(run=previous["run"] + 1)
    flipped = runs[runs["current"] & (runs["snapshots"] == 1) & runs["host"].isin(seen)]
    flipped = flipped.merge(previous, on=["host_id", "port", "run"])
    rows = []
    for row in flipped.sort_values(["host", "port"]).to_dict("records"):
        now_blocked, was_blocked = row["status"] in BLOCKING, row["before"] in BLOCKING
        if now_blocked and not was_blocked:
            kind, text = (
                "newly-blocked",
                (
                    f"TCP {row['port']} became {row['status']} on {row['first_at']:%Y-%m-%d} "
                    f"(it was {row['before']} on {row['before_last']:%Y-%m-%d})."
                ),
            )
        elif row["status"] in OPEN and was_blocked:
            kind, text = (
                "newly-freed",
                (
                    f"TCP {row['port']} is {row['status']} again on {row['first_at']:%Y-%m-%d}, "
                    f"after being {row['before']} from {row['before_first']:%Y-%m-%d} "
                    f"to {row['before_last']:%Y-%m-%d}."
                ),
            )
        else:
            continue
        rows.append(_line(kind, row["host"], row["port"], row["first_at"], text))
    return rows


def _range_changes(events: pd.DataFrame, hosts: pd.DataFrame) -> list[dict[str, Any]]:
    """Return the stored range change events of each host's last-night snapshot."""
    if events.empty:
        return []
    newest = hosts["taken_at"].max()
    latest = hosts.set_index("host")["taken_at"]
    tonight = events["at"] == events["host"].map(latest)
    last = events[tonight & (events["at"] >= newest - LAST_NIGHT)]
    ordered = last.sort_values(["host", "event_id"])
    # Per host and kind, how many events and the ports they name (some name none).
    kinds = ordered.groupby(["host", "kind"], sort=True).agg(
        events=("event_id", "size"), named=("ports", "count"), ports=("ports", "sum")
    )
    said: dict[str, list[str]] = {}
    for (host, kind), count, named, ports in zip(
        kinds.index, kinds["events"], kinds["named"], kinds["ports"], strict=True
    ):
        one, many = _EVENT_WORDS.get(str(kind), (str(kind), str(kind)))
        size = f" ({_count(int(ports), 'port')})" if named else ""
        said.setdefault(str(host), []).append(f"{count} {one if count == 1 else many}{size}")
    rows = []
    first = ordered.drop_duplicates("host")  # each host's first event, by id
    for host, at, previous_at, event_id in zip(
        first["host"], first["at"], first["previous_at"], first["event_id"], strict=True
    ):
        text = f"{'; '.join(said[str(host)])}, between {previous_at:%Y-%m-%d} and {at:%Y-%m-%d}."
        line = _line("ranges", str(host), None, at, text[0].upper() + text[1:])
        line["event_id"] = int(event_id)
        rows.append(line)
    return rows


_EVENT_WORDS = {  # one, many
    "range-appeared": ("excluded range appeared", "excluded ranges appeared"),
    "range-disappeared": ("excluded range disappeared", "excluded ranges disappeared"),
    "range-moved": ("move of excluded ranges", "moves of excluded ranges"),
    "dynamic-changed": ("change of the dynamic port range", "changes of the dynamic port range"),
}


def _collection(hosts: pd.DataFrame, stale_days: float) -> list[dict[str, Any]]:
    """Return the hosts not seen lately and those whose last collection failed."""
    rows = []
    for host in hosts.sort_values("host").to_dict("records"):
        failed = host["last_status"] == "failed"
        error = host["last_error_class"] or "no error class"
        when = f"{host['last_attempt_at']:%Y-%m-%d %H:%M} UTC" if failed else ""
        tried = (
            ""
            if not failed
            else f" The last attempt failed ({error}) on {when}."
            if host["failed_attempts"] <= 1
            else f" The last {host['failed_attempts']} attempts failed ({error}), the last on "
            f"{when}."
        )
        if host["stale"]:
            if pd.isna(host["taken_at"]):
                text = "Never collected: no snapshot of this host is stored."
            else:
                days = float(host["days_since_snapshot"])
                text = (
                    f"Not seen for {days:.0f} days (last snapshot {host['taken_at']:%Y-%m-%d}; "
                    f"report.stale_days is {stale_days:g}): what the report says of it may be "
                    "out of date."
                )
            at = host["taken_at"] if not pd.isna(host["taken_at"]) else host["last_attempt_at"]
            rows.append(_line("stale", host["host"], None, at, text + tried))
        elif failed:
            rows.append(_line("failed", host["host"], None, host["last_attempt_at"],
                              f"Collection failed; showing the snapshot of "
                              f"{host['taken_at']:%Y-%m-%d}.{tried}"))  # fmt: skip
    return rows


def _at_risk(wanted: pd.DataFrame, odds: Mapping[int, tuple[Odds, ...]]) -> list[dict[str, Any]]:
    """Return one line per wanted port at risk on some hosts, with the fleet's odds."""
    risky = wanted[wanted["status"] == PortStatus.AT_RISK]
    rows = []
    for key, cells in risky.groupby("port", sort=True):
        port = int(cast(int, key))
        said = "; ".join(item.describe() for item in odds.get(port, ()))
        hosts = sorted(cells["host"])
        text = (
            f"TCP {port} is free but at risk on {_count(len(hosts), 'host')} (inside the dynamic "
            f"range where Hyper-V/WinNAT reserve blocks at boot)" + (f": {said}." if said else ".")
        )
        rows.append(_line("at-risk", None, port, None, text))
    return rows


def protected_ports(reservations: Reservations, ports: Sequence[int]) -> pd.DataFrame:
    """Return each host's wanted ports that an administered range covers now, and since when.

    ``reservations`` is what ``reports.correlation.load_reservations`` read. "Since" is the
    first of the unbroken run of captured snapshots, up to the host's latest captured one, in
    which an administered TCP range covered the port (``unbroken_since``).
    """
    snapshots, ranges = reservations.snapshots, reservations.administered
    if snapshots.empty or not ports:
        return pd.DataFrame(columns=list(PROTECTED_COLUMNS))
    covers: dict[tuple[int, int], tuple[int, int]] = {}  # (set, port) -> the range
    for set_id, start, end in zip(ranges["set_id"], ranges["start"], ranges["end"], strict=True):
        for port in ports:
            if start <= port <= end:
                covers.setdefault((int(set_id), port), (int(start), int(end)))
    rows = []
    ordered = snapshots.sort_values(["host_id", "taken_at", "snapshot_id"])
    for host, mine in ordered.groupby("host", sort=True):
        sets = [int(v) for v in mine["excluded_set_id"]]
        taken = list(mine["taken_at"])
        for port in ports:
            first = unbroken_since([(set_id, port) in covers for set_id in sets])
            if first is not None:
                rows.append((str(host), port, *covers[(sets[-1], port)], taken[first]))
    return pd.DataFrame(rows, columns=list(PROTECTED_COLUMNS))


def _shielded(protected: pd.DataFrame | None) -> dict[tuple[str, int], Mapping[str, Any]]:
    if protected is None or protected.empty:
        return {}
    rows = cast(list[dict[str, Any]], protected.to_dict("records"))
    return {(str(row["host"]), int(row["port"])): row for row in rows}


def _protected(shielded: Mapping[tuple[str, int], Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return a line per wanted port an administered range protects, since when."""
    rows = []
    for (host, port), row in sorted(shielded.items()):
        start, end = row["start"], row["end"]
        where = f"{start}" if start == end else f"{start}–{end}"
        text = (
            f"TCP {port} protected since {row['since']:%Y-%m-%d}: the administered ('*') "
            f"range {where} covers it, so WinNAT/Hyper-V will not reserve it; it still binds."
        )
        rows.append(_line("protected", host, port, row["since"], text))
    return rows


def _cleared(
    runs: pd.DataFrame, shielded: Mapping[tuple[str, int], Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Return the wanted ports blocked earlier in a host's history and free now."""
    if runs.empty:
        return []
    blocked = runs[runs["status"].isin(BLOCKING) & ~runs["current"]]
    last = blocked.sort_values("run").groupby(["host_id", "port"]).tail(1)
    now = runs[runs["current"] & runs["status"].isin(OPEN)]
    # A port freed last night is told under what changed; here only the older ones.
    now = now[now["snapshots"] > 1]
    found = now.merge(last, on=["host_id", "port"], suffixes=("", "_blocked"))
    rows = []
    for row in found.sort_values(["host", "port"]).to_dict("records"):
        text = (
            f"TCP {row['port']} was {row['status_blocked']} from "
            f"{row['first_at_blocked']:%Y-%m-%d} to {row['last_at_blocked']:%Y-%m-%d} "
            f"({_count(row['snapshots_blocked'], 'snapshot')}); {row['status']} since "
            f"{row['first_at']:%Y-%m-%d}. "
        )
        guard = shielded.get((str(row["host"]), int(row["port"])))
        text += (
            "It may come back after a reboot."
            if guard is None
            else f"Protected since {guard['since']:%Y-%m-%d}: it should not come back."
        )
        rows.append(_line("cleared", row["host"], row["port"], row["first_at"], text))
    return rows


def _line(
    kind: str, host: str | None, port: int | None, at: datetime | None, text: str
) -> dict[str, Any]:
    return {"kind": kind, "host": host, "port": port, "at": at, "text": text, "causes": [],
            "fix": None, "fix_commands": None, "event_id": None}  # fmt: skip


def span(start: int, end: int) -> str:
    """Word a port range as a range: ``2695–34521 (31,827 ports)``, or one port."""
    if start == end:
        return f"{start}"
    return f"{start}–{end} ({end - start + 1:,} ports)"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"
