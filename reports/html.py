"""The self-contained HTML report: one file, no network, every host string escaped.

It renders the frames ``reports.model`` declares, as the analysis gives them, and nothing else:
a value of a kind the model does not declare is an error, not something to guess at.

The page is rendered by Jinja2 with autoescape on for every template. What grows with hosts and
nights (the timeline's rows, the charts' data) is not rendered up front: it travels packed
(``reports.payload``) and the page's script builds it when it is opened, writing text with
``textContent`` only. Plotly's JavaScript travels packed too and runs when a chart comes into
view. The report's script and its stylesheet are inlined; a Content Security Policy admits
exactly that script (by hash) and the evaluation of the packed Plotly, and no network at all.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TypeAlias, cast

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from collector.diagnosis import Diagnosis, PortStatus
from collector.windows import DYNAMIC_MOVE_CAVEATS
from reports.attention import KINDS
from reports.model import COLUMNS, ReportData
from reports.odds import MIN_NIGHTS, Odds
from reports.payload import MEDIA_TYPE, details, pack, pack_text
from reports.safeports import SafePorts

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
Row: TypeAlias = dict[str, JsonValue]

# (id, title) of every section, in page order; the table of contents is built from it.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("attention", "Needs attention"),
    ("summary", "Fleet summary"),
    ("freshness", "Data freshness"),
    ("wanted", "Wanted ports"),
    ("safe-ports", "Safe ports and risk"),
    ("port-map", "Port map"),
    ("timeline", "Timeline"),
    ("correlation", "What changed before the ranges moved"),
    ("unexplained", "Unexplained failures"),
    ("remediation", "Remediation"),
    ("fixes", "Fixes"),
)

# Lines of a needs-attention group shown before "and N more"; safe ranges listed.
ATTENTION_LIMIT = 12
SAFE_SHOWN = 12

# How each wanted-port status is shown; an in-use cell is fine when its own service holds it.
_CELL_KINDS = {
    PortStatus.FREE: "ok",
    PortStatus.AT_RISK: "risk",
    PortStatus.IN_USE: "inuse",
    PortStatus.RESERVED: "blocked",
    PortStatus.BLOCKED: "blocked",
    PortStatus.UNKNOWN: "unknown",
}
# Failure classes that name their cause; the others are listed under unexplained failures.
_EXPLAINED = (Diagnosis.RESERVED, Diagnosis.IN_USE)


def render_report(data: ReportData) -> str:
    """Render ``data`` as one self-contained HTML page."""
    data.validate()
    report_js = _inline_code(_static_text("report.js"), "script")
    css = _inline_code(_static_text("report.css"), "style")
    # Each frame becomes records once; the sections below share them.
    host_rows = _sorted(_records(data.hosts, "hosts"), "host")
    hosts = [str(row["host"]) for row in host_rows]
    wanted_rows = _records(data.wanted, "wanted")
    correlation_rows = _records(data.correlation, "correlation")
    unexplained = data.failures[~data.failures.classification.isin(_EXPLAINED)]
    # Anchors are made of positions, never of host strings: a host names itself.
    slugs = {host: f"h{index}" for index, host in enumerate(hosts)}
    failed_attempts = _records(data.failed_attempts, "failed_attempts")
    for index, row in enumerate(failed_attempts):
        row["anchor"] = f"attempt-{index}"
    for row in host_rows:
        row["slug"] = slugs[str(row["host"])]
    attention = _attention(data, slugs, failed_attempts)
    context: dict[str, object] = {
        "generated_at": _plain(data.generated_at),
        "database": data.database,
        "sections": SECTIONS,
        "wanted_ports": list(data.wanted_ports),
        "wanted_source": data.wanted_source,
        "banner": _banner(data),
        "attention": attention,
        "slugs": slugs,
        "cards": _summary_cards(data, host_rows, wanted_rows),
        "hosts": host_rows,
        "stale_hosts": [row for row in host_rows if row["stale"]],
        "failed_attempts": failed_attempts,
        "safe": _safe_ports(data),
        "odds": _odds(data),
        "min_nights": MIN_NIGHTS,
        "matrix": _wanted_matrix(data, hosts, wanted_rows),
        "has_port_map": not data.port_map.empty,
        "events": len(data.events),
        # The correlation lists ranked causes first, best first.
        "ranked": [row for row in correlation_rows if row["enough_hosts"]],
        "too_few": [row for row in correlation_rows if not row["enough_hosts"]],
        "unexplained": _unexplained(unexplained, host_rows),
        "remediation": _remediation(data.remediation),
        "fixes": [
            record.to_json()
            | {"host": record.host, "ports": record.ports(), "summary": record.describe()}
            for record in data.fixes
        ],
        "packed_type": MEDIA_TYPE,
        "details": Markup(pack(_details(data, hosts))),
        "plotly": Markup(_packed_plotly()) if _has_charts(data) else None,
        "css": Markup(css),
        "report_js": Markup(report_js),
        "csp": _content_policy([report_js]),
    }
    return _environment().get_template("page.j2").render(context)


def write_report(data: ReportData, path: Path) -> None:
    """Write the report of ``data`` to ``path`` as UTF-8."""
    path.write_text(render_report(data), encoding="utf-8", newline="\n")


def _plain(value: object) -> JsonValue:
    """Turn one value of a declared kind into JSON-safe Python (NaN, NaT, NA -> None)."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isinf(number):
            # JSON has no infinity; JavaScript's Number() reads these back.
            return "Infinity" if number > 0 else "-Infinity"
        return number
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    raise TypeError(f"the report has no way to show {type(value).__name__} {value!r}")


