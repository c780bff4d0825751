"""Ask SQL, `explain` and the report the same questions, and list where their answers differ.

Every latest failing TCP port (the view and the report, port by port; `explain` at both ends of
each finding, where a wrong cut would show), and every host × wanted port (all three, and the
fixes of `explain` and the report).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text

from collector.store.database import Store
from reports.analysis import build_report_data
from reports.explain import explain

_FAILING = """SELECT host, port, family, classification FROM v_failing_ports
 WHERE protocol = 'tcp' ORDER BY host, port, family"""
_ENDS = """SELECT DISTINCT host, start_port, end_port FROM v_findings
 WHERE latest = 1 AND protocol = 'tcp' AND error_code IS NOT NULL"""
_WANTED = """SELECT f.host, p.port, f.classification, f.error_code, f.family FROM v_findings f
  JOIN ports p ON p.port BETWEEN f.start_port AND f.end_port
 WHERE f.latest = 1 AND f.protocol = 'tcp' AND p.port IN ({ports})"""
_SWEPT = "SELECT host, swept FROM v_latest_snapshots"


@dataclass(slots=True)
class Answers:
    """Each output's class (and fixes) per (host, port)."""

    view: dict[tuple[str, int], str] = field(default_factory=dict)
    explain: dict[tuple[str, int], str] = field(default_factory=dict)
    report: dict[tuple[str, int], str] = field(default_factory=dict)
    explain_fixes: dict[tuple[str, int], tuple[str, ...]] = field(default_factory=dict)
    report_fixes: dict[tuple[str, int], tuple[str, ...]] = field(default_factory=dict)


def gather(
    store: Store, ports: Sequence[int], services: Mapping[int, str], now: datetime
) -> Answers:
    """Ask the three outputs of one store."""
    answers = Answers()
    data = build_report_data(store, ports, now=now, wanted_services=services)
    failures = data.failures[data.failures.protocol == "tcp"].sort_values("family")
    for row in failures.to_dict("records"):  # one row per failing range; IPv4 first
        for port in range(int(row["start"]), int(row["end"]) + 1):
            answers.report.setdefault((str(row["host"]), port), str(row["classification"]))
    for row in data.wanted[data.wanted.status != "unknown"].to_dict("records"):
        key = (str(row["host"]), int(row["port"]))
        answers.report[key] = str(row["classification"])
        answers.report_fixes[key] = tuple(row["fixes"])
    with store.connect() as connection:
        for host, port, _, kind in connection.execute(text(_FAILING)):
            answers.view.setdefault((host, int(port)), kind)
        ends = connection.execute(text(_ENDS)).all()
        swept: dict[str, int] = {str(h): int(s) for h, s in connection.execute(text(_SWEPT))}
        listed = ", ".join(str(int(port)) for port in ports)
        hits = connection.execute(text(_WANTED.format(ports=listed))).all()
    # The finding a port shows: a failing one first, then IPv4.
    for host, port, kind, _, _ in sorted(hits, key=lambda r: (r[3] is None, r[4])):
        answers.view.setdefault((host, int(port)), kind)
    for host in swept:
        for port in ports:
            answers.view.setdefault((host, port), "free" if swept[host] else "unknown")
    wanted = {(host, int(port)) for host in swept for port in ports}
    asked = {(host, int(port)) for host, start, end in ends for port in (start, end)} | wanted
    for host, port in sorted(asked):
        told = (host, port) in wanted  # the whole answer, story included, where a team looks
        answer = explain(store, host, port, wanted_process=services.get(port), now=now,
                         story=told)  # fmt: skip
        answers.explain[(host, port)] = answer.classification
        answers.explain_fixes[(host, port)] = tuple(fix.action for fix in answer.fixes)
    return answers


def disagreements(answers: Answers) -> list[str]:
    """Return one line per question the outputs answer differently (empty: they agree)."""
    lines = []
    for key, view in sorted(answers.view.items()):
        found = answers.report.get(key)
        if found != view:
            lines.append(f"{key}: view says {view}, report says {found}")
    for key, said in sorted(answers.explain.items()):
        shown = answers.view.get(key)
        if said != shown:
            lines.append(f"{key}: view says {shown}, explain says {said}")
    for key, fixes in sorted(answers.report_fixes.items()):
        told = answers.explain_fixes.get(key)
        if told != fixes:
            lines.append(f"{key}: report fixes {list(fixes)}, explain fixes {told}")
    return lines
