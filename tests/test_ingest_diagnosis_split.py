"""The split of failing runs into findings agrees with a port-by-port classification."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from collector import diagnosis
from collector.diagnosis import Diagnosis, Facts, Finding, HostState, holder_of
from collector.document import load_document
from collector.simulator.fleet import Fleet, FleetSpec
from collector.store.rows import finding_set, prepare_snapshot
from collector.windows import MIN_BLOCK, WSAEACCES, default_dynamic

_Run = tuple[str, str, int, int, int]


def _oracle(run: _Run, facts: Facts) -> list[tuple[object, ...]]:
    """Classify each port of the run on its own, then join neighbours that say the same.

    Independent of the cuts ``_failing`` sorts: it reads the facts afresh for every port.
    """
    protocol, family, start, end, code = run
    table = {(p, f): (s, c) for p, f, s, c in facts.dynamic}
    key = next((k for k in ((protocol, family), (protocol, "ipv4")) if k in table), None)
    first, count = table[key] if key else default_dynamic(protocol, family)
    low, high, captured = first, first + count - 1, key is not None
    failing_in_dynamic = sum(1 for port in range(start, end + 1) if low <= port <= high)
    found: list[dict[str, Any]] = []
    for port in range(start, end + 1):
        covers = [
            (s, e) for p, _, s, e, admin in facts.excluded or ()
            if p == protocol and s <= port <= e and not admin
        ]  # fmt: skip
        rows = [row for row in facts.listeners or () if (row[0], row[2]) == (protocol, port)]
        same = [row for row in rows if (":" in row[1]) == (family == "ipv6")]
        held = (same or rows)[0] if rows else None
        inside = low <= port <= high
        if covers:
            kind = Diagnosis.RESERVED
        elif held is not None:
            kind = Diagnosis.IN_USE
        elif (facts.excluded is None and code == WSAEACCES and inside
              and failing_in_dynamic >= MIN_BLOCK):  # fmt: skip
            kind = Diagnosis.PROBABLY_RESERVED
        else:
            kind = Diagnosis.UNEXPLAINED
        pid, process = (held[3], held[4]) if held else (None, None)
        fields = {
            "protocol": protocol, "family": family, "diagnosis": kind,
            "dynamic_start": low, "dynamic_end": high, "dynamic_captured": captured,
            "error_code": code, "administered": False if covers else None,
            "range_start": min(covers)[0] if covers else None,
            "range_end": min(covers)[1] if covers else None,
            "block_start": start, "block_end": end, "pid": pid, "process": process,
            "holder": holder_of(pid, process) if held else None, "fixes": "",
        }  # fmt: skip
        if found and all(found[-1][name] == value for name, value in fields.items()):
            found[-1]["end"] = port
        else:
            found.append({**fields, "start": port, "end": port})
    return [Finding(**item).row() for item in found]


def _split(facts: Facts) -> list[list[tuple[object, ...]]]:
    excluded = diagnosis._merge_families(facts.excluded or ())
    listeners = diagnosis._Listeners(facts.listeners or ())
    memo: dict[tuple[str, str], tuple[int, int, bool]] = {}
    return [
        [f.row() for f in diagnosis._failing(run, facts, excluded, listeners, memo)]
        for run in sorted(facts.failures or ())
    ]


_PROTOCOL = st.sampled_from(["tcp", "udp"])
_FAMILY = st.sampled_from(["ipv4", "ipv6"])
_PORT = st.integers(49140, 49175)  # around the default dynamic start, 49152


@st.composite
def _facts(draw: st.DrawFn) -> Facts:
    def span() -> tuple[int, int]:
        a, b = draw(_PORT), draw(_PORT)
        return min(a, b), max(a, b)

    failures = [
        (draw(_PROTOCOL), draw(_FAMILY), *span(), draw(st.sampled_from([WSAEACCES, 10048])))
        for _ in range(draw(st.integers(0, 5)))
    ]
    excluded = draw(st.none() | st.lists(
        st.tuples(_PROTOCOL, _FAMILY, _PORT, st.integers(0, 12), st.booleans()).map(
            lambda r: (r[0], r[1], r[2], r[2] + r[3], r[4])), max_size=4))  # fmt: skip
    listeners = draw(st.none() | st.lists(st.tuples(
        _PROTOCOL, st.sampled_from(["0.0.0.0", "::", "127.0.0.1", "[::1]"]), _PORT,
        st.sampled_from([None, 4, 1200]), st.sampled_from([None, "svchost.exe", "app.exe"]),
    ), max_size=6))  # fmt: skip
    dynamic = draw(st.lists(st.tuples(_PROTOCOL, _FAMILY, _PORT, st.integers(1, 20)), max_size=3))
    return Facts(failures, excluded, listeners, dynamic, HostState())


@settings(max_examples=400, deadline=None)
@given(_facts())
def test_each_run_splits_as_its_ports_classified_one_by_one(facts: Facts) -> None:
    expected = [_oracle(run, facts) for run in sorted(facts.failures or ())]
    assert _split(facts) == expected


def test_the_simulated_fleet_splits_as_its_ports_classified_one_by_one() -> None:
    fleet = Fleet(FleetSpec(seed=3, hosts=30, nights=3))
    for night in range(3):
        for host in fleet.hosts:
            body = json.dumps(fleet.document(host, night)).encode()
            prepared = prepare_snapshot(body, load_document(body, host.name), "file")

            def rows(column: str, sets: Any = prepared.sets) -> Any:
                return None if sets[column] is None else sets[column].rows

            facts = Facts(
                rows("bind_failure_set_id"), rows("excluded_set_id"), rows("listener_set_id"),
                [tuple(d.values()) for d in prepared.dynamic], HostState(),
            )  # fmt: skip
            assert _split(facts) == [_oracle(run, facts) for run in sorted(facts.failures or ())]
            again = finding_set(prepared.sets, prepared.dynamic, prepared.features,
                                prepared.services, False)  # fmt: skip
            assert again == prepared.sets["finding_set_id"]
