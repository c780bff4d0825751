"""Collect's own logic through a canned transport: tries, their limits, deadlines, records.

No network here: what pywinrm does on the wire is tests/test_transport.py's, and the whole night
over real WinRM is tests/test_cli_collect.py's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import CheckConstraint, select

from collector.collect import HostOutcome, collect
from collector.config import PortfleetConfig, parse_config
from collector.plan import CollectPlan, plan_collection
from collector.probe import probe_script
from collector.store.database import Store
from collector.store.models import Attempt, Host, Snapshot
from collector.transport import ERROR_CLASSES, ProbeOutput, SelectionError, TransportError
from tests.documents import probe_document
from tests.transports import CannedTransport, Reply, Slow

HOSTS = ("dev-ws-01", "dev-ws-02", "dev-ws-03")
CLIXML = (
    b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    b'<S S="Error">Access is denied._x000D__x000A_</S></Objs>'
)


def _document(name: str) -> dict[str, Any]:
    document = probe_document()
    document["host"]["name"] = name.upper()  # Windows reports COMPUTERNAME in capitals
    return document


def _config(*hosts: str, retries: int = 2, deadline: float = 30) -> PortfleetConfig:
    listed = "\n".join(f"  - {{name: {h}}}" for h in hosts)
    return parse_config(
        f"""
# Variables nobody sets: only the WinRM transport would need them.
defaults: {{credential: {{username_env: PF_NOBODY, password_env: PF_NONE}}}}
collect: {{retries: {retries}, retry_delay_seconds: 0, concurrency: 4}}
probe: {{deadline_seconds: {deadline}}}
hosts:
{listed}
"""
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened


class Night:
    """One collection through canned replies, and what it left in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.transports: list[CannedTransport] = []

    def run(
        self, replies: Mapping[str, Sequence[Reply]], config: PortfleetConfig | None = None
    ) -> dict[str, HostOutcome]:
        config = config or _config(*replies)
        transport = CannedTransport(replies)
        self.transports.append(transport)
        plan = plan_collection(config, [], transport=transport)
        outcomes = collect(self.store, config, plan, transport=transport)
        assert [o.host for o in outcomes] == [h.name for h in plan.hosts]
        return {o.host: o for o in outcomes}

    @property
    def transport(self) -> CannedTransport:
        return self.transports[-1]

    def attempts(self, host: str) -> list[tuple[str, str, str | None]]:
        """Return the host's recorded tries: (source, status, error class), oldest first."""
        query = (
            select(Attempt.source, Attempt.status, Attempt.error_class)
            .join(Host, Host.id == Attempt.host_id)
            .where(Host.name == host)
            .order_by(Attempt.id)
        )
        with self.store.connect() as connection:
            return [(r.source, r.status, r.error_class) for r in connection.execute(query)]

    def snapshot_sources(self) -> list[str]:
        with self.store.connect() as connection:
            return list(connection.scalars(select(Snapshot.source).order_by(Snapshot.id)))


@pytest.fixture
def night(store: Store) -> Iterator[Night]:
    made = Night(store)
    yield made
    for transport in made.transports:
        transport.released.set()  # free the replies left hanging past their deadline


def _down(message: str = "connection refused") -> TransportError:
    return TransportError("unreachable", message)


def test_an_unreachable_host_is_tried_again_and_every_try_is_recorded(night: Night) -> None:
    outcome = night.run({"dev-ws-01": [_down(), _down(), _document("dev-ws-01")]})["dev-ws-01"]
    assert (outcome.status, outcome.tries, outcome.error_class) == ("ok", 3, None)
    assert outcome.snapshot_id is not None
    where = "canned://dev-ws-01"
    assert night.attempts("dev-ws-01") == [
        (where, "failed", "unreachable"),
        (where, "failed", "unreachable"),
        (where, "ok", None),
    ]
    assert night.snapshot_sources() == ["file"]  # as the transport names itself


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_tries_stop_at_one_plus_the_retries(night: Night, retries: int) -> None:
    config = _config("dev-ws-01", retries=retries)
    outcome = night.run({"dev-ws-01": [_down("no route to host")]}, config)["dev-ws-01"]
    assert (outcome.status, outcome.error_class, outcome.tries) == (
        "failed",
        "unreachable",
        1 + retries,
    )
    assert outcome.message == "no route to host"
    assert night.transport.tries("dev-ws-01") == 1 + retries
    # One record per try, and the in-flight mark gone with the last.
    assert night.attempts("dev-ws-01") == [("canned://dev-ws-01", "failed", "unreachable")] * (
        1 + retries
    )


@pytest.mark.parametrize("error_class", sorted(ERROR_CLASSES - {"unreachable"}))
def test_only_an_unreachable_host_is_tried_again(night: Night, error_class: str) -> None:
    failure = TransportError(error_class, f"dev-ws-01: it went wrong ({error_class})")
    outcome = night.run({"dev-ws-01": [failure, _document("dev-ws-01")]})["dev-ws-01"]
    assert (outcome.status, outcome.error_class, outcome.tries) == ("failed", error_class, 1)
    assert outcome.message == f"dev-ws-01: it went wrong ({error_class})"
    assert night.attempts("dev-ws-01") == [("canned://dev-ws-01", "failed", error_class)]


