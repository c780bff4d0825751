"""Tests for the Get-HotFix / wmic qfe / systeminfo hotfix parser."""

from __future__ import annotations

import codecs
import json
import unicodedata
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.parsers.errors import ParseError
from collector.parsers.hotfix import (
    Hotfix,
    hotfix_to_json,
    infer_date_order,
    parse_hotfix,
    parse_hotfix_tables,
)
from collector.parsers.notes import ParseWarning

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "collector" / "data" / "corpus" / "hotfix"
EXPECTED = ROOT / "tests" / "expected" / "hotfix"
CORPUS_FILES = sorted(CORPUS.glob("*.txt"))


def table(*rows: str) -> str:
    """Build a Get-HotFix table with PowerShell 5.1's fixed column widths (13/16/13/20)."""
    head = [
        "",
        "Source        Description      HotFixID      InstalledBy          InstalledOn",
        "------        -----------      --------      -----------          -----------",
    ]
    return "\r\n".join([*head, *rows, "", ""])


def row(source: str, description: str, kb: str, by: str, on: str) -> str:
    """Lay out one Get-HotFix row in the fixed widths of ``table``."""
    return f"{source:<13} {description:<16} {kb:<13} {by:<20} {on}".rstrip()


def dates_of(text: str) -> list[date | None]:
    return [fix.installed_on for fix in parse_hotfix(text)]


# --- corpus ---------------------------------------------------------------------------------


def test_corpus_is_present() -> None:
    assert CORPUS_FILES, f"no corpus files in {CORPUS}"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.stem)
def test_corpus_file_parses_to_checked_values(path: Path) -> None:
    expected_file = EXPECTED / f"{path.stem}.json"
    assert expected_file.exists(), f"write the by-eye expectation {expected_file}"
    result = hotfix_to_json(parse_hotfix(path.read_bytes()))
    assert result == json.loads(expected_file.read_text(encoding="utf-8"))
    shipped = path.with_name(f"{path.stem}.expected.json")
    if shipped.exists():
        assert result == json.loads(shipped.read_text(encoding="utf-8"))


def test_every_expectation_has_its_corpus_file() -> None:
    stems = {path.stem for path in CORPUS_FILES}
    orphans = [path.name for path in EXPECTED.glob("*.json") if path.stem not in stems]
    assert orphans == []


def test_corpus_get_hotfix_order_is_proven_not_assumed() -> None:
    (only,) = parse_hotfix_tables((CORPUS / "hotfix-en-2.txt").read_bytes())
    assert (only.kind, only.first_line, only.date_order, only.date_order_assumed) == (
        "table",
        7,
        "mdy",
        False,
    )


def test_corpus_systeminfo_ignores_processor_and_network_sections() -> None:
    (only,) = parse_hotfix_tables((CORPUS / "hotfix-en-1.txt").read_bytes())
    assert only.kind == "systeminfo"
    assert len(only.rows) == 8
    assert only.date_order is None


# --- date formats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("printed", "expected"),
    [
        ("3/22/2018 12:00:00 AM", date(2018, 3, 22)),  # en-US
        ("22/03/2018 00:00:00", date(2018, 3, 22)),  # fr, en-GB: d/M/yyyy
        ("22.03.2018 00:00:00", date(2018, 3, 22)),  # de
        ("2018-03-22 00:00:00", date(2018, 3, 22)),  # sv, ISO
        ("2018/03/22 0:00:00", date(2018, 3, 22)),  # ja
        ("20180322", date(2018, 3, 22)),  # compact WMI form
        ("18/02/2020 12:00:00 a. m.", date(2020, 2, 18)),  # es, marker in two tokens
        ("2018-03-22 오후 12:00:00", date(2018, 3, 22)),  # ko, marker before the time
        ("2018/3/22 上午 12:00:00", date(2018, 3, 22)),  # zh-TW
        ("22.03.2018 0.00.00", date(2018, 3, 22)),  # fi: dots in the time too
        ("01c9c5ce4b48e5fd", date(2009, 4, 25)),  # FILETIME, 17:50 UTC
    ],
)
def test_date_formats(printed: str, expected: date) -> None:
    text = table(row("HOST01", "Update", "KB4087256", "NT AUTHORITY\\SYSTEM", printed))
    assert dates_of(text) == [expected]


def test_spanish_d_mm_pattern_is_day_first_even_when_no_field_exceeds_12() -> None:
    # The corpus notes quote es Get-HotFix as "8/02/2020 12:00:00 a. m." (d/MM/yyyy).
    text = table(
        row("EQUIPO", "Update", "KB4537759", "NT AUTHORITY\\SYSTEM", "8/02/2020 12:00:00 a. m.")
    )
    (only,) = parse_hotfix_tables(text)
    assert only.rows[0].installed_on == date(2020, 2, 8)
    assert (only.date_order, only.date_order_assumed) == ("dmy", True)


