"""WS-Management SOAP envelopes as a Windows WinRM listener reads and writes them.

Response shapes (prefixes, namespace sets, header order, fault layout) follow traffic recorded
against real Windows hosts (pypsrp's tests/responses/test_winrs_*.yml), not copied from it.
"""

from __future__ import annotations

import base64
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
NS_EVENTING = "http://schemas.xmlsoap.org/ws/2004/08/eventing"
NS_ENUMERATION = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
NS_WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_MS_WSMAN = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"
NS_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS_FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"

RESOURCE_CMD = f"{NS_SHELL}/cmd"
# PowerShell remoting (MS-PSRP) addresses a session configuration under this prefix.
RESOURCE_POWERSHELL = "http://schemas.microsoft.com/powershell/"
ANONYMOUS = f"{NS_ADDRESSING}/role/anonymous"
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
STATE_RUNNING = f"{NS_SHELL}/CommandState/Running"
STATE_DONE = f"{NS_SHELL}/CommandState/Done"

# Short operation names (used in Behaviour settings and request counts) -> request Action URI.
ACTIONS: dict[str, str] = {
    "Create": f"{NS_TRANSFER}/Create",
    "Delete": f"{NS_TRANSFER}/Delete",
    "Command": f"{NS_SHELL}/Command",
    "Send": f"{NS_SHELL}/Send",
    "Receive": f"{NS_SHELL}/Receive",
    "Signal": f"{NS_SHELL}/Signal",
}
_SHORT_NAMES = {uri: short for short, uri in ACTIONS.items()}

_PREFIXES = {
    "s": NS_SOAP,
    "a": NS_ADDRESSING,
    "x": NS_TRANSFER,
    "e": NS_EVENTING,
    "n": NS_ENUMERATION,
    "w": NS_WSMAN,
    "rsp": NS_SHELL,
    "p": NS_MS_WSMAN,
}
# Which prefixes each kind of Windows response declares on its Envelope, in recorded order.
_DECLARED = {
    "transfer": ("s", "a", "x", "w", "rsp", "p"),
    "receive": ("s", "a", "w", "rsp", "p"),
    "delete": ("s", "a", "w", "p"),
    "fault": ("s", "a", "x", "e", "n", "w", "p"),
}
_BACKSLASH = "\\"
_QUOTE = {'"': "&quot;"}
_DURATION = re.compile(
    r"P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d*)?)S)?)?"
)


class MalformedRequest(ValueError):
    """A request body that is not a readable SOAP 1.2 WS-Management envelope."""


@dataclass(frozen=True, slots=True)
class WsmanRequest:
    """The parts of a WS-Management request envelope the shell service acts on."""

    action: str
    message_id: str
    resource_uri: str | None
    operation_timeout: float | None
    max_envelope_size: int | None
    selectors: dict[str, str]
    options: dict[str, str]
    body: ET.Element

    @property
    def operation(self) -> str:
        """Return the short operation name (Create, Receive, ...) or the Action URI if unknown."""
        return _SHORT_NAMES.get(self.action, self.action)


@dataclass(frozen=True, slots=True)
class WsmanFault:
    """A SOAP 1.2 fault with a Microsoft WSManFault detail, as Windows sends it.

    The Message is the Reason unless ``message`` says otherwise (Windows gives some faults a
    generic Reason and a specific Message).
    """

    code: int
    reason: str
    value: str = "s:Sender"
    subcode: str = "w:InternalError"
    fault_detail: str | None = None
    provider_fault: bool = False
    http_status: int = 500
    message: str | None = None


