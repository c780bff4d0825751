"""The HTML report in a real headless Chromium: charts draw, tables sort and filter, nothing runs.

Uses Debian's Chromium (``apt-get install chromium``), never a browser Playwright downloads.
Each page is loaded once per module (parsing Plotly takes seconds here); the checks share it.
The reports are the analysis of stores filled from probe documents (``tests.report_store``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    Request,
    sync_playwright,
)

from reports.html import ATTENTION_LIMIT, write_report
from reports.model import ReportData
from tests.report_store import (
    FLIP_PORT,
    HOSTILE_HOST,
    HOSTILE_NAT,
    HOSTILE_PROCESS,
    HOSTILE_TITLE,
    KB_INSTALLED,
    big_fleet,
    fill_flips,
    fill_report_store,
    many_changes,
    report_of,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class _Loaded:
    """A report page and what it did: console errors, page errors, dialogs, requests."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def assert_quiet(self) -> None:
        assert self.errors == []
        assert self.dialogs == []
        assert self.requests == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.fail(f"{CHROMIUM} is missing: run `apt-get install chromium` (as root)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000},
        permissions=["clipboard-read", "clipboard-write"],
    )
    yield context
    context.close()


def _open(context: BrowserContext, path: Path) -> _Loaded:
    page = context.new_page()
    loaded = _Loaded(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            loaded.errors.append(message.text)

    def on_dialog(dialog: Dialog) -> None:
        # Any alert() means a host string ran as code: record it, and fail in assert_quiet.
        loaded.dialogs.append(dialog.message)
        dialog.dismiss()

    def on_request(request: Request) -> None:
        if not request.url.startswith(("file:", "data:", "blob:")):
            loaded.requests.append(request.url)

    page.on("console", on_console)
    page.on("pageerror", lambda error: loaded.errors.append(str(error)))
    page.on("dialog", on_dialog)
    page.on("request", on_request)
    page.goto(path.as_uri())
    # The script writes the details (the timeline's rows) after the first screen; then this.
    page.wait_for_selector("html[data-ready]", state="attached")
    return loaded


def _draw_charts(page: Page) -> None:
    """Bring each chart into view, where the page draws it, and wait until it is drawn."""
    for plot in ("#port-map-plot", "#timeline-plot"):
        page.locator(plot).scroll_into_view_if_needed()
        page.wait_for_selector(f"{plot} .main-svg")
    page.evaluate("window.scrollTo(0, 0)")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> ReportData:
    return report_of(tmp_path_factory.mktemp("store") / "store.db", fill_report_store)


@pytest.fixture(scope="module")
def report(
    context: BrowserContext, data: ReportData, tmp_path_factory: pytest.TempPathFactory
) -> _Loaded:
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(data, path)
    loaded = _open(context, path)
    _draw_charts(loaded.page)
    return loaded


def _column(page: Page, table: str, header: str) -> list[str]:
    headers = page.locator(f"#{table} thead th").all_text_contents()
    index = [text.strip() for text in headers].index(header)
    return [
        str(text).strip()
        for text in page.locator(f"#{table} tbody tr:visible").evaluate_all(
            f"rows => rows.map(row => row.cells[{index}].textContent)"
        )
    ]


def _numbers(cells: list[str]) -> list[float | None]:
    return [None if cell == "—" else float(cell) for cell in cells]


def test_page_loads_quietly_and_offline(report: _Loaded) -> None:
    page = report.page
    assert page.title().startswith("portfleet report")
    assert page.locator("section").count() == 11
    report.assert_quiet()


def test_port_map_draws_a_plotly_chart(report: _Loaded) -> None:
    plot = report.page.locator("#port-map-plot.js-plotly-plot")
    assert plot.count() == 1
    traces = plot.evaluate("node => node.data.map(trace => [trace.name, trace.x.length])")
    assert len(traces) >= 2
    assert {name for name, _ in traces} >= {"excluded", "in-use", "dynamic range"}
    assert plot.evaluate("node => node.layout.shapes.length") == 6  # the wanted ports
    assert report.page.locator("#port-map-plot .scatterlayer .trace").count() == len(traces)
    assert report.page.locator("#timeline-plot.js-plotly-plot").count() == 1
    report.assert_quiet()


# Plotly throttles hovers closer than 50 ms apart, hence the pause before each.
_HOVER = """async ([kind, needle]) => {
  const node = document.getElementById("port-map-plot");
  const curve = node.data.findIndex(trace => trace.name === kind);
  const point = node.data[curve].customdata.findIndex(text => text && text.includes(needle));
  await new Promise(resolve => setTimeout(resolve, 100));
  Plotly.Fx.hover(node, [{curveNumber: curve, pointNumber: point}]);
  const layer = node.querySelector(".hoverlayer");
  return [layer.textContent, layer.querySelectorAll("a, tspan[style*=bold]").length];
}"""


def test_port_map_shows_host_strings_as_text(report: _Loaded) -> None:
    page = report.page
    assert HOSTILE_HOST in page.locator("#port-map-plot .ytick text").all_text_contents()
    text, markup = page.evaluate(_HOVER, ["in-use", "6666"])
    assert HOSTILE_HOST in text
    assert HOSTILE_PROCESS in text
    # Plotly reads <b>, <a> and entities in labels; a process name must come out as typed.
    text, markup = page.evaluate(_HOVER, ["in-use", "PID 7777"])
    assert HOSTILE_NAT in text
    assert markup == 1  # the host name, which the report itself sets in bold; no link
    report.assert_quiet()


def test_table_sorts_numerically_both_ways(report: _Loaded) -> None:
    page = report.page
    before = _numbers(_column(page, "hosts-table", "Failing ports"))
    numbers = sorted(value for value in before if value is not None)
    # Text order would differ, so a sort that compares strings cannot pass.
    assert sorted(numbers, key=str) != numbers
    header = page.locator("#hosts-table thead th", has_text="Failing ports")
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert _numbers(_column(page, "hosts-table", "Failing ports")) == [*numbers, None]
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "descending"
    assert _numbers(_column(page, "hosts-table", "Failing ports")) == [*numbers[::-1], None]
    report.assert_quiet()


def test_table_filters_as_you_type(report: _Loaded, data: ReportData) -> None:
    page = report.page
    rows = page.locator("#hosts-table tbody tr:visible")
    hosts = data.hosts.host.tolist()
    expected = sum("build" in host for host in hosts)
    assert 0 < expected < len(hosts) == rows.count()
    box = page.locator('input[data-filter-target="hosts-table"]')
    box.fill("BUILD")
    assert rows.count() == expected
    shown = rows.locator("th .host-name").all_text_contents()
    assert sorted(shown) == sorted(host for host in hosts if "build" in host)
    assert page.locator('[data-count-for="hosts-table"]').text_content() == (
        f"{expected} of {len(hosts)} shown"
    )
    box.fill("")
    assert rows.count() == len(hosts)
    report.assert_quiet()


def test_hostile_strings_show_as_text_and_never_run(report: _Loaded, data: ReportData) -> None:
    page = report.page
    host = page.get_by_text(HOSTILE_HOST, exact=True)
    assert host.count() >= 5
    assert host.first.is_visible()
    remedies = data.remediation.set_index(["host", "action"])
    why = str(remedies.loc[(HOSTILE_HOST, "stop-process"), "why"])
    assert why.startswith(f"{HOSTILE_PROCESS} (PID 6666) listens on TCP 8080:")
    assert page.get_by_text(why, exact=True).count() == 1
    installed = KB_INSTALLED.replace("T", " ")[:16]
    assert page.get_by_text(f"KB5036893 — {HOSTILE_TITLE} ({installed})", exact=True).count() >= 1
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 3
    # Opening the cell of a port a program holds shows the process in its evidence, as text.
    page.locator("#wanted-table td.cell-inuse summary").first.click()
    evidence = page.get_by_text(f"listener {HOSTILE_PROCESS} (PID 6666)", exact=False).first
    assert evidence.is_visible()
    report.assert_quiet()


def test_copy_button_copies_the_command_as_typed(report: _Loaded, data: ReportData) -> None:
    page = report.page
    commands = data.remediation.set_index(["host", "action"]).loc[
        (HOSTILE_HOST, "stop-process"), "commands"
    ]
    assert commands == 'tasklist /v /fi "PID eq 6666"\nnetstat -ano -p tcp | findstr :8080'
    block = page.locator(".command", has_text='tasklist /v /fi "PID eq 6666"')
    block.locator("button.copy").click()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == commands
    assert block.locator("button.copy").text_content() == "Copied"
    report.assert_quiet()


def test_empty_report_loads_quietly(context: BrowserContext, tmp_path: Path) -> None:
    path = tmp_path / "empty.html"
    write_report(report_of(tmp_path / "store.db", None, ()), path)
    loaded = _open(context, path)
    assert loaded.page.get_by_text("Nothing to show", exact=False).count() >= 8
    assert loaded.page.locator(".js-plotly-plot").count() == 0
    loaded.assert_quiet()
    loaded.page.close()


def test_port_map_draws_a_thousand_hosts(context: BrowserContext, tmp_path: Path) -> None:
    path = tmp_path / "big.html"
    data = report_of(tmp_path / "store.db", big_fleet)
    assert len(data.hosts) == 1000
    write_report(data, path)
    loaded = _open(context, path)
    loaded.page.locator("#port-map-plot").scroll_into_view_if_needed()
    plot = loaded.page.locator("#port-map-plot.js-plotly-plot")
    plot.locator(".main-svg").first.wait_for()
    points = plot.evaluate("node => node.data.reduce((sum, trace) => sum + trace.x.length, 0)")
    # Three points (start, end, gap) per range, and one dynamic band per host.
    assert points == 3 * (len(data.port_map) + len(data.hosts))
    categories = plot.evaluate("node => node._fullLayout.yaxis._categories.length")
    assert categories == 1000
    # A hundred hosts have 50051 reserved: Needs attention shows a dozen, and says how many more.
    reserved = int((data.wanted.status == "reserved").sum())
    assert reserved >= 50
    group = loaded.page.locator("#attention-reserved")
    assert group.locator("li").count() == ATTENTION_LIMIT
    assert f"…and {reserved - ATTENTION_LIMIT} more" in str(group.text_content())
    loaded.assert_quiet()
    loaded.page.close()


VIEWPORTS = ((1366, 768), (1920, 1080))
# Everything that could push the page, or a box inside it, wider than the window.
_SIDEWAYS = """() => {
  const page = document.scrollingElement;
  const boxes = [...document.querySelectorAll(".table-wrap, pre, section")]
    .filter(node => node.scrollWidth > node.clientWidth + 1)
    .map(node => (node.id || node.querySelector("table")?.id || node.tagName)
                 + ` ${node.scrollWidth}>${node.clientWidth}`);
  return {page: [page.scrollWidth, page.clientWidth], boxes};
}"""


_IN_WINDOW = """id => {
  const box = document.getElementById(id).getBoundingClientRect();
  return box.bottom > 0 && box.top < window.innerHeight && box.height > 0;
}"""


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _at_size(
    browser: Browser, path: Path, width: int, height: int
) -> tuple[BrowserContext, _Loaded]:
    context = browser.new_context(viewport={"width": width, "height": height})
    return context, _open(context, path)


@pytest.mark.parametrize(("width", "height"), VIEWPORTS)
def test_the_page_reads_without_sideways_scrolling(
    browser: Browser, report: _Loaded, screenshots: Path, width: int, height: int
) -> None:
    context, loaded = _at_size(
        browser, Path(report.page.url.removeprefix("file://")), width, height
    )
    page = loaded.page
    _draw_charts(page)
    # Lay every section out, not only those near the window, so each box is measured.
    page.add_style_tag(content="main > section { content-visibility: visible !important; }")
    page.screenshot(path=screenshots / f"report-{width}x{height}.png")
    page.screenshot(path=screenshots / f"report-{width}x{height}-full.png", full_page=True)
    measured = page.evaluate(_SIDEWAYS)
    assert measured["page"][0] <= measured["page"][1], measured
    assert measured["boxes"] == []
    # Needs attention is the first section, and it starts on the first screen.
    assert page.locator("main > section").first.get_attribute("id") == "attention"
    assert page.locator("main > section h2").first.text_content() == "Needs attention"
    top = page.locator("#attention").evaluate("node => node.getBoundingClientRect().top")
    assert 0 <= top < height / 2
    assert page.locator("#attention .attention__line").first.is_visible()
    loaded.assert_quiet()
    context.close()


def test_every_summary_link_lands_on_its_rows(browser: Browser, report: _Loaded) -> None:
    context, loaded = _at_size(browser, Path(report.page.url.removeprefix("file://")), 1366, 768)
    page = loaded.page
    links = page.locator("#attention a[href^='#'], #summary .cards a[href^='#']")
    hrefs = links.evaluate_all("nodes => nodes.map(node => node.getAttribute('href'))")
    # Reserved ports, hosts not seen lately and at-risk ports, their evidence, causes and fixes.
    assert len(hrefs) >= 20
    assert {"#attention-reserved", "#attention-stale", "#attention-at-risk"} <= set(hrefs)
    for index, href in enumerate(hrefs):
        target = page.locator(f"[id='{href[1:]}']")
        assert target.count() == 1, href
        tag = target.evaluate("node => node.tagName")
        if tag == "TABLE":
            assert target.locator("tbody tr").count() > 0, href
        elif tag == "DIV":  # a group of needs-attention lines
            assert target.locator("li").count() > 0, href
        else:
            assert tag in ("TR", "TD", "ARTICLE"), (href, tag)
        links.nth(index).click()
        assert page.evaluate("location.hash") == href
        # The page scrolls smoothly: wait until the target is in the window (or time out).
        page.wait_for_function(_IN_WINDOW, arg=href[1:], timeout=5000)
    # A reserved port's line lands on its cell of the wanted-ports matrix, which says so.
    cell = page.locator("#attention-reserved a.line__evidence").first.get_attribute("href")
    assert page.locator(f"[id='{str(cell)[1:]}']").get_attribute("data-sort") == "reserved"
    loaded.assert_quiet()
    context.close()


@pytest.mark.parametrize(("width", "height"), VIEWPORTS)
def test_an_empty_store_renders_and_says_so(
    browser: Browser, tmp_path: Path, screenshots: Path, width: int, height: int
) -> None:
    path = tmp_path / "empty.html"
    write_report(report_of(tmp_path / "store.db", None), path)
    context, loaded = _at_size(browser, path, width, height)
    page = loaded.page
    page.add_style_tag(content="main > section { content-visibility: visible !important; }")
    page.screenshot(path=screenshots / f"empty-{width}x{height}.png")
    assert page.locator("main > section").first.get_attribute("id") == "attention"
    banner = page.locator(".banner")
    assert banner.is_visible()
    assert "Nothing has been collected into this database yet" in str(banner.text_content())
    measured = page.evaluate(_SIDEWAYS)
    assert measured["page"][0] <= measured["page"][1] and measured["boxes"] == []
    loaded.assert_quiet()
    context.close()


def test_last_nights_changes_link_to_their_cells_and_events(
    browser: Browser, tmp_path: Path
) -> None:
    path = tmp_path / "flips.html"
    write_report(report_of(tmp_path / "store.db", fill_flips, (FLIP_PORT,)), path)
    context, loaded = _at_size(browser, path, 1366, 768)
    page = loaded.page
    landed = {}
    for kind in ("newly-blocked", "newly-freed", "cleared", "ranges"):
        link = page.locator(f"#attention-{kind} a.line__evidence").first
        href = str(link.get_attribute("href"))
        target = page.locator(f"[id='{href[1:]}']")
        assert target.count() == 1, href
        link.click()
        page.wait_for_function(_IN_WINDOW, arg=href[1:], timeout=5000)
        landed[kind] = target.evaluate("node => [node.tagName, node.dataset.sort || '']")
    # A port's line lands on its cell, which shows the status the line tells; a range line
    # lands on the timeline row of the change.
    assert landed["newly-blocked"] == ["TD", "reserved"]
    assert landed["newly-freed"] == ["TD", "free"]
    assert landed["cleared"] == ["TD", "free"]
    assert landed["ranges"][0] == "TR"
    loaded.assert_quiet()
    context.close()


def test_timeline_rows_are_written_from_the_packed_details_as_text(
    report: _Loaded, data: ReportData
) -> None:
    page = report.page
    rows = page.locator("#events-table tbody tr")
    assert rows.count() == len(data.events) > 0
    ids = rows.evaluate_all("rows => rows.map(row => row.id)")
    assert sorted(ids) == sorted(f"event-{event}" for event in data.events.event_id)
    # A cause's words and a host's name come out as typed, never as markup.
    installed = KB_INSTALLED.replace("T", " ")[:16]
    cause = page.locator("#events-table li", has_text=f"KB5036893 — {HOSTILE_TITLE}")
    assert cause.count() >= 1
    assert cause.first.text_content() == f"KB5036893 — {HOSTILE_TITLE} ({installed})"
    assert HOSTILE_HOST in rows.locator("th").all_text_contents()
    written = "#events-table img, #events-table script, #events-table b, #events-table x-preview"
    assert page.locator(written).count() == 0
    # Sorting works on the data: ports reserved, as numbers, empty ones last.
    header = page.locator("#events-table thead th", has_text="Ports reserved")
    header.locator("button").click()
    ports = _numbers(_column(page, "events-table", "Ports reserved"))
    assert ports == sorted(ports, key=lambda value: (value is None, value))
    report.assert_quiet()


def test_timeline_writes_a_page_of_rows_then_more_and_filters_them_all(
    context: BrowserContext, tmp_path: Path
) -> None:
    data = report_of(tmp_path / "store.db", many_changes)
    assert len(data.events) == 220
    path = tmp_path / "moves.html"
    write_report(data, path)
    loaded = _open(context, path)
    page = loaded.page
    rows = page.locator("#events-table tbody tr")
    counter = page.locator('[data-count-for="events-table"]')
    assert rows.count() == 200
    assert counter.text_content() == "200 of 220 shown"
    more = page.locator('[data-more-for="events-table"]')
    assert more.text_content() == "Show 20 more (20 not shown)"
    more.click()
    assert rows.count() == 220 and counter.text_content() == "220 shown"
    assert more.is_hidden()
    # The filter looks in every change, written or not.
    box = page.locator('input[data-filter-target="events-table"]')
    box.fill("mover-007")
    assert rows.count() == 2 and counter.text_content() == "2 of 220 shown"
    assert set(rows.locator("th").all_text_contents()) == {"mover-007"}
    box.fill("")
    # An address naming a change lands on its row, written for it when it was not.
    oldest = int(data.events.sort_values("at").event_id.iloc[0])
    page.evaluate(f"location.hash = '#event-{oldest}'")
    page.wait_for_function(_IN_WINDOW, arg=f"event-{oldest}", timeout=5000)
    loaded.assert_quiet()
    loaded.page.close()