def test_filetime_takes_the_utc_date() -> None:
    late = datetime(2011, 5, 12, 23, 30, tzinfo=UTC)
    ticks = int((late - datetime(1601, 1, 1, tzinfo=UTC)).total_seconds() * 10**7)
    printed = format(ticks, "016x")
    assert printed == "01cc10fc82d98c00"
    text = table(row("HOST01", "Update", "KB2533552", "NT AUTHORITY\\SYSTEM", printed))
    assert dates_of(text) == [date(2011, 5, 12)]


def test_filetime_beyond_year_9999_is_an_error() -> None:
    text = table(row("HOST01", "Update", "KB2533552", "NT AUTHORITY\\SYSTEM", "ffffffffffffffff"))
    with pytest.raises(ParseError) as caught:
        parse_hotfix(text)
    assert caught.value.line == 4


def test_blank_cells_become_none() -> None:
    text = table(
        row("DESKTOP-AB12", "Update", "KB4534132", "", "2/17/2020 12:00:00 AM"),
        row("DESKTOP-AB12", "Security Update", "KB4528759", "NT AUTHORITY\\SYSTEM", ""),
        row("DESKTOP-AB12", "", "KB4537759", "", ""),
    )
    assert parse_hotfix(text) == [
        Hotfix("KB4534132", "Update", None, date(2020, 2, 17)),
        Hotfix("KB4528759", "Security Update", "NT AUTHORITY\\SYSTEM", None),
        Hotfix("KB4537759", None, None, None),
    ]


@pytest.mark.parametrize(
    ("printed", "line_text"),
    [
        ("13/13/2018", "no field is a month"),
        ("2/30/2018 12:00:00 AM", "impossible date"),
        ("30.02.2018 00:00:00", "impossible date"),
        ("2018-13-01", "impossible date"),
        ("0/5/2018", "impossible date"),
        ("3/22/18", "two-digit year"),
        ("22/3/2561 0:00:00", "non-Gregorian"),  # th-TH Buddhist calendar
        ("yesterday", "unreadable date"),
        ("3/22/2018 25:00:00", "unreadable time"),
    ],
)
def test_impossible_or_unreadable_date_names_its_line(printed: str, line_text: str) -> None:
    text = table(
        row("HOST01", "Update", "KB4087256", "NT AUTHORITY\\SYSTEM", "3/4/2018"),
        row("HOST01", "Update", "KB4089848", "NT AUTHORITY\\SYSTEM", printed),
    )
    with pytest.raises(ParseError, match=line_text) as caught:
        parse_hotfix(text)
    assert caught.value.line == 5
    assert "KB4089848" in (caught.value.text or "")


# --- day/month order ------------------------------------------------------------------------


def test_day_first_proven_by_another_row() -> None:
    text = table(
        row("PC-BUREAU", "Update", "KB4534132", "AUTORITE NT\\Système", "03/04/2020 00:00:00"),
        row("PC-BUREAU", "Update", "KB4528759", "AUTORITE NT\\Système", "17/02/2020 00:00:00"),
    )
    (only,) = parse_hotfix_tables(text)
    assert [fix.installed_on for fix in only.rows] == [date(2020, 4, 3), date(2020, 2, 17)]
    assert (only.date_order, only.date_order_assumed) == ("dmy", False)


def test_month_first_proven_by_another_row() -> None:
    text = table(
        row("HOST01", "Update", "KB4534132", "NT AUTHORITY\\SYSTEM", "3/4/2020 12:00:00 AM"),
        row("HOST01", "Update", "KB4528759", "NT AUTHORITY\\SYSTEM", "2/17/2020 12:00:00 AM"),
    )
    (only,) = parse_hotfix_tables(text)
    assert [fix.installed_on for fix in only.rows] == [date(2020, 3, 4), date(2020, 2, 17)]
    assert (only.date_order, only.date_order_assumed) == ("mdy", False)


def test_table_proving_both_orders_is_an_error() -> None:
    text = table(
        row("HOST01", "Update", "KB4534132", "NT AUTHORITY\\SYSTEM", "17/2/2020"),
        row("HOST01", "Update", "KB4528759", "NT AUTHORITY\\SYSTEM", "3/4/2020"),
        row("HOST01", "Update", "KB4537759", "NT AUTHORITY\\SYSTEM", "2/18/2020"),
    )
    with pytest.raises(ParseError, match="day-first and month-first") as caught:
        parse_hotfix(text)
    assert caught.value.line == 6
    assert "line 4 vs line 6" in str(caught.value)


def test_undecided_slash_dates_assume_month_first_and_say_so() -> None:
    text = table(
        row("HOST01", "Update", "KB4534132", "NT AUTHORITY\\SYSTEM", "3/4/2020 12:00:00 AM"),
        row("HOST01", "Update", "KB4528759", "NT AUTHORITY\\SYSTEM", "2/1/2020 12:00:00 AM"),
    )
    (only,) = parse_hotfix_tables(text)
    assert [fix.installed_on for fix in only.rows] == [date(2020, 3, 4), date(2020, 2, 1)]
    assert (only.date_order, only.date_order_assumed) == ("mdy", True)


