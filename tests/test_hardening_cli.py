"""What a user meets at a terminal: host strings as text, bounded `sql`, clear answers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from alembic import command as alembic_command
from click.testing import CliRunner, Result

from collector.cli import cli
from collector.exitcodes import ExitCode
from collector.store.database import Store, alembic_config, create_store_engine, open_store
from tests.documents import probe_document

MARKUP_NAME = "x[/bold]y"
ESCAPE_NAME = "evil\x1b]8;;http://example.invalid/\x1b\\link\x1b]8;;\x1b\\\x1b[2J"
PORTFLEET = [sys.executable, "-c", "from collector.cli import main; main()"]


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _import_hosts(tmp_path: Path, db: Path, *names: str) -> Result:
    paths = []
    for position, name in enumerate(names):
        document = probe_document()
        document["host"]["name"] = name
        path = tmp_path / f"doc-{position}.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        paths.append(str(path))
    return _run("--db", str(db), "import", *paths)


def _in_terminal(args: list[str], cwd: Path, timeout: float = 60) -> tuple[int, bytes]:
    """Run portfleet with a pseudo-terminal as stdout and stderr; return exit code and bytes."""
    controller, follower = pty.openpty()
    process = subprocess.Popen(
        args, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL, cwd=cwd
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(controller)
    return process.wait(timeout=10), output


def test_host_strings_with_markup_never_crash_import_sql_or_parse(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    imported = _import_hosts(tmp_path, db, MARKUP_NAME)
    assert imported.exit_code == 0, imported.output
    assert f"host {MARKUP_NAME}, snapshot" in imported.stderr
    table = _run("--db", str(db), "sql", "SELECT name FROM hosts")
    assert table.exit_code == 0, table.output
    assert MARKUP_NAME in table.stdout
    capture = tmp_path / "hotfix.txt"
    capture.write_text(
        "Source   Description   HotFixID    InstalledBy          InstalledOn\n"
        "------   -----------   --------    -----------          -----------\n"
        f"HOST1    {MARKUP_NAME}     KB4087256   NT AUTHORITY\\SYSTEM  3/22/2018 12:00:00 AM\n",
        encoding="utf-8",
    )
    parsed = _run("parse", "hotfix", str(capture))
    assert parsed.exit_code == 0, parsed.output
    assert MARKUP_NAME in parsed.stdout


def test_escape_sequences_from_a_host_never_reach_a_terminal(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    assert _import_hosts(tmp_path, db, ESCAPE_NAME).exit_code == 0
    for extra in ([], ["--format", "csv"], ["--format", "json"]):
        code, output = _in_terminal(
            [*PORTFLEET, "--db", str(db), "sql", "SELECT name FROM hosts", *extra], tmp_path
        )
        assert code == 0, output
        assert b"\x1b]8;" not in output and b"\x1b[2J" not in output, (extra, output)
        assert b"\\x1b[2J" in output.replace(b"\\\\", b"\\"), (extra, output)
    # A second import of the same name fails on nothing but prints the name: still no escape.
    code, output = _in_terminal(
        [*PORTFLEET, "--db", str(db), "import", str(tmp_path / "doc-0.json")], tmp_path
    )
    assert code == 0 and b"\x1b[2J" not in output and b"already stored" in output


def test_sql_outside_a_terminal_prints_whole_values(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    long_name = "dev-workstation-of-the-build-team-" + "x" * 90
    assert _import_hosts(tmp_path, db, long_name).exit_code == 0
    result = _run("--db", str(db), "sql", "SELECT name, address, groups FROM hosts")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[2].startswith(long_name + "  ")
    assert "…" not in result.stdout


def test_sql_in_a_narrow_terminal_wraps_instead_of_cutting(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    long_name = "dev-ws-" + "0123456789" * 12
    assert _import_hosts(tmp_path, db, long_name).exit_code == 0
    env_args = [*PORTFLEET, "--db", str(db), "sql", "SELECT name, created_at FROM hosts"]
    code, output = _in_terminal(["env", "COLUMNS=80", *env_args], tmp_path)
    assert code == 0, output
    text = output.decode()
    assert "…" not in text
    # Every character of the value is on screen, folded over lines.
    assert "0123456789" * 2 in text and text.count("0123456789") >= 10


def test_empty_sql_is_a_usage_error(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    open_store(f"sqlite:///{db}").dispose()
    for query in ("", "   "):
        result = _run("--db", str(db), "sql", query)
        assert result.exit_code == ExitCode.USAGE
        assert "QUERY is empty" in result.output


@pytest.mark.parametrize(
    "command",
    [["sql", "SELECT 1"], ["report", "--out", "r.html"], ["explain", "dev-ws-01", "80"]],
)
def test_reading_commands_never_create_a_database(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "typo" / "store.db"
    result = CliRunner().invoke(cli, ["--db", str(missing), *command])
    assert result.exit_code == ExitCode.DATABASE, result.output
    assert f"no database at {missing}" in " ".join(result.stderr.split())
    assert not missing.parent.exists()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "command",
    [["sql", "SELECT COUNT(*) FROM v_attempts"], ["explain", "dev-ws-01", "52150"],
     ["report", "--out", "{out}"]],
)  # fmt: skip
def test_reading_commands_leave_a_rollback_journal_database_byte_for_byte(
    tmp_path: Path, command: list[str]
) -> None:
    db = tmp_path / "store" / "store.db"
    db.parent.mkdir()
    assert _import_hosts(tmp_path, db, "dev-ws-01").exit_code == 0
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA journal_mode=DELETE")
    connection.close()
    before = _digest(db)
    files = sorted(db.parent.iterdir())
    out = str(tmp_path / "report.html")
    result = _run("--db", str(db), *(part.format(out=out) for part in command))
    assert result.exit_code == 0, result.output
    assert _digest(db) == before
    assert sorted(db.parent.iterdir()) == files  # no -wal, -shm or journal left behind


def test_reading_commands_refuse_a_store_at_an_older_revision(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    engine = create_store_engine(f"sqlite:///{db}")
    with engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        alembic_command.upgrade(config, "0001")
    engine.dispose()
    before = _digest(db)
    for arguments in (["explain", "dev-ws-01", "80"], ["report", "--out", str(tmp_path / "r")]):
        result = _run("--db", str(db), *arguments)
        assert result.exit_code == ExitCode.DATABASE, result.output
        assert "run `portfleet db upgrade`" in " ".join(result.stderr.split())
    assert _digest(db) == before


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    db = tmp_path / "store.db"
    open_store(f"sqlite:///{db}").dispose()
    return db


RUNAWAY = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT COUNT(*) FROM c"
DOUBLING = (
    "WITH RECURSIVE d(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM d) SELECT length(s) FROM d"
)


def test_sql_stops_at_its_time_limit_and_says_so(store_file: Path) -> None:
    started = time.monotonic()
    result = _run("--db", str(store_file), "sql", RUNAWAY, "--timeout", "1")
    assert time.monotonic() - started < 10
    assert result.exit_code == ExitCode.USAGE
    assert "time limit of 1 s" in result.stderr


def test_sql_stops_at_its_memory_limit_and_says_so(store_file: Path) -> None:
    result = _run("--db", str(store_file), "sql", DOUBLING, "--max-memory", "64")
    assert result.exit_code == ExitCode.USAGE
    assert "memory limit of 64 MB" in result.stderr


def test_sql_stops_on_ctrl_c_with_exit_130(store_file: Path, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*PORTFLEET, "--db", str(store_file), "sql", RUNAWAY, "--timeout", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    _wait_until_open(process.pid, store_file)
    time.sleep(0.5)  # well into the query: it runs right after the store is opened
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=15)
    assert process.returncode == ExitCode.INTERRUPTED, err
    assert b"interrupted" in err


def _wait_until_open(pid: int, path: Path) -> None:
    """Return once process ``pid`` holds ``path`` open (a slow start under load is not a hang)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            fds = Path(f"/proc/{pid}/fd")
            if any(os.path.realpath(fd) == str(path.resolve()) for fd in fds.iterdir()):
                return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never opened {path}")


