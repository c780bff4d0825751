"""collector.parsers.clixml reads PowerShell's CLIXML stderr by structure, never by its words."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.parsers.clixml import Progress, StreamText, parse_clixml, stderr_text
from collector.parsers.errors import ParseError
from collector.simulator.powershell import (
    ErrorView,
    clixml_string,
    error_lines,
    progress_record,
    stderr_document,
)

OBJS = '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
# Windows PowerShell 5.1 on success: the first module load's progress record, as published
# captures show it (packer's and pywinrm users' logs; see collector/simulator/powershell.py).
SUCCESS = (
    "#< CLIXML\r\n" + OBJS + '<Obj S="progress" RefId="0"><TN RefId="0">'
    "<T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN>"
    '<MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.</AV>'
    "<AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR></MS>"
    "</Obj></Objs>"
)
# The same host failing: the error view's lines, one string each, ended by a " " line.
FAILURE = SUCCESS.removesuffix("</Objs>") + (
    "<S S=\"Error\">no-such-cmd : The term 'no-such-cmd' is not recognized as the name of a "
    "cmdlet, function, script file, or operable _x000D__x000A_</S>"
    '<S S="Error">program. Check the spelling of the name._x000D__x000A_</S>'
    '<S S="Error">At line:1 char:1_x000D__x000A_</S>'
    '<S S="Error">+ no-such-cmd_x000D__x000A_</S><S S="Error">+ ~~~~~~~~~~~_x000D__x000A_</S>'
    '<S S="Error">    + CategoryInfo          : ObjectNotFound: (no-such-cmd:String) [], '
    "CommandNotFoundException_x000D__x000A_</S>"
    '<S S="Error">    + FullyQualifiedErrorId : CommandNotFoundException_x000D__x000A_</S>'
    '<S S="Error"> _x000D__x000A_</S></Objs>'
)
FIRST_USE = Progress("Preparing modules for first use.", " ", 0, -1, -1, -1, True, 1)


def test_a_successful_run_holds_one_completed_progress_record_and_no_text() -> None:
    parsed = parse_clixml(SUCCESS.encode("ascii"))
    assert parsed.progress == (FIRST_USE,)
    assert (parsed.strings, parsed.native, parsed.errors()) == ((), (), [])
    assert stderr_text(SUCCESS.encode("ascii")) == ""


def test_an_error_record_is_its_view_lines_up_to_the_blank_one() -> None:
    parsed = parse_clixml(FAILURE)
    assert len(parsed.strings) == 8 and {s.stream for s in parsed.strings} == {"error"}
    [record] = parsed.errors()
    assert record.startswith("no-such-cmd : The term 'no-such-cmd' is not recognized")
    assert record.endswith("FullyQualifiedErrorId : CommandNotFoundException")
    assert "_x000D_" not in record and "\r" not in record
    assert stderr_text(FAILURE.encode()) == record


def test_the_same_structure_in_another_language_reads_the_same_way() -> None:
    french = FAILURE.replace("Preparing modules for first use.", "Préparation des modules")
    french = french.replace("At line:1 char:1", "Au caractère Ligne:1 : 1")
    parsed = parse_clixml(french.encode("utf-8"))
    assert parsed.progress[0].completed and parsed.progress[0].activity_id == 0
    assert len(parsed.errors()) == 1 and "Au caractère" in parsed.errors()[0]


def test_warnings_native_text_two_documents_and_escapes() -> None:
    data = (
        "\ufeff#< CLIXML\r\nusage: tool <file>\r\n"
        + OBJS
        + '<S S="warning">careful: a_x005F_x0041_ &amp; _xD83D__xDE00_</S></Objs>'
        + "#< CLIXML\r\n"
        + OBJS
        + '<S S="Error">two</S><S S="verbose">loud</S></Objs>'
    )
    parsed = parse_clixml(data)
    assert parsed.native == ("usage: tool <file>\r\n",)
    assert parsed.strings == (
        StreamText("warning", "careful: a_x0041_ & 😀"),
        StreamText("error", "two"),
        StreamText("verbose", "loud"),
    )
    assert stderr_text(data.encode("utf-8")) == "usage: tool <file>\ntwo\ncareful: a_x0041_ & 😀"


@pytest.mark.parametrize(
    ("data", "line", "reason"),
    [
        ("plain text\r\n", 1, "not CLIXML"),
        ("#< CLIXML\r\n" + OBJS + '<S S="Error">cut', 2, "cut off"),
        ("#< CLIXML\r\n\r\n" + OBJS + "<S S='Error'>a</Objs>", 3, "not XML"),
        ("#< CLIXML\r\n" + OBJS + '<Obj S="progress" RefId="0"></Obj></Objs>', 2, "MS/PR"),
        ("#< CLIXML\r\n" + OBJS + '<S S="shout">x</S></Objs>', 2, "unexpected"),
    ],
)
def test_what_cannot_be_read_is_refused_naming_the_line(data: str, line: int, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_clixml(data)
    assert caught.value.line == line and reason in caught.value.reason


def test_a_damaged_stderr_still_reads_as_text_for_a_message() -> None:
    cut = FAILURE[: FAILURE.index("At line")]
    assert stderr_text(cut.encode()).startswith("no-such-cmd : The term")
    assert stderr_text(b"Access is denied.\r\n") == "Access is denied."


@given(
    message=st.text(st.characters(codec="utf-8"), min_size=1).filter(
        lambda text: " " not in text.splitlines()  # a line of one space ends a record
    ),
    activity=st.text(st.characters(codec="utf-8")),
)
def test_whatever_the_text_what_the_simulated_host_writes_reads_back(
    message: str, activity: str
) -> None:
    view = ErrorView(message, "NotSpecified", "RuntimeException", "Thrown", "throw $x")
    data = stderr_document(progress_record(activity), error_lines(view)).encode("utf-8")
    parsed = parse_clixml(data)
    assert [p.activity for p in parsed.progress] == [activity]
    expected = "".join(line + "\r\n" for line in view.lines()[:-1])  # up to the " " line
    assert parsed.errors() == [expected.replace("\r\n", "\n").strip()]
    assert clixml_string(message).isascii() or not message.isascii()
