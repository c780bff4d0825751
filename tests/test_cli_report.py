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


def test_report_says_where_its_wanted_ports_came_from(seeded: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    given = CliRunner().invoke(cli, ["--db", seeded, "report", "--out", str(out), "--port", "80"])
    assert given.exit_code == 0, given.output
    assert '80 <span class="source">(from the command line)</span>' in out.read_text("utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("hosts: []\nwanted_ports: [5432]\n", encoding="utf-8")
    configured = CliRunner().invoke(
        cli, ["--db", seeded, "--config", str(config), "report", "--out", str(out)]
    )
    assert configured.exit_code == 0, configured.output
    assert '5432 <span class="source">(from the config)</span>' in out.read_text("utf-8")
    config.write_text("hosts: []\n", encoding="utf-8")
    none = CliRunner().invoke(
        cli, ["--db", seeded, "--config", str(config), "report", "--out", str(out)]
    )
    assert none.exit_code == 0, none.output
    page = out.read_text("utf-8")
    assert "none given" in page and "<code>--port 5432 --port 8080</code>" in page


def test_report_of_an_empty_store_exits_0_and_says_nothing_was_collected(
    sqlite_url: str, tmp_path: Path
) -> None:
    from collector.store.database import Store

    with Store.open(sqlite_url):
        pass  # a store at the newest schema, with nothing in it
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        cli, ["--db", sqlite_url, "report", "--out", str(out), "--port", "5432"]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text("utf-8")
    assert "Nothing has been collected into this database yet" in page
    assert "portfleet collect" in page and "portfleet demo" in page
