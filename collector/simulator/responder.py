"""What a simulated Windows host runs: the transport's bootstrap, and the probe it receives.

The answer is the framed document the real probe would print. Where the probe text does not
switch the console to UTF-8 before running native commands, the host's raw command output
passes through the shell's console code page first, as on Windows: a Japanese netsh header
under code page 437 arrives as question marks. That keeps the probe honest.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from collector.framing import BEGIN, frame_document
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
NOT_RECOGNIZED = (
    "'{0}' is not recognized as an internal or external command,\r\n"
    "operable program or batch file.\r\n"
)

DocumentSource = Callable[[], dict[str, Any]]


class ProbeResponder:
    """A command handler for ``WsmanServer`` that answers the portfleet probe."""

    def __init__(
        self,
        documents: DocumentSource,
        sweep_seconds: float = 0.0,
        language_mode: str = "FullLanguage",
    ) -> None:
        """Answer with ``documents()``.

        A language mode other than FullLanguage (an AppLocker or WDAC policy) blocks every
        .NET method call, as Windows does.
        """
        self._documents = documents
        self._sweep_seconds = sweep_seconds
        self.language_mode = language_mode
        self.probes_answered = 0
        self.last_script: str | None = None

    def __call__(self, request: CommandRequest) -> CommandResult:
        """Run the request the way powershell.exe would, as far as the probe needs."""
        if request.script is None:
            return CommandResult(stderr=NOT_RECOGNIZED.format(request.command), exit_code=1)
        script = request.script
        if self.language_mode != "FullLanguage":
            return _constrained(script)
        if _READS_STDIN in script:
            try:
                script = base64.b64decode(b"".join(request.stdin.split()), validate=True).decode(
                    "utf-8"
                )
            except (binascii.Error, UnicodeDecodeError):
                return CommandResult(
                    stderr='Exception calling "FromBase64String": invalid input\r\n', exit_code=1
                )
        self.last_script = script
        if BEGIN not in script:
            return CommandResult(
                stderr="The simulated host only runs the portfleet probe.\r\n", exit_code=1
            )
        document = self._documents()
        if _SETS_UTF8_CONSOLE not in script:
            document = _through_console(document, request.codepage)
        self.probes_answered += 1
        body = json.dumps(document, ensure_ascii=False).encode("utf-8")
        return CommandResult(stdout=frame_document(body), duration=self._sweep_seconds)


def _constrained(script: str) -> CommandResult:
    """Run a script as a locked-down session would: its language-mode guard, or an error."""
    guard = _MARKER_LINE.search(script)
    if _CHECKS_LANGUAGE in script and guard is not None:
        return CommandResult(stdout=f"{guard.group(1)}\r\n", exit_code=int(guard.group(2)))
    return CommandResult(stderr=METHOD_BLOCKED, exit_code=1)


def _through_console(document: dict[str, Any], codepage: int) -> dict[str, Any]:
    """Return the document with native command output mangled by the console code page."""
    codec = console_codec(codepage)
    raw = {
        key: text.encode(codec, errors="replace").decode(codec, errors="replace")
        for key, text in document.get("raw", {}).items()
    }
    return {**document, "raw": raw}
