"""The layers of docs/architecture.md, checked from every module's imports (function-level too)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO

# What each side may take from the product besides itself (prefixes of module names).
_REPORTS_MAY_USE = ("collector.store", "collector.windows", "collector.diagnosis")
_SIMULATOR_MAY_USE = ("collector.windows", "collector.document", "collector.framing")
# The only modules that wire the reports and the simulated hosts into the product.
_WIRING = ("collector.cli", "collector.demo")
# The write path's first step: a document to typed rows, touching no database.
_DATABASE_FREE = ("collector.store.rows",)
# pywinrm and the authentication packages it and its extras bring: the WinRM transport's alone.
_PYWINRM = ("winrm", "requests_ntlm", "requests_credssp", "kerberos")
_WINRM_TRANSPORT = "collector.winrm"
# The one module that sends messages out (Apprise); reading never sends.
_SENDER = "collector.notify"
# GSSAPI (the kerberos extra): the collector's tickets, and the simulated hosts' acceptor.
_GSSAPI_USERS = ("collector.kerberos", "collector.simulator.kerberos")


def imports_of(source: str) -> Iterator[str]:
    """Yield every module a source imports, at any depth (``from a.b import c`` gives ``a.b``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _rule(module: str, name: str) -> str | None:
    """Say why ``module`` must not import ``name``, or None when it may."""
    if _within(name, ("tests", "bench")) and not module.startswith(("tests.", "bench.")):
        return "the product never imports its tests"
    if module.startswith("reports.") and not _within(name, ("reports", *_REPORTS_MAY_USE)):
        return "reports read only the store and the facts"
    simulated = module.startswith("collector.simulator.")
    if simulated and not _within(name, ("collector.simulator", *_SIMULATOR_MAY_USE)):
        return "the simulator uses only document types"
    wired = _within(name, ("reports", "collector.simulator"))
    if wired and module.startswith("collector.") and not simulated and not _within(module, _WIRING):
        return "only the CLI and the demo wire it in"
    return None


def violations(module: str, source: str) -> list[str]:
    """Return one line per import of ``module`` that crosses a layer it must not cross."""
    found = []
    for name in imports_of(source):
        if module in _DATABASE_FREE and _within(name, ("sqlalchemy", "alembic", "collector.store")):
            if name != module:
                found.append(
                    f"{module} imports {name}: turning a document into rows needs no database"
                )
            continue
        if _within(name, _PYWINRM) and module != _WINRM_TRANSPORT:
            found.append(f"{module} imports {name}: only {_WINRM_TRANSPORT} speaks WinRM")
            continue
        if _within(name, ("gssapi",)) and module not in _GSSAPI_USERS:
            found.append(f"{module} imports {name}: only {' and '.join(_GSSAPI_USERS)} use GSSAPI")
            continue
        if _within(name, ("apprise",)) and module != _SENDER:
            found.append(f"{module} imports {name}: only {_SENDER} sends messages")
            continue
        ours = _within(name, ("collector", "reports", "migrations", "bench", "tests"))
        if not ours or name == "collector":  # collector itself: only __version__ lives there
            continue
        why = _rule(module, name)
        if why is not None:
            found.append(f"{module} imports {name}: {why}")
    return found


def _modules() -> Iterator[tuple[str, Path]]:
    for package in ("collector", "reports", "migrations"):
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            yield ".".join(part for part in parts if part != "__init__"), path


def test_every_module_keeps_to_its_layer() -> None:
    checked = list(_modules())
    assert len(checked) > 50
    found = [line for module, path in checked for line in violations(module, path.read_text())]
    assert found == []


def test_a_planted_violation_is_caught() -> None:
    assert violations("reports.html", "from collector.collect import collect\n") == [
        "reports.html imports collector.collect: reports read only the store and the facts"
    ]
    late = "def f():\n    from reports.report import build_report\n"
    assert violations("collector.collect", late) == [
        "collector.collect imports reports.report: only the CLI and the demo wire it in"
    ]
    assert violations("collector.cli", late) == []
    assert violations("collector.cli.answers", late) == []
    assert violations("collector.simulator.cluster", "from collector.config import X\n") == [
        "collector.simulator.cluster imports collector.config: the simulator uses only document "
        "types"
    ]
    assert violations("reports.html", "from collector.store.frames import read_frame\n") == []
    assert violations("collector.store.rows", "from sqlalchemy import select\n") == [
        "collector.store.rows imports sqlalchemy: turning a document into rows needs no database"
    ]
    assert violations("collector.collect", "from winrm import transport\n") == [
        "collector.collect imports winrm: only collector.winrm speaks WinRM"
    ]
    assert violations("collector.plan", "def f():\n    import winrm.exceptions\n") == [
        "collector.plan imports winrm.exceptions: only collector.winrm speaks WinRM"
    ]
    assert violations("collector.transport", "import requests_credssp.exceptions\n") == [
        "collector.transport imports requests_credssp.exceptions: only collector.winrm speaks WinRM"
    ]
    assert violations("collector.winrm", "from winrm.protocol import Protocol\n") == []
    assert violations("reports.alerts", "import apprise\n") == [
        "reports.alerts imports apprise: only collector.notify sends messages"
    ]
    assert violations("collector.notify", "import apprise\n") == []
    assert violations("collector.collect", "def f():\n    import gssapi.raw\n") == [
        "collector.collect imports gssapi.raw: only collector.kerberos and "
        "collector.simulator.kerberos use GSSAPI"
    ]
