"""What Windows PowerShell 5.1 writes on a redirected stderr: CLIXML, as a WinRS client sees it.

With -EncodedCommand and its output redirected (always so under WinRS), powershell.exe writes
its error, warning and progress streams as one CLIXML document on stderr: ``#< CLIXML`` on a
line, then ``<Objs ...>`` at the first record, each record as it comes, and ``</Objs>`` when it
exits. Progress records come even on success (the first module load's "Preparing modules for
first use.", pywinrm#245); a terminating error arrives as the lines of PowerShell's error
view, one ``<S S="Error">`` each, the record ended by a line holding a single space. Shapes as
in public captures of Windows PowerShell 5.1 output (packer, Ansible and pywinrm reports);
the texts are English whatever the host's display language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

HEADER = "#< CLIXML\r\n"
OPEN = '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
CLOSE = "</Objs>"
FIRST_USE = "Preparing modules for first use."
_CRLF = "\r\n"
# Characters CLIXML writes as _xHHHH_ (control characters, and "_x" itself, as _x005F_).
_ESCAPED = re.compile(r"[\x00-\x1f\x7f]|_(?=x[0-9A-Fa-f]{4}_)")


@dataclass(frozen=True, slots=True)
class ErrorView:
    """A terminating error as PowerShell's error view prints it."""

    message: str
    category: str  # e.g. InvalidOperation
    exception: str  # the exception's type name, e.g. RuntimeException
    error_id: str  # FullyQualifiedErrorId
    code: str  # the statement that failed
    line: int = 1
    char: int = 1

    def lines(self) -> list[str]:
        """Return the error view's lines, as Windows PowerShell 5.1 prints them."""
        return [
            *self.message.splitlines(),
            f"At line:{self.line} char:{self.char}",
            f"+ {self.code}",
            "+ " + "~" * max(1, len(self.code) - self.char + 1),
            f"    + CategoryInfo          : {self.category}: (:) [], {self.exception}",
            f"    + FullyQualifiedErrorId : {self.error_id}",
            " ",
        ]


def clixml_string(text: str) -> str:
    """Return text as CLIXML writes a string: XML-escaped, control characters as _xHHHH_."""
    return escape(_ESCAPED.sub(lambda m: f"_x{ord(m.group(0)):04X}_", text))


def progress_record(activity: str = FIRST_USE, source_id: int = 1, ref_id: int = 0) -> str:
    """Return a completed progress record (no parent, no percentage, no time left)."""
    return (
        f'<Obj S="progress" RefId="{ref_id}"><TN RefId="{ref_id}">'
        "<T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN>"
        f'<MS><I64 N="SourceId">{source_id}</I64><PR N="Record">'
        f"<AV>{clixml_string(activity)}</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC>"
        "<T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj>"
    )


def error_lines(error: ErrorView) -> str:
    """Return an error record as the Error-stream strings of its view's lines."""
    return "".join(f'<S S="Error">{clixml_string(line + _CRLF)}</S>' for line in error.lines())


def stderr_document(*records: str) -> str:
    """Return a whole stderr: the header, the records, the end (what a finished run wrote)."""
    return HEADER + OPEN + "".join(records) + CLOSE
