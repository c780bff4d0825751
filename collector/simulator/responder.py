"""What a simulated Windows host runs: the transport's bootstrap, and the probe it receives.

The answer is the framed document the real probe would print, after the probe's run time.
Where the probe text does not switch the console to UTF-8 before running native commands, the
host's raw command output passes through the shell's console code page first, as on Windows: a
Japanese netsh header under code page 437 arrives as question marks. That keeps the probe
honest. PowerShell's stderr is CLIXML as Windows PowerShell writes it (collector.simulator.
powershell): a progress record at once, even on success, and error records when it fails.
Other command lines get cmd.exe's answers (collector.simulator.cmdshell).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from collector.framing import BEGIN, frame_document
from collector.simulator.cmdshell import run_cmd
from collector.simulator.host import HostState
from collector.simulator.powershell import (
    CLOSE,
    HEADER,
    OPEN,
    ErrorView,
    error_lines,
    progress_record,
    stderr_document,
)
from collector.simulator.prevent import ApplyRefused, is_prevent_script, run_prevent
from collector.simulator.winrs import console_codec
from collector.simulator.wsman import CommandRequest, CommandResult

# What a bootstrap that reads the probe from stdin contains, and what the probe contains.
_READS_STDIN = "[Console]::In.ReadToEnd()"
_SETS_UTF8_CONSOLE = "[Console]::OutputEncoding"
_CHECKS_LANGUAGE = "$ExecutionContext.SessionState.LanguageMode"
_MARKER_LINE = re.compile(r"Write-Output '([^']*)'; exit (\d+)")
# PowerShell's error when ConstrainedLanguage blocks a .NET method call.
METHOD_BLOCKED = (
    "Cannot invoke method. Method invocation is supported only on core types in this "
    "language mode.\r\n"
)
ONLY_THE_PROBE = "The simulated host only runs the portfleet probe."
# When, in a run, Windows PowerShell reports its first module load (a fraction of its run).
_FIRST_USE_AT = 0.02

DocumentSource = Callable[[], dict[str, Any]]
RunTime = Callable[[], float]


class ProbeResponder:
    """A command handler for ``WsmanServer`` that answers the portfleet probe."""

    def __init__(
        self,
        documents: DocumentSource,
        sweep_seconds: float | RunTime = 0.0,
        language_mode: str = "FullLanguage",
        state: Callable[[], HostState] | None = None,
    ) -> None:
        """Answer with ``documents()`` after ``sweep_seconds`` (a number, or asked each run).

        A language mode other than FullLanguage (an AppLocker or WDAC policy) blocks every
        .NET method call, as Windows does. ``state``, the host's state tonight, lets it answer
        the prevent script too (``collector.simulator.prevent``).
        """
        self._state = state
        self._documents = documents
        self._run_time: RunTime = (
            sweep_seconds if callable(sweep_seconds) else (lambda: float(sweep_seconds))
        )
        self.language_mode = language_mode
        self.probes_answered = 0
        self.last_script: str | None = None

    def __call__(self, request: CommandRequest) -> CommandResult:
        """Run the request the way powershell.exe (or else cmd.exe) would, as the probe needs."""
        if request.script is None:
            return run_cmd(request)
        script = request.script
        if self.language_mode != "FullLanguage":
            return _constrained(script)
        if _READS_STDIN in script:
            try:
                script = base64.b64decode(b"".join(request.stdin.split()), validate=True).decode(
                    "utf-8"
                )
            except (binascii.Error, UnicodeDecodeError):
                return _failed(
                    ErrorView(
                        'Exception calling "FromBase64String" with "1" argument(s): "The input '
                        "is not a valid Base-64 string as it contains a non-base 64 character, "
                        "more than two padding characters, or an illegal character among the "
                        'padding characters. "',
                        "NotSpecified",
                        "MethodInvocationException",
                        "FormatException",
                        "$text = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String("
                        "$payload))",
                        line=5,
                        char=1,
                    )
                )
        self.last_script = script
        if self._state is not None and is_prevent_script(script):
            return _prevent(script, request.script, self._state())
        if BEGIN not in script:
            return _failed(
                ErrorView(
                    ONLY_THE_PROBE,
                    "NotImplemented",
                    "WriteErrorException",
                    "portfleet.simulator.OnlyTheProbe",
                    script.strip().splitlines()[0][:60] if script.strip() else "",
                )
            )
        document = self._documents()
        if _SETS_UTF8_CONSOLE not in script:
            document = _through_console(document, request.codepage)
        self.probes_answered += 1
        body = json.dumps(document, ensure_ascii=False).encode("utf-8")
        seconds = max(0.0, self._run_time())
        return CommandResult(
            stdout=frame_document(body),
            stderr=CLOSE,
            duration=seconds,
            # The first module load's progress, on stderr while the probe still runs.
            output=((seconds * _FIRST_USE_AT, "stderr", HEADER + OPEN + progress_record()),),
        )


def _prevent(script: str, command_line: str, state: HostState) -> CommandResult:
    """Run the prevent script as the host's state says it would go (its JSON, its exit code)."""
    try:
        printed, code = run_prevent(script, command_line, state)
    except ApplyRefused as exc:
        return _failed(
            ErrorView(str(exc), "NotImplemented", "WriteErrorException", "portfleet.simulator", "")
        )
    return CommandResult(stdout=printed.replace("\n", "\r\n") + "\r\n", exit_code=code)


def _failed(error: ErrorView) -> CommandResult:
    """Return a run that ended with a terminating error: its records on stderr, exit code 1."""
    return CommandResult(stderr=stderr_document(progress_record(), error_lines(error)), exit_code=1)


def _constrained(script: str) -> CommandResult:
    """Run a script as a locked-down session would: its language-mode guard, or an error."""
    guard = _MARKER_LINE.search(script)
    if _CHECKS_LANGUAGE in script and guard is not None:
        return CommandResult(stdout=f"{guard.group(1)}\r\n", exit_code=int(guard.group(2)))
    statement = next((line for line in script.splitlines() if "::" in line), script)
    return _failed(
        ErrorView(
            METHOD_BLOCKED.strip(),
            "InvalidOperation",
            "RuntimeException",
            "MethodInvocationNotSupportedInConstrainedLanguage",
            statement.strip(),
        )
    )


def _through_console(document: dict[str, Any], codepage: int) -> dict[str, Any]:
    """Return the document with native command output mangled by the console code page."""
    codec = console_codec(codepage)
    raw = {
        key: text.encode(codec, errors="replace").decode(codec, errors="replace")
        for key, text in document.get("raw", {}).items()
    }
    return {**document, "raw": raw}