def test_undecided_dotted_dates_assume_day_first() -> None:
    text = table(
        row("PC-BUERO-07", "Update", "KB4534132", "NT-AUTORITÄT\\SYSTEM", "03.04.2020 00:00:00")
    )
    (only,) = parse_hotfix_tables(text)
    assert only.rows[0].installed_on == date(2020, 4, 3)
    assert (only.date_order, only.date_order_assumed) == ("dmy", True)


def test_order_is_decided_per_table() -> None:
    first = table(row("HOST01", "Update", "KB4534132", "NT AUTHORITY\\SYSTEM", "17/2/2020"))
    second = table(row("HOST01", "Update", "KB4528759", "NT AUTHORITY\\SYSTEM", "3/4/2020"))
    tables = parse_hotfix_tables(first + "PS C:\\> Get-HotFix\r\n" + second)
    assert [(t.date_order, t.date_order_assumed) for t in tables] == [("dmy", False), ("mdy", True)]
    assert [t.rows[0].installed_on for t in tables] == [date(2020, 2, 17), date(2020, 3, 4)]


def test_year_first_tables_need_no_assumption() -> None:
    text = table(row("HOST01", "Update", "KB4534132", "NT AUTHORITY\\SYSTEM", "2020-03-04"))
    (only,) = parse_hotfix_tables(text)
    assert (only.date_order, only.date_order_assumed) == ("ymd", False)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["22/03/2018", "3/4/2018"], "dmy"),
        (["3/22/2018 12:00:00 AM", "3/4/2018 12:00:00 AM"], "mdy"),
        (["3/4/2018", "5/6/2018"], None),
        (["2018-03-22", "20180322", "01c9c5ce4b48e5fd"], "ymd"),
        (["2018-03-04", "3/4/2018"], None),
        (["", "  "], None),
        ([], None),
    ],
)
def test_infer_date_order(values: list[str], expected: str | None) -> None:
    assert infer_date_order(values) == expected


def test_infer_date_order_rejects_inconsistent_and_impossible_values() -> None:
    with pytest.raises(ParseError, match="day-first and month-first"):
        infer_date_order(["22/03/2018", "03/22/2018"])
    with pytest.raises(ParseError, match="no field is a month"):
        infer_date_order(["13/13/2018"])


# --- wmic qfe -------------------------------------------------------------------------------

# Windows 7 era `wmic qfe`: a blank Caption, an old "File 1" id with the KB only in
# ServicePackInEffect, a FILETIME InstalledOn and wmic's trailing padding.
WMIC_WIN7 = "\r\r\n".join(
    [
        (
            "Caption                                        CSName    Description      "
            "FixComments  HotFixID   InstallDate  InstalledBy             InstalledOn       "
            "Name  ServicePackInEffect  Status  "
        ),
        (
            "http://support.microsoft.com/?kbid=2491683     WIN7-LAB  Security Update  "
            "             KB2491683               WIN7-LAB\\Administrator  01cc107a97754000  "
            "                                   "
        ),
        (
            "                                               WIN7-LAB  Update           "
            "             File 1                                                            "
            "      KB976902                     "
        ),
        (
            "http://go.microsoft.com/fwlink/?LinkId=133041  WIN7-LAB  Hotfix           "
            "             KB976902                NT AUTHORITY\\SYSTEM     3/4/2011          "
            "                                   "
        ),
        (
            "http://support.microsoft.com/?kbid=2533552     WIN7-LAB  Update           "
            "             KB2533552               NT AUTHORITY\\SYSTEM     11/21/2010        "
            "                                   "
        ),
        "",
        "",
    ]
)


def test_wmic_table_with_blank_cells_is_cut_by_column_positions() -> None:
    assert parse_hotfix(WMIC_WIN7) == [
        Hotfix("KB2491683", "Security Update", "WIN7-LAB\\Administrator", date(2011, 5, 12)),
        Hotfix("File 1", "Update", None, None),
        Hotfix("KB976902", "Hotfix", "NT AUTHORITY\\SYSTEM", date(2011, 3, 4)),
        Hotfix("KB2533552", "Update", "NT AUTHORITY\\SYSTEM", date(2010, 11, 21)),
    ]
    (only,) = parse_hotfix_tables(WMIC_WIN7)
    assert (only.date_order, only.date_order_assumed) == ("mdy", False)


def test_wmic_utf16_redirect_decodes() -> None:
    data = codecs.BOM_UTF16_LE + WMIC_WIN7.encode("utf-16-le")
    assert [fix.kb for fix in parse_hotfix(data)] == [
        "KB2491683",
        "File 1",
        "KB976902",
        "KB2533552",
    ]


def test_wmic_filled_fixcomments_stays_out_of_description() -> None:
    # Hand-made: split by tokens, FixComments would run into Description; positions keep them apart.
    text = """\
Description  FixComments       HotFixID   InstallDate  InstalledBy          InstalledOn  Name  ServicePackInEffect  Status
Update       Requires restart  KB4534132               NT AUTHORITY\\SYSTEM  2/17/2020
"""  # noqa: E501
    assert parse_hotfix(text) == [
        Hotfix("KB4534132", "Update", "NT AUTHORITY\\SYSTEM", date(2020, 2, 17)),
    ]


