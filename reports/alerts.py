"""What is worth telling the team after a night, found in the stored nights (read only).

``find_events(store, …)`` reads the stored diagnosis, fix checks and attempts, never a rule of
its own, and returns the events not told yet (``told``: the outbox's keys):

- ``blocked``: a wanted TCP port that is reserved (or blocked, unexplained) in its host's
  latest snapshot, other than by an administered range (that is a fix, told as one), keyed by
  the snapshot its streak began in; worded as ``explain`` says it: since when, the range and
  its owner, the candidate causes before it, the first fix;
- ``freed``: a wanted port told blocked that binds again (keyed by the night it came free);
- ``fix-regressed`` / ``fix-held``: a fix whose latest checked night blocks it again / shows
  it holding (keyed by the night that streak began); detected fixes only where they cover a
  wanted port;
- ``host-failing``: a host whose last ``failing_nights`` collection runs or more all failed,
  with its error class (keyed by the run the streak began in).

The same stored nights give the same keys, so a re-run finds nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Connection

from collector.diagnosis import PortStatus
from collector.store.database import Store
from collector.store.outbox import Event
from reports import tables
from reports.attention import PortHistory, port_runs
from reports.explain import Explanation, explain, fleet_ranks
from reports.findings import build_wanted_matrix, latest_snapshots, load_state
from reports.fixes import FixRecord, fix_history

BLOCKED = (PortStatus.RESERVED.value, PortStatus.BLOCKED.value)
_CLEAR = (PortStatus.FREE.value, PortStatus.AT_RISK.value, PortStatus.IN_USE.value)
_ORDER = {"fix-regressed": 0, "blocked": 1, "host-failing": 2, "fix-held": 3, "freed": 4}
_CAUSES_TOLD = 3


def find_events(
    store: Store,
    wanted_ports: Sequence[int],
    wanted_services: Mapping[int, str] | None = None,
    *,
    failing_nights: int = 3,
    told: set[str] | None = None,
) -> list[Event]:
    """Return the events the stored nights hold that ``told`` does not have yet, in order."""
    told = told or set()
    services = dict(wanted_services or {})
    events = _port_events(store, wanted_ports, services, told)
    events += _fix_events(store, wanted_ports, told)
    events += _failing_events(store, failing_nights, told)
    return sorted(events, key=lambda e: (_ORDER[e.kind], e.host or "", e.port or 0, e.key))


def _port_events(
    store: Store, ports: Sequence[int], services: dict[int, str], told: set[str]
) -> list[Event]:
    if not ports:
        return []
    with store.connect() as connection:
        latest = latest_snapshots(connection)
        if latest.empty:
            return []
        state = load_state(connection, latest["snapshot_id"].astype(int).tolist())
        matrix = build_wanted_matrix(state, ports, services)
        host_ids = state.meta.set_index("host")["host_id"].to_dict()
        found: list[tuple[str, int, str, int]] = []  # kind, port, host, since snapshot
        runs: dict[tuple[int, int], list[tuple[str, int]]] | None = None
        for cell in matrix.to_dict("records"):
            host, port, status = str(cell["host"]), int(cell["port"]), str(cell["status"])
            blocked = status in BLOCKED and not _administered(cell["finding"])
            clear = status in _CLEAR or (status in BLOCKED and not blocked)
            was_told = any(k.startswith(f"blocked:{host}:{port}:") for k in told)
            if not blocked and not (clear and was_told):
                continue
            if runs is None:  # the fleet's runs of these ports, read once when one is needed
                runs = _streaks(connection, ports)
            streaks = runs[(int(host_ids[host]), port)]
            if blocked:
                found.append(("blocked", port, host, streaks[-1][1]))
            elif (
                len(streaks) >= 2
                and streaks[-2][0] in BLOCKED
                and f"blocked:{host}:{port}:{streaks[-2][1]}" in told
            ):
                found.append(("freed", port, host, streaks[-1][1]))
    fresh = [
        (kind, port, host, f"{kind}:{host}:{port}:{since}") for kind, port, host, since in found
    ]
    fresh = [item for item in fresh if item[3] not in told]
    ranks: dict[tuple[str, str], int] = {}
    if any(kind == "blocked" for kind, *_ in fresh):  # the fleet correlation, once per run
        with store.connect() as connection:
            ranks = fleet_ranks(connection)
    events = []
    for kind, port, host, key in fresh:
        answer = explain(
            store, host, port, wanted_process=services.get(port), story=kind == "blocked",
            ranks=ranks,
        )  # fmt: skip
        events.append(_blocked(key, answer) if kind == "blocked" else _freed(key, answer))
    return events


def _administered(finding: object) -> bool:
    """Tell a port reserved by an administered range (a fix, not a problem) from the others."""
    return isinstance(finding, Mapping) and bool(finding.get("administered") or False)


def _streaks(
    connection: Connection, ports: Sequence[int]
) -> dict[tuple[int, int], list[tuple[str, int]]]:
    """Return, per host and port, (status, first snapshot id) of each run of one status.

    Oldest first; the report's port runs, so a streak starts where the report says it does.
    """
    streaks: dict[tuple[int, int], list[tuple[str, int]]] = {}
    runs = port_runs(PortHistory.read(connection, ports))
    for host_id, port, status, first in zip(
        runs["host_id"], runs["port"], runs["status"], runs["first_snapshot_id"], strict=True
    ):
        streaks.setdefault((int(host_id), int(port)), []).append((str(status), int(first)))
    return streaks


def _blocked(key: str, answer: Explanation) -> Event:
    headline = answer.to_text().splitlines()[0]
    lines = [answer.reason]
    if answer.since is not None:
        since = f"{answer.since:%Y-%m-%d %H:%M} UTC"
        lines.append(f"since {since} (snapshot {answer.since_snapshot_id})")
    ranked = sorted(
        answer.causes, key=lambda c: (c["rank"] is None, c["rank"] or 0, str(c["at"] or ""))
    )
    for cause in ranked[:_CAUSES_TOLD]:
        rank = "" if cause["rank"] is None else f", fleet correlation rank {cause['rank']}"
        lines.append(f"candidate cause: {cause['kind']} {cause['cause']} ({cause['detail']}{rank})")
    first = answer.fixes[0] if answer.fixes else None
    if first is not None:
        lines.append(f"first fix: {first.action} — {first.why}")
    return Event(
        key=key, kind="blocked", title=f"{headline}", host=answer.host, port=answer.port,
        at=None if answer.since is None else answer.since.isoformat(), lines=tuple(lines),
        commands=() if first is None else first.commands,
    )  # fmt: skip


def _freed(key: str, answer: Explanation) -> Event:
    title = f"{answer.host} TCP {answer.port}: binds again ({answer.status})"
    at = None if answer.taken_at is None else answer.taken_at.isoformat()
    return Event(key=key, kind="freed", title=title, host=answer.host, port=answer.port, at=at,
                 lines=(answer.reason,))  # fmt: skip


def _fix_events(store: Store, ports: Sequence[int], told: set[str]) -> list[Event]:
    with store.connect() as connection:
        fixes = fix_history(connection)
    events = []
    for fix in fixes:
        covers = any(fix.start_port <= p <= fix.end_port for p in ports)
        if fix.source == "detected" and not covers:
            continue
        known = [c for c in fix.checks if c["outcome"] != "unknown"]
        if not known:
            continue
        last = known[-1]["outcome"]
        began = known[-1]
        for check in reversed(known):
            if check["outcome"] != last:
                break
            began = check
        kind = "fix-regressed" if last == "regressed" else "fix-held"
        key = f"{kind}:{fix.key}:{began['snapshot_id']}"
        if key not in told:
            events.append(_fix_event(key, kind, fix, began))
    return events


def _fix_event(key: str, kind: str, fix: FixRecord, began: dict[str, object]) -> Event:
    at = began["taken_at"]
    assert isinstance(at, datetime)
    if kind == "fix-regressed":
        title = (
            f"{fix.host} {fix.ports()}: the fix regressed — TCP {began['port']} is "
            f"{began['diagnosis']} again ({at:%Y-%m-%d %H:%M} UTC)"
        )
    else:
        title = f"{fix.host} {fix.ports()}: the fix holds ({at:%Y-%m-%d %H:%M} UTC)"
    port = fix.start_port if fix.start_port == fix.end_port else None
    return Event(key=key, kind=kind, title=title, host=fix.host, port=port, at=at.isoformat(),
                 lines=(fix.describe(),))  # fmt: skip


def _failing_events(store: Store, nights: int, told: set[str]) -> list[Event]:
    with store.connect() as connection:
        tries = tables.read(connection, "failing_tries")
    if tries.empty:
        return []
    last = tries.groupby(["host", "run_id"], sort=True).tail(1)
    events = []
    for host, runs in last.groupby("host", sort=True):
        runs = runs.sort_values("run_id")
        failed = (runs["status"] == "failed").to_numpy()
        streak = 0
        for value in failed[::-1]:
            if not value:
                break
            streak += 1
        if streak < nights:
            continue
        first = runs.iloc[len(runs) - streak]
        latest = runs.iloc[-1]
        key = f"host-failing:{host}:{int(first['run_id'])}"
        if key in told:
            continue
        message = str(latest["message"] or "").strip().splitlines()
        title = f"{host}: collection failed {streak} runs in a row ({latest['error_class']})"
        lines = (
            f"failing since {first['finished_at']:%Y-%m-%d %H:%M} UTC",
            f"last error: {latest['error_class']}: {message[0] if message else '(no message)'}",
        )
        events.append(Event(key=key, kind="host-failing", title=title, host=str(host),
                            at=latest["finished_at"].isoformat(), lines=lines))  # fmt: skip
    return events
