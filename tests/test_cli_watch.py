"""`collect --notify`, `notify` and `fix` on the command line, against real servers on loopback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from collector.cli import cli
from collector.exitcodes import ExitCode
from collector.store.database import Store
from tests.mailhooks import SmtpServer, free_port
from tests.test_cli_collect import PASSWORD, Fleet

SMTP_PASSWORD = "mail-Pa55word"
WANTED = 52150  # inside the test document's run-time range 52100-52199


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    monkeypatch.setenv("PF_TEST_USER", "portfleet")
    monkeypatch.setenv("PF_TEST_PASSWORD", PASSWORD)
    monkeypatch.setenv("PF_SMTP_USER", "portfleet")
    monkeypatch.setenv("PF_SMTP_PASSWORD", SMTP_PASSWORD)
    simulated = Fleet(tmp_path)
    simulated.add("dev-ws-01")
    yield simulated
    simulated.stop()


def _config(fleet: Fleet, smtp_port: int, database: Path) -> Path:
    path = fleet.config()
    body: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    body["database"] = str(database)
    # A loaded machine must not turn the host into a timeout: this test is about the messages.
    body["probe"] = {"deadline_seconds": 60, "operation_timeout_seconds": 20}
    body["wanted_ports"] = [WANTED]
    body["notify"] = {
        "timeout_seconds": 3,
        "channels": [
            {"name": "it-mail", "kind": "email", "host": "127.0.0.1", "port": smtp_port,
             "security": "starttls", "verify_tls": False, "username_env": "PF_SMTP_USER",
             "password_env": "PF_SMTP_PASSWORD", "from": "portfleet@example.org",
             "to": ["it@example.org"]}
        ],
    }  # fmt: skip
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def _count(database: Path, query: str) -> int:
    with Store.reader(f"sqlite:///{database}") as store, store.connect() as connection:
        return int(connection.execute(text(query)).scalar_one())


def test_collect_notify_with_the_mail_server_down_stores_the_night_and_the_next_run_delivers(
    fleet: Fleet, tmp_path: Path
) -> None:
    port = free_port()
    database = tmp_path / "pf.db"
    config = _config(fleet, port, database)
    log = tmp_path / "collect.log"
    runner = CliRunner()
    night = ["collect", "--notify", "--night"]  # two nights: the second collects the host again
    down = runner.invoke(cli, ["--config", str(config), *night, "2026-11-01", "--log", str(log)])
    assert down.exit_code == ExitCode.NOT_DELIVERED, down.output + log.read_text(encoding="utf-8")
    assert "notify: 1 queued, 0 sent, 1 failed" in down.output
    assert "not delivered via it-mail" in down.output
    assert _count(database, "SELECT COUNT(*) FROM snapshots") == 1
    assert _count(database, "SELECT COUNT(*) FROM notifications WHERE sent_at IS NULL") == 1

    account = ("portfleet", SMTP_PASSWORD)
    with SmtpServer(tmp_path, security="starttls", login=account, port=port) as smtp:
        up = runner.invoke(cli, ["--config", str(config), *night, "2026-11-02"])
        assert up.exit_code == ExitCode.OK, up.output
        again = runner.invoke(cli, ["--config", str(config), "notify"])
        assert again.exit_code == ExitCode.OK, again.output
    assert "notify: 0 queued, 1 sent, 0 failed" in up.output
    assert "notify: 0 queued, 0 sent, 0 failed" in again.output
    # Both nights stored: an ok attempt each (the host printed the same document twice, which
    # is kept once as a snapshot).
    assert _count(database, "SELECT COUNT(*) FROM attempts WHERE status = 'ok'") == 2
    (message,) = smtp.mailbox.messages
    assert message["Subject"].startswith(
        f"dev-ws-01 TCP {WANTED}: reserved (bind fails with 10013)"
    )
    assert "52100–52199" in smtp.mailbox.html()
    everything = down.output + up.output + log.read_text(encoding="utf-8")
    with Store.reader(f"sqlite:///{database}") as store, store.connect() as connection:
        stored = " ".join(
            str(row) for row in connection.execute(text("SELECT * FROM notifications"))
        )
    for where in (everything, stored, message.as_string()):
        assert SMTP_PASSWORD not in where


def test_fix_is_recorded_and_notify_dry_run_changes_nothing(fleet: Fleet, tmp_path: Path) -> None:
    database = tmp_path / "pf.db"
    config = _config(fleet, free_port(), database)
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(config), "collect"]).exit_code == 0
    fixed = runner.invoke(
        cli,
        ["--config", str(config), "fix", "dev-ws-01", str(WANTED), "--action", "reserve",
         "--note", "INC-4711", "--by", "alice", "--at", "2020-01-01T09:00:00+01:00"],
    )  # fmt: skip
    assert fixed.exit_code == 0, fixed.output
    assert fixed.stdout == (
        f"recorded fix 1: dev-ws-01 TCP {WANTED} reserve at 2020-01-01 08:00 UTC; checked "
        "against 1 stored night(s) since\n"
    )
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    dry = runner.invoke(cli, ["--config", str(config), "notify", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before
    kinds = [line.split("]")[0] + "]" for line in dry.stdout.splitlines() if line.startswith("[")]
    assert kinds == ["[fix-regressed]", "[blocked]"]
    assert "net stop winnat" in dry.stdout
    unknown = runner.invoke(
        cli, ["--config", str(config), "fix", "ghost", "80", "--action", "other"]
    )
    assert unknown.exit_code == ExitCode.USAGE
    assert "no host named 'ghost'" in unknown.output
    explained = runner.invoke(cli, ["--config", str(config), "explain", "dev-ws-01", str(WANTED)])
    assert "Fixes applied, and whether they held:" in explained.stdout
    assert "reserve recorded by alice, 2020-01-01 08:00 UTC (INC-4711); held 0 of 1" in (
        explained.stdout.replace("\n", " ")
    )