def test_wmic_qfe_list_brief() -> None:
    text = """\
C:\\Users\\lab> wmic qfe list brief
Description      FixComments  HotFixID   InstallDate  InstalledBy          InstalledOn  Name  ServicePackInEffect  Status
Update                        KB4534132                                    2/17/2020
Security Update               KB4528759               NT AUTHORITY\\SYSTEM  1/15/2020
"""  # noqa: E501
    assert parse_hotfix(text) == [
        Hotfix("KB4534132", "Update", None, date(2020, 2, 17)),
        Hotfix("KB4528759", "Security Update", "NT AUTHORITY\\SYSTEM", date(2020, 1, 15)),
    ]


def test_wmic_row_collapsed_by_a_web_copy_falls_back_to_tokens() -> None:
    text = """\
Caption CSName Description FixComments HotFixID InstallDate InstalledBy InstalledOn Name ServicePackInEffect Status
http://support.microsoft.com/?kbid=3199986 WINLPE-SRV01 Update KB3199986 NT AUTHORITY\\SYSTEM 11/21/2016
https://support.microsoft.com/help/5001078 WINLPE-SRV01 Security Update KB5001078 NT AUTHORITY\\SYSTEM 3/25/2021
WINLPE-SRV01 Update KB4103723 3/25/2021
"""  # noqa: E501
    assert parse_hotfix(text) == [
        Hotfix("KB3199986", "Update", "NT AUTHORITY\\SYSTEM", date(2016, 11, 21)),
        Hotfix("KB5001078", "Security Update", "NT AUTHORITY\\SYSTEM", date(2021, 3, 25)),
        Hotfix("KB4103723", "Update", None, date(2021, 3, 25)),
    ]


def test_get_hotfix_collapsed_with_localized_time_markers() -> None:
    text = """\
PS C:\\> Get-HotFix
Source Description HotFixID InstalledBy InstalledOn
------ ----------- -------- ----------- -----------
SERVIDOR01 Security Update KB4537759 NT AUTHORITY\\SYSTEM 18/02/2020 12:00:00 a. m.
SERVIDOR01 Update KB4534132 2/02/2020 12:00:00 p. m.
SEOUL-PC Update KB4528759 NT AUTHORITY\\SYSTEM
"""
    assert parse_hotfix(text) == [
        Hotfix("KB4537759", "Security Update", "NT AUTHORITY\\SYSTEM", date(2020, 2, 18)),
        Hotfix("KB4534132", "Update", None, date(2020, 2, 2)),
        Hotfix("KB4528759", "Update", "NT AUTHORITY\\SYSTEM", None),
    ]


def test_korean_date_collapsed() -> None:
    text = (
        "Source Description HotFixID InstalledBy InstalledOn\n"
        "PC01 Update KB4087256 NT AUTHORITY\\SYSTEM 2018-03-22 오후 12:00:00\n"
    )
    assert dates_of(text) == [date(2018, 3, 22)]


def test_collapsed_row_with_two_kb_numbers_is_an_error() -> None:
    text = (
        "Source Description HotFixID InstalledBy InstalledOn\n"
        "PC01 Update for KB1 KB4087256 x 3/22/2018\n"
    )
    with pytest.raises(ParseError, match="cannot split") as caught:
        parse_hotfix(text)
    assert caught.value.line == 2


def test_unreadable_line_inside_a_table_is_an_error() -> None:
    text = table(
        row("HOST01", "Update", "KB4534132", "NT AUTHORITY\\SYSTEM", "3/22/2018 12:00:00 AM"),
        "HOST01 truncated row without an id",
    )
    with pytest.raises(ParseError, match="cannot read") as caught:
        parse_hotfix(text)
    assert caught.value.line == 5


def test_text_after_a_blank_line_ends_the_table() -> None:
    text = table(row("HOST01", "Update", "KB4534132", "NT AUTHORITY\\SYSTEM", "3/22/2018")) + (
        "Some unrelated note written after the table\r\n"
    )
    assert [fix.kb for fix in parse_hotfix(text)] == ["KB4534132"]


def test_single_column_table_stops_at_text_that_is_no_id() -> None:
    text = "C:\\> wmic qfe get hotfixid\nHotFixID\nKB4087256\nQ147222\n\nsome words after it\n"
    assert [fix.kb for fix in parse_hotfix(text)] == ["KB4087256", "Q147222"]
    with pytest.raises(ParseError, match="cannot read") as caught:
        parse_hotfix("HotFixID\nKB4087256\nsome words right under it\n")
    assert caught.value.line == 3


def test_wide_characters_count_two_console_cells() -> None:
    # Hand-made: a localized Description in CJK shifts later columns by display width.
    text = """\
Source  Description  HotFixID   InstalledBy          InstalledOn
------  -----------  --------   -----------          -----------
PC01    更新         KB4087256  NT AUTHORITY\\SYSTEM  2018/03/22 0:00:00
PC01    安全更新     File 1                          2018/04/04 0:00:00
"""
    # "File 1" has no KB token to anchor a token split: only display-width positions read it.
    assert parse_hotfix(text) == [
        Hotfix("KB4087256", "更新", "NT AUTHORITY\\SYSTEM", date(2018, 3, 22)),
        Hotfix("File 1", "安全更新", None, date(2018, 4, 4)),
    ]