@pytest.mark.parametrize(
    "query",
    [
        "SELECT fts3_tokenizer('simple')",
        "SELECT changes()",
        "SELECT total_changes()",
        "SELECT last_insert_rowid()",
        "SELECT load_extension('/tmp/evil.so')",
    ],
)
def test_sql_refuses_functions_that_reach_into_the_connection(store_file: Path, query: str) -> None:
    result = _run("--db", str(store_file), "sql", query)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "refused" in result.stderr


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql+pg8000://portfleet@127.0.0.1:1/x", "pip install 'portfleet[postgres]'"),
        ("mysql://portfleet@127.0.0.1:1/x", "pip install 'portfleet[postgres]'"),
    ],
)
def test_a_url_whose_driver_is_missing_names_the_extra(url: str, words: str) -> None:
    result = CliRunner().invoke(cli, ["--db", url, "import", __file__])
    assert result.exit_code == ExitCode.DATABASE, result.output
    assert words in " ".join(result.stderr.split())


def test_postgres_without_psycopg_names_the_postgres_extra(tmp_path: Path) -> None:
    """psycopg made unimportable in a child process, as on an install without the extra."""
    code = (
        "import sys; sys.modules['psycopg'] = None; "
        "from collector.cli import main; sys.argv = ['portfleet', '--db', "
        "'postgresql+psycopg://portfleet@127.0.0.1:1/x', 'db', 'upgrade']; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == ExitCode.DATABASE, done.stderr
    message = " ".join(done.stderr.split())
    assert "PostgreSQL driver (psycopg) is not installed: pip install 'portfleet[postgres]'" in (
        message
    )
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("nights", [1, 2])
def test_demo_runs_the_shortest_nights_its_help_allows(tmp_path: Path, nights: int) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        cli, ["demo", "--out", str(out), "--nights", str(nights), "--hosts", "8"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file()
    with sqlite3.connect(out / "portfleet.db") as connection:
        runs = connection.execute("SELECT COUNT(*) FROM collection_runs WHERE kind = 'demo'")
        assert runs.fetchone()[0] == nights
    connection.close()


def test_sql_on_postgres_stops_at_its_time_limit(pg_cluster: Any) -> None:
    from tests.conftest import new_pg_database

    url = new_pg_database(pg_cluster)
    open_store(url).dispose()
    result = _run("--db", url, "sql", "SELECT pg_sleep(10)", "--timeout", "1")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "time limit" in result.stderr


def test_runs_are_closed_only_when_their_process_is_gone(db_url: str, tmp_path: Path) -> None:
    """On SQLite (a lock file) and PostgreSQL (an advisory lock) alike."""
    from collector.runs import close_interrupted_runs, finish_run, start_run

    store = Store.open(db_url)
    mine = start_run(store, "import")
    # Another process opens a run and dies without closing it.
    code = (
        "import os, sys; from collector.store.database import Store; "
        "from collector.runs import start_run; "
        "print(start_run(Store.open(sys.argv[1]), 'collect')); sys.stdout.flush(); os._exit(0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, db_url], capture_output=True, text=True, timeout=60
    )
    killed = int(done.stdout)
    notices = close_interrupted_runs(store)
    assert [n.split(" (")[0] for n in notices] == [f"run {killed}"]
    assert close_interrupted_runs(store) == []  # closed once; this process's run stays open
    finish_run(store, mine)
    store.close()


def test_explain_shows_a_hosts_process_name_without_its_escapes(tmp_path: Path) -> None:
    document = probe_document()
    document["listeners"][0]["process"] = "svc\x1b[2J\x1b]0;owned\x07"
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    db = tmp_path / "store.db"
    assert _run("--db", str(db), "import", str(path)).exit_code == 0
    result = _run("--db", str(db), "explain", "dev-ws-01", "135")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "svc\\x1b[2J" in result.stdout


def test_a_column_alias_with_brackets_prints_in_a_terminal(store_file: Path) -> None:
    code, output = _in_terminal(
        [*PORTFLEET, "--db", str(store_file), "sql", 'SELECT 1 AS "[/b]"'], store_file.parent
    )
    assert code == 0, output
    assert b"[/b]" in output and b"1 row" in output
