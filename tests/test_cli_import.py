"""`portfleet import`: the seed capture, probe documents, duplicates, bad input, transactions."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from collector.cli import cli
from collector.exitcodes import ExitCode
from collector.store.models import Attempt, Document, Host, Snapshot, SnapshotError, Update
from tests.conftest import SEED_CAPTURE
from tests.documents import probe_document

SEED_TIME = "2018-06-01T12:00:00+02:00"


def _import(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, "import", *args], catch_exceptions=False)


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_seed_capture_gives_183_failing_ports_explained_as_the_issue_says(
    db_url: str, tmp_path: Path
) -> None:
    result = _import(
        db_url, str(SEED_CAPTURE), "--host", "seed-workstation", "--taken-at", SEED_TIME
    )
    assert result.exit_code == 0, result.output
    sql = CliRunner().invoke(
        cli,
        [
            "--db",
            db_url,
            "sql",
            "SELECT port, classification, pid, process, failure_start, excluded_known "
            "FROM v_failing_ports WHERE host = 'seed-workstation' ORDER BY port",
            "--format",
            "json",
        ],
        catch_exceptions=False,
    )
    assert sql.exit_code == 0, sql.output
    rows = json.loads(sql.stdout)
    assert len(rows) == 183
    held = {r["port"]: (r["pid"], r["process"]) for r in rows if r["classification"] == "in-use"}
    assert held == {445: (4, "System"), 5357: (4, "System"), 7680: (7056, None)}
    # No excluded ranges were captured: six blocks of 10013 in the default dynamic range.
    blocks = [r for r in rows if r["classification"] == "probably-reserved"]
    assert len(blocks) == 180
    assert sorted({r["failure_start"] for r in blocks}) == [
        49670,
        49710,
        49770,
        49825,
        49866,
        50274,
    ]
    assert {r["excluded_known"] for r in rows} == {0}


def test_seed_capture_records_excluded_ranges_as_unknown_not_empty(db_url: str) -> None:
    _import(db_url, str(SEED_CAPTURE), "--host", "seed-workstation", "--taken-at", SEED_TIME)
    engine = _engine(db_url)
    with Session(engine) as session:
        snapshot = session.scalars(select(Snapshot)).one()
        assert snapshot.excluded_set_id is None
        assert snapshot.listener_set_id is not None
        assert snapshot.source == "capture"
        listeners = session.execute(text("SELECT COUNT(*) FROM v_listeners")).scalar_one()
        # 16 TCP (IPv4) + 12 TCP (IPv6) LISTENING rows … counted from the file: every LISTENING
        # row plus every UDP row, minus exact duplicates (the same UDP socket printed twice).
        assert listeners == _count_listeners_by_hand()
    engine.dispose()


def _count_listeners_by_hand() -> int:
    rows = set()
    for line in (SEED_CAPTURE / "netstat-ano.txt").read_text().splitlines()[1:]:
        proto, local, remote, *rest = line.split()
        if proto == "UDP" or remote in ("0.0.0.0:0", "[::]:0"):
            rows.add((proto, local, rest[-1]))
    return len(rows)


def test_importing_the_same_input_twice_stores_it_once(db_url: str, tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    shutil.copytree(SEED_CAPTURE, capture)
    document = _write(tmp_path / "dev-ws-01.json", probe_document())
    for _ in range(2):
        result = _import(
            db_url,
            str(document),
            str(capture),
            "--host",
            "seed-workstation",
            "--taken-at",
            SEED_TIME,
        )
        assert result.exit_code == 0, result.output
    assert "already stored" in result.output
    engine = _engine(db_url)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Snapshot)) == 2
        assert session.scalar(select(func.count()).select_from(Document)) == 2
        statuses = session.scalars(select(Attempt.status)).all()
        assert statuses == ["ok"] * 4
    engine.dispose()


def test_a_probe_document_fills_every_table(db_url: str, tmp_path: Path) -> None:
    result = _import(db_url, str(_write(tmp_path / "doc.json", probe_document())))
    assert result.exit_code == 0, result.output
    engine = _engine(db_url)
    with engine.connect() as connection:
        latest = connection.execute(text("SELECT * FROM v_latest_snapshots")).mappings().one()
        assert latest["host"] == "dev-ws-01"
        assert latest["os_build"] == "10.0.19045.4291"
        assert latest["excluded_known"] == 1 and latest["excluded_ranges"] == 3
        assert latest["failing_ports"] == 1 + 100 + 2  # the administered 50000-50059 binds
        classes: dict[tuple[str, bool | None], int] = {
            (kind, None if administered is None else bool(administered)): count
            for kind, administered, count in connection.execute(
                text(
                    "SELECT classification, administered, COUNT(*) FROM v_failing_ports "
                    "GROUP BY classification, administered"
                )
            ).all()
        }
        assert classes == {
            ("in-use", None): 1,
            ("reserved", False): 100,
            ("unexplained", None): 2,
        }
        in_dynamic = connection.execute(
            text("SELECT port, in_dynamic_range FROM v_failing_ports WHERE port IN (135, 60000)")
        ).all()
        assert sorted(in_dynamic) == [(135, 0), (60000, 1)]
        update = connection.execute(text("SELECT kb, title, installed_on FROM v_updates")).one()
        assert update.kb == "KB5034441" and "Cumulative" in update.title
    engine.dispose()


def test_framed_probe_output_is_imported_as_its_document(db_url: str, tmp_path: Path) -> None:
    from collector.framing import frame_document

    body = json.dumps(probe_document()).encode()
    framed = tmp_path / "dev-ws-01.out"
    framed.write_bytes(b"banner\r\n" + frame_document(body))
    cut = tmp_path / "cut.out"
    cut.write_bytes(frame_document(body)[:200])
    result = _import(db_url, str(framed), str(cut))
    assert result.exit_code == ExitCode.SOME_FAILED
    assert "cut.out: the probe output was cut" in result.output
    engine = _engine(db_url)
    with Session(engine) as session:
        stored = session.scalars(select(Document)).one()
        assert zlib.decompress(stored.body) == body
    engine.dispose()


def test_unknown_files_are_named_and_skipped(db_url: str, tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    shutil.copytree(SEED_CAPTURE, capture)
    (capture / "screenshot.png").write_bytes(b"\x89PNG")
    result = _import(db_url, str(capture), "--host", "h1", "--taken-at", SEED_TIME)
    assert result.exit_code == 0
    assert "skipped screenshot.png" in result.output


def test_a_bad_document_is_refused_clearly_and_the_others_are_kept(
    db_url: str, tmp_path: Path
) -> None:
    bad = probe_document(taken_at="last tuesday")
    bad_path = _write(tmp_path / "bad.json", bad)
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\x00\x01 not json")
    good = _write(tmp_path / "good.json", probe_document())
    result = _import(db_url, str(bad_path), str(garbage), str(good))
    assert result.exit_code == ExitCode.SOME_FAILED
    assert "bad.json: the document does not match its schema" in result.output
    assert "$.taken_at" in result.output
    assert "garbage.json: not a JSON probe document" in result.output
    engine = _engine(db_url)
    with Session(engine) as session:
        attempts = session.execute(
            select(Attempt.source, Attempt.status, Attempt.error_class)
        ).all()
        assert sorted((Path(s).name, st, e) for s, st, e in attempts) == [
            ("bad.json", "failed", "bad_document"),
            ("garbage.json", "failed", "bad_document"),
            ("good.json", "ok", None),
        ]
        assert session.scalar(select(func.count()).select_from(Snapshot)) == 1
    engine.dispose()


def test_an_import_that_fails_midway_leaves_nothing_behind(db_url: str, tmp_path: Path) -> None:
    # Two rows for one feature break a unique constraint after the host, document and
    # snapshot rows were written: the whole import must roll back.
    twice = [{"name": "Microsoft-Hyper-V", "state": "Enabled"}] * 2
    result = _import(db_url, str(_write(tmp_path / "doc.json", probe_document(features=twice))))
    assert result.exit_code == ExitCode.SOME_FAILED
    assert "nothing of it was kept" in result.output
    engine = _engine(db_url)
    with Session(engine) as session:
        for model in (Document, Snapshot, Update):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model.__name__
        assert session.scalars(select(Attempt.status)).all() == ["failed"]
    engine.dispose()


def test_an_unreadable_section_is_kept_as_an_error_and_the_rest_stored(
    db_url: str, tmp_path: Path
) -> None:
    document = probe_document()
    document["raw"]["excluded_ipv4_tcp"] = "Protocol tcp Port Exclusion Ranges\n\n 70000 70010\n"
    result = _import(db_url, str(_write(tmp_path / "doc.json", document)))
    assert result.exit_code == 0, result.output
    assert "kept, but unreadable: excluded_ipv4_tcp: line 3" in result.output
    engine = _engine(db_url)
    with Session(engine) as session:
        snapshot = session.scalars(select(Snapshot)).one()
        assert snapshot.excluded_set_id is None  # unknown, since its only text was unreadable
        assert snapshot.listener_set_id is not None
        error = session.scalars(select(SnapshotError)).one()
        assert (error.section, error.code) == ("excluded_ipv4_tcp", "parse_error")
        assert session.scalars(select(Attempt.status)).one() == "partial"
        assert session.scalars(select(Host.name)).one() == "dev-ws-01"
    engine.dispose()


def test_a_capture_folder_needs_host_and_time(db_url: str) -> None:
    result = _import(db_url, str(SEED_CAPTURE))
    assert result.exit_code == ExitCode.SOME_FAILED
    assert "needs --host NAME and --taken-at" in result.output
    naive = _import(db_url, str(SEED_CAPTURE), "--host", "h", "--taken-at", "2024-03-01T09:30:00")
    assert naive.exit_code == ExitCode.USAGE
    assert "has no offset" in naive.output


def _engine(url: str) -> Engine:
    from collector.store.database import create_store_engine

    return create_store_engine(url)
