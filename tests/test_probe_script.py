"""The probe script, checked without Windows: it parses, stays read-only, writes only schema keys.

Nothing here runs PowerShell. The script is read with the tree-sitter PowerShell grammar and the
C# handed to Add-Type with the tree-sitter C# grammar. Each checker is also run on small bad
snippets, so a checker that could never fail would show.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import tree_sitter_c_sharp
import tree_sitter_powershell
from tree_sitter import Language, Node, Parser

from collector import framing
from collector.config import ProbeOptions
from collector.document import load_document
from collector.probe import PROBE_VERSION, probe_arguments, probe_script

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_PATH = ROOT / "collector" / "probe.ps1"
SCHEMA_PATH = ROOT / "collector" / "schema" / "probe-document-v1.json"

# --------------------------------------------------------------------------------------------
# Parsing helpers


@cache
def _powershell() -> Parser:
    return Parser(Language(tree_sitter_powershell.language()))


@cache
def _csharp() -> Parser:
    return Parser(Language(tree_sitter_c_sharp.language()))


def _parse_ps(source: str) -> Node:
    return _powershell().parse(source.encode("utf-8")).root_node


@cache
def _script_root() -> Node:
    return _parse_ps(SCRIPT_PATH.read_text(encoding="ascii"))


def _walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8")


def _line(node: Node) -> int:
    return node.start_point[0] + 1


def _syntax_problems(root: Node) -> list[str]:
    return [
        f"line {_line(n)}: {'MISSING' if n.is_missing else 'ERROR'} {n.type} {_text(n)[:60]!r}"
        for n in _walk(root)
        if n.is_error or n.is_missing
    ]


_QUOTED = re.compile(r"""^(?:'(?P<single>[^']*)'|"(?P<double>[^"$`]*)")$""")


def _literal(text: str) -> str | None:
    """Return the value of a constant string written as text, or None if it is not one."""
    match = _QUOTED.match(text.strip())
    if match is None:
        return None
    return match.group("single") if match.group("single") is not None else match.group("double")


# --------------------------------------------------------------------------------------------
# Commands and methods: the read-only allow-list


@dataclass(frozen=True, slots=True)
class _Command:
    name: str
    arguments: tuple[str, ...]
    line: int


def _commands(root: Node) -> list[_Command]:
    """Every command the source invokes; `&$var` for an invoked variable, `<dynamic>` if unknown."""
    found: list[_Command] = []
    for node in _walk(root):
        if node.type != "command":
            continue
        name = "<dynamic>"
        arguments: list[str] = []
        for child in node.children:
            if child.type == "command_name":
                name = _text(child)
            elif child.type == "command_name_expr":
                name = _invoked_name(child)
            elif child.type == "command_elements":
                arguments = [
                    _literal(_text(e)) or _text(e)
                    for e in child.children
                    if e.type != "command_argument_sep"
                ]
        found.append(_Command(name, tuple(arguments), _line(node)))
    return found


def _invoked_name(expr: Node) -> str:
    if any(c.type == "script_block_expression" for c in expr.children):
        return "&{}"  # an inline block: its own commands are walked like any other
    literal = _literal(_text(expr))
    if literal is not None:
        return literal
    if re.fullmatch(r"\$\w+", _text(expr)):
        return "&" + _text(expr)
    return "<dynamic>"


_ALLOWED_COMMANDS = frozenset(
    name.casefold()
    for name in (
        # cmdlets that only read (Add-Type compiles into the process; New-Object makes objects)
        "Add-Type",
        "ConvertTo-Json",
        "Get-AppxPackage",
        "Get-CimInstance",
        "Get-HotFix",
        "Get-NetNat",
        "Get-NetNatExternalAddress",
        "Get-NetTCPConnection",
        "Get-NetUDPEndpoint",
        "Get-Process",
        "Get-Service",
        "Get-WindowsOptionalFeature",
        "Get-WmiObject",
        "Join-Path",
        "New-Object",
        "Test-Path",
        # native programs; their arguments are checked as well
        "netsh.exe",
        "netstat.exe",
        # the script's own functions and the script blocks they run
        "ConvertFrom-CimTime",
        "ConvertTo-IsoTime",
        "ConvertTo-NullableInt",
        "ConvertTo-NullableString",
        "ConvertTo-ProbeError",
        "Get-NativeText",
        "Get-ProbeCimInstance",
        "Get-ProbeErrorCode",
        "Get-RegistryValue",
        "Invoke-ProbeSection",
        "&$NativeCall",
        "&$SectionBody",
        "&{}",
    )
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.casefold().split())