def test_kb_ids_are_normalised() -> None:
    text = "HotFixID     InstalledOn\nkb4087256    3/22/2018\nKB 4089848   4/4/2018\n"
    assert [fix.kb for fix in parse_hotfix(text)] == ["KB4087256", "KB4089848"]


def test_invoke_command_adds_pscomputername() -> None:
    text = """\
Source        Description      HotFixID      InstalledBy          InstalledOn            PSComputerName
------        -----------      --------      -----------          -----------            --------------
SRV01         Update           KB4087256     NT AUTHORITY\\SYSTEM  3/22/2018 12:00:00 AM  srv01
SRV01 Security Update KB4089848 4/4/2018 12:00:00 AM srv01
"""  # noqa: E501
    assert parse_hotfix(text) == [
        Hotfix("KB4087256", "Update", "NT AUTHORITY\\SYSTEM", date(2018, 3, 22)),
        Hotfix("KB4089848", "Security Update", None, date(2018, 4, 4)),
    ]


# --- Format-List ----------------------------------------------------------------------------


def test_format_list() -> None:
    text = """\
PS C:\\Users\\admin> Get-HotFix | Format-List


Source        : DESKTOP-AB12
Description   : Update
HotFixID      : KB4534132
InstalledBy   :
InstalledOn   : 2/17/2020 12:00:00 AM

Source        : DESKTOP-AB12
Description   : Security
                Update
HotFixID      : KB4528759
InstalledBy   : NT AUTHORITY\\SYSTEM
InstalledOn   : 1/15/2020 12:00:00 AM

Source        : DESKTOP-AB12
Description   : Update
HotFixID      : KB4537759
InstalledBy   : NT AUTHORITY\\SYSTEM
InstalledOn   :



PS C:\\Users\\admin>
"""
    (only,) = parse_hotfix_tables(text)
    assert only.kind == "list"
    assert only.first_line == 4
    assert list(only.rows) == [
        Hotfix("KB4534132", "Update", None, date(2020, 2, 17)),
        Hotfix("KB4528759", "Security Update", "NT AUTHORITY\\SYSTEM", date(2020, 1, 15)),
        Hotfix("KB4537759", "Update", "NT AUTHORITY\\SYSTEM", None),
    ]
    assert (only.date_order, only.date_order_assumed) == ("mdy", False)


def test_wmic_qfe_list_full() -> None:
    text = "\r\n".join(
        [
            "",
            "",
            "Caption=http://support.microsoft.com/?kbid=4534132",
            "CSName=PC-BUERO-07",
            "Description=Update",
            "FixComments=",
            "HotFixID=KB4534132",
            "InstallDate=",
            "InstalledBy=NT-AUTORITÄT\\SYSTEM",
            "InstalledOn=2/17/2020",
            "Name=",
            "ServicePackInEffect=",
            "Status=",
            "",
            "",
        ]
    )
    assert parse_hotfix(text) == [
        Hotfix("KB4534132", "Update", "NT-AUTORITÄT\\SYSTEM", date(2020, 2, 17)),
    ]


def test_format_list_date_error_names_the_installedon_line() -> None:
    text = "HotFixID    : KB4534132\nInstalledBy :\nInstalledOn : 2/30/2020\n"
    with pytest.raises(ParseError, match="impossible date") as caught:
        parse_hotfix(text)
    assert caught.value.line == 3


def test_format_list_record_without_hotfixid_is_an_error() -> None:
    text = (
        "HotFixID    : KB4534132\n"
        "InstalledOn : 2/17/2020\n"
        "\n"
        "InstalledBy : NT AUTHORITY\\SYSTEM\n"
        "InstalledOn : 2/18/2020\n"
    )
    with pytest.raises(ParseError, match="without a HotFixID") as caught:
        parse_hotfix(text)
    assert caught.value.line == 4


# --- systeminfo -----------------------------------------------------------------------------