OPERATION_TIMEOUT = WsmanFault(
    code=2150858793,
    value="s:Receiver",
    subcode="w:TimedOut",
    reason="The WS-Management service cannot complete the operation within the time specified "
    "in OperationTimeout.  ",
)
ACCESS_DENIED = WsmanFault(code=5, subcode="w:AccessDenied", reason="Access is denied. ")
INVALID_PARAMETER = WsmanFault(
    code=87,
    subcode="w:InvalidParameter",
    reason="The parameter is incorrect. ",
    fault_detail="http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/InvalidValue",
    provider_fault=True,
)
# ERROR_WSMAN_UNEXPECTED_SELECTORS: its text is the Reason, the shell's own is the Message
# (recorded in bad_cmd_id).
INVALID_SELECTORS_REASON = (
    "The WS-Management service cannot process the request because the request contained "
    "invalid selectors for the resource. "
)
UNKNOWN_COMMAND = WsmanFault(
    code=2150858843,
    subcode="w:InvalidSelectors",
    reason=INVALID_SELECTORS_REASON,
    message="The Windows Remote Shell received a request to perform an operation on a command "
    "identifier that does not exist. Either the command has completed execution or the client "
    "specified an invalid command identifier. ",
    fault_detail="http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors",
)
# ERROR_FILE_NOT_FOUND as an HRESULT (0x80070002): with WINRS_SKIP_CMD_SHELL the program is
# started without cmd.exe's PATH search, so a bare "powershell.exe" is not found (recorded in
# no_cmd_shell).
FILE_NOT_FOUND = WsmanFault(
    code=2147942402,
    value="s:Receiver",
    reason="The system cannot find the file specified. ",
    provider_fault=True,
)
# ERROR_WSMAN_MAX_ENVELOPE_SIZE_EXCEEDED (0x80338048): the smallest answer does not fit the
# client's MaxEnvelopeSize. Code and text from the WinRM error table (Vanara's WsmSvc list);
# the EncodingLimit subcode and its MaxEnvelopeSize detail from DSP0226.
ENVELOPE_EXCEEDED = WsmanFault(
    code=2150858824,
    subcode="w:EncodingLimit",
    reason="The response that the WS-Management service computed exceeds the maximum envelope "
    "size in the request. ",
    fault_detail="http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/MaxEnvelopeSize",
)
# ERROR_WSMAN_ACTION_NOT_SUPPORTED; the wording is ours, no recording shows this fault.
ACTION_NOT_SUPPORTED = WsmanFault(
    code=2150858771,
    subcode="a:ActionNotSupported",
    reason="The WS-Management service cannot process the request because the action is not "
    "supported. ",
)
# ERROR_WSMAN_INVALID_XML, sent with HTTP 400 as users report for bodies WinRM cannot parse.
INVALID_XML = WsmanFault(
    code=2150858819,
    subcode="w:SchemaValidationError",
    reason="WinRM cannot process the request because the input XML contains a syntax error. ",
    http_status=400,
)
# E_FAIL, for a command handler that raised instead of returning a result.
HANDLER_FAILED = WsmanFault(
    code=2147500037, value="s:Receiver", reason="Unspecified error ", provider_fault=True
)


def unknown_shell(shell_id: str) -> WsmanFault:
    """Return the fault Windows sends for a ShellId it does not know."""
    return WsmanFault(
        code=2150858843,
        subcode="w:InvalidSelectors",
        reason=INVALID_SELECTORS_REASON,
        message=f"The request for the Windows Remote Shell with ShellId {shell_id} failed "
        "because the shell was not found on the server. Possible causes are: the specified "
        "ShellId is incorrect or the shell no longer exists on the server. Provide the correct "
        "ShellId or create a new shell and retry the operation. ",
        fault_detail="http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors",
    )


def unknown_resource(resource_uri: str | None) -> WsmanFault:
    """Return the fault for a ResourceURI this host serves nothing at (PowerShell remoting too).

    ERROR_WSMAN_INVALID_RESOURCE_URI (2150858811) with the text Windows gives for a session
    configuration it does not have (pywinrm#273, pypsrp#192); the DestinationUnreachable subcode
    and InvalidResourceURI detail are DSP0226's for it.
    """
    return WsmanFault(
        code=2150858811,
        subcode="a:DestinationUnreachable",
        reason="The WS-Management service cannot process the request. The resource URI "
        f"({resource_uri or ''}) was not found in the WS-Management catalog. The catalog "
        "contains the metadata that describes resources, or logical endpoints. ",
        fault_detail="http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/InvalidResourceURI",
    )


def parse_request(data: bytes) -> WsmanRequest:
    """Read a request envelope, raising MalformedRequest if it is not a usable one."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise MalformedRequest(f"not XML: {exc}") from exc
    header = root.find(f"{{{NS_SOAP}}}Header")
    body = root.find(f"{{{NS_SOAP}}}Body")
    if root.tag != f"{{{NS_SOAP}}}Envelope" or header is None or body is None:
        raise MalformedRequest("not a SOAP 1.2 envelope with Header and Body")
    action = _text(header, NS_ADDRESSING, "Action")
    message_id = _text(header, NS_ADDRESSING, "MessageID")
    if not action or not message_id:
        raise MalformedRequest("Action or MessageID missing")
    timeout_text = _text(header, NS_WSMAN, "OperationTimeout")
    size_text = _text(header, NS_WSMAN, "MaxEnvelopeSize")
    return WsmanRequest(
        action=action,
        message_id=message_id,
        resource_uri=_text(header, NS_WSMAN, "ResourceURI"),
        operation_timeout=parse_duration(timeout_text) if timeout_text else None,
        max_envelope_size=int(size_text) if size_text and size_text.isdigit() else None,
        selectors=_named(header, "SelectorSet", "Selector"),
        options=_named(header, "OptionSet", "Option"),
        body=body,
    )


def parse_duration(text: str) -> float | None:
    """Return the seconds in an xs:duration such as PT20S or PT7200.000S, None if unreadable."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or not any(match.groupdict().values()):
        return None
    days, hours, minutes = (int(match.group(g) or 0) for g in "dhm")
    return ((days * 24 + hours) * 60 + minutes) * 60 + float(match.group("s") or 0)


def new_guid() -> str:
    """Return a fresh identifier in Windows' upper-case GUID form."""
    return str(uuid.uuid4()).upper()