_MUTATING_VERBS = _words(
    "Add Clear Copy Disable Dismount Enable Export Format Grant Initialize Install Mount Move "
    "New Publish Register Remove Rename Repair Reset Restart Restore Resume Revoke Set Start "
    "Stop Suspend Uninstall Unregister Update"
)
_VERB_EXCEPTIONS = frozenset({"add-type", "new-object"})
_MUTATING_NAMES = _words(
    # cmdlets whose verb looks harmless
    "Invoke-Expression Invoke-Command Invoke-Item Invoke-WebRequest Invoke-RestMethod "
    "Invoke-CimMethod Invoke-WmiMethod Out-File Tee-Object "
    # Windows PowerShell aliases of changing cmdlets (sc is Set-Content there)
    "iex icm ii iwr irm ac sc si sp ni rm rmdir del erase ri rd rni ren mv move mi cp copy "
    "cpi kill spps sasv spsv start saps tee clc cli clp "
    # programs that change the host or run other code
    "cmd powershell pwsh wmic schtasks shutdown taskkill bitsadmin certutil msiexec winget "
    "diskpart format fsutil icacls takeown setx attrib rundll32 regsvr32 mshta cscript wscript"
)
# Native programs and the arguments that make them change something.
_MUTATING_ARGUMENTS: dict[str, frozenset[str]] = {
    "netsh": _words("add delete set reset install uninstall exec import flush clear commit abort"),
    "net": _words(
        "stop start pause continue user localgroup group share use accounts config session "
        "file time"
    ),
    "sc": _words(
        "config stop start delete create failure failureflag sdset control pause continue "
        "description privs sidtype triggerinfo"
    ),
    "reg": _words("add delete import copy restore load unload save export"),
    "wsl": _words(
        "shutdown terminate t unregister install update set-default set-version "
        "set-default-version import import-in-place mount unmount export manage uninstall"
    ),
    "powercfg": _words(
        "h hibernate change x setactive s setacvalueindex setdcvalueindex import delete d "
        "duplicatescheme changename deletesetting attributes"
    ),
    "bcdedit": _words("set delete deletevalue create copy import default timeout bootsequence"),
}
# DISM changes the image with any of these verbs (/Enable-Feature, /Remove-Package, ...).
_DISM_MUTATING_PREFIXES = (
    "enable", "disable", "remove", "add", "set", "cleanup", "apply", "restorehealth", "import",
    "export", "commit", "mount", "unmount", "delete", "split", "optimize", "capture", "append",
)  # fmt: skip


def _native_name(name: str) -> str:
    base = re.split(r"[\\/]", name)[-1].casefold()
    return base.removesuffix(".exe")


def _argument_word(argument: str) -> str:
    return re.split(r"[:=]", argument.casefold().lstrip("-/"), maxsplit=1)[0]


def _command_problems(root: Node) -> list[str]:
    """Commands outside the allow-list, changing verbs and programs, and changing arguments."""
    problems: list[str] = []
    for command in _commands(root):
        where = f"line {command.line}: {command.name!r}"
        folded = command.name.casefold()
        verb = folded.split("-", 1)[0] if "-" in folded else ""
        native = _native_name(command.name)
        words = [_argument_word(a) for a in command.arguments]
        if folded not in _ALLOWED_COMMANDS:
            problems.append(f"{where} is not in the allow-list of read-only commands")
        if verb in _MUTATING_VERBS and folded not in _VERB_EXCEPTIONS:
            problems.append(f"{where} uses the verb {verb!r}, which changes the host")
        if folded in _MUTATING_NAMES or native in _MUTATING_NAMES:
            problems.append(f"{where} changes the host or runs arbitrary code")
        mutating = _MUTATING_ARGUMENTS.get(native, frozenset())
        for word in words:
            if word in mutating or (native == "dism" and word.startswith(_DISM_MUTATING_PREFIXES)):
                problems.append(f"{where} with {word!r} changes the host")
        if native == "netsh" and "show" not in words:
            problems.append(f"{where} without 'show' is not a read")
        if folded == "new-object" and "-comobject" in (a.casefold() for a in command.arguments):
            progids = [a for a in command.arguments if not a.startswith("-")]
            if [p.casefold() for p in progids] != ["microsoft.update.session"]:
                problems.append(f"{where} creates COM objects other than Microsoft.Update.Session")
    return problems


_ALLOWED_METHODS = _words(
    "Add AddSeconds Close ComputeHash ContainsKey Create CreateUpdateSearcher Flush GetBytes "
    "GetCurrent GetIPGlobalProperties GetTotalHistoryCount GetType "
    "GetUnresolvedProviderPathFromPSPath GetValue GetVersionInfo IsInRole Min OpenBaseKey "
    "OpenSubKey QueryHistory ReleaseComObject Replace Run SpecifyKind StartNew Substring ToArray "
    "ToBase64String ToDateTime ToLowerInvariant ToString ToUniversalTime Trim Write "
    "WriteAllText"
)


