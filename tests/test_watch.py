"""Fixes checked night after night, and the events worth telling, from stored nights."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from collector.document import load_document
from collector.runs import finish_run, start_run
from collector.store.database import Store
from collector.store.fixes import UnknownHostError, record_fix
from collector.store.writer import record_failure, store_document
from reports.alerts import find_events
from reports.analysis import build_report_data
from reports.explain import explain
from reports.html import render_report
from tests.documents import probe_document
from tests.test_report_analysis import excluded_text, save, sweep

WANTED = [5432]


def night(day: int, ranges: list[tuple[int, int, bool]]) -> dict[str, Any]:
    """One night of dev-ws-01: these excluded ranges; the run-time ones fail with 10013."""
    document = probe_document(taken_at=f"2026-11-{day:02d}T02:00:00+00:00")
    document["raw"]["excluded_ipv4_tcp"] = excluded_text(*ranges)
    document["bind_sweep"] = [sweep(*((a, b, 10013) for a, b, admin in ranges if not admin))]
    return document


RUNTIME = [(5400, 5499, False)]
NOTHING: list[tuple[int, int, bool]] = []
ADMINISTERED = [(5432, 5432, True)]


def _checks(store: Store) -> list[tuple[str, str, str, int | None]]:
    query = (
        "SELECT action, strftime('%d', taken_at), outcome, blocked_port FROM v_fix_checks "
        "ORDER BY fix_id, taken_at"
    )
    if store.dialect == "postgresql":
        query = query.replace("strftime('%d', taken_at)", "to_char(taken_at, 'DD')")
    with store.connect() as connection:
        return [tuple(row) for row in connection.execute(text(query))]


def test_a_fix_holds_then_regresses_and_each_turn_is_told_once(store: Store) -> None:
    (first,) = save(store, night(20, RUNTIME))
    told: set[str] = set()

    (blocked,) = find_events(store, WANTED, told=told)
    assert blocked.key == f"blocked:dev-ws-01:5432:{first}"
    assert blocked.title.startswith("dev-ws-01 TCP 5432: reserved (bind fails with 10013)")
    assert "excluded range 5400–5499 (run-time" in blocked.title
    assert any(line.startswith("first fix: ") for line in blocked.lines)
    assert "net stop winnat" in blocked.commands
    told.add(blocked.key)
    assert find_events(store, WANTED, told=told) == []  # the same night tells nothing new

    applied = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    fix = record_fix(store, "DEV-WS-01", 5432, "restart-winnat", note="INC-1", by="alice",
                     applied_at=applied)  # fmt: skip
    assert (fix.host, fix.checks) == ("dev-ws-01", 0)  # no night after it yet

    (second,) = save(store, night(21, NOTHING))
    events = find_events(store, WANTED, told=told)
    assert [e.kind for e in events] == ["fix-held", "freed"]
    assert events[1].key == f"freed:dev-ws-01:5432:{second}"
    assert "restart-winnat recorded by alice" in events[0].lines[0]
    told |= {e.key for e in events}

    (third,) = save(store, night(22, RUNTIME))
    events = find_events(store, WANTED, told=told)
    assert [e.kind for e in events] == ["fix-regressed", "blocked"]
    assert events[0].title.startswith(
        "dev-ws-01 TCP 5432: the fix regressed — TCP 5432 is reserved"
    )
    assert events[1].key == f"blocked:dev-ws-01:5432:{third}"
    told |= {e.key for e in events}
    assert _checks(store) == [
        ("restart-winnat", "21", "holds", None), ("restart-winnat", "22", "regressed", 5432)
    ]  # fmt: skip

    # An administered range appears over the port: a fix by itself, and the recorded one holds.
    save(store, night(23, ADMINISTERED))
    events = find_events(store, WANTED, told=told)
    assert sorted(e.kind for e in events) == ["fix-held", "fix-held", "freed"]  # it binds
    assert any("administered range appeared" in e.lines[0] for e in events)
    assert ("administered-range", "23", "holds", None) in _checks(store)

    answer = explain(store, "dev-ws-01", 5432, story=False)
    # The administered range appeared on the 23rd: protected since then, and it binds.
    assert (answer.status, answer.protected) == ("free", (5432, 5432))
    assert answer.protected_since == datetime(2026, 11, 23, 2, tzinfo=UTC)
    history = [line for line in answer.to_text().splitlines() if "restart-winnat" in line]
    assert history == [
        "  - TCP 5432: restart-winnat recorded by alice, 2026-11-20 09:00 UTC (INC-1); held 2 of 3 "
        "nights since; regressed 2026-11-22 02:00 UTC (TCP 5432 reserved); now: holds"
    ]
    assert answer.to_json()["fix_history"][0]["state"] == "holds"

    page = render_report(build_report_data(store, WANTED))
    section = page.split('<section id="fixes">', 1)[1].split("</section>", 1)[0]
    assert section.count("<tr>") == 3  # the header, the recorded fix, the detected one
    assert "restart-winnat" in section and "alice" in section and "2 / 3" in section


def test_a_fix_for_an_unknown_host_is_refused(store: Store) -> None:
    save(store, night(20, RUNTIME))
    with pytest.raises(UnknownHostError):
        record_fix(store, "ghost", 5432, "reserve")
    with pytest.raises(ValueError, match="action must be one of"):
        record_fix(store, "dev-ws-01", 5432, "administered-range")


def test_a_host_failing_three_runs_in_a_row_is_told_once(store: Store) -> None:
    save(store, night(20, NOTHING))
    for _ in range(3):
        run = start_run(store, "collect")
        record_failure(store, run, "dev-ws-01", datetime.now(UTC), "auth", "401 Unauthorized",
                       "dev-ws-01")  # fmt: skip
        finish_run(store, run)
    assert find_events(store, WANTED, failing_nights=4) == []
    (event,) = find_events(store, WANTED, failing_nights=3)
    assert event.kind == "host-failing"
    assert event.title == "dev-ws-01: collection failed 3 runs in a row (auth)"
    assert event.lines[1] == "last error: auth: 401 Unauthorized"
    assert find_events(store, WANTED, failing_nights=3, told={event.key}) == []


def test_a_collection_that_reaches_the_host_ends_its_failing_streak(store: Store) -> None:
    def collect(day: int, failed: bool) -> int:
        run = start_run(store, "collect")
        if failed:
            record_failure(store, run, "dev-ws-01", datetime.now(UTC), "timeout",
                           "the probe did not finish", "dev-ws-01")  # fmt: skip
        else:
            body = json.dumps(night(day, NOTHING)).encode()
            loaded = load_document(body, "test")
            result = store_document(store, run, body, loaded, "dev-ws-01", "winrm",
                                    datetime.now(UTC))  # fmt: skip
            assert result.outcome == "stored", result.message
        finish_run(store, run)
        return run

    runs = [collect(day, failed) for day, failed in
            ((20, False), (21, True), (22, True), (23, False), (24, True), (25, True))]  # fmt: skip
    # Two failures since the night that reached it: not three in a row, whatever came before.
    assert find_events(store, WANTED, failing_nights=3) == []
    runs.append(collect(26, True))
    (event,) = find_events(store, WANTED, failing_nights=3)
    assert event.key == f"host-failing:dev-ws-01:{runs[4]}"
    assert event.title == "dev-ws-01: collection failed 3 runs in a row (timeout)"