def _records(frame: pd.DataFrame, name: str) -> list[Row]:
    """Return the rows of a frame's declared columns as plain values."""
    columns = list(COLUMNS[name])
    values = [_column(frame[column]) for column in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def _column(values: pd.Series) -> list[JsonValue]:
    """Return one column as ``_plain`` values, a whole column at once where its dtype allows.

    Value by value, the large frames of a 10,000-host report took seconds.
    """
    kind = values.dtype
    if kind == np.int64 or kind == np.bool_:
        return cast(list[JsonValue], values.tolist())
    if isinstance(kind, pd.DatetimeTZDtype):
        written = values.dt.tz_convert(UTC).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        return [None if text is None or pd.isna(text) else text for text in written.tolist()]
    return [_plain(value) for value in values.tolist()]


def _sorted(rows: list[Row], key: str) -> list[Row]:
    return sorted(rows, key=lambda row: str(row[key]).casefold())


def _status_kind(status: JsonValue, serving: JsonValue) -> str:
    if status == PortStatus.IN_USE and serving:
        return "ok"
    return _CELL_KINDS[PortStatus(str(status))]


def _summary_cards(
    data: ReportData, hosts: list[Row], wanted: list[Row]
) -> list[tuple[str, str, str, str | None]]:
    """Return (label, figure, note, link) per card; a figure links to the rows behind it."""
    reserved = [row for row in wanted if row["status"] == PortStatus.RESERVED]
    held = [row for row in wanted if _status_kind(row["status"], row["serving"]) == "inuse"]
    classes = data.failures.groupby("classification")["ports"].sum()
    failing = int(data.failures["ports"].sum())
    probable, unexplained = (int(classes.get(kind, 0)) for kind in
                             (Diagnosis.PROBABLY_RESERVED, Diagnosis.UNEXPLAINED))  # fmt: skip
    stale = sum(bool(row["stale"]) for row in hosts)

    def link(count: int, target: str) -> str | None:
        return target if count else None

    return [
        ("Hosts", str(len(hosts)), f"{sum(row['snapshot_id'] is not None for row in hosts)} seen",
         link(len(hosts), "#hosts-table")),
        ("Not seen lately", str(stale), "see freshness", link(stale, "#stale-table")),
        (
            "Wanted ports reserved",
            str(len(reserved)),
            f"on {_hosts(len({row['host'] for row in reserved}))}; "
            f"{len(held)} more in use by another program",
            link(len(reserved), "#attention-reserved"),
        ),
        (
            "Failing ports",
            str(failing),
            f"{probable} probably reserved, {unexplained} unexplained",
            link(failing, "#hosts-table"),
        ),
        ("Range changes", str(len(data.events)), f"on {_hosts(data.events.host.nunique())}",
         link(len(data.events), "#events-table")),
        ("Failed attempts", str(len(data.failed_attempts)), "recent collections",
         link(len(data.failed_attempts), "#attempts-table")),
    ]  # fmt: skip


def _attention(data: ReportData, slugs: Mapping[str, str], failed_attempts: list[Row]) -> list[Row]:
    """Group the needs-attention lines, each with the anchor of the rows behind it."""
    newest_failure: dict[str, str] = {}
    for row in failed_attempts:  # newest first
        if row["host"] is not None:
            newest_failure.setdefault(str(row["host"]), str(row["anchor"]))
    lines = _records(data.attention, "attention")
    groups: list[Row] = []
    for kind, title, one, many in KINDS:
        mine = [line for line in lines if line["kind"] == kind]
        if not mine:
            continue
        for line in mine:
            line["href"] = _evidence_href(line, slugs, newest_failure)
            line["event_href"] = None if line["event_id"] is None else f"#event-{line['event_id']}"
            host = line["host"]
            line["fix_href"] = f"#fix-{slugs[str(host)]}" if line["fix"] else None
        shown: list[JsonValue] = list(mine[:ATTENTION_LIMIT])
        figure = one if len(mine) == 1 else many
        groups.append({"kind": kind, "title": title, "figure": figure, "count": len(mine),
                       "lines": shown,
                       "more": len(mine) - len(shown)})  # fmt: skip
    return groups


def _evidence_href(line: Row, slugs: Mapping[str, str], failures: Mapping[str, str]) -> str:
    """Return where a needs-attention line's evidence is: a cell, a row, the odds."""
    kind, host, port = line["kind"], line["host"], line["port"]
    if kind == "at-risk":
        return f"#odds-{port}"
    if kind == "ranges":
        return f"#event-{line['event_id']}"
    slug = slugs[str(host)]
    if kind == "stale":
        return f"#stale-{slug}"
    if kind == "failed":
        return f"#{failures[str(host)]}" if str(host) in failures else f"#host-{slug}"
    return f"#wanted-{slug}-{port}"


def _banner(data: ReportData) -> str | None:
    """Say at the top when the store holds nothing yet, or nothing recent."""
    taken = data.hosts["taken_at"].dropna()
    if taken.empty:
        return (
            "Nothing has been collected into this database yet. Start with portfleet collect "
            "(the hosts in config.yaml), portfleet import FILE… (documents a scheduled task "
            "wrote), or portfleet demo to see a simulated fleet."
        )
    newest = taken.max()
    age = (pd.Timestamp(data.generated_at) - newest).total_seconds() / 86400
    if age <= data.stale_days:
        return None
    return (
        f"The newest snapshot in this database was taken on {newest:%Y-%m-%d %H:%M} UTC, "
        f"{age:.0f} days before this report (report.stale_days is {data.stale_days:g}): "
        "everything below may be out of date. Collect again before acting on it."
    )


def _safe_ports(data: ReportData) -> Row | None:
    """Return the safe ranges and the dynamic-range moves, as the page lists them."""
    safe = cast("SafePorts | None", data.safe_ports)
    if safe is None:
        return None
    moves: dict[tuple[str, str, str], Row] = {}
    # Ports and hosts of each move, in first-seen order: dicts, since a move can name thousands.
    named: dict[tuple[str, str, str], tuple[dict[JsonValue, None], dict[JsonValue, None]]] = {}
    for move in safe.moves:
        key = (str(move.current), str(move.proposed), move.family)
        if key not in moves:
            moves[key] = {
                "family": move.family, "current": str(move.current),
                "proposed": None if move.proposed is None else str(move.proposed),
                "commands": "\n".join(move.commands()),
            }  # fmt: skip
            named[key] = ({}, {})
        ports, hosts = named[key]
        ports.setdefault(move.port)
        hosts.setdefault(move.host)
    for key, (ports, hosts) in named.items():
        moves[key] |= {"ports": list(ports), "hosts": list(hosts)}
    return {
        "ranges": [
            {"start": r.start, "end": r.end, "ports": r.ports} for r in safe.ranges[:SAFE_SHOWN]
        ],
        "more": max(0, len(safe.ranges) - SAFE_SHOWN),
        "hosts": len(safe.hosts),
        "unproven": list(safe.unproven),
        "host_nights": safe.host_nights,
        "nights": safe.nights,
        "first": _plain(safe.first),
        "last": _plain(safe.last),
        "moves": list(moves.values()),
        "caveats": list(DYNAMIC_MOVE_CAVEATS),
    }


def _odds(data: ReportData) -> list[Row]:
    """Return one row per at-risk wanted port: its odds over each window."""
    by_port: dict[int, list[JsonValue]] = {}
    for odds in cast("tuple[Odds, ...]", data.odds):
        by_port.setdefault(odds.port, []).append(
            {"days": odds.days, "nights": odds.nights, "reserved": odds.reserved,
             "rate": odds.rate, "text": odds.describe()}
        )  # fmt: skip
    at_risk = data.wanted[data.wanted["status"] == PortStatus.AT_RISK]
    hosts = at_risk.groupby("port")["host"].nunique()
    return [
        {"port": port, "hosts": int(hosts.get(port, 0)), "windows": windows}
        for port, windows in sorted(by_port.items())
    ]


def _hosts(count: int) -> str:
    return f"{count} host" if count == 1 else f"{count} hosts"


def _wanted_matrix(data: ReportData, hosts: list[str], wanted: list[Row]) -> dict[str, object]:
    # The analysis gives every host a cell for every wanted port (unknown where never seen).
    cells = {(row["host"], row["port"]): row for row in wanted}
    for row in wanted:
        row["kind"] = _status_kind(row["status"], row["serving"])
    ports = list(data.wanted_ports)
    rows = [(host, [cells[(host, port)] for port in ports]) for host in hosts] if ports else []
    return {"ports": ports, "rows": rows}


def _unexplained(failures: pd.DataFrame, hosts: list[Row]) -> list[Row]:
    """Group the failing ranges of one cause into runs, one row each."""
    known = {row["host"]: row["excluded_known"] for row in hosts}
    keys = ["host", "protocol", "family", "classification", "error_code", "failure_start"]
    groups: dict[tuple[JsonValue, ...], list[Row]] = {}
    for row in _records(failures, "failures"):
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    runs: list[Row] = []
    for rows in groups.values():
        first = rows[0]
        runs.append(
            {
                "host": first["host"],
                "protocol": first["protocol"],
                "family": first["family"],
                "classification": first["classification"],
                "reason": first["reason"],
                "error_code": first["error_code"],
                "first_port": min(cast(int, row["start"]) for row in rows),
                "last_port": max(cast(int, row["end"]) for row in rows),
                "ports": sum(cast(int, row["ports"]) for row in rows),
                "in_dynamic_range": first["in_dynamic_range"],
                "taken_at": first["taken_at"],
                "excluded_unknown": known[first["host"]] is False,
            }
        )
    return sorted(runs, key=lambda run: (str(run["host"]).casefold(), run["first_port"]))


def _remediation(frame: pd.DataFrame) -> list[tuple[str, list[Row]]]:
    by_host: dict[str, list[Row]] = {}
    for row in _records(frame, "remediation"):
        row["caveats"] = list(str(row["caveats"]).splitlines())
        by_host.setdefault(str(row["host"]), []).append(row)
    return sorted(by_host.items(), key=lambda item: item[0].casefold())


def _details(data: ReportData, hosts: list[str]) -> dict[str, JsonValue]:
    """Return what the page's script builds: the timeline's rows and the charts' data."""
    dynamic = data.hosts.dropna(subset=["dynamic_start", "dynamic_count"])
    ranges = pd.DataFrame({
        "host": dynamic["host"],
        "start": dynamic["dynamic_start"],
        "end": dynamic["dynamic_start"] + dynamic["dynamic_count"] - 1,
    })  # fmt: skip
    return details(hosts, list(data.wanted_ports), data.port_map, ranges, data.events)


def _has_charts(data: ReportData) -> bool:
    # An empty store draws no chart, and its page need not carry Plotly.
    return not (data.port_map.empty and data.events.empty)


def _inline_code(code: str, element: str) -> str:
    # The HTML parser turns CR LF into LF, and the policy hashes must match what it keeps.
    code = code.replace("\r\n", "\n").replace("\r", "\n")
    lowered = code.lower()
    if f"</{element}" in lowered or "<!--" in lowered:
        raise ValueError(f"inline {element} contains text that would end its element early")
    return code


def _content_policy(scripts: list[str]) -> str:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(code.encode("utf-8")).digest()).decode() + "'"
        for code in scripts
    )
    # Plotly arrives packed and is evaluated when a chart is opened, and its WebGL traces
    # compile shaders through new Function: hence 'unsafe-eval'.
    return (
        f"default-src 'none'; script-src {hashes} 'unsafe-eval'; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; "
        "form-action 'none'"
    )