# Hand-written from the German systeminfo layout (Windows 10 22H2, de-DE); the hotfix label,
# its count sentence and the network-card status lines are localized.
SYSTEMINFO_DE = """\
Hostname:                                  PC-BUERO-07
Betriebssystemname:                        Microsoft Windows 10 Pro
Betriebssystemversion:                     10.0.19045 Nicht zutreffend Build 19045
Betriebssystemhersteller:                  Microsoft Corporation
Ursprüngliches Installationsdatum:         14.03.2021, 09:12:44
Systemstartzeit:                           02.10.2023, 07:58:10
Prozessor(en):                             1 Prozessor(en) installiert.
                                           [01]: Intel64 Family 6 Model 142 Stepping 12 GenuineIntel ~1803 MHz
Gesamter physischer Speicher:              16.214 MB
Virtueller Arbeitsspeicher: Maximale Größe: 18.646 MB
Domäne:                                    WORKGROUP
Anmeldeserver:                             \\\\PC-BUERO-07
Hotfix(es):                                5 Hotfix(e) installiert.
                                           [01]: KB5029919
                                           [02]: KB5003791
                                           [03]: KB5011048
                                           [04]: KB5015684
                                           [05]: KB5030211
Netzwerkkarte(n):                          1 Netzwerkadapter installiert.
                                           [01]: Intel(R) Ethernet Connection (6) I219-V
                                                 Verbindungsname: Ethernet
                                                 DHCP aktiviert:  Ja
                                                 DHCP-Server:     192.168.178.1
                                                 IP-Adresse(n)
                                                 [01]: 192.168.178.23
Hyper-V-Anforderungen:                     Es wurde ein Hypervisor erkannt. Features, die für Hyper-V erforderlich sind, werden nicht angezeigt.
"""  # noqa: E501


def test_localized_systeminfo_section_found_by_shape() -> None:
    (only,) = parse_hotfix_tables(SYSTEMINFO_DE)
    assert (only.kind, only.first_line) == ("systeminfo", 13)
    assert [fix.kb for fix in only.rows] == [
        "KB5029919",
        "KB5003791",
        "KB5011048",
        "KB5015684",
        "KB5030211",
    ]
    assert all(fix.description is None and fix.installed_on is None for fix in only.rows)


def test_systeminfo_collapsed_and_count_glued_to_words() -> None:
    # Shape check for a web copy without indentation and a count written like "3개의".
    text = "\n".join(
        [
            "호스트 이름: PC01",
            "핫픽스: 3개의 핫픽스가 설치되었습니다.",
            "[01]: KB5029919",
            "[02]: KB5003791",
            "[03]: File 1",
            "네트워크 카드: 1개의 NIC이(가) 설치되었습니다.",
            "[01]: Realtek PCIe GbE",
        ]
    )
    assert [fix.kb for fix in parse_hotfix(text)] == ["KB5029919", "KB5003791", "File 1"]


def test_systeminfo_count_mismatch_is_an_error() -> None:
    text = SYSTEMINFO_DE.replace("                                           [05]: KB5030211\n", "")
    with pytest.raises(ParseError, match="announces 5 hotfixes but lists 4") as caught:
        parse_hotfix(text)
    assert caught.value.line == 13


def test_hotfix_item_outside_a_section_is_an_error() -> None:
    text = "Hotfix(s) list below\n   [01]: KB5029919\n"
    with pytest.raises(ParseError, match="outside") as caught:
        parse_hotfix(text)
    assert caught.value.line == 2


# --- bytes ----------------------------------------------------------------------------------

GERMAN_TABLE = table(
    row("PC-BUERO-07", "Update", "KB4537759", "NT-AUTORITÄT\\SYSTEM", "12.02.2020 00:00:00"),
    row(
        "PC-BUERO-07", "Security Update", "KB4538674", "NT-AUTORITÄT\\SYSTEM", "25.02.2020 00:00:00"
    ),
)
GERMAN_ROWS = [
    Hotfix("KB4537759", "Update", "NT-AUTORITÄT\\SYSTEM", date(2020, 2, 12)),
    Hotfix("KB4538674", "Security Update", "NT-AUTORITÄT\\SYSTEM", date(2020, 2, 25)),
]


def test_utf16_le_with_bom_as_powershell_redirect_writes_it() -> None:
    data = codecs.BOM_UTF16_LE + GERMAN_TABLE.encode("utf-16-le")
    assert parse_hotfix(data) == GERMAN_ROWS


def test_utf16_le_without_bom() -> None:
    assert parse_hotfix(GERMAN_TABLE.encode("utf-16-le")) == GERMAN_ROWS


def test_cp850_console_bytes_decode_with_the_named_code_page() -> None:
    text = table(row("EQUIPO-03", "Update", "KB4537759", "OFICINA\\Álvaro", "18/02/2020 0:00:00"))
    data = text.encode("cp850")
    assert parse_hotfix(data, codepage="cp850")[0].installed_by == "OFICINA\\Álvaro"
    assert parse_hotfix(data, codepage="850")[0].installed_by == "OFICINA\\Álvaro"
    # The same bytes read as cp437 give a box-drawing character: the code page matters.
    assert parse_hotfix(data)[0].installed_by == "OFICINA\\╡lvaro"


def test_german_cp850_bytes() -> None:
    assert parse_hotfix(GERMAN_TABLE.encode("cp850"), codepage="cp850") == GERMAN_ROWS


# --- whole-input behaviour ------------------------------------------------------------------


def test_blank_input_is_an_empty_list() -> None:
    assert parse_hotfix("") == []
    assert parse_hotfix(b"\r\n\r\n") == []


def test_header_without_rows_is_an_empty_list() -> None:
    assert parse_hotfix(table()) == []


def test_input_without_any_update_list_is_an_error() -> None:
    with pytest.raises(ParseError, match="no update list") as caught:
        parse_hotfix("\nPS C:\\> Get-HotFix\nGet-HotFix : Access denied\n")
    assert caught.value.line == 2


