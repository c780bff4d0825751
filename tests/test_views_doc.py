"""docs/views.md describes every view and column the store has, and nothing else."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import inspect, text

from collector.document import load_document
from collector.runs import finish_run, start_run
from collector.store.database import Store
from collector.store.writer import record_failure, store_document
from reports.analysis import build_report_data
from reports.explain import explain
from tests.conftest import REPO
from tests.documents import probe_document
from tests.test_explain import night
from tests.test_report_analysis import save, series


def _documented() -> dict[str, list[str]]:
    views: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (REPO / "docs" / "views.md").read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^### (\w+)$", line)
        if heading:
            current = views.setdefault(heading.group(1), [])
            continue
        row = re.match(r"^\| (\w+) \| .+\|$", line)
        if row and current is not None and row.group(1) != "column":
            current.append(row.group(1))
    return views


def test_views_doc_matches_the_database(store: Store) -> None:
    inspector = inspect(store.engine)
    actual = {
        name: [c["name"] for c in inspector.get_columns(name)]
        for name in inspector.get_view_names()
    }
    documented = _documented()
    assert documented, "docs/views.md lists no view"
    assert sorted(documented) == sorted(actual)
    for name, columns in actual.items():
        assert documented[name] == columns, name


def _worked() -> list[str]:
    """Return the SQL of each worked question, in order."""
    text_ = (REPO / "docs" / "views.md").read_text(encoding="utf-8")
    questions = text_.split("## Worked questions", 1)[1]
    return re.findall(r"```sql\n(.*?)```", questions, flags=re.DOTALL)


def _rows(engine: Store, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


def test_which_kb_came_before_the_ranges_grew(store: Store) -> None:
    save(store, *series())
    (sql, _, _) = _worked()
    data = build_report_data(store, [], now=datetime(2026, 11, 25, tzinfo=UTC))
    grew = data.events[data.events.kind == "range-appeared"]
    causes: list[tuple[str, list[dict[str, Any]]]] = list(
        zip(grew["host"], grew["causes"], strict=True)
    )
    expected = sorted(
        (cause["cause"], host) for host, listed in causes for cause in listed
        if cause["kind"] == "update"
    )  # fmt: skip
    rows = _rows(store, sql)
    assert [(kb, host) for kb, host, _ in rows] == expected == [("KB5046613", "dev-ws-01")]
    assert pd.Timestamp(rows[0][2], tz="UTC") == pd.Timestamp("2026-11-21T02:00Z")


def test_since_when_a_port_has_been_blocked(store: Store) -> None:
    star, block, other = (50000, 50059, True), (52100, 52199, False), (53000, 53099, False)
    save(store, night(18, star, block), night(19, star, other), night(20, star, block),
         night(21, star, block))  # fmt: skip
    (_, sql, _) = _worked()
    sql = sql.replace("'ws-07'", "'dev-ws-01'").replace("5432", "52150")
    ((since,),) = _rows(store, sql)
    told = explain(store, "dev-ws-01", 52150).since
    assert told is not None
    assert pd.Timestamp(since, tz="UTC") == told == pd.Timestamp("2026-11-20T02:00Z")
    free = _rows(store, sql.replace("52150", "8080"))
    assert free == [(None,)] and explain(store, "dev-ws-01", 8080).since is None


def test_which_hosts_failed_three_nights_running(store: Store) -> None:
    (_, _, sql) = _worked()
    document = probe_document()
    for night_ in range(3):
        run = start_run(store, "collect")
        at = datetime(2026, 11, 20 + night_, 2, tzinfo=UTC)
        for retry in range(2 if night_ == 1 else 1):  # a retried night is still one night
            record_failure(store, run, "10.0.0.9", at + timedelta(minutes=retry), "unreachable",
                           "refused", "ghost")  # fmt: skip
        if night_ == 1:
            document["taken_at"] = at.isoformat()
            body = json.dumps(document).encode()
            store_document(store, run, body, load_document(body, "t"), "t", "winrm", at)
        else:
            record_failure(store, run, "10.0.0.1", at, "timeout", "hung", "dev-ws-01")
        finish_run(store, run)
    assert _rows(store, sql) == [("ghost",)]
