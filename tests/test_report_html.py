"""The HTML report as text: self-contained, every section there, every host string escaped.

The report is the analysis of a store filled from probe documents and the seed
(``tests.report_store``): the page shows what the analysis gives, hostile strings included.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import replace
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape

from collector.store.database import Store
from reports.analysis import build_report_data
from reports.html import render_report, write_report
from reports.model import ReportData
from reports.payload import MEDIA_TYPE, unpack_text
from tests.report_store import (
    HOSTILE_FAULT,
    HOSTILE_HOST,
    HOSTILE_NAT,
    HOSTILE_NOTE,
    HOSTILE_PROCESS,
    HOSTILE_TITLE,
    KB_INSTALLED,
    NOW,
    WANTED_PORTS,
    fill_report_store,
    report_of,
)

SECTION_IDS = (
    "attention",
    "summary",
    "freshness",
    "wanted",
    "safe-ports",
    "port-map",
    "timeline",
    "correlation",
    "unexplained",
    "remediation",
    "fixes",
)
# Attributes through which a page can load or send something.
URL_ATTRIBUTES = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background"}


class _Page(HTMLParser):
    """Collect the elements, the script blocks and the text of a page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self.text: list[str] = []
        self._open: tuple[str, dict[str, str | None]] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag in ("script", "style"):
            self._open = (tag, attributes)

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[0] == tag:
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open and self._open[0] == "script":
            self.scripts.append((self._open[1], data))
        elif self._open and self._open[0] == "style":
            self.styles.append(data)
        else:
            self.text.append(data)

    def ids(self) -> set[str]:
        return {attrs["id"] or "" for _, attrs in self.tags if "id" in attrs}

    def block(self, name: str) -> str | None:
        """Return the text of the packed block ``name``, None when the page has none."""
        blocks = [text for attrs, text in self.scripts if attrs.get("id") == name]
        assert len(blocks) <= 1
        return unpack_text(blocks[0]) if blocks else None

    def json_blob(self) -> object:
        text = self.block("report-data")
        assert text is not None
        return json.loads(text, parse_constant=_refuse)


def _refuse(name: str) -> object:
    raise AssertionError(f"JSON holds {name}, which JSON.parse refuses")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> ReportData:
    return report_of(tmp_path_factory.mktemp("report") / "store.db", fill_report_store)


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> ReportData:
    return report_of(tmp_path_factory.mktemp("empty") / "store.db", None, ())


@pytest.fixture(scope="module")
def html(data: ReportData) -> str:
    return render_report(data)


@pytest.fixture(scope="module")
def page(html: str) -> _Page:
    return _Page(html)


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    return str(get_plotlyjs())


def test_page_loads_nothing_from_elsewhere(page: _Page) -> None:
    links = [
        (tag, name, value)
        for tag, attrs in page.tags
        for name, value in attrs.items()
        if name in URL_ATTRIBUTES
    ]
    assert links, "the page has no links at all: the check below would prove nothing"
    for tag, name, value in links:
        assert value is not None
        assert value.startswith(("#", "data:")), f"<{tag} {name}={value!r}> leaves the page"
    assert not [tag for tag, _ in page.tags if tag in ("iframe", "object", "embed", "base")]
    assert not [attrs for tag, attrs in page.tags if tag == "link" and attrs.get("rel") != "icon"]
    for style in page.styles:
        assert "@import" not in style
        assert not re.search(r"url\(\s*['\"]?(?!data:|#)", style)


def test_plotly_travels_packed_exactly_once(html: str, page: _Page) -> None:
    plotly_js = _plotly_js()
    assert len(plotly_js) > 1_000_000
    assert plotly_js[:200] not in html  # packed: a third of its size, inflated when drawn
    assert page.block("plotly-code") == plotly_js
    packed = [attrs for attrs, _ in page.scripts if attrs.get("type") == MEDIA_TYPE]
    assert [attrs.get("id") for attrs in packed] == ["report-data", "plotly-code"]
    runnable = [text for attrs, text in page.scripts if "type" not in attrs]
    assert len(runnable) == 1  # the report's own script