def test_ansi_colours_of_powershell_7_are_ignored() -> None:
    text = (
        "\x1b[32;1mSource        Description      HotFixID      InstalledBy          "
        "InstalledOn\x1b[0m\n"
        "\x1b[32;1m------        -----------      --------      -----------          "
        "-----------\x1b[0m\n"
        + row("HOST01", "Update", "KB4087256", "NT AUTHORITY\\SYSTEM", "3/22/2018 12:00:00 AM")
        + "\n"
    )
    assert parse_hotfix(text) == [
        Hotfix("KB4087256", "Update", "NT AUTHORITY\\SYSTEM", date(2018, 3, 22))
    ]


def test_hotfix_to_json_shape() -> None:
    rows = [
        Hotfix("KB4087256", "Update", "NT AUTHORITY\\SYSTEM", date(2018, 3, 22)),
        Hotfix("File 1", None, None, None),
    ]
    assert hotfix_to_json(rows) == [
        {
            "kb": "KB4087256",
            "description": "Update",
            "installed_by": "NT AUTHORITY\\SYSTEM",
            "installed_on": "2018-03-22",
        },
        {"kb": "File 1", "description": None, "installed_by": None, "installed_on": None},
    ]
    json.dumps(hotfix_to_json(rows))


# --- properties -----------------------------------------------------------------------------

FRAGMENTS = [
    "\n",
    "\r\n",
    "  ",
    " ",
    "Source        Description      HotFixID      InstalledBy          InstalledOn",
    "------        -----------      --------",
    "HotFixID",
    "InstalledOn",
    "KB4087256",
    "KB",
    "HotFixID : ",
    "InstalledOn=",
    "Hotfix(s): 2 Hotfix(s) Installed.",
    "[01]: KB4586876",
    "[02]: ",
    "3/22/2018 12:00:00 AM",
    "22.03.2018",
    "13/13/2018",
    "2018-03-22 오후 12:00:00",
    "01c9c5ce4b48e5fd",
    "ffffffffffffffff",
    "NT AUTHORITY\\SYSTEM",
    "PS C:\\> ",
    "更新",
    "a. m.",
]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=12), max_size=30).map("".join))
def test_any_text_gives_rows_or_parse_error(text: str) -> None:
    try:
        result = parse_hotfix(text)
    except ParseError:
        return
    assert all(isinstance(fix, Hotfix) for fix in result)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["cp437", "cp850", "cp932", "cp949", "nope"]))
def test_any_bytes_give_rows_or_parse_error(data: bytes, codepage: str) -> None:
    try:
        result = parse_hotfix(data, codepage)
    except ParseError:
        return
    assert all(isinstance(fix, Hotfix) for fix in result)


WORD = st.text(
    alphabet=st.sampled_from(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789\\-_.ÄéüÀ更新安全"
    ),
    min_size=1,
    max_size=10,
)
PHRASE = st.lists(WORD, min_size=1, max_size=3).map(" ".join)
HOTFIX_ROW = st.tuples(
    st.from_regex(r"[A-Z0-9][A-Z0-9-]{0,14}", fullmatch=True),
    st.builds(
        Hotfix,
        kb=st.integers(100_000, 9_999_999).map(lambda n: f"KB{n}"),
        description=st.none() | st.sampled_from(["Update", "Security Update", "Hotfix"]) | PHRASE,
        installed_by=st.none() | PHRASE,
        installed_on=st.none() | st.dates(date(1980, 1, 1), date(2200, 12, 31)),
    ),
)


