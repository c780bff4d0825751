"""`portfleet report` and `portfleet explain` on the command line, over a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.cli import cli
from collector.exitcodes import ExitCode
from tests.conftest import import_seed


@pytest.fixture
def seeded(sqlite_url: str) -> str:
    return import_seed(sqlite_url)


def test_explain_the_seed_port_in_words_and_json(seeded: str) -> None:
    text = CliRunner().invoke(
        cli, ["--db", seeded, "explain", "seed-workstation", "49786"], catch_exceptions=False
    )
    assert text.exit_code == 0, text.output
    for part in (
        "10013",
        "nothing listens",
        "49770–49799",
        "dynamic port range",
        "excludedportrange",
    ):
        assert part in text.stdout
    as_json = CliRunner().invoke(
        cli, ["--db", seeded, "explain", "seed-workstation", "49786", "--json"]
    )
    answer = json.loads(as_json.stdout)
    assert answer["host"] == "seed-workstation" and answer["port"] == 49786
    assert json.dumps(answer).count("49770") >= 1


def test_explain_an_unknown_host_says_so(seeded: str) -> None:
    result = CliRunner().invoke(cli, ["--db", seeded, "explain", "seed-workstaton", "49786"])
    assert result.exit_code == ExitCode.USAGE
    assert "seed-workstation" in result.output


def test_report_writes_one_offline_file(seeded: str, tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(
        cli,
        ["--db", seeded, "report", "--out", str(out), "--port", "49786"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "seed-workstation" in page and "49786" in page
    for section in ("summary", "wanted", "port-map", "timeline", "correlation", "remediation"):
        assert f'id="{section}"' in page
    assert result.stdout.strip() == str(out)
