"""`safe-ports`: the range netsh would accept, and the edges of the command."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from collector.cli import cli
from collector.exitcodes import ExitCode
from collector.store.database import Store
from reports.safeports import PortRange, propose_dynamic_range
from tests.conftest import import_seed


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        ((), PortRange(49152, 65535)),  # nothing inside: the range stays
        ((5000, 70000), PortRange(49152, 65535)),
        ((49786,), PortRange(49787, 65535)),  # the larger side of the port
        ((65000,), PortRange(49152, 64999)),
        ((49152,), PortRange(49153, 65535)),
        ((65535,), PortRange(49152, 65534)),
        ((50000, 60000), PortRange(50001, 59999)),
        ((49500, 49800, 65300), PortRange(49801, 65299)),
    ],
)
def test_the_proposed_range_is_the_largest_that_leaves_the_ports_out(
    ports: tuple[int, ...], expected: PortRange
) -> None:
    assert propose_dynamic_range(PortRange(49152, 65535), ports) == expected


def test_no_range_when_every_gap_is_below_netshs_minimum() -> None:
    # netsh accepts 255 ports at least: gaps of 254 are not enough.
    current = PortRange(60000, 60509)
    assert propose_dynamic_range(current, (60254,)) == PortRange(60255, 60509)
    assert propose_dynamic_range(current, (60254, 60300)) is None


def test_a_store_without_evidence_says_so(sqlite_url: str) -> None:
    Store.open(sqlite_url).close()
    done = CliRunner().invoke(cli, ["--db", sqlite_url, "safe-ports"])
    assert done.exit_code == 0, done.output
    assert "nothing can be called safe" in done.stdout


def test_the_seeds_bind_sweep_is_evidence_and_an_unknown_group_is_refused(sqlite_url: str) -> None:
    import_seed(sqlite_url)  # no excluded ranges captured, but a bind sweep: evidence
    done = CliRunner().invoke(cli, ["--db", sqlite_url, "safe-ports", "--json", "--port", "49786"])
    assert done.exit_code == 0, done.output
    answer = json.loads(done.stdout)
    assert answer["evidence"]["host_nights"] == 1 and answer["unproven_hosts"] == []
    assert all(r["start"] >= 1024 and not r["end"] >= 49152 for r in answer["ranges"])
    assert [m["port"] for m in answer["dynamic_moves"]] == [49786, 49786]
    missing = CliRunner().invoke(cli, ["--db", sqlite_url, "safe-ports", "--group", "nope"])
    assert missing.exit_code == ExitCode.USAGE
    assert "no host of the store is in the group 'nope'" in missing.stderr
