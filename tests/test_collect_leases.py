"""A collector's claims hold what they say: marked when taken, checked when stored, migrated once.

Real SQLite files and a real PostgreSQL; a collector killed or two collectors starting at once
are real processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from collector.collect import collect
from collector.config import PortfleetConfig, parse_config
from collector.document import load_document
from collector.plan import plan_collection
from collector.runs import finish_run, start_run
from collector.store import leases
from collector.store.database import Store, current_revision, head_revision
from collector.store.models import Attempt, CollectionRun, Host, Snapshot
from collector.store.writer import register_hosts, store_document
from tests.documents import probe_document
from tests.transports import CannedTransport, Reply

REPO = Path(__file__).resolve().parent.parent
HOSTS = ("dev-ws-01", "dev-ws-02", "dev-ws-03")
CONFIG = """
collect: {retries: 0, retry_delay_seconds: 0, concurrency: 2, collector_name: NAME}
hosts:
  - {name: dev-ws-01}
  - {name: dev-ws-02}
  - {name: dev-ws-03}
"""

# Claims two hosts for night n1, then dies (as by SIGKILL) before any host's thread starts.
KILLED_AFTER_CLAIM = """
import os, sys
from datetime import UTC, datetime
from collector.claims import NightTurns
from collector.config import parse_config
from collector.plan import plan_collection
from collector.runs import start_run
from collector.store.database import Store
from collector.store.writer import register_hosts
from tests.test_collect_leases import CONFIG, replies
from tests.transports import CannedTransport

config = parse_config(CONFIG.replace("NAME", "killed"))
plan = plan_collection(config, [], transport=CannedTransport(replies()), night="n1")
store = Store.open(sys.argv[1])
run_id = start_run(store, plan.run_kind)
ids = register_hosts(store, [(e.name, e.address, e.groups) for e in plan.hosts])
sources = {ids[e.name]: e.address or e.name for e in plan.hosts}
with NightTurns(store, plan, run_id, datetime.now(UTC), sources) as turns:
    for _ in turns.work(lambda host_id: os._exit(9), lambda: None):
        pass
"""

# Collects dev-ws-01 for night n1 with a 1 s lease; the host answers after 4 s.
STALLS = """
import sys
from collector.collect import collect
from collector.config import parse_config
from collector.plan import plan_collection
from collector.store.database import Store
from tests.test_collect_leases import CONFIG, replies
from tests.transports import CannedTransport, Slow

text = CONFIG.replace("NAME", "stalled")
config = parse_config(text.replace("concurrency: 2", "concurrency: 2, lease_seconds: 1"))
transport = CannedTransport({h: [Slow(4.0, r[0])] for h, r in replies().items()})
plan = plan_collection(config, ["dev-ws-01"], transport=transport, night="n1")
outcomes = collect(Store.open(sys.argv[1]), config, plan, transport=transport)
print(" ".join(f"{o.host}:{o.status}:{o.error_class}" for o in outcomes), flush=True)
"""

# Waits for the word, then opens (so creates and migrates) the store.
OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from collector.store.database import Store
go = Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
Store.open(sys.argv[1]).close()
print("opened", flush=True)
"""


def replies() -> dict[str, list[Reply]]:
    """Return a good document for every host, named as the host."""
    return {name: [_document(name)] for name in HOSTS}


def _document(name: str) -> dict[str, Any]:
    document = probe_document()
    document["host"]["name"] = name.upper()
    return document


def _config(name: str) -> PortfleetConfig:
    return parse_config(CONFIG.replace("NAME", name))


def _python(script: str, *arguments: str) -> subprocess.Popen[str]:
    environment = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *arguments],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_collector_killed_between_claim_and_start_leaves_its_claims_on_record(
    db_url: str,
) -> None:
    killed = _python(KILLED_AFTER_CLAIM, db_url)
    _, stderr = killed.communicate(timeout=120)
    assert killed.returncode == 9, stderr
    with Store.open(db_url) as store:
        config = _config("survivor")
        transport = CannedTransport(replies())
        plan = plan_collection(config, [], transport=transport, night="n1")
        outcomes = collect(store, config, plan, transport=transport)
        assert {o.host: o.status for o in outcomes} == dict.fromkeys(HOSTS, "ok")
        with store.connect() as connection:
            tried = connection.execute(
                select(Attempt.run_id, Host.name, Attempt.status, Attempt.message)
                .join(Host, Host.id == Attempt.host_id)
                .order_by(Attempt.run_id, Host.name)
            ).all()
            snapshots = connection.execute(
                select(Host.name, func.count())
                .join(Snapshot, Snapshot.host_id == Host.id)
                .group_by(Host.name)
            ).all()
    first_run = tried[0].run_id
    killed_tries = [(t.name, t.status) for t in tried if t.run_id == first_run]
    # The two hosts it claimed, marked in flight with the claim, then closed as interrupted.
    assert killed_tries == [("dev-ws-01", "failed"), ("dev-ws-02", "failed")]
    assert all(t.message.startswith("interrupted: run") for t in tried if t.run_id == first_run)
    survivor = [(t.name, t.status) for t in tried if t.run_id != first_run]
    assert survivor == [(name, "ok") for name in HOSTS]
    assert sorted(snapshots) == [(name, 1) for name in HOSTS]