def _method_problems(root: Node) -> list[str]:
    """.NET/COM methods outside the allow-list; writable registry opens; more than one write."""
    problems: list[str] = []
    writes = 0
    for node in _walk(root):
        if node.type != "invokation_expression":
            continue
        names = [c for c in node.children if c.type == "member_name"]
        method = _text(names[-1]) if names else "<dynamic>"
        target = _text(node.children[0])
        where = f"line {_line(node)}: {target}.{method}()"
        arguments = [c for c in _walk(node) if c.type == "argument_expression"]
        if method.casefold() not in _ALLOWED_METHODS:
            problems.append(f"{where} is not in the allow-list of methods")
        if method.casefold() == "opensubkey" and len(arguments) != 1:
            problems.append(f"{where} must take the name only: a second argument opens it writable")
        if method.casefold() == "write" and target.casefold() not in ("$gzip", "[console]::out"):
            problems.append(f"{where} writes somewhere other than the gzip buffer or stdout")
        if method.casefold() == "writealltext":
            writes += 1
    if writes > 1:
        problems.append(f"{writes} calls of WriteAllText: -OutFile is the only thing written")
    return problems


# --------------------------------------------------------------------------------------------
# Keys the script writes, against the JSON schema


@dataclass(frozen=True, slots=True)
class _Literal:
    keys: tuple[str, ...]
    variable: str | None
    line: int


def _ordered_literals(root: Node) -> list[_Literal]:
    """Each `[ordered]@{...}` with its own (not nested) keys and the variable it is assigned to."""
    found: list[_Literal] = []
    for node in _walk(root):
        if node.type != "cast_expression" or not node.children:
            continue
        if _text(node.children[0]).casefold() != "[ordered]":
            continue
        table = next((n for n in _walk(node) if n.type == "hash_literal_expression"), None)
        assert table is not None, f"line {_line(node)}: [ordered] without a hashtable literal"
        keys = []
        for body in (c for c in table.children if c.type == "hash_literal_body"):
            for entry in (c for c in body.children if c.type == "hash_entry"):
                key = next(c for c in entry.children if c.type == "key_expression")
                keys.append(_literal(_text(key)) or _text(key))
        found.append(_Literal(tuple(keys), _assigned_variable(node), _line(node)))
    return found


def _assigned_variable(node: Node) -> str | None:
    """The plain variable `node` is the whole right-hand side of, if any."""
    parent = node.parent
    while parent is not None and parent.type != "assignment_expression":
        if parent.type not in ("unary_expression", "expression_with_unary_operator") and (
            _text(parent) != _text(node)
        ):
            return None
        parent = parent.parent
    if parent is None:
        return None
    left = parent.children[0]
    return _text(left) if re.fullmatch(r"\$\w+", _text(left)) else None


def _index_writes(root: Node) -> list[tuple[str, tuple[str | None, ...], int]]:
    """Each assignment to `$var['a']['b']...`: the variable and its indexes (None: not literal)."""
    found = []
    for node in _walk(root):
        if node.type != "left_assignment_expression":
            continue
        access = next((n for n in _walk(node) if n.type == "element_access"), None)
        if access is None:
            continue
        indexes: list[str | None] = []
        while access.type == "element_access":
            obj, index = access.named_children[0], access.named_children[-1]
            indexes.insert(0, _literal(_text(index)))
            access = obj
            while access.type != "element_access" and len(access.named_children) == 1:
                access = access.named_children[0]
        found.append((_text(access), tuple(indexes), _line(node)))
    return found


@dataclass(frozen=True, slots=True)
class _SchemaObject:
    path: str
    properties: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]
    required: frozenset[str]

    def knows(self, key: str) -> bool:
        return key in self.properties or any(p.search(key) for p in self.patterns)


def _schema_objects(schema: Any, path: str = "$") -> list[_SchemaObject]:
    found: list[_SchemaObject] = []
    if isinstance(schema, dict):
        if "properties" in schema or "patternProperties" in schema:
            found.append(
                _SchemaObject(
                    path,
                    frozenset(schema.get("properties", {})),
                    tuple(re.compile(p) for p in schema.get("patternProperties", {})),
                    frozenset(schema.get("required", [])),
                )
            )
        for key, value in schema.items():
            found += _schema_objects(value, f"{path}.{key}")
    elif isinstance(schema, list):
        for number, value in enumerate(schema):
            found += _schema_objects(value, f"{path}[{number}]")
    return found


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def _key_problems(root: Node, document_variable: str = "$doc") -> list[str]:
    """Keys unknown to the schema, objects that fit no schema object, required keys never made."""
    objects = _schema_objects(_schema())
    top = objects[0]
    assert top.path == "$"
    problems: list[str] = []
    literals = _ordered_literals(root)
    writes = _index_writes(root)
    top_writes = {
        indexes[0]
        for variable, indexes, _ in writes
        if variable == document_variable and len(indexes) == 1 and indexes[0] is not None
    }
    for literal in literals:
        for key in literal.keys:
            if not any(o.knows(key) for o in objects):
                problems.append(f"line {literal.line}: key {key!r} is in no schema object")
        keys = set(literal.keys)
        if literal.variable == document_variable:
            keys |= top_writes
        if not any(all(o.knows(k) for k in keys) and o.required <= keys for o in objects):
            problems.append(f"line {literal.line}: keys {sorted(keys)} fit no single schema object")
    for variable, indexes, line in writes:
        target = variable + "".join(f"[{index!r}]" for index in indexes)
        for index in indexes:
            if index is not None and not any(o.knows(index) for o in objects):
                problems.append(f"line {line}: {target}: {index!r} is in no schema object")
    made = top_writes | {
        key for lit in literals if lit.variable == document_variable for key in lit.keys
    }
    problems += [f"required key {key!r} is never written" for key in sorted(top.required - made)]
    return problems


