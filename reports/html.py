"""The self-contained HTML report: one file, no network, every host string escaped.

The page is rendered by Jinja2 with autoescape on for every template. Data the page's script
needs (the charts) travels as JSON inside a ``<script type="application/json">`` block with
``<``, ``>`` and ``&`` written as ``\\u003c``-style escapes, so no host string can close the
block; the script reads it with ``JSON.parse`` and writes text with ``textContent`` only.
Plotly's JavaScript, the report's script and its stylesheet are inlined; a Content Security
Policy admits exactly those inline scripts (by hash) and no network at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from collector.diagnosis import Diagnosis, PortStatus
from reports.model import ReportData

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
Row: TypeAlias = dict[str, JsonValue]

# (id, title) of every section, in page order; the table of contents is built from it.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Fleet summary"),
    ("freshness", "Data freshness"),
    ("wanted", "Wanted ports"),
    ("port-map", "Port map"),
    ("timeline", "Timeline"),
    ("correlation", "What changed before the ranges moved"),
    ("unexplained", "Unexplained failures"),
    ("remediation", "Remediation"),
    ("fixes", "Fixes"),
)

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

# What the timeline chart needs of each event.
_EVENT_FIELDS = (
    *("host", "kind", "at", "protocol", "start", "end"),
    *("previous_start", "previous_end", "ports", "causes"),
)

# Characters that must not reach an HTML parser raw from inside a <script> block.
_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def render_report(data: ReportData) -> str:
    """Render ``data`` as one self-contained HTML page."""
    data.validate()
    plotly_js = _inline_code(_plotly_js(), "script")
    report_js = _inline_code(_static_text("report.js"), "script")
    css = _inline_code(_static_text("report.css"), "style")
    hosts = _host_order(data)
    # Each frame becomes records once; the sections below share them.
    host_rows = _host_rows(data.hosts)
    wanted_rows = _records(data.wanted)
    correlation_rows = _records(data.correlation)
    unexplained = data.failures[~data.failures.classification.isin(_EXPLAINED)]
    events = _event_rows(data.events)
    context: dict[str, object] = {
        "generated_at": _plain(data.generated_at),
        "database": data.database,
        "sections": SECTIONS,
        "wanted_ports": [int(port) for port in data.wanted_ports],
        "cards": _summary_cards(data, host_rows, wanted_rows),
        "hosts": host_rows,
        "stale_hosts": [row for row in host_rows if row["stale"]],
        "failed_attempts": _records(data.failed_attempts),
        "matrix": _wanted_matrix(data, hosts, wanted_rows),
        "has_port_map": not data.port_map.empty,
        "events": sorted(events, key=lambda row: _text(row["at"]), reverse=True),
        "ranked": _ranked_causes(correlation_rows),
        "too_few": [r for r in correlation_rows if not _truthy(r["enough_hosts"])],
        "unexplained": _unexplained(unexplained, host_rows),
        "remediation": _remediation(data.remediation),
        "fixes": [
            record.to_json()
            | {"host": record.host, "ports": record.ports(), "summary": record.describe()}
            for record in data.fixes
        ],
        "chart_data": _script_json(_chart_data(data, hosts, events)),
        "css": Markup(css),
        "plotly_js": Markup(plotly_js),
        "report_js": Markup(report_js),
        "csp": _content_policy([plotly_js, report_js]),
    }
    return _environment().get_template("page.j2").render(context)


def write_report(data: ReportData, path: Path) -> None:
    """Write the report of ``data`` to ``path`` as UTF-8."""
    path.write_text(render_report(data), encoding="utf-8", newline="\n")


def _plain(value: object) -> JsonValue:
    """Turn one pandas/numpy/stdlib value into JSON-safe Python (NaN, NaT, NA -> None)."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.datetime64 | np.timedelta64) and np.isnat(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating | Decimal):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isinf(number):
            # JSON has no infinity; JavaScript's Number() reads these back.
            return "Infinity" if number > 0 else "-Infinity"
        # pandas stores whole numbers as floats once a column has a gap; give them back.
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if isinstance(value, str):
        return value
    if isinstance(value, np.datetime64):
        return _plain(pd.Timestamp(value))
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta | np.timedelta64):
        return _plain(pd.Timedelta(value).total_seconds() / 86400)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray | pd.Series | pd.Index):
        return [_plain(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _iso(moment: datetime) -> str:
    stamp = pd.Timestamp(moment)
    # Naive times in the store are UTC already.
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _records(frame: pd.DataFrame) -> list[Row]:
    columns = [str(column) for column in frame.columns]
    return [
        {column: _plain(value) for column, value in zip(columns, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


def _columns(frame: pd.DataFrame, names: Iterable[str]) -> dict[str, JsonValue]:
    return {name: [_plain(value) for value in frame[name].tolist()] for name in names}


def _sorted(rows: list[Row], key: str) -> list[Row]:
    return sorted(rows, key=lambda row: _text(row[key]).casefold())


def _text(value: JsonValue) -> str:
    return "" if value is None else str(value)


def _number(value: JsonValue, missing: float = 0.0) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return missing


def _truthy(value: JsonValue) -> bool:
    if isinstance(value, str):
        return value.strip().casefold() in {"1", "true", "yes", "y"}
    return bool(value)


def _host_rows(frame: pd.DataFrame) -> list[Row]:
    rows = _sorted(_records(frame), "host")
    for row in rows:
        row["stale"] = _truthy(row["stale"])
    return rows


def _host_order(data: ReportData) -> list[str]:
    names = {str(host) for frame in (data.hosts, data.port_map, data.wanted) for host in frame.host}
    return sorted(names, key=str.casefold)


def _status_kind(status: JsonValue, serving: JsonValue = False) -> str:
    word = _text(status).strip().casefold()
    if word == PortStatus.IN_USE and _truthy(serving):
        return "ok"
    return _CELL_KINDS.get(PortStatus(word), "unknown") if word in set(PortStatus) else "unknown"


def _summary_cards(
    data: ReportData, hosts: list[Row], wanted: list[Row]
) -> list[tuple[str, str, str]]:
    reserved = [row for row in wanted if row["status"] == PortStatus.RESERVED]
    held = [row for row in wanted if _status_kind(row["status"], row.get("serving")) == "inuse"]
    classes = data.failures.classification.value_counts()
    probable, unexplained = (int(classes.get(kind, 0)) for kind in
                             (Diagnosis.PROBABLY_RESERVED, Diagnosis.UNEXPLAINED))  # fmt: skip
    return [
        ("Hosts", str(len(hosts)), f"{sum(row['snapshot_id'] is not None for row in hosts)} seen"),
        ("Not seen lately", str(sum(_truthy(row["stale"]) for row in hosts)), "see freshness"),
        (
            "Wanted ports reserved",
            str(len(reserved)),
            f"on {_hosts(len({row['host'] for row in reserved}))}; "
            f"{len(held)} more in use by another program",
        ),
        (
            "Failing ports",
            str(len(data.failures)),
            f"{probable} probably reserved, {unexplained} unexplained",
        ),
        ("Range changes", str(len(data.events)), f"on {_hosts(data.events.host.nunique())}"),
        ("Failed attempts", str(len(data.failed_attempts)), "recent collections"),
    ]


def _hosts(count: int) -> str:
    return f"{count} host" if count == 1 else f"{count} hosts"


def _wanted_matrix(data: ReportData, hosts: list[str], wanted: list[Row]) -> dict[str, object]:
    cells: dict[tuple[str, int], Row] = {}
    for row in wanted:
        if isinstance(row["port"], int):
            row["kind"] = _status_kind(row["status"], row.get("serving"))
            cells[(_text(row["host"]), row["port"])] = row
    ports = sorted({int(port) for port in data.wanted_ports} | {port for _, port in cells})
    wanted_hosts = [host for host in hosts if any((host, port) in cells for port in ports)]
    rows = [(host, [cells.get((host, port)) for port in ports]) for host in wanted_hosts]
    return {"ports": ports, "rows": rows}


def _ranked_causes(correlation: list[Row]) -> list[Row]:
    rows = [row for row in correlation if _truthy(row["enough_hosts"])]
    return sorted(rows, key=lambda row: _number(row["rank"], math.inf))


def _unexplained(failures: pd.DataFrame, hosts: list[Row]) -> list[Row]:
    if failures.empty:
        return []
    known = {_text(row["host"]): row["excluded_known"] for row in hosts}
    keys = ["host", "protocol", "family", "classification", "error_code", "failure_start"]
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in _records(failures):
        groups.setdefault(tuple(_text(row[key]) for key in keys), []).append(row)
    runs: list[Row] = []
    for rows in groups.values():
        ports = [row["port"] for row in rows if isinstance(row["port"], int)]
        first = rows[0]
        excluded_known = known.get(_text(first["host"]))
        runs.append(
            {
                "host": first["host"],
                "protocol": first["protocol"],
                "family": first["family"],
                "classification": first["classification"],
                "reason": first["reason"],
                "error_code": first["error_code"],
                "first_port": min(ports) if ports else None,
                "last_port": max(ports) if ports else None,
                "ports": len(rows),
                "in_dynamic_range": first["in_dynamic_range"],
                "taken_at": first["taken_at"],
                "excluded_unknown": excluded_known is not None and not _truthy(excluded_known),
            }
        )
    return sorted(runs, key=lambda run: (_text(run["host"]).casefold(), _number(run["first_port"])))


def _remediation(frame: pd.DataFrame) -> list[tuple[str, list[Row]]]:
    by_host: dict[str, list[Row]] = {}
    for row in _records(frame):
        commands = row["commands"]
        row["commands"] = (
            "\n".join(map(_text, commands)) if isinstance(commands, list) else commands
        )
        by_host.setdefault(_text(row["host"]), []).append(row)
    return sorted(by_host.items(), key=lambda item: item[0].casefold())


def _event_rows(frame: pd.DataFrame) -> list[Row]:
    rows = _records(frame)
    for row in rows:
        row["causes"] = [_cause_text(cause) for cause in _as_list(row["causes"])]
    return rows


def _as_list(value: JsonValue) -> list[JsonValue]:
    if value is None:
        return []
    if isinstance(value, list):
        return [item for item in value if item is not None]
    if isinstance(value, str):
        return [line for line in value.splitlines() if line.strip()]
    return [value]


def _cause_text(cause: JsonValue) -> str:
    # The analysis hands causes as {"kind", "cause", "detail", "at"}; plain strings work too.
    if not isinstance(cause, dict):
        return _text(cause)
    text = _text(cause.get("cause")) or _text(cause.get("kind"))
    if cause.get("detail"):
        text += f" — {_text(cause['detail'])}"
    when = _format_when(cause.get("at"))
    if cause.get("at") and when not in text:
        text += f" ({when})"
    return text


def _chart_data(data: ReportData, hosts: list[str], events: list[Row]) -> dict[str, JsonValue]:
    dynamic = data.hosts.dropna(subset=["dynamic_start", "dynamic_count"])
    starts = [_number(_plain(value)) for value in dynamic.dynamic_start.tolist()]
    counts = [_number(_plain(value)) for value in dynamic.dynamic_count.tolist()]
    return {
        "hosts": [*hosts],
        "wanted_ports": [int(port) for port in data.wanted_ports],
        "port_map": _columns(data.port_map, ("host", "start", "end", "kind", "label")),
        "dynamic": {
            "host": [_plain(host) for host in dynamic.host.tolist()],
            "start": [int(start) for start in starts],
            "end": [int(start + count - 1) for start, count in zip(starts, counts, strict=True)],
        },
        "events": {name: [row[name] for row in events] for name in _EVENT_FIELDS},
    }


def _script_json(value: JsonValue) -> Markup:
    """Serialize for a ``<script type="application/json">`` block that no string can close."""
    text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    return Markup(text.translate(_SCRIPT_ESCAPES))


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
    # Plotly's WebGL traces compile shaders through new Function, hence 'unsafe-eval'.
    return (
        f"default-src 'none'; script-src {hashes} 'unsafe-eval'; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; "
        "form-action 'none'"
    )


@cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    return str(get_plotlyjs())


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
        items=_as_items,
    )
    environment.globals["port_range"] = _format_port_range
    return environment


_DASH = "—"


def _format_when(value: JsonValue) -> str:
    text = _text(value)
    if not text:
        return _DASH
    return text.replace("T", " ")[:16] if "T" in text else text


def _format_number(value: JsonValue, digits: int = 1) -> str:
    if value is None or value == "":
        return _DASH
    if isinstance(value, str):
        return {"Infinity": "∞", "-Infinity": "-∞"}.get(value, value)
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}f}"
    if isinstance(value, int | float):
        return str(int(value))
    return _text(value)


def _format_pvalue(value: JsonValue) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return _DASH
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _format_ratio(value: JsonValue) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:.2f}"
    return _format_number(value)


def _format_yesno(value: JsonValue) -> str:
    if value is None:
        return _DASH
    if isinstance(value, str) and value.strip().casefold() not in {"0", "1", "true", "false"}:
        return value
    return "yes" if _truthy(value) else "no"


def _as_items(value: JsonValue) -> list[str]:
    return [_text(item) for item in _as_list(value)]


def _format_port_range(start: JsonValue, end: JsonValue) -> str:
    if start is None and end is None:
        return _DASH
    if start == end or end is None:
        return _format_number(start)
    if start is None:
        return _format_number(end)
    return f"{_format_number(start)}–{_format_number(end)}"
