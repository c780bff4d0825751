"""Replay WinRS traffic recorded against real Windows at a simulated host, and compare answers.

Each recording (tests/data/winrs-recordings, pypsrp's, made against real Windows) is a list of
request/response pairs. The requests are sent in order to a fresh simulated host, with the
recorded ShellId and CommandId replaced by the ones the simulated host handed out; the commands
the recordings ran are answered as Windows answered them (what cmd.exe and PowerShell print,
and when). Two figures come out:

- element paths: every path from the Envelope to an element or attribute (namespaces by their
  URI, the values of the Name, State and End attributes that shape a stream) of each recorded
  response, and whether the simulated answer to the same request has it;
- fault fields: for each recorded fault, its HTTP status, Code, Subcode, Reason, FaultDetail,
  WSManFault Code, Message and ProviderFault, and whether the simulated fault has the same.

``python -m tests.winrs_replay`` prints the figures and every difference.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from collector.simulator import envelope
from collector.simulator.cmdshell import run_cmd
from collector.simulator.wsman import Behaviour, CommandRequest, CommandResult, WsmanServer

RECORDINGS = Path(__file__).resolve().parent / "data" / "winrs-recordings"
USER, PASSWORD = "vagrant", "vagrant"
SCALE = 0.01  # the replayed host's clock: PT10S ends after 0.1 s, Start-Sleep 30 takes 0.3 s
_PREFIX = {
    envelope.NS_SOAP: "s",
    envelope.NS_ADDRESSING: "a",
    envelope.NS_TRANSFER: "x",
    envelope.NS_WSMAN: "w",
    envelope.NS_MS_WSMAN: "p",
    envelope.NS_SHELL: "rsp",
    envelope.NS_FAULT: "f",
    "http://www.w3.org/XML/1998/namespace": "xml",
}
_SHAPING = ("Name", "State", "End")
_GUID = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")
FAULT_FIELDS = (
    "status",
    "code",
    "subcode",
    "reason",
    "fault_detail",
    "wsman_code",
    "message",
    "provider_fault",
)


def recordings() -> list[Path]:
    """Return the recordings, by name."""
    return sorted(RECORDINGS.glob("test_winrs_*.yml"))


def _name(tag: str) -> str:
    if tag.startswith("{"):
        uri, local = tag[1:].split("}", 1)
        return f"{_PREFIX.get(uri, uri)}:{local}"
    return tag


def element_paths(document: bytes | str) -> set[str]:
    """Return the paths of every element and attribute of a response envelope."""
    if not document:
        return set()
    root = ET.fromstring(document)
    found: set[str] = set()

    def walk(node: ET.Element, prefix: str) -> None:
        path = f"{prefix}/{_name(node.tag)}"
        for attribute, value in node.attrib.items():
            local = _name(attribute)
            if local in _SHAPING:
                shown = value.rsplit("/", 1)[-1] if local == "State" else value
                path += f"[@{local}={shown}]"
        found.add(path)
        for attribute in node.attrib:
            found.add(f"{path}/@{_name(attribute)}")
        for child in node:
            walk(child, path)

    walk(root, "")
    return found


def fault_fields(status: int, document: bytes | str) -> dict[str, str | None]:
    """Return the fields of a SOAP fault that a client can act on (None where absent)."""
    root = ET.fromstring(document)
    ns = {"s": envelope.NS_SOAP, "w": envelope.NS_WSMAN, "f": envelope.NS_FAULT}
    fault = root.find("s:Body/s:Fault", ns)
    if fault is None:
        return {"status": str(status), **dict.fromkeys(FAULT_FIELDS[1:])}
    detail = fault.find("s:Detail/f:WSManFault", ns)
    provider = fault.find("s:Detail/f:WSManFault/f:Message/f:ProviderFault", ns)
    message = detail.find("f:Message", ns) if detail is not None else None
    return {
        "status": str(status),
        "code": fault.findtext("s:Code/s:Value", namespaces=ns),
        "subcode": fault.findtext("s:Code/s:Subcode/s:Value", namespaces=ns),
        "reason": fault.findtext("s:Reason/s:Text", namespaces=ns),
        "fault_detail": fault.findtext("s:Detail/w:FaultDetail", namespaces=ns),
        "wsman_code": detail.get("Code") if detail is not None else None,
        "message": "".join(message.itertext()) if message is not None else None,
        "provider_fault": (
            f"{provider.get('provider')} {provider.get('path')}" if provider is not None else None
        ),
    }


# ----------------------------------------------------------------------------------------------
# The commands the recordings ran, as Windows answered them


@dataclass
class _Printed:
    """What a command printed and when (seconds on the host's clock), and its exit code."""

    output: list[tuple[float, str, bytes]] = field(default_factory=list)
    exit_code: int = 0
    duration: float = 0.0


def _powershell(script: str, request: CommandRequest) -> _Printed:
    """Run the few PowerShell statements the recordings use (Write-Host, Start-Sleep, pwd)."""
    printed = _Printed()
    clock = 0.0
    codec = "utf-8" if request.codepage == 65001 else f"cp{request.codepage}"
    for statement in (s.strip() for s in script.split(";")):
        words = statement.split(None, 1)
        if not words:
            continue
        if words[0] == "Write-Host":
            text = (words[1] if len(words) > 1 else "").strip('"')
            # Write-Host reaches the console as the text, then a lone "\n" (as recorded).
            printed.output.append((clock, "stdout", text.encode(codec, errors="replace")))
            printed.output.append((clock, "stdout", b"\n"))
        elif words[0] == "Start-Sleep":
            clock += float(words[1])
        elif statement == "(pwd).Path":
            where = request.working_directory or "C:\\Users\\vagrant"
            printed.output.append((clock, "stdout", where.encode(codec)))
            printed.output.append((clock, "stdout", b"\r\n"))
    printed.duration = clock
    return printed


def recorded_windows(request: CommandRequest) -> CommandResult:
    """Answer a recorded command as the recorded Windows host did; time runs SCALE as fast.

    cmd.exe's lines go to the simulator's own cmd (collector.simulator.cmdshell); the few
    PowerShell statements are played here.
    """
    program = request.command.rsplit("\\", 1)[-1].lower().removesuffix(".exe")
    if program != "powershell":
        return run_cmd(request)
    arguments = " ".join(request.arguments)
    script = request.stdin.decode("utf-8") if arguments == "-" else arguments
    return _result(_powershell(script, request))


def _result(printed: _Printed) -> CommandResult:
    """Return what was printed as the simulated host's command result, on its clock."""
    timed = tuple((at * SCALE, name, data) for at, name, data in printed.output)
    return CommandResult(
        output=timed, exit_code=printed.exit_code, duration=printed.duration * SCALE
    )


# ----------------------------------------------------------------------------------------------
# The replay


@dataclass
class Difference:
    """One recorded response the simulated host answered differently."""

    recording: str
    index: int
    operation: str
    missing: list[str]
    fault: dict[str, tuple[str | None, str | None]]


@dataclass
class Figures:
    """Matched and total element paths and fault fields over the recordings replayed."""

    paths: int = 0
    paths_total: int = 0
    fields: int = 0
    fields_total: int = 0
    differences: list[Difference] = field(default_factory=list)


def _operation(request: str) -> str:
    match = re.search(r"Action[^>]*>([^<]*)<", request)
    return match.group(1).rsplit("/", 1)[-1] if match else "?"


def replay(
    path: Path, handler: Callable[[CommandRequest], CommandResult] = recorded_windows
) -> Figures:
    """Replay one recording at a fresh simulated host; return its figures."""
    messages = yaml.safe_load(path.read_text(encoding="utf-8"))["messages"]
    figures = Figures()
    # The recorded bodies are clear text (pypsrp recorded them before its NTLM sealing) and
    # the replay sends them so, with Basic over plain HTTP: the host allows that.
    behaviour = Behaviour(operation_timeout_scale=SCALE, allow_unencrypted=True)
    server = WsmanServer(handler, username=USER, password=PASSWORD, behaviour=behaviour).start()
    http = requests.Session()
    http.trust_env = False
    ids: dict[str, str] = {}
    try:
        for index, message in enumerate(messages):
            request = _GUID.sub(
                lambda m: ids.get(m.group(0).upper(), m.group(0)), message["request"]
            )
            answer = http.post(
                server.url,
                data=request.encode("utf-8"),
                auth=(USER, PASSWORD),
                headers={"Content-Type": "application/soap+xml;charset=UTF-8"},
                timeout=30,
            )
            recorded = message["response"]
            status = int((message.get("transport_error") or {}).get("code", 200))
            _learn_ids(recorded, answer.content, ids)
            figures.differences += _compare(
                figures, path.stem, index, _operation(request), status, recorded, answer
            )
    finally:
        http.close()
        server.stop()
    return figures


def _learn_ids(recorded: str, simulated: bytes, ids: dict[str, str]) -> None:
    """Map the ShellId and CommandId a recorded response handed out to the simulated ones."""
    for tag in ("ShellId", "CommandId"):
        pattern = rf"<rsp:{tag}>([^<]+)</rsp:{tag}>"
        real = re.search(pattern, recorded)
        ours = re.search(pattern, simulated.decode("utf-8", errors="replace"))
        if real and ours:
            ids[real.group(1).upper()] = ours.group(1)


def _compare(
    figures: Figures,
    recording: str,
    index: int,
    operation: str,
    status: int,
    recorded: str,
    answer: requests.Response,
) -> Iterator[Difference]:
    real = element_paths(recorded)
    try:
        ours = element_paths(answer.content)
    except ET.ParseError:
        ours = set()
    missing = sorted(real - ours)
    figures.paths_total += len(real)
    figures.paths += len(real) - len(missing)
    fault: dict[str, tuple[str | None, str | None]] = {}
    if status != 200:
        expected = fault_fields(status, recorded)
        try:
            got = fault_fields(answer.status_code, answer.content)
        except ET.ParseError:
            got = {"status": str(answer.status_code), **dict.fromkeys(FAULT_FIELDS[1:])}
        figures.fields_total += len(FAULT_FIELDS)
        for name in FAULT_FIELDS:
            if expected[name] == got[name]:
                figures.fields += 1
            else:
                fault[name] = (expected[name], got[name])
    if missing or fault:
        yield Difference(recording, index, operation, missing, fault)


def replay_all() -> Figures:
    """Replay every recording; return the summed figures."""
    total = Figures()
    for path in recordings():
        one = replay(path)
        total.paths += one.paths
        total.paths_total += one.paths_total
        total.fields += one.fields
        total.fields_total += one.fields_total
        total.differences += one.differences
    return total


def main() -> None:
    """Print the figures and every difference."""
    figures = replay_all()
    for difference in figures.differences:
        print(f"{difference.recording} #{difference.index} {difference.operation}")
        for path in difference.missing:
            print(f"  missing {path}")
        for name, (expected, got) in difference.fault.items():
            print(f"  {name}: Windows {expected!r}, simulated {got!r}")
    print(f"element paths: {figures.paths} of {figures.paths_total}")
    print(f"fault fields:  {figures.fields} of {figures.fields_total}")


if __name__ == "__main__":
    main()
