"""docs/views.md describes every view and column the store has, and nothing else."""

from __future__ import annotations

import re

from sqlalchemy import Engine, inspect

from tests.conftest import REPO


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


def test_views_doc_matches_the_database(store: Engine) -> None:
    inspector = inspect(store)
    actual = {
        name: [c["name"] for c in inspector.get_columns(name)]
        for name in inspector.get_view_names()
    }
    documented = _documented()
    assert documented, "docs/views.md lists no view"
    assert sorted(documented) == sorted(actual)
    for name, columns in actual.items():
        assert documented[name] == columns, name