def cells(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def printed_date(day: date, style: str) -> str:
    if style == "en-US":
        return f"{day.month}/{day.day}/{day.year} 12:00:00 AM"
    if style == "de":
        return f"{day.day:02}.{day.month:02}.{day.year} 00:00:00"
    return f"{day.isoformat()} 0:00:00"


def render_get_hotfix(rows: list[tuple[str, Hotfix]], style: str) -> str:
    """Lay rows out as Format-Table does: each column as wide as its widest cell."""
    header = ["Source", "Description", "HotFixID", "InstalledBy", "InstalledOn"]
    body = [
        [
            source,
            fix.description or "",
            fix.kb,
            fix.installed_by or "",
            printed_date(fix.installed_on, style) if fix.installed_on else "",
        ]
        for source, fix in rows
    ]
    widths = [max(cells(line[i]) for line in [header, *body]) for i in range(len(header))]

    def lay(line: list[str]) -> str:
        return " ".join(
            cell + " " * (widths[i] - cells(cell)) for i, cell in enumerate(line)
        ).rstrip()

    dashes = ["-" * len(name) for name in header]
    return "\r\n".join(["", lay(header), lay(dashes), *(lay(line) for line in body), "", ""])


@settings(max_examples=150, derandomize=True, deadline=None)
@given(
    st.lists(HOTFIX_ROW, max_size=8),
    st.sampled_from(["en-US", "de", "iso"]),
    st.booleans(),
)
def test_get_hotfix_table_round_trips(
    rows: list[tuple[str, Hotfix]], style: str, utf16: bool
) -> None:
    text = render_get_hotfix(rows, style)
    data: str | bytes = codecs.BOM_UTF16_LE + text.encode("utf-16-le") if utf16 else text
    assert parse_hotfix(data) == [fix for _, fix in rows]


def test_round_trip_renderer_matches_the_corpus_layout() -> None:
    # Guard the property test's renderer against drifting away from real output.
    rows = [
        ("27171k8s9000", Hotfix("KB4087256", "Update", "NT AUTHORITY\\SYSTEM", date(2018, 3, 22))),
        ("27171k8s9000", Hotfix("KB4089848", "Update", "NT AUTHORITY\\SYSTEM", date(2018, 4, 4))),
    ]
    rendered = [line.split() for line in render_get_hotfix(rows, "en-US").splitlines() if line]
    corpus = (CORPUS / "hotfix-en-2.txt").read_text(encoding="utf-8").splitlines()
    real = [line.split() for line in corpus[6:] if line.strip()]
    assert rendered == real


# --- issue 11: wide values, localized sections, notes and omissions -----------------------------


def _wmic_table(rows: list[tuple[str, str, str]]) -> str:
    """Render ``wmic qfe`` as it pads: column widths and padding counted in UTF-8 bytes.

    A row whose InstalledBy is Cyrillic or CJK is then short of characters, so its later
    columns start left of the header's: the date lands under InstalledBy.
    """
    width = max(len("InstalledBy"), *(len(by.encode("utf-8")) for _, by, _ in rows)) + 2
    header = (
        "Caption                                     CSName  Description  HotFixID   "
        + "InstalledBy".ljust(width)
        + "InstalledOn  Name  Status"
    )
    lines = [header]
    for kb, by, when in rows:
        pad = " " * (width - len(by.encode("utf-8")))
        lines.append(
            f"http://support.microsoft.com/?kbid={kb[2:]}  WIN-01  Update       {kb}  {by}{pad}"
            f"{when.ljust(13)}"
        )
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "name", ["НТ АВТОРИТЕТ\\СИСТЕМА", "管理员 管理员 管理员", "ВАСИЛИЙ ПЕТРОВИЧ"]
)
def test_wmic_row_with_a_wide_installer_keeps_its_date(name: str) -> None:
    text = _wmic_table(
        [("KB3199986", "NT AUTHORITY\\SYSTEM", "11/21/2016"), ("KB3199987", name, "11/22/2016")]
    )
    rows = parse_hotfix(text)
    assert [(r.kb, r.installed_by, r.installed_on) for r in rows] == [
        ("KB3199986", "NT AUTHORITY\\SYSTEM", date(2016, 11, 21)),
        ("KB3199987", name, date(2016, 11, 22)),
    ]


@pytest.mark.parametrize(
    "count_line",
    [
        "修补程序:         安装了 2 个修补程序。",
        "Revisiones:       Se instalaron 2 revisiones.",
        "Correctif(s):     2 Corrections installées.",
    ],
)
def test_systeminfo_section_found_whatever_the_language(count_line: str) -> None:
    text = f"Host Name: PC01\n{count_line}\n   [01]: KB5029919\n   [02]: KB5003791\n"
    assert [fix.kb for fix in parse_hotfix(text)] == ["KB5029919", "KB5003791"]


def test_systeminfo_items_must_count_up_without_a_gap() -> None:
    text = "Hotfix(s): 2 Hotfix(s) Installed.\n   [01]: KB5029919\n   [03]: KB5003791\n"
    with pytest.raises(ParseError, match=r"\[03\] where \[02\] was due") as caught:
        parse_hotfix(text)
    assert caught.value.line == 3


def test_an_omission_inside_an_update_table_is_refused() -> None:
    text = (CORPUS / "hotfix-en-3.txt").read_text(encoding="utf-8").splitlines()
    row = next(i for i, line in enumerate(text) if "KB5001078" in line)
    text.insert(row + 1, "...")
    with pytest.raises(ParseError, match="omission") as caught:
        parse_hotfix("\n".join(text))
    assert caught.value.line == row + 2


def test_a_note_hidden_in_a_padded_wmic_row_is_reported() -> None:
    header, row = _wmic_table([("KB3199986", "NT AUTHORITY\\SYSTEM", "11/21/2016")]).splitlines()
    warnings: list[ParseWarning] = []
    text = f"{header}\n{row.ljust(len(header) + 2)}   <- this one\n"
    rows = parse_hotfix(text, warnings=warnings)
    assert [(r.kb, r.installed_on) for r in rows] == [("KB3199986", date(2016, 11, 21))]
    assert [(w.line, "note" in w.message) for w in warnings] == [(2, True)]


def test_eight_thousand_key_value_lines_are_read_once() -> None:
    # Was quadratic (37 s); bench.parsers times it, this only checks the answer.
    text = "".join(f"key{i}: value {i}\n" for i in range(8000))
    with pytest.raises(ParseError, match="no update list found"):
        parse_hotfix(text)
