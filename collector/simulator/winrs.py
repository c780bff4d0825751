"""The WinRS cmd shell of a simulated host: shells, commands, their stdin and streamed output.

Each operation takes a parsed request and returns the response envelope, or raises ShellFault
with the fault Windows would send. Commands are run by a caller-given handler, which says what
they print and when; a Receive answers with what has been printed so far (state Running) as
soon as there is any, and the Done state with the exit code once the command has ended and all
is delivered. A Receive that sees nothing within OperationTimeout gets the w:TimedOut fault.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from collector.simulator import envelope as env

_LOG = logging.getLogger(__name__)
# What cmd.exe prints (on stderr, exit code 1) when its command line exceeds 8191 characters.
TOO_LONG = b"The command line is too long.\r\n"
DEFAULT_ENVELOPE = 153600  # pywinrm's MaxEnvelopeSize; Windows fits each response under it
_CHUNK = 4096  # raw bytes per rsp:Stream, about what a host forwards per console pipe read
_DEFAULT_TIMEOUT = 60.0  # MaxTimeoutms, for a request without a usable OperationTimeout
_IDLE_TIMEOUT = 7200.0  # IdleTimeout, Windows' default for a shell that does not ask


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """One command as the simulated host's cmd shell received it."""

    command_line: str  # Command and Arguments joined by spaces, as cmd.exe sees them
    command: str
    arguments: tuple[str, ...]
    script: str | None  # PowerShell text decoded from -EncodedCommand, when that was used
    stdin: bytes
    codepage: int
    environment: Mapping[str, str]
    working_directory: str | None
    skip_cmd_shell: bool


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command prints (str is encoded in the shell's code page), returns and how long.

    ``output`` is printed while it runs: (seconds after the start, "stdout" or "stderr", text);
    ``stdout`` and ``stderr`` are printed as it ends, ``duration`` seconds after the start.
    """

    stdout: str | bytes = ""
    stderr: str | bytes = ""
    exit_code: int = 0
    duration: float = 0.0
    output: tuple[tuple[float, str, str | bytes], ...] = ()


CommandHandler = Callable[[CommandRequest], CommandResult]


@dataclass(frozen=True, slots=True)
class ShellLimits:
    """The Windows limits the shell enforces (see Behaviour in wsman for their meaning)."""

    max_command_line: int | None = 8191
    operation_timeout_scale: float = 1.0
    timeout_fault: bool = True
    max_envelope_size: int = DEFAULT_ENVELOPE


class ShellFault(Exception):
    """An operation Windows would refuse with this fault."""

    def __init__(self, fault: env.WsmanFault) -> None:
        """Carry the fault to answer with."""
        super().__init__(fault.reason)
        self.fault = fault


def console_codec(codepage: int) -> str:
    """Return Python's codec for a console code page (65001 is UTF-8)."""
    return "utf-8" if codepage == 65001 else f"cp{codepage}"


def encode_output(data: str | bytes, codepage: int) -> bytes:
    """Encode command output as a console in codepage does, unmappable characters as '?'."""
    if isinstance(data, bytes):
        return data
    return data.encode(console_codec(codepage), errors="replace")


def decode_encoded_command(command_line: str) -> str | None:
    """Return the script of a `powershell -EncodedCommand <base64>` line, else None."""
    tokens = command_line.split()
    program = tokens[0].lower().rsplit("\\", 1)[-1] if tokens else ""
    if program.removesuffix(".exe") not in ("powershell", "pwsh"):
        return None
    for flag, value in itertools.pairwise(tokens[1:]):
        name = flag.lower()[1:]
        # PowerShell accepts any prefix of a parameter name, and -ec as an alias.
        if flag[:1] in "-/" and name and (name == "ec" or "encodedcommand".startswith(name)):
            try:
                return base64.b64decode(value, validate=True).decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


@dataclass(slots=True, eq=False)
class _Command:
    command: str
    arguments: tuple[str, ...]
    skip_cmd_shell: bool
    started: float
    stdin: bytearray = field(default_factory=bytearray)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ran: bool = False
    pending: list[tuple[float, str, bytes]] = field(default_factory=list)  # (when, stream, data)
    out: bytes = b""  # printed and not yet delivered
    err: bytes = b""
    exit_code: int = 0
    done_at: float = 0.0
    delivered: bool = False

    def release(self, now: float) -> None:
        """Move what has been printed by ``now`` into the undelivered output."""
        while self.pending and self.pending[0][0] <= now:
            _, stream, data = self.pending.pop(0)
            if stream == "stderr":
                self.err += data
            else:
                self.out += data

    def ended(self, now: float) -> bool:
        """Tell whether the command has exited and printed everything by ``now``."""
        return now >= self.done_at and not self.pending

    def next_event(self) -> float:
        """Return when the command next prints or ends."""
        return self.pending[0][0] if self.pending else self.done_at


@dataclass(slots=True, eq=False)
class _Shell:
    codepage: int
    environment: dict[str, str]
    working_directory: str | None
    commands: dict[str, _Command] = field(default_factory=dict)


# A bare program name that WinRS, started without cmd.exe, would not find (CreateProcess does
# not search PATH for it; the recorded no_cmd_shell answer). A path, or a name with a directory,
# is taken as found.
def _found_without_cmd(program: str) -> bool:
    return "\\" in program or "/" in program or ":" in program


def _tag(local: str) -> str:
    return f"{{{env.NS_SHELL}}}{local}"


class WinrsShells:
    """The open shells of one host and the six WinRS operations on them."""

    def __init__(
        self,
        handler: CommandHandler,
        limits: ShellLimits,
        wait: Callable[[float], None],
        owner: str,
    ) -> None:
        """Run commands with handler; wait(seconds) sleeps, raising if the server stops."""
        self._handler = handler
        self._limits = limits
        self._wait = wait
        self._owner = owner
        self._shells: dict[str, _Shell] = {}
        self._lock = threading.Lock()

    def count(self) -> int:
        """Return how many shells are open."""
        with self._lock:
            return len(self._shells)

    def create(self, request: env.WsmanRequest, address: str, client_ip: str) -> bytes:
        """Open a shell with the request's code page, environment and working directory."""
        codepage = request.options.get("WINRS_CODEPAGE", "437")
        if not codepage.isdigit() or not _known_codepage(int(codepage)):
            raise ShellFault(env.INVALID_PARAMETER)
        node = request.body.find(_tag("Shell"))
        environment: dict[str, str] = {}
        directory = None
        idle = _IDLE_TIMEOUT
        if node is not None:
            for var in node.iterfind(f"{_tag('Environment')}/{_tag('Variable')}"):
                environment[var.get("Name", "")] = var.text or ""
            directory = node.findtext(_tag("WorkingDirectory"))
            asked = env.parse_duration(node.findtext(_tag("IdleTimeOut")) or "")
            idle = asked if asked is not None else idle
        shell_id = env.new_guid()
        with self._lock:
            self._shells[shell_id] = _Shell(int(codepage), environment, directory)
        body = env.created_element(address, shell_id) + env.shell_element(
            shell_id, self._owner, client_ip, environment, directory, idle
        )
        return env.build_response(f"{env.NS_TRANSFER}/CreateResponse", request.message_id, body)

    def command(self, request: env.WsmanRequest) -> bytes:
        """Start a command; it runs (calls the handler) when its output is first asked for."""
        shell = self._shell(request)
        line = request.body.find(_tag("CommandLine"))
        if line is None:
            raise ShellFault(env.INVALID_PARAMETER)
        command = (line.findtext(_tag("Command")) or "").strip()
        arguments = tuple(a.text or "" for a in line.iterfind(_tag("Arguments")))
        skip = request.options.get("WINRS_SKIP_CMD_SHELL", "FALSE").upper() == "TRUE"
        if skip and not _found_without_cmd(command.split()[0] if command else ""):
            raise ShellFault(env.FILE_NOT_FOUND)
        command_id = env.new_guid()
        with self._lock:
            shell.commands[command_id] = _Command(command, arguments, skip, time.monotonic())
        body = f"<rsp:CommandId>{command_id}</rsp:CommandId>"
        return env.build_response(
            f"{env.NS_SHELL}/CommandResponse",
            request.message_id,
            f"<rsp:CommandResponse>{body}</rsp:CommandResponse>",
        )

    def send(self, request: env.WsmanRequest) -> bytes:
        """Append base64 stdin chunks to their command."""
        shell = self._shell(request)
        for stream in request.body.iterfind(f"{_tag('Send')}/{_tag('Stream')}"):
            command = self._command(shell, stream.get("CommandId"))
            try:
                chunk = base64.b64decode(stream.text or "", validate=True)
            except binascii.Error as exc:
                raise ShellFault(env.INVALID_PARAMETER) from exc
            with command.lock:
                command.stdin += chunk
        body = "<rsp:SendResponse/>"
        return env.build_response(f"{env.NS_SHELL}/SendResponse", request.message_id, body)

    def receive(self, request: env.WsmanRequest) -> bytes:
        """Return what was printed so far, waiting for some up to the scaled OperationTimeout."""
        shell = self._shell(request)
        desired = request.body.find(f"{_tag('Receive')}/{_tag('DesiredStream')}")
        command_id = desired.get("CommandId") if desired is not None else None
        if not command_id:
            raise ShellFault(env.INVALID_PARAMETER)  # as recorded in fail_poll_process
        command = self._command(shell, command_id)
        if command.delivered:
            raise ShellFault(env.UNKNOWN_COMMAND)
        self._run(shell, command)
        timeout = request.operation_timeout or _DEFAULT_TIMEOUT
        give_up = time.monotonic() + timeout * self._limits.operation_timeout_scale
        while True:
            now = time.monotonic()
            with command.lock:
                command.release(now)
                if command.out or command.err or command.ended(now):
                    break
                wake = command.next_event()
            if wake > give_up:
                self._wait(max(0.0, give_up - now))
                if self._limits.timeout_fault:
                    raise ShellFault(env.OPERATION_TIMEOUT)
                return _receive_response(request, env.state_element(command_id, None))
            self._wait(max(0.0, wake - now))
        cap = min(request.max_envelope_size or DEFAULT_ENVELOPE, self._limits.max_envelope_size)
        with command.lock:
            return _drain(request, command_id, command, cap, command.ended(time.monotonic()))

    def signal(self, request: env.WsmanRequest) -> bytes:
        """Forget a command (pywinrm signals terminate after the last Receive)."""
        shell = self._shell(request)
        node = request.body.find(_tag("Signal"))
        command_id = (node.get("CommandId") if node is not None else None) or ""
        self._command(shell, command_id)
        with self._lock:
            shell.commands.pop(command_id.upper(), None)
        body = "<rsp:SignalResponse/>"
        return env.build_response(f"{env.NS_SHELL}/SignalResponse", request.message_id, body)

    def delete(self, request: env.WsmanRequest) -> bytes:
        """Close a shell and forget its commands."""
        self._shell(request)
        with self._lock:
            self._shells.pop(request.selectors.get("ShellId", "").upper(), None)
        action = f"{env.NS_TRANSFER}/DeleteResponse"
        return env.build_response(action, request.message_id, "", kind="delete")

    def _run(self, shell: _Shell, command: _Command) -> None:
        with command.lock:
            if command.ran:
                return
            line = " ".join((command.command, *command.arguments))
            limit = self._limits.max_command_line
            if not command.skip_cmd_shell and limit is not None and len(line) > limit:
                result = CommandResult(stderr=TOO_LONG, exit_code=1)
            else:
                call = CommandRequest(
                    command_line=line,
                    command=command.command,
                    arguments=command.arguments,
                    script=decode_encoded_command(line),
                    stdin=bytes(command.stdin),
                    codepage=shell.codepage,
                    environment=MappingProxyType(dict(shell.environment)),
                    working_directory=shell.working_directory,
                    skip_cmd_shell=command.skip_cmd_shell,
                )
                try:
                    result = self._handler(call)
                except Exception as exc:
                    _LOG.exception("command handler failed")
                    raise ShellFault(env.HANDLER_FAILED) from exc
            command.done_at = command.started + max(0.0, result.duration)
            printed = [
                (command.started + max(0.0, at), stream, encode_output(data, shell.codepage))
                for at, stream, data in result.output
            ]
            printed += [
                (command.done_at, "stdout", encode_output(result.stdout, shell.codepage)),
                (command.done_at, "stderr", encode_output(result.stderr, shell.codepage)),
            ]
            command.pending = sorted(
                (item for item in printed if item[2]), key=lambda item: item[0]
            )
            command.exit_code = result.exit_code & 0xFFFFFFFF  # Windows reports a DWORD
            command.ran = True

    def _shell(self, request: env.WsmanRequest) -> _Shell:
        shell_id = request.selectors.get("ShellId", "")
        with self._lock:
            shell = self._shells.get(shell_id.upper())
        if shell is None:
            raise ShellFault(env.unknown_shell(shell_id))
        return shell

    def _command(self, shell: _Shell, command_id: str | None) -> _Command:
        with self._lock:
            command = shell.commands.get((command_id or "").upper())
        if command is None:
            raise ShellFault(env.UNKNOWN_COMMAND)
        return command


def _drain(
    request: env.WsmanRequest, command_id: str, command: _Command, cap: int, ended: bool
) -> bytes:
    # Fill the response with output chunks up to cap bytes; only when the command has ended and
    # nothing is left does it carry the End streams and the Done state, so a big output takes
    # several Receives.
    closing = (
        env.stream_element("stdout", command_id, end=True)
        + env.stream_element("stderr", command_id, end=True)
        + env.state_element(command_id, command.exit_code)
    )
    used = len(_receive_response(request, "")) + len(closing)
    if used + len(env.stream_element("stdout", command_id, b"abc")) > cap:
        raise ShellFault(env.ENVELOPE_EXCEEDED)  # not even one chunk of output would fit
    parts: list[str] = []
    for name in ("out", "err"):
        pending: bytes = getattr(command, name)
        empty = len(env.stream_element(f"std{name}", command_id))
        while pending:
            room = (cap - used - empty) // 4 * 3
            take = min(_CHUNK, room)
            if take <= 0:
                break
            part = env.stream_element(f"std{name}", command_id, pending[:take])
            parts.append(part)
            used += len(part)
            pending = pending[take:]
        setattr(command, name, pending)
    if command.out or command.err or not ended:
        parts.append(env.state_element(command_id, None))
    else:
        parts.append(closing)
        command.delivered = True
    return _receive_response(request, "".join(parts))


def _receive_response(request: env.WsmanRequest, inner: str) -> bytes:
    body = f"<rsp:ReceiveResponse>{inner}</rsp:ReceiveResponse>"
    action = f"{env.NS_SHELL}/ReceiveResponse"
    return env.build_response(action, request.message_id, body, kind="receive")


def _known_codepage(codepage: int) -> bool:
    try:
        encode_output("", codepage)
    except LookupError:
        return False
    return True
