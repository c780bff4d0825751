"""A night shared by collectors: each host once, leases that run out, sites, who did what.

Through a canned transport on SQLite and PostgreSQL; three collector processes against
simulated hosts are tests/test_collectors_shared.py's.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from collector.cli import cli
from collector.collect import collect
from collector.config import PortfleetConfig, parse_config
from collector.exitcodes import ExitCode
from collector.plan import plan_collection
from collector.runs import finish_run, start_run
from collector.store import leases
from collector.store.database import Store
from collector.store.models import CollectionRun, NightClaim
from collector.store.writer import register_hosts
from collector.transport import SelectionError, TransportError
from tests.documents import probe_document
from tests.transports import CannedTransport, Reply

HOSTS = ("dev-ws-01", "dev-ws-02", "dev-ws-03")


def _document(name: str) -> dict[str, Any]:
    document = probe_document()
    document["host"]["name"] = name.upper()
    return document


def _config(name: str = "collector-a") -> PortfleetConfig:
    return parse_config(
        f"""
defaults: {{credential: {{username_env: PF_NOBODY, password_env: PF_NONE}}, site: lyon}}
collect: {{retries: 0, retry_delay_seconds: 0, concurrency: 2, collector_name: {name}}}
hosts:
  - {{name: dev-ws-01}}
  - {{name: dev-ws-02, site: paris}}
  - {{name: dev-ws-03}}
"""
    )


def _replies(failing: str | None = None) -> dict[str, list[Reply]]:
    down = TransportError("unreachable", "connection refused")
    return {h: [down if h == failing else _document(h)] for h in HOSTS}


def _collect(
    store: Store, night: str | None, replies: dict[str, list[Reply]], **plan: Any
) -> dict[str, str]:
    config = _config()
    transport = CannedTransport(replies)
    planned = plan_collection(config, [], transport=transport, night=night, **plan)
    outcomes = collect(store, config, planned, transport=transport)
    return {o.host: o.status for o in outcomes}


def test_night_key_is_the_utc_date_the_night_began() -> None:
    assert leases.night_key(datetime(2026, 12, 6, 23, 0, tzinfo=UTC), 12) == "2026-12-06"
    assert leases.night_key(datetime(2026, 12, 7, 3, 0, tzinfo=UTC), 12) == "2026-12-06"
    assert leases.night_key(datetime(2026, 12, 7, 12, 0, tzinfo=UTC), 12) == "2026-12-07"
    assert leases.night_key(datetime(2026, 12, 7, 3, 0, tzinfo=UTC), 0) == "2026-12-07"


def test_a_rerun_the_same_night_tries_only_what_failed_and_again_takes_all(store: Store) -> None:
    first = _collect(store, "n1", _replies(failing="dev-ws-02"))
    assert first == {"dev-ws-01": "ok", "dev-ws-02": "failed", "dev-ws-03": "ok"}
    assert _collect(store, "n1", _replies()) == {"dev-ws-02": "ok"}
    assert _collect(store, "n1", _replies()) == {}
    assert _collect(store, "n1", _replies(), again=True) == dict.fromkeys(HOSTS, "ok")
    assert _collect(store, "n2", _replies()) == dict.fromkeys(HOSTS, "ok")
    shares = leases.night_shares(store, "n1", list(HOSTS))
    assert [(s.collector, s.hosts) for s in shares] == [("collector-a", 3)]  # the --again run
    with store.connect() as connection:
        runs = connection.execute(
            select(CollectionRun.collector, CollectionRun.night).order_by(CollectionRun.id)
        ).all()
    assert runs == [("collector-a", "n1")] * 4 + [("collector-a", "n2")]


def test_without_a_night_every_planned_host_is_collected_each_time(store: Store) -> None:
    assert _collect(store, None, _replies()) == dict.fromkeys(HOSTS, "ok")
    assert _collect(store, None, _replies()) == dict.fromkeys(HOSTS, "ok")


def test_a_site_collects_its_hosts_and_the_defaults_site(store: Store) -> None:
    assert _collect(store, "n1", _replies(), site="paris") == {"dev-ws-02": "ok"}
    assert _collect(store, "n1", _replies(), site="lyon") == {"dev-ws-01": "ok", "dev-ws-03": "ok"}
    with pytest.raises(SelectionError, match="sites: lyon, paris"):
        plan_collection(_config(), [], transport=CannedTransport(_replies()), site="rome")


def test_leases_pass_over_held_hosts_and_take_them_when_they_run_out(store: Store) -> None:
    ids = sorted(register_hosts(store, ((h, None, ()) for h in HOSTS)).values())
    began = datetime.now(UTC)
    first, second = start_run(store, "collect"), start_run(store, "collect")
    try:
        leases.offer(store, "n1", ids)
        leases.offer(store, "n1", ids)  # a second collector offers the same rows: kept
        assert leases.claim(store, "n1", first, ids, 2, 1.5, began) == ids[:2]
        assert leases.claim(store, "n1", second, ids, 5, 60, began) == ids[2:]
        assert leases.claim(store, "n1", second, ids, 5, 60, began) == []
        assert leases.renew(store, "n1", first, 1.5) == 2
        time.sleep(2.0)  # the first collector stops renewing: as if it hung or died
        assert leases.claim(store, "n1", second, ids, 5, 60, began) == ids[:2]
        assert leases.renew(store, "n1", first, 1.5) == 0  # it lost them
        assert leases.undone(store, "n1", ids) == 3
    finally:
        finish_run(store, second)
        finish_run(store, first)
    with store.connect() as connection:
        holders = connection.execute(select(NightClaim.run_id).order_by(NightClaim.host_id))
        assert list(holders.scalars()) == [second] * 3


def test_a_finished_runs_unfinished_hosts_are_free_at_once(store: Store) -> None:
    ids = sorted(register_hosts(store, ((h, None, ()) for h in HOSTS)).values())
    began = datetime.now(UTC)
    stopped = start_run(store, "collect")
    leases.offer(store, "n1", ids)
    assert leases.claim(store, "n1", stopped, ids, 3, 600, began) == ids
    finish_run(store, stopped)  # stopped early (Ctrl-C): its hosts are not done
    later = start_run(store, "collect")
    try:
        assert leases.claim(store, "n1", later, ids, 3, 600, began) == ids
    finally:
        finish_run(store, later)


def test_sqlite_says_so_when_a_second_collector_starts(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Store.open(sqlite_url) as store:
        other = start_run(store, "collect")  # still running, as another collector would be
        try:
            with caplog.at_level(logging.WARNING, logger="collector.claims"):
                assert _collect(store, "n1", _replies()) == dict.fromkeys(HOSTS, "ok")
        finally:
            finish_run(store, other)
    (said,) = [r.getMessage() for r in caplog.records if r.name == "collector.claims"]
    assert f"another collector is running on this SQLite store (run {other}" in said
    assert "SQLite serves one collector at a time" in said


def test_collect_names_the_sites_when_asked_for_one_nobody_is_at(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "defaults: {site: lyon}\n"
        "hosts:\n  - {name: dev-ws-01}\n  - {name: dev-ws-02, site: paris}\n",
        encoding="utf-8",
    )
    arguments = ["--db", sqlite_url, "--config", str(config), "collect", "--site", "rome"]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == ExitCode.USAGE
    assert "no configured host is at site 'rome' (sites: lyon, paris)" in " ".join(
        result.stderr.split()
    )
