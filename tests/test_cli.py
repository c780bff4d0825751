"""The `portfleet` command line: help everywhere, README kept true, parse, db, demo."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from collector.cli import cli
from collector.exitcodes import ExitCode
from collector.store.database import head_revision
from tests.conftest import DATA, REPO


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in sorted(group.commands.items()):
        names.append(f"{prefix}{name}")
        if isinstance(command, click.Group):
            names += _commands(command, f"{prefix}{name} ")
    return names


@pytest.mark.parametrize("command", ["", *_commands(cli)])
def test_every_command_has_help(command: str) -> None:
    for flag in ("-h", "--help"):
        result = CliRunner().invoke(cli, [*command.split(), flag])
        assert result.exit_code == 0, result.output
        assert "Usage: " in result.output
        assert len(result.output.splitlines()) > 4


def test_readme_command_table_lists_exactly_the_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `portfleet ([a-z-]+(?: [a-z-]+)?)", readme, re.MULTILINE))
    leaves = {c for c in _commands(cli) if not isinstance(cli.commands.get(c), click.Group)}
    assert documented == leaves


def test_readme_starts_with_exactly_two_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quick start", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = block.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("python3 -m venv .venv") and lines[0].endswith("portfleet demo")
    assert lines[1].startswith("python3 -m venv .venv") and "pytest" in lines[1]


def test_parse_prints_the_expected_json() -> None:
    source = DATA / "corpus" / "excluded" / "excluded-fr-3.txt"
    expected = json.loads(source.with_suffix(".expected.json").read_text(encoding="utf-8"))
    result = CliRunner().invoke(cli, ["parse", "excluded", str(source), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == expected


def test_parse_table_output_and_bind_failures() -> None:
    result = CliRunner().invoke(
        cli, ["parse", "bind-failures", str(DATA / "seed" / "capture" / "bind-failures.txt")]
    )
    assert result.exit_code == 0
    assert "(183)" in result.stdout and "49786" in result.stdout


def test_parse_error_names_the_line_and_what_to_do(tmp_path: Path) -> None:
    bad = tmp_path / "ex.txt"
    bad.write_text("Protocol tcp Port Exclusion Ranges\n\n     5000      4000\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["parse", "excluded", str(bad), "--json"])
    assert result.exit_code == ExitCode.USAGE
    assert (
        "line 3" in result.output and "netsh int ipv4|ipv6 show excludedportrange" in result.output
    )


def test_db_upgrade_and_current(sqlite_url: str) -> None:
    before = CliRunner().invoke(cli, ["--db", sqlite_url, "db", "current"])
    assert "revision (empty)" in before.stdout
    upgraded = CliRunner().invoke(cli, ["--db", sqlite_url, "db", "upgrade"])
    assert upgraded.exit_code == 0 and head_revision() in upgraded.stdout
    after = CliRunner().invoke(cli, ["--db", sqlite_url, "db", "current"])
    assert "up to date" in after.stdout


def test_database_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"database: sqlite:///{tmp_path / 'from-config.db'}\n", encoding="utf-8")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PORTFLEET_DB", raising=False)

    def current(*args: str) -> str:
        return CliRunner().invoke(cli, [*args, "db", "upgrade"], catch_exceptions=False).stdout

    assert "xdg/portfleet/portfleet.db" in current()
    assert "from-config.db" in current("--config", str(config))
    monkeypatch.setenv("PORTFLEET_DB", str(tmp_path / "from-env.db"))
    assert "from-env.db" in current("--config", str(config))
    assert "from-flag.db" in current(
        "--config", str(config), "--db", str(tmp_path / "from-flag.db")
    )


def test_a_bad_config_stops_with_the_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("hosts:\n  - name: a\n    transport: telnet\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "db", "upgrade"])
    assert result.exit_code == ExitCode.USAGE
    assert "line 3" in result.output and "hosts[0].transport" in result.output


def test_a_database_that_cannot_be_opened_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{blocker}/sub/store.db", "db", "upgrade"])
    assert result.exit_code == ExitCode.DATABASE
    assert "cannot open the database" in result.output