def build_response(action: str, relates_to: str, body: str, kind: str = "transfer") -> bytes:
    """Wrap a body fragment in a response envelope with Windows' header and namespaces.

    Newer Windows (the recorded Server 2016 host; not the older one) adds a p:ActivityId, an
    ETW activity GUID, after the MessageID.
    """
    declared = " ".join(f'xmlns:{p}="{_PREFIXES[p]}"' for p in _DECLARED[kind])
    return (
        f'<s:Envelope xml:lang="en-US" {declared}><s:Header>'
        f"<a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{new_guid()}</a:MessageID>"
        f"<p:ActivityId>{new_guid()}</p:ActivityId>"
        f"<a:To>{ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def build_fault(fault: WsmanFault, relates_to: str, machine: str) -> bytes:
    """Return the envelope of a SOAP fault carrying a WSManFault detail."""
    message = escape(fault.message if fault.message is not None else fault.reason)
    if fault.provider_fault:
        message = (
            '<f:ProviderFault provider="Shell cmd plugin" '
            'path="%systemroot%\\system32\\winrscmd.dll">'
            f"{message}</f:ProviderFault>"
        )
    detail = f"<w:FaultDetail>{fault.fault_detail}</w:FaultDetail>" if fault.fault_detail else ""
    body = (
        f"<s:Fault><s:Code><s:Value>{fault.value}</s:Value>"
        f"<s:Subcode><s:Value>{fault.subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text></s:Reason>'
        f"<s:Detail>{detail}"
        f'<f:WSManFault xmlns:f="{NS_FAULT}" Code="{fault.code}" Machine={attr(machine)}>'
        f"<f:Message>{message}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )
    return build_response(FAULT_ACTION, relates_to, body, kind="fault")


def shell_element(
    shell_id: str,
    owner: str,
    client_ip: str,
    environment: dict[str, str] | None = None,
    working_directory: str | None = None,
    idle_timeout: float = 7200.0,
) -> str:
    """Return the rsp:Shell description Windows appends to a CreateResponse.

    As recorded: the working directory is echoed, the idle timeout in milliseconds precision,
    and a backslash in an environment variable's name is left out of the echo (not of the
    variable itself).
    """
    env = ""
    if environment:
        variables = "".join(
            f"<rsp:Variable Name={attr(k.replace(_BACKSLASH, ''))}>"
            f"{escape(v, _QUOTE)}</rsp:Variable>"
            for k, v in environment.items()
        )
        env = f"<rsp:Environment>{variables}</rsp:Environment>"
    directory = ""
    if working_directory is not None:
        directory = f"<rsp:WorkingDirectory>{escape(working_directory)}</rsp:WorkingDirectory>"
    return (
        f'<rsp:Shell xmlns:rsp="{NS_SHELL}"><rsp:ShellId>{shell_id}</rsp:ShellId>'
        f"<rsp:ResourceUri>{RESOURCE_CMD}</rsp:ResourceUri><rsp:Owner>{escape(owner)}</rsp:Owner>"
        f"<rsp:ClientIP>{escape(client_ip)}</rsp:ClientIP>{env}{directory}"
        f"<rsp:IdleTimeOut>PT{idle_timeout:.3f}S</rsp:IdleTimeOut>"
        "<rsp:InputStreams>stdin</rsp:InputStreams>"
        "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams>"
        "<rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime>"
        "<rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity></rsp:Shell>"
    )


def created_element(address: str, shell_id: str) -> str:
    """Return the x:ResourceCreated reference to a new shell."""
    return (
        f"<x:ResourceCreated><a:Address>{escape(address)}</a:Address><a:ReferenceParameters>"
        f"<w:ResourceURI>{RESOURCE_CMD}</w:ResourceURI><w:SelectorSet>"
        f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
        "</a:ReferenceParameters></x:ResourceCreated>"
    )


def stream_element(name: str, command_id: str, data: bytes = b"", end: bool = False) -> str:
    """Return one rsp:Stream of base64 output, or the empty End="true" marker."""
    ending = ' End="true"' if end else ""
    text = base64.b64encode(data).decode("ascii")
    return f'<rsp:Stream Name="{name}" CommandId="{command_id}"{ending}>{text}</rsp:Stream>'


def state_element(command_id: str, exit_code: int | None) -> str:
    """Return rsp:CommandState: Running when exit_code is None, else Done with the ExitCode."""
    if exit_code is None:
        running = f'CommandId="{command_id}" State="{STATE_RUNNING}"'
        return f"<rsp:CommandState {running}></rsp:CommandState>"
    return (
        f'<rsp:CommandState CommandId="{command_id}" State="{STATE_DONE}">'
        f"<rsp:ExitCode>{exit_code}</rsp:ExitCode></rsp:CommandState>"
    )


def attr(value: str) -> str:
    """Return value as a double-quoted XML attribute."""
    return '"' + escape(value, {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}) + '"'


def _text(parent: ET.Element, namespace: str, local: str) -> str | None:
    node = parent.find(f"{{{namespace}}}{local}")
    return node.text.strip() if node is not None and node.text else None


def _named(header: ET.Element, set_name: str, item_name: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for node in header.iterfind(f"{{{NS_WSMAN}}}{set_name}/{{{NS_WSMAN}}}{item_name}"):
        name = node.get("Name")
        if name is not None:
            found[name] = (node.text or "").strip()
    return found
