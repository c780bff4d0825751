"""The simulated host answers every recorded exchange with real Windows as Windows did.

tests/winrs_replay.py replays the 12 WinRS recordings pypsrp made against real Windows
(tests/data/winrs-recordings) at a simulated host. Every element path of every recorded answer
must be in the simulated answer, and every field of every recorded fault must match. Before
this check existed the simulator matched 904 of 984 paths and 26 of 40 fault fields: it held
output back until a command ended, had no Running state or timeout on a streaming command,
gave the invalid-selector Reason the Message's text, never echoed a working directory, ran a
program WinRS cannot find without cmd.exe, and sent no p:ActivityId.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import winrs_replay


def test_there_are_twelve_recordings_with_their_source() -> None:
    paths = winrs_replay.recordings()
    assert len(paths) == 12
    for path in paths:
        assert path.read_text(encoding="utf-8").startswith("# source: github.com/jborean93/pypsrp")
    assert (winrs_replay.RECORDINGS / "LICENSE.pypsrp").exists()


@pytest.mark.parametrize("path", winrs_replay.recordings(), ids=lambda p: p.stem)
def test_every_recorded_answer_has_its_match(path: Path) -> None:
    figures = winrs_replay.replay(path)

    described = [
        f"#{d.index} {d.operation}: missing {d.missing}, fault {d.fault}"
        for d in figures.differences
    ]
    assert described == []
    assert figures.paths == figures.paths_total > 0
    assert figures.fields == figures.fields_total


def test_the_comparison_sees_a_difference() -> None:
    recorded = (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
        "<s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code></s:Fault></s:Body></s:Envelope>"
    )
    other = recorded.replace("s:Sender", "s:Receiver").replace("<s:Fault>", "<s:Fault a='1'>")
    assert winrs_replay.element_paths(other) - winrs_replay.element_paths(recorded) == {
        "/s:Envelope/s:Body/s:Fault/@a"
    }
    assert winrs_replay.fault_fields(500, recorded)["code"] == "s:Sender"
    assert winrs_replay.fault_fields(500, other)["code"] == "s:Receiver"
