"""Classify the ports that failed to bind, and fill the hosts × wanted-ports matrix.

Each failing port gets the first class that fits, in this order:

- ``excluded-administered`` / ``excluded``: inside an excluded range, with or without the ``*``;
- ``in-use``: a listener of the same protocol holds it (one of the same address family first);
- ``probably-reserved``: NO excluded-range text was captured (as in the seed), and the port fails
  with 10013 inside a contiguous run of at least ``MIN_BLOCK`` such ports that lies in the dynamic
  range — the captured one, else Windows' default 49152–65535, and the reason says which;
- ``dynamic-unreserved``: excluded ranges were captured, none covers it, nothing listens on it, and
  it lies in the dynamic range;
- ``unexplained``.

Excluded ranges match by protocol only (netsh ipv4 and ipv6 read the same keys, facts C) and do
not overlap, as netsh prints them. The work is per *segment* (a stretch of a failure run with one
explanation); only ``expand_failures`` makes single ports of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, text

from reports.model import COLUMNS

WSAEACCES = 10013
WSAEADDRINUSE = 10048
DEFAULT_DYNAMIC = (49152, 16384)
MIN_BLOCK = 10
_CHUNK = 5000
_CODES = {WSAEACCES: "WSAEACCES, access forbidden", WSAEADDRINUSE: "WSAEADDRINUSE, address in use"}
_META = """
SELECT s.id AS snapshot_id, s.host_id, h.name AS host, s.taken_at, s.source, s.os_build,
       s.last_boot_at, s.docker_version, s.wsl_version, s.excluded_set_id,
       s.bind_failure_set_id, s.listener_set_id, f.state AS hyperv, v.status AS winnat
  FROM snapshots s JOIN hosts h ON h.id = s.host_id
  LEFT JOIN features f ON f.snapshot_id = s.id AND f.name = 'Microsoft-Hyper-V'
  LEFT JOIN services v ON v.snapshot_id = s.id AND LOWER(v.name) = 'winnat'
 WHERE s.id IN :ids"""
_RUNS = """SELECT set_id, protocol, family, start_port AS start, end_port AS "end", error_code
  FROM bind_failures WHERE set_id IN :ids"""
_EXCLUDED = """SELECT DISTINCT set_id, protocol, start_port AS start, end_port AS "end",
       administered FROM excluded_ranges WHERE set_id IN :ids"""
_LISTENERS = """SELECT id, set_id, protocol, address, port, pid, process
  FROM listeners WHERE set_id IN :ids"""
_DYNAMIC = """SELECT snapshot_id, protocol, family, start_port AS start, port_count AS count
  FROM dynamic_ranges WHERE snapshot_id IN :ids"""

_REASONS = {
    "excluded-administered": "Inside the administered ('*') excluded range {span}: an "
    "administrator reserved it with netsh add excludedportrange, so binds fail with {code}.{also}",
    "excluded": "Inside the excluded range {span} that WinNAT/HNS/Hyper-V reserved at run time "
    "(no '*'), so binds fail with {code}.{also}{quiet}",
    "in-use": "{holder} listens on it, so binds fail with {code}.",
    "probably-reserved": "Probably reserved by WinNAT/Hyper-V: it fails with {code} inside a "
    "contiguous block of {size} failing ports ({block}) within {dynamic}, and nothing listens "
    "on it. No excludedportrange output was captured to confirm the reservation.",
    "dynamic-unreserved": "Fails with {code} inside {dynamic}, yet no excluded range covers it "
    "and nothing listens on it: Windows may have lent it as the local port of an outgoing "
    "connection, or it was reserved after the ranges were read.",
    "unexplained": "Fails with {code}; no excluded ranges were captured, and it is not part of a "
    "block of {min_block} or more access-forbidden ports inside {dynamic}, so this snapshot "
    "cannot tell why.",
    "unexplained-known": "Fails with {code} outside {dynamic}; no excluded range covers it and "
    "nothing listens on it.",
    # wanted-port cells without a failure of their own
    "held": "{holder} listens on it, so another program cannot bind it, although the bind "
    "sweep recorded no failure there.",
    "unswept-excluded": "No bind sweep was recorded, but it lies inside the excluded range {span}, "
    "so binds fail with {code}.",
    "unswept": "No bind sweep was recorded and no captured excluded range covers it.",
    "at-risk": "Free now, but it lies inside {dynamic}, where WinNAT/Hyper-V already reserve "
    "blocks of ports on this host; they are placed anew at every boot, so the next reboot may "
    "take it.",
    "free": "It bound in the bind sweep.",
}
_REASON_FIELDS = (
    "classification", "error_code", "pid", "process", "excluded_known", "excluded_start",
    "excluded_end", "failure_start", "failure_end", "dynamic_start", "dynamic_end",
    "dynamic_captured")  # fmt: skip
Ints = npt.NDArray[np.int64]


def read_frame(
    connection: Connection, sql: str, ids: Sequence[int] | None = None, **params: Any
) -> pd.DataFrame:
    """Run one query into a frame; an ``:ids`` list in ``sql`` is sent in chunks."""
    if ids is None:
        return pd.read_sql(text(sql), connection, params=params or None)
    statement = text(sql).bindparams(bindparam("ids", expanding=True))
    unique = sorted({int(i) for i in ids})
    chunks = [unique[i : i + _CHUNK] for i in range(0, len(unique), _CHUNK)] or [[]]
    frames = [pd.read_sql(statement, connection, params={**params, "ids": c}) for c in chunks]
    filled = [frame for frame in frames if not frame.empty]
    return pd.concat(filled, ignore_index=True) if len(filled) > 1 else (filled or frames)[0]


def to_utc(values: pd.Series) -> pd.Series:
    """Return timestamps as aware UTC (SQLite gives text, PostgreSQL naive UTC datetimes)."""
    return pd.to_datetime(values, utc=True, format="ISO8601")


def tcp4_dynamic(state: SnapshotState) -> pd.DataFrame:
    """Return the TCP/IPv4 dynamic port ranges captured, one row per snapshot."""
    dynamic = state.dynamic
    return dynamic[(dynamic["protocol"] == "tcp") & (dynamic["family"] == "ipv4")]


def to_ints(values: Any) -> Ints:
    """Return values (a Series, a list, booleans) as an int64 array."""
    return np.asarray(values, dtype=np.int64)


def describe_code(code: int) -> str:
    """Name a Winsock error code for people."""
    return f"{int(code)} ({_CODES[int(code)]})" if int(code) in _CODES else f"error {int(code)}"


def describe_dynamic(low: int, high: int, captured: bool) -> str:
    """Describe the dynamic range used, saying when it is the assumed default."""
    assumed = " (the Windows default, assumed because the dynamic range was not captured)"
    return f"the dynamic port range {low}–{high}{'' if captured else assumed}"


def describe_holder(pid: Any, process: Any) -> str:
    """Name a listening process for people."""
    if isinstance(process, str) and process:
        return f"{process} (PID {int(pid)})"
    return f"PID {int(pid)} (process name not captured)"


@dataclass(frozen=True, slots=True)
class SnapshotState:
    """What some snapshots say about their ports; ``meta`` has one row per snapshot."""

    meta: pd.DataFrame
    runs: pd.DataFrame
    excluded: pd.DataFrame  # sorted by snapshot, protocol and start
    listeners: pd.DataFrame
    dynamic: pd.DataFrame


def load_state(connection: Connection, snapshot_ids: Sequence[int]) -> SnapshotState:
    """Read the failure runs, excluded ranges, listeners and dynamic ranges of some snapshots."""
    meta = read_frame(connection, _META, snapshot_ids)
    for column in ("taken_at", "last_boot_at"):
        meta[column] = to_utc(meta[column])
    meta["excluded_known"] = meta["excluded_set_id"].notna()
    meta["swept"] = meta["bind_failure_set_id"].notna()

    def by_set(sql: str, column: str) -> pd.DataFrame:
        pointers = meta[["snapshot_id", column]].dropna().astype("int64")
        rows = read_frame(connection, sql, pointers[column].tolist())
        found = pointers.merge(rows, left_on=column, right_on="set_id")
        return found.drop(columns=[column, "set_id"])

    runs = by_set(_RUNS, "bind_failure_set_id")
    excluded = by_set(_EXCLUDED, "excluded_set_id")
    excluded["administered"] = excluded["administered"].astype(bool)
    excluded = excluded.iloc[np.argsort(_key_of(excluded, "start"), kind="stable")]
    listeners = by_set(_LISTENERS, "listener_set_id").sort_values("id", kind="stable")
    listeners["family"] = np.where(listeners["address"].str.contains(":"), "ipv6", "ipv4")
    return SnapshotState(
        meta=meta,
        runs=runs.sort_values(["snapshot_id", "protocol", "family", "start"], ignore_index=True),
        excluded=excluded.reset_index(drop=True),
        listeners=listeners.reset_index(drop=True),
        dynamic=read_frame(connection, _DYNAMIC, snapshot_ids),
    )


def _key(snapshot: Ints, udp: Ints, port: Ints) -> Ints:
    # One sortable integer per (snapshot, protocol, port): ports fit in 16 bits.
    return (snapshot << 17) | (udp << 16) | port


def _key_of(frame: pd.DataFrame, column: str) -> Ints:
    udp = to_ints(frame["protocol"] == "udp")
    return _key(to_ints(frame["snapshot_id"]), udp, to_ints(frame[column]))


def _covering(excluded: pd.DataFrame, keys: Ints) -> Ints:
    """Return, per port key, the row of the excluded range covering it, or -1."""
    if excluded.empty:
        return np.full(len(keys), -1, np.int64)
    starts, ends = _key_of(excluded, "start"), _key_of(excluded, "end")
    position = np.searchsorted(starts, keys, side="right") - 1
    covered = (position >= 0) & (keys <= ends[np.maximum(position, 0)])
    return to_ints(np.where(covered, position, -1))


def _holder(listeners: pd.DataFrame, keys: Ints, ipv6: Ints) -> Ints:
    """Return the first listener row holding each port (same family first), or -1."""
    if listeners.empty:
        return np.full(len(keys), -1, np.int64)
    table = _key_of(listeners, "port")
    found = []
    for mine, theirs in ((table * 2 + to_ints(listeners["family"] == "ipv6"), keys * 2 + ipv6),
                         (table, keys)):  # fmt: skip
        first = np.flatnonzero(~pd.Index(mine).duplicated())
        row = to_ints(pd.Index(mine[first]).get_indexer(pd.Index(theirs)))
        found.append(np.where(row >= 0, first[np.maximum(row, 0)], -1))
    return to_ints(np.where(found[0] >= 0, found[0], found[1]))


def _dynamic_per_run(runs: pd.DataFrame, dynamic: pd.DataFrame) -> tuple[Ints, Ints, Any]:
    """Return each run's dynamic range (low, high, captured); IPv6 falls back on IPv4's."""
    low = np.full(len(runs), DEFAULT_DYNAMIC[0], np.int64)
    count = np.full(len(runs), DEFAULT_DYNAMIC[1], np.int64)
    captured = np.zeros(len(runs), np.bool_)
    table = dynamic.set_index(["snapshot_id", "protocol", "family"])
    for family in (pd.Series("ipv4", index=runs.index), runs["family"]):
        wanted = pd.MultiIndex.from_arrays([runs["snapshot_id"], runs["protocol"], family])
        found = to_ints(table.index.get_indexer(wanted))
        hit = found >= 0
        low[hit] = to_ints(table["start"])[found[hit]]
        count[hit] = to_ints(table["count"])[found[hit]]
        captured |= hit
    return low, low + count - 1, captured


def classify_segments(state: SnapshotState) -> pd.DataFrame:
    """Split each failure run into stretches with one explanation, and classify them."""
    runs = state.runs.merge(
        state.meta[["snapshot_id", "host", "taken_at", "excluded_known"]], on="snapshot_id"
    ).sort_values(["snapshot_id", "protocol", "family", "start"], ignore_index=True)
    start, end = to_ints(runs["start"]), to_ints(runs["end"])
    low, high, captured = _dynamic_per_run(runs, state.dynamic)
    lengths = end - start + 1
    run = np.repeat(np.arange(len(runs), dtype=np.int64), lengths)
    port = start[run] + _offsets(lengths)
    keys = _key(to_ints(runs["snapshot_id"])[run], to_ints(runs["protocol"] == "udp")[run], port)
    excluded = _covering(state.excluded, keys)
    holder = _holder(state.listeners, keys, to_ints(runs["family"] == "ipv6")[run])
    inside = to_ints((port >= low[run]) & (port <= high[run]))
    change = np.zeros(len(port), np.bool_)
    change[:1] = True
    for values in (run, excluded, holder, inside):
        change[1:] |= values[1:] != values[:-1]
    first = np.flatnonzero(change)
    last = np.append(first[1:] - 1, len(port) - 1)[: len(first)]
    segment_run = run[first]
    segments = runs.iloc[segment_run].reset_index(drop=True)
    segments["failure_start"], segments["failure_end"] = start[segment_run], end[segment_run]
    segments["start"], segments["end"] = port[first], port[last]
    segments["dynamic_start"], segments["dynamic_end"] = low[segment_run], high[segment_run]
    segments["dynamic_captured"] = captured[segment_run]
    in_run = np.maximum(0, np.minimum(end, high) - np.maximum(start, low) + 1)
    segments["run_in_dynamic"] = in_run[segment_run]
    segments["inside_dynamic"] = inside[first].astype(bool)
    # Row -1 is not in the 0..n-1 index, so reindex gives NA where nothing covers a segment.
    covering = state.excluded.reindex(excluded[first])
    holding = state.listeners.reindex(holder[first])
    for name, picked in (("excluded_start", covering["start"]), ("excluded_end", covering["end"]),
                         ("administered", covering["administered"]), ("pid", holding["pid"]),
                         ("process", holding["process"])):  # fmt: skip
        segments[name] = picked.to_numpy()
    segments = segments.astype({"excluded_start": "Int64", "excluded_end": "Int64", "pid": "Int64",
                                "administered": "boolean"})  # fmt: skip
    segments["classification"] = _classes(segments, excluded[first] >= 0, holder[first] >= 0)
    in_dynamic = segments["inside_dynamic"].astype("boolean")
    segments["in_dynamic_range"] = in_dynamic.mask(~segments["dynamic_captured"].astype(bool))
    # Both families usually fail alike: word each distinct case once.
    cases = list(zip(*(segments[field].tolist() for field in _REASON_FIELDS), strict=True))
    words = {case: _reason(case) for case in set(cases)}
    segments["reason"] = [words[case] for case in cases]
    return segments


def _offsets(lengths: Ints) -> Ints:
    """Return 0..n-1 for each run of length n, end to end."""
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(lengths.sum(), dtype=np.int64) - starts


def _classes(segments: pd.DataFrame, excluded: Any, held: Any) -> Any:
    administered = np.asarray(segments["administered"].fillna(False), dtype=np.bool_)
    known = np.asarray(segments["excluded_known"], dtype=np.bool_)
    inside = np.asarray(segments["inside_dynamic"], dtype=np.bool_)
    block = to_ints(segments["error_code"]) == WSAEACCES
    block &= (to_ints(segments["run_in_dynamic"]) >= MIN_BLOCK) & inside
    return np.select(
        [excluded & administered, excluded, held, ~known & block, known & inside],
        ["excluded-administered", "excluded", "in-use", "probably-reserved", "dynamic-unreserved"],
        "unexplained",
    )


def _reason(case: tuple[Any, ...]) -> str:
    row = dict(zip(_REASON_FIELDS, case, strict=True))
    kind, held = row["classification"], not pd.isna(row["pid"])
    if kind == "unexplained" and row["excluded_known"]:
        kind = "unexplained-known"
    quiet = " Nothing listens on it: a reservation is not a socket, so netstat shows nothing."
    return _REASONS[kind].format(
        code=describe_code(row["error_code"]),
        dynamic=describe_dynamic(
            row["dynamic_start"], row["dynamic_end"], bool(row["dynamic_captured"])
        ),
        holder=describe_holder(row["pid"], row["process"]) if held else "",
        also=f" {describe_holder(row['pid'], row['process'])} also listens on it." if held else "",
        quiet="" if held or kind != "excluded" else quiet,
        span=f"{row['excluded_start']}–{row['excluded_end']}",
        block=f"{row['failure_start']}–{row['failure_end']}",
        size=row["failure_end"] - row["failure_start"] + 1,
        min_block=MIN_BLOCK,
    )


def expand_failures(segments: pd.DataFrame) -> pd.DataFrame:
    """Return one row per failing port (the ``failures`` frame) from classified segments."""
    columns = [c for c in COLUMNS["failures"] if c != "port"]
    lengths = to_ints(segments["end"] - segments["start"] + 1)
    rows = np.repeat(np.arange(len(segments), dtype=np.int64), lengths)
    ports = segments[columns].take(rows).reset_index(drop=True)
    ports["port"] = to_ints(segments["start"])[rows] + _offsets(lengths)
    return ports.loc[:, list(COLUMNS["failures"])]


def classify_snapshot(engine: Engine, snapshot_id: int) -> pd.DataFrame:
    """Return the classified failing ports of one snapshot (any snapshot, not only the latest)."""
    with engine.connect() as connection:
        return expand_failures(classify_segments(load_state(connection, [snapshot_id])))


def _at(frame: pd.DataFrame, cells: pd.DataFrame, order: str) -> dict[tuple[int, int], Any]:
    """Map (snapshot, port) to the first row of ``frame`` covering that port, by ``order``."""
    found = cells.merge(frame.sort_values(order), on="snapshot_id")
    found = found[(found["start"] <= found["port"]) & (found["port"] <= found["end"])]
    found = found.drop_duplicates(["snapshot_id", "port"])
    return {(int(r["snapshot_id"]), int(r["port"])): r for r in found.to_dict("records")}


def build_wanted_matrix(
    state: SnapshotState, segments: pd.DataFrame, ports: Sequence[int]
) -> pd.DataFrame:
    """Return one row per host and wanted TCP port: free, blocked or unknown, and why.

    A free port is ``at-risk`` when it lies in the TCP dynamic range of a host where WinNAT/
    Hyper-V already reserve blocks (placed anew at every boot). A port a listener holds is
    ``in-use`` even when the sweep kept no failure for it (the seed's kept only 10013).
    """
    wanted = pd.DataFrame({"port": sorted({int(p) for p in ports})}, dtype="int64")
    cells = state.meta[["snapshot_id", "host", "taken_at", "swept"]].merge(wanted, how="cross")
    pairs = cells[["snapshot_id", "port"]]
    hit = _at(segments[segments["protocol"] == "tcp"], pairs, "family")
    excluded = state.excluded[state.excluded["protocol"] == "tcp"]
    cover = _at(excluded, pairs, "start")
    tcp = state.listeners[state.listeners["protocol"] == "tcp"].rename(columns={"port": "start"})
    held = _at(tcp.assign(end=tcp["start"]), pairs, "family")
    size = excluded["end"] - excluded["start"] + 1
    reserving = set(excluded.loc[~excluded["administered"] & (size >= MIN_BLOCK), "snapshot_id"])
    reserving |= set(segments.loc[segments["classification"] == "probably-reserved", "snapshot_id"])
    tcp4 = tcp4_dynamic(state)
    spans = zip(to_ints(tcp4["start"]), to_ints(tcp4["count"]), strict=True)
    ranges = dict(zip(to_ints(tcp4["snapshot_id"]), spans, strict=True))
    rows = []
    for cell in cells.to_dict("records"):
        key = (int(cell["snapshot_id"]), int(cell["port"]))
        start, count = ranges.get(key[0], DEFAULT_DYNAMIC)
        dynamic = describe_dynamic(start, start + count - 1, key[0] in ranges)
        inside = start <= key[1] < start + count
        cell.update(hit=hit.get(key), held=held.get(key), cover=cover.get(key), dynamic=dynamic,
                    reserving=key[0] in reserving, inside=inside)  # fmt: skip
        status, kind, reason, evidence = _cell(cell)
        when = f"snapshot of {cell['taken_at']:%Y-%m-%d %H:%M} UTC"
        rows.append((cell["host"], key[1], status, kind, reason, f"{evidence}; {when}",
                     cell["taken_at"]))  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS["wanted"]))


def _cell(cell: dict[Any, Any]) -> tuple[str, str, str, str]:
    """Return status, classification, reason and evidence of one wanted-port cell."""
    found, held, cover, dynamic = cell["hit"], cell["held"], cell["cover"], cell["dynamic"]
    if found is not None:
        evidence = [f"bind error {found['error_code']} on {found['family']}"]
        if not pd.isna(found["excluded_start"]):
            star = " *" if found["administered"] else ""
            evidence.append(
                f"excluded range {found['excluded_start']}–{found['excluded_end']}{star}"
            )
        if not pd.isna(found["pid"]):
            evidence.append(f"listener {describe_holder(found['pid'], found['process'])}")
        if found["classification"] in ("probably-reserved", "dynamic-unreserved", "unexplained"):
            evidence.append(f"failing block {found['failure_start']}–{found['failure_end']}")
        return "blocked", found["classification"], found["reason"], "; ".join(evidence)
    if held is not None:
        who = describe_holder(held["pid"], held["process"])
        return "blocked", "in-use", _REASONS["held"].format(holder=who), f"listener {who}"
    if not cell["swept"] and cover is not None:
        span = f"{cover['start']}–{cover['end']}"
        kind = "excluded-administered" if cover["administered"] else "excluded"
        reason = _REASONS["unswept-excluded"].format(span=span, code=describe_code(WSAEACCES))
        return "blocked", kind, reason, f"excluded range {span}"
    if not cell["swept"]:
        return "unknown", "unknown", _REASONS["unswept"], "no bind sweep"
    if cell["reserving"] and cell["inside"]:
        reason = _REASONS["at-risk"].format(dynamic=dynamic)
        return "free", "at-risk", reason, f"{dynamic}; bind sweep passed"
    return "free", "free", _REASONS["free"], "bind sweep passed"