# --------------------------------------------------------------------------------------------
# The C# handed to Add-Type


def _csharp_source(root: Node) -> str:
    """The verbatim here-string assigned to $bindSweepSource (what Add-Type compiles)."""
    for node in _walk(root):
        if node.type != "assignment_expression":
            continue
        if _text(node.children[0]).casefold() != "$bindsweepsource":
            continue
        text = _text(node.children[-1])
        assert text.startswith("@'") and text.endswith("'@"), "expected a verbatim here-string"
        return text[2:-2].strip("\r\n")
    raise AssertionError("no $bindSweepSource here-string in the script")


# Text patterns for C# 6+ (CodeDOM in .NET Framework compiles C# 5 only).
_CSHARP6_PATTERNS = (
    (re.compile(r'\$@?"|@\$"'), 'string interpolation ($"...")'),
    (re.compile(r"\?\."), "null-conditional operator ?."),
    (re.compile(r"\bnameof\s*\("), "nameof(...)"),
    (re.compile(r"\bout\s+var\b"), "out var"),
    (re.compile(r"\bis\s+var\b"), "is var"),
    (re.compile(r"\busing\s+static\b"), "using static"),
    (re.compile(r"\?\?="), "??="),
    (
        re.compile(
            r"^\s*(?:(?:public|private|protected|internal|static|override|virtual|sealed|"
            r"readonly|abstract|new)\s+)*[\w<>\[\],.?]+\s+\w+\s*(?:\([^)]*\))?\s*=>",
            re.MULTILINE,
        ),
        "expression-bodied member (=> in a member declaration)",
    ),
)
# Syntax tree nodes of C# 6 and later.
_CSHARP6_NODES = {
    "interpolated_string_expression": "string interpolation",
    "conditional_access_expression": "null-conditional access",
    "arrow_expression_clause": "expression-bodied member (=>)",
    "declaration_expression": "out var / inline declaration",
    "is_pattern_expression": "pattern matching (is T x, is var x)",
    "tuple_expression": "tuple",
    "tuple_type": "tuple type",
    "local_function_statement": "local function",
    "throw_expression": "throw expression",
    "switch_expression": "switch expression",
    "implicit_object_creation_expression": "target-typed new()",
    "record_declaration": "record",
    "file_scoped_namespace_declaration": "file-scoped namespace",
    "raw_string_literal": "raw string literal",
    "range_expression": "range (..)",
    "catch_filter_clause": "exception filter (when)",
    "element_binding_expression": "index initializer ([k] = v)",
}


def _csharp_text_problems(source: str) -> list[str]:
    """C# 6+ constructs found in the text (comments aside), and unbalanced braces."""
    code = re.sub(r"//[^\n]*", "", source)
    problems = [what for pattern, what in _CSHARP6_PATTERNS if pattern.search(code)]
    depth = 0
    for char in re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', code):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0:
        problems.append("unbalanced braces")
    return problems


def _csharp_tree_problems(source: str) -> list[str]:
    """C# 6+ constructs and syntax errors in the C# syntax tree; no `public static` method."""
    root = _csharp().parse(source.encode("utf-8")).root_node
    problems = _syntax_problems(root)
    public_static = False
    for node in _walk(root):
        where = f"line {_line(node)}"
        kinds = [c.type for c in node.children]
        literal = _text(node).casefold()
        if node.type in _CSHARP6_NODES:
            problems.append(f"{where}: {_CSHARP6_NODES[node.type]}")
        if node.type == "invocation_expression" and _text(node.children[0]) == "nameof":
            problems.append(f"{where}: nameof")
        if node.type == "using_directive" and "static" in kinds:
            problems.append(f"{where}: using static")
        if node.type == "property_declaration" and "=" in kinds:
            problems.append(f"{where}: auto-property initializer")
        if node.type == "default_expression" and "(" not in kinds:
            problems.append(f"{where}: default literal")
        if node.type == "integer_literal" and ("_" in literal or literal.startswith("0b")):
            problems.append(f"{where}: binary literal or digit separator")
        if node.type in ("??=", "^") and node.parent is not None:
            problems.append(f"{where}: operator {node.type}")
        if node.type == "method_declaration":
            modifiers = {_text(c) for c in node.children if c.type == "modifier"}
            public_static = public_static or {"public", "static"} <= modifiers
    if not public_static:
        problems.append("no public static method to call from PowerShell")
    return problems