def test_a_stalled_collector_that_lost_its_lease_stores_no_second_snapshot(
    store: Store,
) -> None:
    ids = register_hosts(store, ((h, None, ()) for h in HOSTS))
    host_id = ids["dev-ws-01"]
    began = datetime.now(UTC)
    stalled, other = start_run(store, "collect"), start_run(store, "collect")
    for run_id, name in ((stalled, "stalled"), (other, "other")):
        leases.label_run(store, run_id, name, "n1", None)
    body = _body("dev-ws-01")
    try:
        leases.offer(store, "n1", [host_id])
        assert leases.claim(store, "n1", stalled, [host_id], 1, 0.5, began) == [host_id]
        time.sleep(1.0)  # the stalled collector stops renewing; its lease runs out
        assert leases.claim(store, "n1", other, [host_id], 1, 60, began) == [host_id]
        kept = _store(store, other, body, host_id)
        assert kept.outcome == "stored"
        late = _store(store, stalled, body.replace(b"02:00:05", b"02:09:05"), host_id)
    finally:
        finish_run(store, other)
        finish_run(store, stalled)
    assert late.outcome == "failed"
    assert late.message.startswith(f"lease lost: dev-ws-01 was taken over by run {other}")
    with store.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Snapshot)) == 1
        tries = connection.execute(
            select(Attempt.run_id, Attempt.status, Attempt.error_class, Attempt.message)
            .where(Attempt.host_id == host_id)
            .order_by(Attempt.id)
        ).all()  # fmt: skip
    assert [(t.run_id, t.status, t.error_class) for t in tries] == [
        (other, "ok", None),
        (stalled, "failed", "timeout"),  # the stale try is on record, as what it was
    ]
    assert tries[1].message == late.message


def test_a_collector_frozen_past_its_lease_records_its_late_document_and_stores_nothing(
    db_url: str,
) -> None:
    with Store.open(db_url) as store:
        frozen = _python(STALLS, db_url)
        try:
            deadline = time.monotonic() + 60
            while not _in_flight(store) and time.monotonic() < deadline:
                time.sleep(0.05)
            frozen.send_signal(signal.SIGSTOP)  # a frozen VM: no renewing, no probing
            time.sleep(1.5)  # its lease runs out
            config = _config("awake")
            transport = CannedTransport(replies())
            plan = plan_collection(config, ["dev-ws-01"], transport=transport, night="n1")
            outcomes = collect(store, config, plan, transport=transport)
            assert [(o.host, o.status) for o in outcomes] == [("dev-ws-01", "ok")]
        finally:
            frozen.send_signal(signal.SIGCONT)
        out, stderr = frozen.communicate(timeout=60)
        assert frozen.returncode == 0, stderr
        assert out.split() == ["dev-ws-01:failed:timeout"]  # what its summary would say
        with store.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(Snapshot)) == 1
            tries = connection.execute(
                select(CollectionRun.collector, Attempt.status, Attempt.message)
                .join(CollectionRun, CollectionRun.id == Attempt.run_id)
                .order_by(Attempt.id)
            ).all()  # fmt: skip
    assert [(t.collector, t.status) for t in tries] == [("awake", "ok"), ("stalled", "failed")]
    assert tries[1].message.startswith("lease lost: dev-ws-01 was taken over by run")


def _in_flight(store: Store) -> bool:
    with store.connect() as connection:
        flying = select(func.count()).where(Attempt.message.like("in flight%"))
        return bool(connection.scalar(flying))


def test_a_run_that_keeps_its_lease_stores_as_before(store: Store) -> None:
    ids = register_hosts(store, ((h, None, ()) for h in HOSTS))
    host_id = ids["dev-ws-01"]
    run_id = start_run(store, "collect")
    leases.label_run(store, run_id, "only", "n1", None)
    try:
        leases.offer(store, "n1", [host_id])
        assert leases.claim(store, "n1", run_id, [host_id], 1, 0.5, datetime.now(UTC))
        time.sleep(1.0)  # ran out, but nobody took it: still this run's to store
        assert _store(store, run_id, _body("dev-ws-01"), host_id).outcome == "stored"
    finally:
        finish_run(store, run_id)
    assert leases.undone(store, "n1", [host_id]) == 0


def test_collectors_starting_at_once_on_an_empty_database_all_migrate_it(
    db_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    starting = [_python(OPEN_AT_ONCE, db_url, str(go)) for _ in range(6)]
    ended = []
    try:
        for process in starting:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        go.touch()
        ended = [process.communicate(timeout=120) for process in starting]
    finally:
        for process in starting:
            if process.poll() is None:
                process.kill()
                process.communicate()
    for process, (out, stderr) in zip(starting, ended, strict=True):
        assert (process.returncode, out.strip()) == (0, "opened"), stderr
    with Store.unmigrated(db_url, writer=False) as store:
        assert current_revision(store.engine) == head_revision()


def _body(name: str) -> bytes:
    import json

    return json.dumps(_document(name)).encode()


def _store(store: Store, run_id: int, body: bytes, host_id: int) -> Any:
    document = load_document(body, "t")
    return store_document(
        store, run_id, body, document, "dev-ws-01", "winrm", datetime.now(UTC),
        host_name="dev-ws-01", host_id=host_id, landing=(host_id, "dev-ws-01"),
    )  # fmt: skip
