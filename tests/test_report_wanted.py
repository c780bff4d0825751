"""A report without wanted ports uses those the fleet was last collected with, and says so."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import text

from collector.cli import cli
from collector.runs import finish_run, start_run
from collector.store.database import Store
from reports.wanted import last_wanted
from tests.conftest import import_seed


def _run_with(url: str, wanted: dict[int, str | None] | None) -> int:
    with Store.open(url) as store:
        run_id = start_run(store, "collect", wanted)
        finish_run(store, run_id)
    return run_id


def _report(url: str, out: Path, *extra: str) -> str:
    done = CliRunner().invoke(cli, ["--db", url, "report", "--out", str(out), *extra])
    assert done.exit_code == 0, done.output
    return out.read_text(encoding="utf-8")


def test_the_last_recorded_list_is_used_when_none_is_given(sqlite_url: str, tmp_path: Path) -> None:
    import_seed(sqlite_url)
    before = _report(sqlite_url, tmp_path / "before.html")
    assert "none given" in before  # nothing recorded yet: the page says how to give some
    older = _run_with(sqlite_url, {5000: None})
    newest = _run_with(sqlite_url, {49786: None, 5432: "postgres"})
    _run_with(sqlite_url, None)  # a run without wanted ports (an import) leaves the list alone
    with Store.reader(sqlite_url) as store:
        recorded = last_wanted(store)
    assert recorded is not None and recorded.run_id == newest != older
    assert (recorded.ports, recorded.services) == ((5432, 49786), {5432: "postgres"})
    page = _report(sqlite_url, tmp_path / "store.html")
    assert "from the store: the wanted ports of the last collection" in page
    assert "5432, 49786" in page
    given = _report(sqlite_url, tmp_path / "given.html", "--port", "8080")
    assert "(from the command line)" in given and "5432, 49786" not in given


def test_a_recorded_list_that_is_not_ports_counts_as_none(sqlite_url: str) -> None:
    import_seed(sqlite_url)
    run_id = _run_with(sqlite_url, {5432: None})
    with Store.open(sqlite_url) as store, store.transaction() as connection:
        connection.execute(
            text("UPDATE collection_runs SET wanted_ports = :bad WHERE id = :id"),
            {"bad": '{"99999": null}', "id": run_id},
        )
    with Store.reader(sqlite_url) as store:
        assert last_wanted(store) is None