# --------------------------------------------------------------------------------------------
# The script itself


def test_script_parses_without_error_or_missing_nodes() -> None:
    root = _script_root()
    assert root.type == "program"
    assert _syntax_problems(root) == []
    # The walk does look: a broken snippet is reported.
    assert _syntax_problems(_parse_ps("if ($x { Get-Process\n"))


def test_script_is_what_probe_script_returns_and_pure_ascii() -> None:
    raw = SCRIPT_PATH.read_bytes()
    assert all(byte < 0x80 for byte in raw), "probe.ps1 must be ASCII (no BOM, no smart quotes)"
    assert probe_script() == raw.decode("ascii")


def test_every_command_is_an_allowed_read_only_one() -> None:
    commands = {c.name for c in _commands(_script_root())}
    assert {"netsh.exe", "netstat.exe", "Add-Type", "Get-HotFix"} <= commands
    assert _command_problems(_script_root()) == []


@pytest.mark.parametrize(
    ("snippet", "reason"),
    [
        ("Set-ItemProperty -Path HKLM:\\X -Name A -Value 1", "verb 'set'"),
        ("Stop-Service winnat", "verb 'stop'"),
        ("Get-Service winnat | Restart-Service", "verb 'restart'"),
        ("New-Item -Path C:\\x -ItemType File", "verb 'new'"),
        ("Add-Content -Path C:\\x -Value y", "verb 'add'"),
        ("Remove-Item C:\\x", "verb 'remove'"),
        ("Enable-WindowsOptionalFeature -Online -FeatureName Containers", "verb 'enable'"),
        ("Invoke-Expression 'x'", "runs arbitrary code"),
        ("iex 'x'", "runs arbitrary code"),
        ("sc C:\\x 'y'", "runs arbitrary code"),
        ("Get-Foo", "not in the allow-list"),
        ("& $anything", "'&$anything' is not in the allow-list"),
        ("& ('net' + 'sh') int ipv4 show excludedportrange", "'<dynamic>' is not in"),
        # netsh.exe is allowed: only its arguments give these away
        ("netsh.exe int ipv4 add excludedportrange protocol=tcp startport=50000 numberofports=1",
         "with 'add' changes"),
        ("netsh.exe int ipv4 delete excludedportrange protocol=tcp startport=1 numberofports=1",
         "with 'delete' changes"),
        ("netsh.exe int ip reset", "with 'reset' changes"),
        ("netsh.exe int ipv4 set dynamic tcp start=49152 num=16384", "with 'set' changes"),
        ("netsh.exe -f C:\\x.txt", "without 'show'"),
        ("net stop winnat", "with 'stop' changes"),
        ("net.exe start winnat", "with 'start' changes"),
        ("sc.exe config winnat start= disabled", "with 'config' changes"),
        ("reg add HKLM\\SOFTWARE\\X /v A /d 1", "with 'add' changes"),
        ("reg.exe delete HKLM\\SOFTWARE\\X /f", "with 'delete' changes"),
        ("dism /online /Enable-Feature /FeatureName:Containers", "with 'enable-feature' changes"),
        ("dism.exe /Online /Disable-Feature:Microsoft-Hyper-V", "with 'disable-feature' changes"),
        ("wsl --shutdown", "with 'shutdown' changes"),
        ("wsl.exe -t Ubuntu", "with 't' changes"),
        ("cmd /c 'netsh int ipv4 show excludedportrange protocol=tcp'", "runs arbitrary code"),
        ("shutdown /r /t 0", "runs arbitrary code"),
        ("New-Object -ComObject WScript.Shell", "other than Microsoft.Update.Session"),
    ],
)  # fmt: skip
def test_command_checker_catches(snippet: str, reason: str) -> None:
    root = _parse_ps(snippet)
    assert _syntax_problems(root) == [], "the bad snippet itself must parse"
    problems = _command_problems(root)
    assert any(reason in problem for problem in problems), (snippet, problems)


def test_every_method_is_an_allowed_one() -> None:
    assert _method_problems(_script_root()) == []


@pytest.mark.parametrize(
    ("snippet", "reason"),
    [
        ("[Microsoft.Win32.Registry]::LocalMachine.CreateSubKey('SOFTWARE\\X')", "CreateSubKey"),
        ("$key.SetValue('A', 1)", "SetValue() is not in the allow-list"),
        ("$base.OpenSubKey('SOFTWARE\\X', $true)", "opens it writable"),
        ("[Diagnostics.Process]::Start('netsh.exe')", "Start() is not in the allow-list"),
        ("$session.CreateUpdateInstaller()", "CreateUpdateInstaller() is not in the allow-list"),
        ("[IO.File]::WriteAllText($a, $b); [IO.File]::WriteAllText($c, $d)", "2 calls"),
        ("$stream.Write($b, 0, 1)", "writes somewhere other than"),
    ],
)
def test_method_checker_catches(snippet: str, reason: str) -> None:
    problems = _method_problems(_parse_ps(snippet))
    assert any(reason in problem for problem in problems), (snippet, problems)