@cache
def _packed_plotly() -> str:
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    return pack_text(str(get_plotlyjs()))


@cache
def _static_text(name: str) -> str:
    return (resources.files("reports") / "static" / name).read_text(encoding="utf-8")


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        when=_format_when,
        number=_format_number,
        pvalue=_format_pvalue,
        ratio=_format_ratio,
        yesno=_format_yesno,
    )
    environment.globals["port_range"] = _format_port_range
    environment.globals["port_span"] = _format_port_span
    return environment


_DASH = "—"
_INFINITE = {"Infinity": "∞", "-Infinity": "-∞"}


def _format_when(value: JsonValue) -> str:
    # Times reach the page as ISO text (YYYY-MM-DDTHH:MM…); the page shows them to the minute.
    return _DASH if value is None else str(value).replace("T", " ")[:16]


def _format_number(value: JsonValue, digits: int = 1) -> str:
    if value is None:
        return _DASH
    if isinstance(value, str):  # an infinite float, as _plain writes it
        return _INFINITE[value]
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}f}"
    assert isinstance(value, int | float)
    return str(int(value))


def _format_pvalue(value: JsonValue) -> str:
    if value is None:
        return _DASH
    assert isinstance(value, float)
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _format_ratio(value: JsonValue) -> str:
    return f"{value:.2f}" if isinstance(value, float) else _format_number(value)


def _format_yesno(value: JsonValue) -> str:
    return _DASH if value is None else "yes" if value else "no"


def _format_port_range(start: JsonValue, end: JsonValue) -> str:
    if start is None:  # an appeared range has no previous one, a disappeared none now
        return _DASH
    if start == end:
        return _format_number(start)
    return f"{_format_number(start)}–{_format_number(end)}"


def _format_port_span(start: JsonValue, end: JsonValue) -> str:
    """Word a range as a range with its size: ``2695–34521, 31,827 ports``."""
    if start is None or end is None:
        return _DASH
    assert isinstance(start, int) and isinstance(end, int)
    if start == end:
        return f"{start}, 1 port"
    return f"{start}–{end}, {end - start + 1:,} ports"