def test_policy_admits_exactly_the_inline_scripts(page: _Page) -> None:
    policies = [
        attrs["content"] or ""
        for tag, attrs in page.tags
        if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"
    ]
    assert len(policies) == 1
    policy = policies[0]
    assert "default-src 'none'" in policy
    assert "connect-src 'none'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    for attrs, text in page.scripts:
        if "type" in attrs:
            continue
        digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()
        assert f"'sha256-{digest}'" in policy


def test_page_has_every_section_and_contents_links_to_them(page: _Page) -> None:
    ids = page.ids()
    for section in SECTION_IDS:
        assert section in ids
    sections = [attrs.get("id") for tag, attrs in page.tags if tag == "section"]
    assert sections == list(SECTION_IDS)
    toc = {attrs["href"] for tag, attrs in page.tags if tag == "a" and attrs.get("href")}
    assert {f"#{section}" for section in SECTION_IDS} <= toc


def test_header_says_what_when_and_from_where(data: ReportData, page: _Page) -> None:
    text = " ".join(page.text)
    assert "portfleet" in text
    assert "2024-05-14 06:00 UTC" in text
    assert "store.db" in data.database and data.database in text


@pytest.mark.parametrize(
    "hostile", [HOSTILE_HOST, HOSTILE_PROCESS, HOSTILE_TITLE, HOSTILE_FAULT, HOSTILE_NOTE]
)
def test_host_strings_are_escaped(html: str, page: _Page, hostile: str) -> None:
    assert hostile not in html
    assert str(escape(hostile)) in html
    # The escaped form reads back as the original text, not as markup.
    assert any(hostile in chunk for chunk in page.text)


def test_hostile_markup_creates_no_element(html: str, page: _Page) -> None:
    tags = [tag for tag, _ in page.tags]
    assert "img" not in tags
    assert tags.count("script") == 3
    assert html.lower().count("</script") == 3
    assert not [attrs for _, attrs in page.tags if any(name.startswith("on") for name in attrs)]


def test_details_are_packed_so_no_string_can_close_their_block(
    data: ReportData, page: _Page
) -> None:
    for attrs, block in page.scripts:
        if attrs.get("type") == MEDIA_TYPE:
            assert re.fullmatch(r"[A-Za-z0-9+/=]*", block)
    details = page.json_blob()
    assert isinstance(details, dict)
    assert HOSTILE_HOST in details["hosts"]
    assert f"8080 held by {HOSTILE_PROCESS} (PID 6666)" in details["port_map"]["label"]
    # Each cause's words once; an event points at them, and at its host, by position.
    events, causes = details["events"], details["causes"]
    listed = [causes[cause] for listed in events["causes"] for cause in listed]
    installed = KB_INSTALLED.replace("T", " ")[:16]
    assert f"KB5036893 — {HOSTILE_TITLE} ({installed})" in listed
    assert len(set(causes)) == len(causes)
    assert sorted(events["id"]) == sorted(data.events.event_id)
    assert {details["hosts"][host] for host in events["host"]} == set(data.events.host)
    assert events["at"] == sorted(events["at"], reverse=True)  # newest first
    assert f"9000 held by {HOSTILE_NAT} (PID 7777)" in details["port_map"]["label"]


def test_blocked_wanted_cell_carries_reason_and_evidence(data: ReportData, page: _Page) -> None:
    def titles(kind: str) -> list[str]:
        return [
            attrs.get("title") or ""
            for tag, attrs in page.tags
            if tag == "td" and kind in (attrs.get("class") or "").split()
        ]

    # Reserved cells are red; a port another program holds is told apart from them.
    reserved, held = titles("cell-blocked"), titles("cell-inuse")
    wanted = data.wanted
    blocked = wanted.status.isin(["reserved", "blocked"])
    in_use = (wanted.status == "in-use") & ~wanted.serving
    # dev-ben's 8080 lies in an administered range: it binds, so it is not among them.
    assert (len(reserved), len(held)) == (blocked.sum(), in_use.sum()) == (3, 6)
    assert any("50000–50059" in title and "excluded range" in title for title in reserved)
    assert any(HOSTILE_PROCESS in title and "PID 6666" in title for title in held)