def test_every_key_written_is_in_the_schema_and_required_keys_are_made() -> None:
    root = _script_root()
    literals = _ordered_literals(root)
    # The checker sees the document, its sections and their items.
    assert any(lit.variable == "$doc" and "schema" in lit.keys for lit in literals)
    assert any("result_code" in lit.keys for lit in literals)
    assert any("excluded_ipv4_tcp" in lit.keys for lit in literals)
    assert any(v == "$doc" and i == ("errors",) for v, i, _ in _index_writes(root))
    assert _key_problems(root) == []


_GOOD_TOP = (
    "$doc = [ordered]@{ schema = 1; probe_version = 1; taken_at = 1; host = 1; raw = 1;"
    " errors = 1 }"
)


@pytest.mark.parametrize(
    ("snippet", "reason"),
    [
        (_GOOD_TOP.replace("errors = 1", "errors = 1; bogus = 1"), "key 'bogus' is in no schema"),
        (_GOOD_TOP + "; $doc['listenerz'] = @()", "'listenerz' is in no schema"),
        (_GOOD_TOP.replace("; errors = 1", ""), "required key 'errors' is never written"),
        # known keys, but of different schema objects (a listener's port in a service)
        (_GOOD_TOP + "; $x = [ordered]@{ name = 'vmms'; status = 'Running'; port = 1 }",
         "['name', 'port', 'status'] fit no single schema object"),
        # an item without its required key
        (_GOOD_TOP + "; $x = [ordered]@{ description = 'Update' }", "fit no single"),
        # a raw key outside the schema's patterns
        (_GOOD_TOP + "; $doc['raw']['excluded_ipv5_tcp'] = ''", "'excluded_ipv5_tcp'"),
    ],
)  # fmt: skip
def test_key_checker_catches(snippet: str, reason: str) -> None:
    assert _key_problems(_parse_ps(_GOOD_TOP)) == []
    problems = _key_problems(_parse_ps(snippet))
    assert any(reason in problem for problem in problems), (snippet, problems)


def test_the_formats_the_script_writes_pass_the_schema() -> None:
    # .NET's 'o' writes seven fractional digits, and 'Z' for a UTC DateTime; 'yyyy-MM-dd' days.
    # Hand-made in the script's shapes (a NAT without pools has no port keys at all).
    document = {
        "schema": "portfleet.probe/1",
        "probe_version": PROBE_VERSION,
        "taken_at": "2024-05-01T08:00:00.1234567+02:00",
        "duration_ms": 61234,
        "host": {
            "name": "PC-1",
            "elevated": False,
            "language_mode": "FullLanguage",
            "os": {
                "build": 19045,
                "ubr": 4291,
                "install_date": "2023-01-02T03:04:05.0000000+00:00",
            },
            "last_boot": "2024-04-30T07:00:00.5000000+02:00",
            "bios": {"manufacturer": None, "version": "N2IET1", "release_date": "2023-05-15"},
        },
        "raw": {"excluded_ipv6_udp": "", "netstat": "\r\n  TCP    0.0.0.0:135"},
        "nat": [{"name": "WinNAT", "internal_prefix": "172.16.0.0/12"}],
        "hotfixes": [{"kb": "KB5034441", "description": None, "installed_on": "2024-11-12"}],
        "update_history": [
            {
                "date": "2024-11-12T03:00:00.0000000Z",
                "title": "2024-11 Cumulative Update (KB5034441)",
                "kb": "KB5034441",
                "operation": 1,
                "result_code": 2,
                "hresult": -2145124329,
            }
        ],
        "errors": [{"section": "features", "code": "not_elevated", "message": "..."}],
    }
    load_document(json.dumps(document).encode("utf-8"), "sample")
    assert probe_script().count(".ToString('o', $invariant)") >= 4


def test_framing_constants_match_collector_framing() -> None:
    values = _constant_assignments(_script_root())
    assert values["$frameBegin"] == f"{framing.BEGIN} {framing.FRAME_VERSION}"
    assert values["$frameEnd"] == framing.END
    assert int(values["$frameWidth"]) == _framing_width()


def test_a_frame_built_the_way_the_script_builds_it_is_read_back() -> None:
    values = _constant_assignments(_script_root())
    document = json.dumps({"host": {"name": "PC-\u65e5\u672c"}, "pad": "x" * 500}).encode()
    # gzip without a file name, base64, lines of $frameWidth, CRLF, as the script's last lines.
    encoded = base64.b64encode(gzip.compress(document)).decode("ascii")
    width = int(values["$frameWidth"])
    lines = [values["$frameBegin"]]
    lines += [encoded[at : at + width] for at in range(0, len(encoded), width)]
    digest = hashlib.sha256(document).hexdigest()
    lines.append(f"{values['$frameEnd']} {digest} {len(document)}")
    output = ("\r\n".join(lines) + "\r\n").encode("ascii")
    assert framing.unframe_document(b"profile banner\r\n" + output) == document