def test_a_host_past_its_deadline_is_cut_and_the_others_are_stored(night: Night) -> None:
    config = _config("dev-ws-01", "dev-ws-02", "dev-ws-03", deadline=0.5)
    began = time.monotonic()
    outcomes = night.run(
        {
            "dev-ws-01": [Slow(0.05, _document("dev-ws-01"))],  # slow, within its deadline
            "dev-ws-02": [Slow(60)],  # silent until the test ends
            "dev-ws-03": [_document("dev-ws-03")],
        },
        config,
    )
    assert time.monotonic() - began < 5  # not the silent host's 60 s
    silent = outcomes["dev-ws-02"]
    assert (silent.status, silent.error_class, silent.tries) == ("failed", "timeout", 1)
    assert silent.message == (
        "dev-ws-02: no answer (probe and parsing) within the 0.5 s deadline; cut"
    )
    assert 0.5 <= silent.seconds < 5
    assert outcomes["dev-ws-01"].status == outcomes["dev-ws-03"].status == "ok"
    assert night.attempts("dev-ws-02") == [("canned://dev-ws-02", "failed", "timeout")]
    # Each try is given the instant its host's deadline falls, not a fresh allowance.
    assert all(0 < call.seconds_left <= 0.5 for call in night.transport.calls)


def test_every_try_gets_the_probe_and_its_arguments_from_the_plan(night: Night) -> None:
    config = _config("dev-ws-01")
    transport = CannedTransport({"dev-ws-01": [_down(), _document("dev-ws-01")]})
    plan = plan_collection(config, [], transport=transport)
    night.transports.append(transport)
    collect(night.store, config, plan, transport=transport)
    first, second = transport.calls
    assert first.script == second.script == probe_script()
    assert first.arguments == second.arguments == plan.probe_arguments
    assert 29 < second.seconds_left <= 30  # a new try, a new deadline


def test_failing_hosts_leave_the_night_to_the_others(night: Night) -> None:
    not_framed = ProbeOutput(b"", CLIXML, 1, requests=3)
    invalid = _document("dev-ws-04") | {"schema": "portfleet.probe/999"}
    outcomes = night.run(
        {
            "dev-ws-01": [TransportError("auth", "dev-ws-01 refused the credentials; check them")],
            "dev-ws-02": [not_framed],
            "dev-ws-03": [_document("dev-ws-03")],
            "dev-ws-04": [invalid],
            "dev-ws-05": [_document("dev-ws-05")],
        },
    )
    assert {h: (o.status, o.error_class) for h, o in outcomes.items()} == {
        "dev-ws-01": ("failed", "auth"),
        "dev-ws-02": ("failed", "probe_error"),
        "dev-ws-03": ("ok", None),
        "dev-ws-04": ("failed", "bad_document"),
        "dev-ws-05": ("ok", None),
    }
    message = outcomes["dev-ws-02"].message
    assert message.startswith("dev-ws-02: the probe exited with 1: ")
    assert message.endswith("; stderr: Access is denied.")  # CLIXML read for the operator
    assert len(night.snapshot_sources()) == 2
    for host in outcomes:
        assert len(night.attempts(host)) == 1


@pytest.mark.parametrize(
    ("entry", "reported"),
    [
        ("{name: dev-ws-01}", "DEV-WS-01"),
        ("{name: dev-ws-01.corp.example}", "dev-ws-01"),  # a domain name, its host part said
        ("{name: build, address: winbuild07.corp.example}", "WINBUILD07"),  # named by address
    ],
)
def test_the_machine_that_answers_is_the_one_configured(
    night: Night, entry: str, reported: str
) -> None:
    config = parse_config(f"collect: {{retry_delay_seconds: 0}}\nhosts:\n  - {entry}\n")
    name = config.hosts[0].name
    document = probe_document()
    document["host"]["name"] = reported
    assert night.run({name: [document]}, config)[name].status == "ok"


def test_a_machine_answering_as_another_is_refused_and_nothing_of_it_stored(night: Night) -> None:
    config = parse_config(
        "collect: {retry_delay_seconds: 0}\nhosts:\n  - {name: dev-ws-01, address: 10.0.0.7}\n"
    )
    outcome = night.run({"dev-ws-01": [_document("qa-laptop-3")]}, config)["dev-ws-01"]
    assert (outcome.status, outcome.error_class, outcome.tries) == ("failed", "bad_document", 1)
    assert outcome.message == (
        "dev-ws-01: the machine at 10.0.0.7 says it is 'QA-LAPTOP-3'; check the address "
        "(a reused IP would file its data under the wrong host)"
    )
    assert night.snapshot_sources() == []
    with night.store.connect() as connection:  # nor filed under the name it gave
        assert list(connection.scalars(select(Host.name))) == ["dev-ws-01"]


def test_the_plan_asks_the_transport_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config("dev-ws-01", "dev-ws-02")
    monkeypatch.delenv("PF_NOBODY", raising=False)
    monkeypatch.delenv("PF_NONE", raising=False)
    # WinRM, the default, cannot reach these hosts without their credential variables ...
    with pytest.raises(SelectionError, match="PF_NOBODY"):
        plan_collection(config, [])
    # ... another transport decides for itself.
    canned = CannedTransport({"dev-ws-01": [_document("dev-ws-01")]})
    plan = plan_collection(config, ["dev-ws-01"], transport=canned)
    assert isinstance(plan, CollectPlan) and [h.name for h in plan.hosts] == ["dev-ws-01"]
    with pytest.raises(SelectionError, match="no canned reply for dev-ws-02"):
        plan_collection(config, [], transport=canned)


def test_the_error_classes_are_the_ones_the_store_accepts() -> None:
    constraint = next(
        c
        for c in Attempt.metadata.tables["attempts"].constraints
        if isinstance(c, CheckConstraint) and str(c.name).endswith("error_class")
    )
    accepted = set(re.findall(r"'(\w+)'", str(constraint.sqltext)))
    assert accepted == ERROR_CLASSES
    with pytest.raises(ValueError, match="unknown error class 'unreachble'"):
        TransportError("unreachble", "a typo would be stored and never counted")
