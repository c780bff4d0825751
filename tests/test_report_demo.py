"""The demo's report answers first: each wanted port reserved tonight, since when, why, the fix."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from rich.console import Console

from collector.demo import WANTED_PORTS, WANTED_SERVICES, run_demo
from collector.simulator.fleet import Fleet, FleetSpec
from collector.store.database import Store
from reports.analysis import build_report_data
from reports.html import render_report
from reports.model import ReportData

# Eight nights past the planted update: its blocks have appeared on some hosts.
SPEC = FleetSpec(nights=28)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> ReportData:
    result = run_demo(tmp_path_factory.mktemp("demo"), Console(file=io.StringIO()), SPEC,
                      report=False)  # fmt: skip
    fleet = Fleet(SPEC)
    last = max(fleet.collection_time(host, SPEC.nights - 1) for host in fleet.hosts)
    with Store.reader(f"sqlite:///{result.database}") as store:
        return build_report_data(
            store, WANTED_PORTS, last + timedelta(hours=6), 3.0, WANTED_SERVICES
        )


def test_each_port_reserved_tonight_is_named_with_since_cause_and_fix(demo: ReportData) -> None:
    wanted = demo.wanted
    reserved = wanted[wanted.status == "reserved"]
    lines = demo.attention[demo.attention.kind == "reserved"]
    assert sorted(zip(lines.host, lines.port, strict=True)) == sorted(
        zip(reserved.host, reserved.port, strict=True)
    )
    assert len(lines) >= 2
    for line in lines.to_dict("records"):
        assert " since " in line["text"] and "snapshot" in line["text"]
        assert line["fix"] in ("restart-winnat", "reserve-ports", "reserve-ports-hyperv")
        assert line["fix_commands"]


def test_the_planted_update_leads_the_causes_where_it_is_one(demo: ReportData) -> None:
    truth = Fleet(SPEC).truth
    installed = {item.host: item.installed_at for item in truth.installs}
    lines = demo.attention[demo.attention.kind == "reserved"]
    planted = 0
    for line in lines.to_dict("records"):
        at = installed.get(line["host"])
        # The update is a cause where the host installed it in the week before the change.
        if at is None or not (line["at"] - timedelta(days=7) < at.astimezone(line["at"].tz)
                              <= line["at"]):  # fmt: skip
            assert not any(cause.startswith(truth.kb) for cause in line["causes"])
            continue
        planted += 1
        assert line["causes"][0].startswith(f"{truth.kb};")
        assert "#1 in the fleet correlation" in line["causes"][0]
    assert planted >= 1


def test_the_first_section_of_the_page_names_them(demo: ReportData) -> None:
    page = render_report(demo)
    first = page.index('<section id="attention"')
    assert first < page.index("<section", first + 1) < page.index('<section id="summary"') + 1
    block = page[first : page.index("</section>", first)]
    for line in demo.attention[demo.attention.kind == "reserved"].to_dict("records"):
        assert f"TCP {line['port']} " in block and line["host"] in block