def test_probe_version_matches_the_script() -> None:
    assert _constant_assignments(_script_root())["$probeVersion"] == PROBE_VERSION
    assert 0 < len(PROBE_VERSION) <= 32  # the schema's bounds


def test_parameters_match_probe_arguments() -> None:
    parameters = _parameters(_script_root())
    assert parameters == {
        "OutFile": "string",
        "NoBindSweep": "switch",
        "SweepUdp": "switch",
        "UpdateHistoryLimit": "int",
    }
    arguments = probe_arguments(bind_sweep=True, sweep_udp=False, update_history_limit=500)
    assert set(arguments) <= set(parameters)
    for name, value in arguments.items():
        expected = bool if parameters[name] == "switch" else int
        assert type(value) is expected, name
    default = re.search(r"\[int\]\$UpdateHistoryLimit\s*=\s*(\d+)", probe_script())
    assert default is not None
    assert int(default.group(1)) == ProbeOptions().update_history_limit


def test_probe_arguments_values() -> None:
    assert probe_arguments(True, False, 500) == {
        "NoBindSweep": False,
        "SweepUdp": False,
        "UpdateHistoryLimit": 500,
    }
    assert probe_arguments(False, True, 0) == {
        "NoBindSweep": True,
        "SweepUdp": True,
        "UpdateHistoryLimit": 0,
    }
    for bad in (-1, 2**31, True):
        with pytest.raises(ValueError, match="update_history_limit"):
            probe_arguments(True, False, bad)


def test_csharp_is_plain_csharp5_with_a_public_static_entry_point() -> None:
    root = _script_root()
    source = _csharp_source(root)
    message = "Windows PowerShell 5.1 compiles Add-Type C# with the C# 5 CodeDOM compiler"
    assert _csharp_text_problems(source) == [], message
    assert _csharp_tree_problems(source) == [], message
    add_type = [c for c in _commands(root) if c.name == "Add-Type"]
    assert len(add_type) == 1
    assert add_type[0].arguments[:2] == ("-TypeDefinition", "$bindSweepSource")
    # What the script calls and reads must exist in the C#.
    csharp = _csharp().parse(source.encode("utf-8")).root_node
    declared = {
        (n.type, _text(n.child_by_field_name("name") or n))
        for n in _walk(csharp)
        if n.type in ("namespace_declaration", "class_declaration", "method_declaration")
    }
    assert ("namespace_declaration", "Portfleet") in declared
    assert ("class_declaration", "BindSweep") in declared
    assert ("method_declaration", "Run") in declared
    fields = {_text(n) for n in _walk(csharp) if n.type == "variable_declarator"}
    assert {"Runs", "DurationMs"} <= {f.split()[0] for f in fields}
    assert "[Portfleet.BindSweep]::Run(" in probe_script()
    assert "$result.Runs" in probe_script() and "$result.DurationMs" in probe_script()


def _class(body: str) -> str:
    return "public static class A {\n    " + body + "\n}\n"


@pytest.mark.parametrize(
    ("snippet", "text_reason", "tree_reason"),
    [
        (_class('public static string M(int x) { return $"{x}"; }'),
         "string interpolation", "string interpolation"),
        (_class("public static int? M(string s) { return s?.Length; }"),
         "null-conditional", "null-conditional"),
        (_class("public static string M() { return nameof(A); }"), "nameof", "nameof"),
        (_class("public static int M() => 1;"), "expression-bodied", "expression-bodied"),
        (_class("public static int P => 1;\n    public static void M() { }"),
         "expression-bodied", "expression-bodied"),
        (_class('public static void M() { int.TryParse("1", out var x); }'),
         "out var", "inline declaration"),
        (_class("public static bool M(object o) { return o is var x; }"),
         "is var", "pattern matching"),
        ("using static System.Math;\n" + _class("public static void M() { }"),
         "using static", "using static"),
        (_class("public static void M() { s ??= null; }"), "??=", "operator ??="),
        (_class("public static int M() { return 0b1_0; }"), None, "binary literal"),
        (_class("public static void M() { try { } catch (System.Exception e) when (true) { } }"),
         None, "exception filter"),
        (_class("public static void M() { if (true) { }"), "unbalanced braces", "ERROR"),
        ("public class A { public void M() { } }", None, "no public static method"),
    ],
)  # fmt: skip
def test_csharp_checkers_catch(snippet: str, text_reason: str | None, tree_reason: str) -> None:
    assert _csharp_tree_problems(_class("public static void M() { }")) == []
    text_problems = _csharp_text_problems(snippet)
    if text_reason is not None:
        assert any(text_reason in problem for problem in text_problems), text_problems
    tree_problems = _csharp_tree_problems(snippet)
    assert any(tree_reason in problem for problem in tree_problems), tree_problems


