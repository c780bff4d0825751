"""What cmd.exe answers for a command line other than the probe, as far as a simulated host can.

WinRS runs a command through ``cmd /c`` unless the client skips the shell. The simulated host
knows cmd's own commands that need no machine behind them (echo, set, exit, ver, cd) and joins
them with ``&``, ``&&`` and ``||``; ``>&2`` sends a command's output to stderr. A program it
does not know is what cmd.exe calls not recognized: that text on stderr and errorlevel 9009
(the recorded stderr_rc exchange shows echo and exit; the 9009 text is cmd.exe's own, in
English whatever the host's display language). Quoting and other redirections are not modelled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from collector.simulator.winrs import CommandRequest, CommandResult

NOT_FOUND = 9009
NOT_RECOGNIZED = (
    "'{0}' is not recognized as an internal or external command,\r\n"
    "operable program or batch file.\r\n"
)
VERSION = "\r\nMicrosoft Windows [Version 10.0.{build}]\r\n"
_OPERATOR = re.compile(r"(&&|\|\||(?<!>)&)")
# Programs every Windows has, which the simulated host does not imitate: not "not found".
WINDOWS_PROGRAMS = frozenset(
    [
        "hostname",
        "whoami",
        "ipconfig",
        "netsh",
        "netstat",
        "ping",
        "powershell",
        "sc",
        "net",
        "tasklist",
        "systeminfo",
        "wmic",
        "reg",
        "findstr",
        "where",
    ]
)
NOT_IMITATED = "portfleet's simulated Windows host does not run {0}; it runs the probe\r\n"
_TO_STDERR = re.compile(r"1?>&2")
_EXIT = re.compile(r"exit(?:\s+/b)?(?:\s+(-?\d+))?\s*", re.IGNORECASE)


def run_cmd(request: CommandRequest, build: str = "22631.4317") -> CommandResult:
    """Run a command line as cmd.exe would, for the commands described above."""
    program, _, rest = request.command_line.strip().partition(" ")
    name = program.rsplit("\\", 1)[-1].lower().removesuffix(".exe")
    line = request.command_line
    if name == "cmd":
        switch, _, after = rest.strip().partition(" ")
        line = after if switch.lower() in ("/c", "/k") else ""
    stdout: list[str] = []
    stderr: list[str] = []
    level = 0
    parts = _OPERATOR.split(line)
    operator = "&"
    for index in range(0, len(parts), 2):
        if index:
            operator = parts[index - 1]
        if (operator == "&&" and level != 0) or (operator == "||" and level == 0):
            continue
        part = parts[index].lstrip()  # cmd keeps the spaces before an operator: "echo a & b"
        if not part.strip():
            continue
        exit_match = _EXIT.fullmatch(part.strip())
        if exit_match:
            return CommandResult("".join(stdout), "".join(stderr), int(exit_match.group(1) or 0))
        to_stderr = _TO_STDERR.search(part) is not None
        text, level = _builtin(_TO_STDERR.sub("", part), request, build)
        if level != 0:
            stderr.append(text)
        else:
            (stderr if to_stderr else stdout).append(text)
    return CommandResult("".join(stdout), "".join(stderr), level)


def _builtin(part: str, request: CommandRequest, build: str) -> tuple[str, int]:
    word, _, argument = part.partition(" ")
    verb = word.lower()
    if verb == "echo" or verb.startswith("echo."):
        return (argument if verb == "echo" else part[5:]) + "\r\n", 0
    if verb == "set" and not argument:
        return _variables(request.environment), 0
    if verb == "ver":
        return VERSION.format(build=build), 0
    if verb in ("cd", "chdir") and not argument:
        return (request.working_directory or _PROFILE) + "\r\n", 0
    program = verb.rsplit("\\", 1)[-1].removesuffix(".exe")
    if program in WINDOWS_PROGRAMS:
        return NOT_IMITATED.format(word), 1
    return NOT_RECOGNIZED.format(word), NOT_FOUND


_PROFILE = "C:\\Users\\portfleet"


def _variables(environment: Mapping[str, str]) -> str:
    base = {"ComSpec": "C:\\Windows\\system32\\cmd.exe", "OS": "Windows_NT", "PROMPT": "$P$G"}
    merged = {**base, **environment}
    return "".join(f"{k}={v}\r\n" for k, v in sorted(merged.items(), key=lambda i: i[0].upper()))
