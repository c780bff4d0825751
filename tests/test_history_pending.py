"""The derived history is extended night by night, and comes out as deriving it whole would.

A run's end derives the change events, candidate causes, detected fixes, fix checks and state
spans of the snapshots stored since the last derivation only (``collector.store.pending``).
Whatever order nights arrive in, the stored history must equal the one
``derive_pending(everything=True)`` derives from every snapshot: these tests derive it both
ways on the same store and compare.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from bench.fleet import generate_store
from collector.runs import finish_run, start_run
from collector.store.database import Store
from collector.store.derived import derive_pending
from collector.store.writer import store_document
from tests.test_report_analysis import bodies, fleet, save
from tests.test_watch import night

# Every derived row, without its own id: what each table says, in a stable order.
_DERIVED = {
    "change_events": """SELECT host_id, snapshot_id, previous_snapshot_id, kind, protocol, family,
        start_port, end_port, previous_start, previous_end, ports, administered
        FROM change_events""",
    "candidate_causes": """SELECT host_id, snapshot_id, kind, cause, detail, at, cause_at,
        seen_at, window_start, exposure FROM candidate_causes""",
    "detected_fixes": """SELECT key, host_id, action, start_port, end_port, applied_at,
        snapshot_id FROM fixes WHERE source = 'detected'""",
    "fix_checks": """SELECT f.key, c.snapshot_id, c.taken_at, c.outcome, c.port, c.diagnosis
        FROM fix_checks c JOIN fixes f ON f.id = c.fix_id""",
    "state_spans": """SELECT host_id, first_snapshot_id, first_at, last_snapshot_id, last_at,
        nights, tail, finding_set_id, excluded_set_id, bind_failure_set_id, listener_set_id,
        dynamic_set_id FROM state_spans""",
}


def _derived(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    with store.connect() as connection:
        return {
            name: sorted((tuple(row) for row in connection.execute(text(sql))), key=repr)
            for name, sql in _DERIVED.items()
        }


def _pending(store: Store) -> int:
    with store.connect() as connection:
        query = "SELECT COUNT(*) FROM snapshots WHERE history_pending IS NOT NULL"
        return int(connection.execute(text(query)).scalar_one())


def _derive_whole(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    with store.transaction() as connection:
        derive_pending(connection, everything=True)
    return _derived(store)


def test_a_history_extended_night_by_night_equals_the_one_derived_whole(db_url: str) -> None:
    generated = generate_store(db_url, hosts=12, nights=45, seed=3, nightly=True)
    assert len(generated.derive_seconds) == 45
    with Store.open(db_url) as store:
        assert _pending(store) == 0
        nightly = _derived(store)
        # The generated fleet changes in every way the history records.
        kinds = {row[3] for row in nightly["change_events"]}
        assert {"range-appeared", "range-moved"} <= kinds
        causes = {row[2] for row in nightly["candidate_causes"]}
        assert {"update", "reboot", "docker", "wsl"} <= causes
        assert nightly == _derive_whole(store)


def test_simulated_nights_derived_at_each_run_end_equal_the_history_derived_whole(
    store: Store,
) -> None:
    f = fleet()
    for night_number in range(f.spec.nights):
        run = start_run(store, "collect")
        for host in f.hosts:
            at = f.collection_time(host, night_number)
            if f.outage(host.name, night_number):
                continue  # a night without a snapshot widens the host's next window
            body = bodies()[(host.name, night_number)]
            store_document(store, run, body, json.loads(body), host.address, "winrm", at)
        finish_run(store, run)
    assert _pending(store) == 0
    nightly = _derived(store)
    kinds = {row[3] for row in nightly["change_events"]}
    assert {"range-appeared", "range-disappeared", "dynamic-changed"} <= kinds
    causes = {row[2] for row in nightly["candidate_causes"]}
    assert {"update", "reboot", "feature", "service"} <= causes
    assert nightly == _derive_whole(store)


RUNTIME = [(5400, 5499, False)]
MOVED = [(5500, 5599, False)]
ADMINISTERED = [(5432, 5432, True)]


def test_a_night_imported_late_derives_its_host_again(store: Store) -> None:
    save(store, night(20, RUNTIME))
    save(store, night(22, MOVED))
    save(store, night(24, ADMINISTERED))
    before = _derived(store)
    # Night 21 arrives after 24 was derived: the windows 20-22 and 21-22 both change.
    save(store, night(21, ADMINISTERED))
    assert _pending(store) == 0
    after = _derived(store)
    assert after != before
    assert after == _derive_whole(store)
    windows = {(row[2], row[1]) for row in after["change_events"]}
    assert len(windows) == 3  # 20->21, 21->22, 22->24


def test_each_run_end_derives_only_what_it_stored(store: Store) -> None:
    save(store, night(20, RUNTIME), night(21, RUNTIME))
    first = _derived(store)
    save(store, night(22, ADMINISTERED))
    second = _derived(store)
    # What was derived stays; the new night adds its window's rows.
    for name, rows in first.items():
        assert set(rows) <= set(second[name]), name
    assert len(second["change_events"]) > len(first["change_events"])
    assert [row[0] for row in second["detected_fixes"]] and not first["detected_fixes"]
    assert second == _derive_whole(store)


def _with_update(day: int, installed: str | None) -> dict[str, Any]:
    document = night(day, RUNTIME)
    if installed is not None:
        document["update_history"] = [
            {"date": installed, "title": "2026-11 Update (KB5050000)", "operation": 1,
             "result_code": 2},
        ]  # fmt: skip
    return document


def test_an_update_listed_late_is_placed_where_the_whole_history_places_it(store: Store) -> None:
    # Installed between nights 20 and 21, first listed on night 22: its window is 20-21,
    # which was derived already when night 22 came.
    save(store, _with_update(20, None))
    save(store, _with_update(21, None))
    save(store, _with_update(22, "2026-11-20T10:00:00Z"))
    nightly = _derived(store)
    updates = [row for row in nightly["candidate_causes"] if row[2] == "update"]
    assert len(updates) == 1
    assert nightly == _derive_whole(store)


def test_an_update_dated_after_the_night_that_lists_it_stays_with_that_night(
    store: Store,
) -> None:
    # The host's clock ran ahead: night 20 lists an update "installed" after it was taken. It
    # belongs to night 20 (here the host's baseline), not to the next night that comes.
    save(store, _with_update(20, "2026-11-21T00:30:00Z"))
    save(store, _with_update(21, "2026-11-21T00:30:00Z"))
    nightly = _derived(store)
    assert not [row for row in nightly["candidate_causes"] if row[2] == "update"]
    assert nightly == _derive_whole(store)


def test_an_update_that_gains_its_install_time_later_derives_its_host_again(store: Store) -> None:
    # Night 21 lists the update from Get-HotFix alone (a date, no time); night 22's update
    # history gives its install time, which moves its cause's time in a window already derived.
    hotfix = {"kb": "KB5050000", "description": "Update", "installed_by": None,
              "installed_on": "2026-11-20"}  # fmt: skip
    dated = {"date": "2026-11-20T10:00:00Z", "title": "2026-11 Update (KB5050000)",
             "operation": 1, "result_code": 2}  # fmt: skip
    first, second, third = night(20, RUNTIME), night(21, RUNTIME), night(22, RUNTIME)
    second["hotfixes"] = [*second["hotfixes"], hotfix]
    third["hotfixes"] = [*third["hotfixes"], hotfix]
    third["update_history"] = [*third["update_history"], dated]
    for document in (first, second, third):
        save(store, document)
    nightly = _derived(store)
    (cause,) = [row for row in nightly["candidate_causes"] if row[3] == "KB5050000"]
    assert cause[5] is not None  # its install time, from night 22
    assert nightly == _derive_whole(store)