def _native_command_table(root: Node) -> dict[str, _Command]:
    """The `$nativeCommands` table: raw key -> the one command its script block runs."""
    for literal_node in _walk(root):
        if literal_node.type != "assignment_expression":
            continue
        if _text(literal_node.children[0]) != "$nativeCommands":
            continue
        table: dict[str, _Command] = {}
        for entry in (n for n in _walk(literal_node) if n.type == "hash_entry"):
            key = next(c for c in entry.children if c.type == "key_expression")
            (command,) = _commands(entry)
            table[_text(key)] = command
        return table
    raise AssertionError("no $nativeCommands table in the script")


def test_raw_keys_run_the_commands_they_name() -> None:
    table = _native_command_table(_script_root())
    expected = {
        f"{kind}_{family}_{protocol}"
        for kind in ("excluded", "dynamicport")
        for family in ("ipv4", "ipv6")
        for protocol in ("tcp", "udp")
    } | {"netstat"}
    assert set(table) == expected
    assert table["netstat"].name == "netstat.exe"
    assert table["netstat"].arguments == ("-ano",)
    for key, command in table.items():
        if key == "netstat":
            continue
        kind, family, protocol = key.split("_")
        assert command.name == "netsh.exe", key
        subject = "excludedportrange" if kind == "excluded" else "dynamicport"
        last = f"protocol={protocol}" if kind == "excluded" else protocol
        assert command.arguments == ("int", family, "show", subject, last), key


def _hresult_problems(source: str) -> list[str]:
    """Each large negative number must equal the hex HRESULT written beside it (or just above)."""
    problems: list[str] = []
    lines = source.splitlines()
    for number, line in enumerate(lines):
        decimals = [int(d) for d in re.findall(r"(?<![\w.])-\d{10}\b", line)]
        if not decimals:
            continue
        hexes = re.findall(r"\b0x([0-9A-Fa-f]{8})\b", line)
        if not hexes and number > 0:
            hexes = re.findall(r"\b0x([0-9A-Fa-f]{8})\b", lines[number - 1])
        signed = [int(h, 16) - (1 << 32) if int(h, 16) >= 1 << 31 else int(h, 16) for h in hexes]
        if signed != decimals:
            problems.append(f"line {number + 1}: {decimals} written as {['0x' + h for h in hexes]}")
    return problems


def test_hresults_match_their_hex() -> None:
    source = probe_script()
    assert re.search(r"-2147024891\b", source), "E_ACCESSDENIED is among the decisions"
    assert _hresult_problems(source) == []
    assert _hresult_problems("$x = -2147023132  # 0x800702E4\n")  # a wrong one is caught
    assert _hresult_problems("$x = -2147024891\n")  # and so is one without its hex


def test_script_can_be_delivered_by_a_loader() -> None:
    text = probe_script()
    # `powershell -EncodedCommand` takes base64 of UTF-16LE: for this script that is far over
    # cmd.exe's 8191 characters, so the transport ships the text another way (a shell
    # environment variable holds at most 32767 characters) and runs it as a script block.
    assert len(text) < 32767
    # A script block run by a loader must end by itself: `exit` would end the loader's host.
    flow = [_text(n) for n in _walk(_script_root()) if n.type == "flow_control_statement"]
    assert flow, "the walk sees flow control statements (throw, return, continue)"
    assert not [f for f in flow if f.casefold().startswith("exit")]


# --------------------------------------------------------------------------------------------
# Small readers used above


def _constant_assignments(root: Node) -> dict[str, str]:
    """`$name = 'literal'` or `$name = 123` at any level: variable -> value as text."""
    values: dict[str, str] = {}
    for node in _walk(root):
        if node.type != "assignment_expression":
            continue
        left, right = _text(node.children[0]), _text(node.children[-1]).strip()
        literal = _literal(right)
        if literal is None and re.fullmatch(r"\d+", right):
            literal = right
        if literal is not None and re.fullmatch(r"\$\w+", left):
            values[left] = literal
    return values


def _parameters(root: Node) -> dict[str, str]:
    block = next(n for n in _walk(root) if n.type == "param_block")
    found: dict[str, str] = {}
    for parameter in (n for n in _walk(block) if n.type == "script_parameter"):
        kind = next(n for n in _walk(parameter) if n.type == "type_identifier")
        variable = next(n for n in parameter.children if n.type == "variable")
        found[_text(variable).lstrip("$")] = _text(kind).casefold()
    return found


def _framing_width() -> int:
    framed = framing.frame_document(bytes(range(256)) * 64).decode("ascii").split("\r\n")
    return max(len(line) for line in framed[1:-2])
