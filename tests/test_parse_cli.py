"""`portfleet parse` on the shapes people really paste: the whole answer or one refusal line.

Each case is a shape from issue 11: a refusal exits 2 (README: a refused input), prints one
``error:`` line naming the input's line on stderr and nothing on stdout; a note that was stripped
gives the whole answer and one warning line per stripped thing on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.cli import cli
from collector.exitcodes import ExitCode
from tests.parser_helpers import CORPUS_ROOT

EXCLUDED_TOP = (
    "Protocol tcp Port Exclusion Ranges\n\nStart Port    End Port\n----------    --------\n"
    "      5357        5357\n"
)
FOOTER = "\n* - Administered port exclusions.\n"
NETSTAT_TOP = (
    "\nActive Connections\n\n  Proto  Local Address          Foreign Address        State"
    "           PID\n"
    "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1152\n"
)
SYSTEMINFO_ZH = """\
主机名:           PC01
修补程序:         安装了 2 个修补程序。
                  [01]: KB5029919
                  [02]: KB5003791
网卡:             安装了 1 个 NIC。
                  [01]: Realtek PCIe GbE
"""


def _parse(tmp_path: Path, kind: str, text: str) -> tuple[int, str, str]:
    source = tmp_path / "paste.txt"
    source.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["parse", kind, str(source), "--json"])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("kind", "text", "line"),
    [
        pytest.param("excluded", EXCLUDED_TOP + "      ...\n" + FOOTER, 6, id="dots-line"),
        pytest.param("excluded", EXCLUDED_TOP + "…", 6, id="ellipsis-last-line"),
        pytest.param("excluded", EXCLUDED_TOP + "  .   .   .\n" + FOOTER, 6, id="row-of-dots"),
        pytest.param("excluded", EXCLUDED_TOP + "     50000\n", 6, id="range-without-end"),
        pytest.param(
            "excluded", EXCLUDED_TOP + "     5000O       50059     *\n" + FOOTER, 6, id="damaged"
        ),
        pytest.param(
            "netstat", NETSTAT_TOP + "  TCP    0.0.0.0:445            0.0.0.0:0\n", 6, id="no-state"
        ),
        pytest.param("netstat", NETSTAT_TOP + "...\n", 6, id="netstat-dots"),
        pytest.param(
            "netstat",
            NETSTAT_TOP + "  TCQ    0.0.0.0:445            0.0.0.0:0    LISTENING  4\n",
            6,
            id="netstat-damaged",
        ),
        pytest.param("bind-failures", "0: " + "9" * 5000 + "\n", 1, id="5000-digits"),
        pytest.param("bind-failures", "٠: ٨٠\n", 1, id="arabic-indic-digits"),
        pytest.param("bind-failures", "0: ８０\n", 1, id="fullwidth-digits"),
        pytest.param(
            "hotfix", SYSTEMINFO_ZH.replace("[02]", "[03]"), 4, id="systeminfo-missing-item"
        ),
    ],
)
def test_a_refused_paste_exits_2_with_one_line_naming_it(
    tmp_path: Path, kind: str, text: str, line: int
) -> None:
    code, stdout, stderr = _parse(tmp_path, kind, text)
    assert code == ExitCode.USAGE
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("error: ") and f"line {line}:" in stderr


@pytest.mark.parametrize(
    ("kind", "text", "rows"),
    [
        pytest.param(
            "excluded",
            EXCLUDED_TOP + "     50000       50059     *   <- this one\n" + FOOTER,
            2,
            id="arrow-note",
        ),
        pytest.param(
            "excluded",
            EXCLUDED_TOP + "     50000       50059     *\t# the blocked one\n" + FOOTER,
            2,
            id="tab-comment",
        ),
        pytest.param(
            "netstat",
            NETSTAT_TOP + "  TCP    0.0.0.0:445   0.0.0.0:0   LISTENING   4   (System)\n",
            2,
            id="words-in-parentheses",
        ),
    ],
)
def test_a_note_gives_the_whole_answer_and_a_warning(
    tmp_path: Path, kind: str, text: str, rows: int
) -> None:
    code, stdout, stderr = _parse(tmp_path, kind, text)
    assert code == ExitCode.OK
    answer = json.loads(stdout)
    assert (len(answer[0]["ranges"]) if kind == "excluded" else len(answer)) == rows
    warnings = stderr.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and "line 6:" in warnings[0]


def test_localized_systeminfo_is_read_whole(tmp_path: Path) -> None:
    code, stdout, _ = _parse(tmp_path, "hotfix", SYSTEMINFO_ZH)
    assert code == ExitCode.OK
    assert [row["kb"] for row in json.loads(stdout)] == ["KB5029919", "KB5003791"]


def test_german_states_carry_the_canonical_state(tmp_path: Path) -> None:
    rows = "".join(
        f"  TCP    0.0.0.0:{port}   0.0.0.0:0   {state}   4\n"
        for port, state in ((135, "ABHÖREN"), (445, "ABH?REN"), (139, "ABH™REN"))
    )
    rows += "  TCP    10.0.0.2:50000   10.0.0.9:443   HERGESTELLT   4\n"
    rows += "  TCP    10.0.0.2:50001   10.0.0.9:443   SCHLIESSEN_WARTEN   4\n"
    rows += "  TCP    10.0.0.2:50002   10.0.0.9:443   UNBEKANNT   4\n"
    code, stdout, _ = _parse(tmp_path, "netstat", rows)
    assert code == ExitCode.OK
    assert [(r["state"], r["canonical_state"]) for r in json.loads(stdout)] == [
        ("ABHÖREN", "LISTENING"),
        ("ABH?REN", "LISTENING"),
        ("ABH™REN", "LISTENING"),
        ("HERGESTELLT", "ESTABLISHED"),
        ("SCHLIESSEN_WARTEN", "CLOSE_WAIT"),
        ("UNBEKANNT", None),
    ]


def test_a_declared_excerpt_is_read_with_warnings(tmp_path: Path) -> None:
    source = CORPUS_ROOT / "excluded" / "excluded-en-8.txt"
    code, stdout, stderr = _parse(tmp_path, "excluded", source.read_text(encoding="utf-8"))
    assert code == ExitCode.OK and json.loads(stdout)
    assert "declared truncated" in stderr