def test_causes_seen_on_too_few_hosts_are_not_ranked(html: str) -> None:
    ranked = html.split('id="correlation-table"', 1)[1].split("</table>", 1)[0]
    too_few = html.split('id="too-few-table"', 1)[1].split("</table>", 1)[0]
    assert "BIOS update" not in ranked
    assert "BIOS update" in too_few
    assert "too few hosts" in too_few
    assert "Docker 4.30.0" in ranked
    assert ">OR ∞<" in ranked  # the infinite odds ratio of KB5036893: no host without it grew


def test_remediation_commands_sit_in_pre_with_a_copy_button(data: ReportData, page: _Page) -> None:
    tags = [tag for tag, _ in page.tags]
    assert tags.count("pre") == len(data.remediation) > 10
    copies = [attrs for tag, attrs in page.tags if tag == "button" and attrs.get("class") == "copy"]
    assert len(copies) == len(data.remediation)
    assert all(attrs.get("type") == "button" for attrs in copies)
    text = "".join(page.text)
    assert 'tasklist /v /fi "PID eq 6666"\nnetstat -ano -p tcp | findstr :8080' in text


def test_empty_report_says_there_is_nothing_to_show(empty: ReportData) -> None:
    html = render_report(empty)
    page = _Page(html)
    assert [attrs.get("id") for tag, attrs in page.tags if tag == "section"] == list(SECTION_IDS)
    text = " ".join(page.text)
    assert text.count("Nothing to show") >= len(SECTION_IDS)
    assert not [tag for tag, _ in page.tags if tag == "tbody"]
    assert page.block("plotly-code") is None  # no chart to draw, no Plotly to carry
    assert page.json_blob() == {
        "hosts": [],
        "wanted_ports": [],
        "port_map": {"host": [], "start": [], "end": [], "kind": [], "label": []},
        "dynamic": {"host": [], "start": [], "end": []},
        "events": {
            name: []
            for name in (
                *("id", "host", "kind", "at", "previous_at", "protocol", "start", "end"),
                *("previous_start", "previous_end", "ports", "causes"),
            )
        },
        "causes": [],
    }


def test_gaps_render_as_plain_text(data: ReportData, page: _Page) -> None:
    # A host never reached, one without excluded ranges, a cause with no lag and no rank.
    assert data.hosts.snapshot_id.isna().any() and data.hosts.reserved_ports.isna().any()
    assert data.correlation.median_lag_days.isna().any() and data.correlation["rank"].isna().any()
    text = " ".join(page.text)
    for word in ("nan", "NaN", "NaT", "<NA>", "None", "inf"):
        assert not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text), word
    assert page.json_blob()


def test_frames_missing_a_column_are_refused(data: ReportData) -> None:
    with pytest.raises(ValueError, match="port_map"):
        render_report(replace(data, port_map=data.port_map.drop(columns=["kind"])))


def test_frames_of_another_kind_are_refused(data: ReportData) -> None:
    # Counts that became floats, causes that became text: the page would have to guess.
    hosts = data.hosts.astype({"failing_ports": "float64"})
    with pytest.raises(ValueError, match=r"'hosts' has failing_ports \(float64, not nullable int"):
        render_report(replace(data, hosts=hosts))
    events = data.events.assign(causes=data.events.causes.map(str))
    with pytest.raises(ValueError, match="'events' has causes"):
        render_report(replace(data, events=events))


def test_write_report_writes_the_rendered_page(empty: ReportData, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    write_report(empty, path)
    assert path.read_text(encoding="utf-8") == render_report(empty)


def test_a_store_not_collected_lately_says_so_at_the_top(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store.open(url) as store:
        fill_report_store(store)
    with Store.reader(url) as store:
        late = build_report_data(store, WANTED_PORTS, NOW + timedelta(days=30), 3.0)
        fresh = build_report_data(store, WANTED_PORTS, NOW, 3.0)
    page = _Page(render_report(late))
    banner = [attrs for tag, attrs in page.tags if attrs.get("class") == "banner"]
    assert len(banner) == 1
    text = " ".join(page.text)
    assert "The newest snapshot in this database was taken on 2024-05-14 03:00 UTC" in text
    assert "30 days before this report (report.stale_days is 3)" in text
    assert 'class="banner"' not in render_report(fresh)
