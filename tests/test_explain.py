"""`explain(engine, host, port)`: the seed's port 49786, every status, since when, unknown hosts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from collector.importer import import_paths
from collector.runs import start_run
from collector.store.database import Store
from collector.store.writer import record_failure
from reports.explain import Explanation, UnknownHostError, explain
from tests.conftest import SEED_CAPTURE
from tests.documents import probe_document
from tests.test_report_analysis import excluded_text, save, sweep

SEED_TIME = datetime.fromisoformat("2018-06-01T12:00:00+02:00")


@pytest.fixture
def reader(store: Store, db_url: str) -> Iterator[Store]:
    """A read-only engine on the test database, as `portfleet explain` makes one."""
    with Store.reader(db_url) as opened:
        yield opened


@pytest.fixture
def seed(store: Store, reader: Store) -> Store:
    (result,) = import_paths(store, [SEED_CAPTURE], "seed-workstation", SEED_TIME)
    assert result.outcome == "stored", result.message
    return reader


def test_the_seed_port_49786_is_probably_reserved_with_the_fix(seed: Store) -> None:
    answer = explain(seed, "seed-workstation", 49786)
    text = answer.to_text()
    assert text.splitlines()[0] == (
        "seed-workstation TCP 49786: blocked (bind fails with 10013), probably reserved by "
        "WinNAT/Hyper-V, since 2018-06-01 10:00 UTC"
    )
    for words in (
        "failed with 10013 (WSAEACCES, access forbidden)",
        "nothing listens on TCP 49786",
        "contiguous block 49770–49799 (30 failing ports)",
        "inside the dynamic port range 49152–65535 (the Windows default, assumed because the "
        "dynamic range was not captured)",
        "no excludedportrange output was captured",
        "net stop winnat",
        "netsh int ipv4 add excludedportrange protocol=tcp startport=49786 numberofports=1",
        "net start winnat",
        "refuses to exclude a port that is in use",
        "cuts WSL 2 and Docker Desktop networking",
        "Hyper-V off → reserve → on",
    ):
        assert words in text, words
    data = answer.to_json()
    assert json.loads(json.dumps(data)) == data
    assert (data["status"], data["classification"]) == ("reserved", "probably-reserved")
    assert data["blocked"] is True
    assert data["error_code"] == 10013 and data["listener"] is None and data["range"] is None
    assert data["block"] == {"start": 49770, "end": 49799, "ports": 30}
    assert data["dynamic_range"] == {"start": 49152, "end": 65535, "captured": False}
    assert data["excluded_known"] is False and data["families"] == ["ipv4"]
    assert data["snapshot"]["taken_at"] == "2018-06-01T10:00:00+00:00"
    actions = [fix["action"] for fix in data["fixes"]]
    assert actions == ["restart-winnat", "reserve-ports"]
    reserve = data["fixes"][1]["commands"]
    assert reserve[0] == "net stop winnat" and reserve[-1] == "net start winnat"
    assert not any("delete" in c for fix in data["fixes"] for c in fix["commands"])


def test_other_seed_ports(seed: Store) -> None:
    held = explain(seed, "seed-workstation", 445)
    assert (held.status, held.process, held.pid, held.error_code) == ("in-use", "System", 4, 10013)
    # Windows itself holds it: never a winnat fix, but what to do about it.
    assert [fix.action for fix in held.fixes] == ["use-another-port"]
    assert "SMB" in held.fixes[0].why and "winnat" not in " ".join(held.fixes[0].commands)
    mine = explain(seed, "seed-workstation", 7680)
    assert (mine.status, mine.pid) == ("in-use", 7056)
    assert [fix.action for fix in mine.fixes] == ["stop-process"]
    # 50001 is held by PID 11100 on 0.0.0.0, though the seed kept only 10013 failures.
    assert explain(seed, "seed-workstation", 50001).status == "in-use"
    free = explain(seed, "seed-workstation", 8080)
    assert (free.status, free.classification, free.blocked) == ("free", "free", False)
    at_risk = explain(seed, "seed-workstation", 60000)
    assert (at_risk.status, at_risk.classification) == ("at-risk", "at-risk")
    assert [fix.action for fix in at_risk.fixes] == ["reserve-ports"]


def test_an_unknown_host_names_the_close_ones(seed: Store) -> None:
    with pytest.raises(UnknownHostError, match=r"did you mean seed-workstation\?"):
        explain(seed, "seed-workstaton", 49786)
    with pytest.raises(UnknownHostError, match="no host has a close name"):
        explain(seed, "build-server", 80)
    assert explain(seed, "SEED-WORKSTATION", 49786).host == "seed-workstation"
    with pytest.raises(ValueError, match="outside 1–65535"):
        explain(seed, "seed-workstation", 70000)


def night(day: int, *ranges: tuple[int, int, bool], **changes: Any) -> dict[str, Any]:
    document = probe_document(taken_at=f"2026-11-{day:02d}T02:00:00+00:00", **changes)
    document["raw"]["excluded_ipv4_tcp"] = excluded_text(*ranges)
    # Run-time ranges fail; an administered one binds (facts C).
    failing = ((a, b, 10013) for a, b, admin in ranges if not admin)
    document["bind_sweep"] = [sweep(*failing, (135, 135, 10048))]
    return document


def test_reserved_since_the_start_of_the_unbroken_run(store: Store, reader: Store) -> None:
    star, block, other = (50000, 50059, True), (52100, 52199, False), (53000, 53099, False)
    save(store, night(18, star, block), night(19, star, other), night(20, star, block),
         night(21, star, block))  # fmt: skip
    answer = explain(reader, "dev-ws-01", 52150)
    assert (answer.status, answer.classification) == ("reserved", "reserved")
    assert (answer.range_start, answer.range_end, answer.administered) == (52100, 52199, False)
    assert answer.since == datetime(2026, 11, 20, 2, tzinfo=UTC)  # not the 18th: the 19th broke it
    assert "since 2026-11-20 02:00 UTC" in answer.to_text().splitlines()[0]
    assert [fix.action for fix in answer.fixes] == ["restart-winnat", "reserve-ports"]
    # An administered range keeps WinNAT off its ports but blocks no bind (facts C).
    administered = explain(reader, "dev-ws-01", 50001)
    assert administered.status == "free" and administered.fixes == ()
    assert administered.protected == (50000, 50059)
    assert administered.protected_since == datetime(2026, 11, 18, 2, tzinfo=UTC)
    assert "Protected since 2026-11-18: the administered ('*') excluded range 50000–50059" in (
        administered.to_text()
    )
    assert administered.to_json()["protected"] == {
        "start": 50000,
        "end": 50059,
        "since": "2026-11-18T02:00:00+00:00",
    }
    assert explain(reader, "dev-ws-01", 52150).protected is None
    assert explain(reader, "dev-ws-01", 135).to_json()["listener"] == {
        "pid": 1152,
        "process": "svchost",
        "serving": False,
    }


def test_no_sweep_or_no_snapshot_is_unknown(store: Store, reader: Store) -> None:
    save(store, probe_document(bind_sweep=[]))
    unswept = explain(reader, "dev-ws-01", 8080)
    assert (unswept.status, unswept.blocked) == ("unknown", False)
    assert "no bind sweep was recorded" in unswept.to_text()
    covered = explain(reader, "dev-ws-01", 52150)  # the excluded range still says it is taken
    assert (covered.status, covered.range_start) == ("reserved", 52100)
    run = start_run(store, "collect")
    record_failure(store, run, "10.0.0.9", datetime.now(UTC), "unreachable", "refused", "ghost")
    ghost = explain(reader, "ghost", 80)
    assert isinstance(ghost, Explanation)
    assert ghost.status == "unknown" and "No snapshot" in ghost.reason
    assert ghost.to_json()["snapshot"] == {"id": None, "taken_at": None, "source": None}
