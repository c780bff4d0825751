"""The seam between collect and the ways a probe reaches a host: WinRM, or whatever comes next.

A ``Transport`` runs the probe on one host within a deadline and hands back what it printed,
framed (``ProbeOutput``), or raises a ``TransportError`` carrying its error class. Collect plans,
retries, cuts at the deadline and records; it never knows how a host was reached.

Exceptions::

    TransportError    one host's try failed; recorded as that host's attempt, the night goes on
                      (error_class: auth, unreachable, timeout, protocol, probe_error, bad_document)
    SelectionError    the night cannot start: selectors that match nothing, a config without
                      hosts, or what a transport lacks for the chosen hosts (an extra, a variable)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from collector.config import HostEntry

# The classes a failed attempt is recorded with (the attempts table, the report).
ERROR_CLASSES = frozenset(
    {"auth", "unreachable", "timeout", "protocol", "probe_error", "bad_document"}
)
# Only connection failures are worth another try the same night: a host that hung until its
# deadline would most likely hang again and double the night's run.
TRANSIENT = frozenset({"unreachable"})


class TransportError(Exception):
    """A failed exchange with a host, classified for the attempt record."""

    def __init__(self, error_class: str, message: str) -> None:
        if error_class not in ERROR_CLASSES:  # a misspelt class would be stored, never counted
            raise ValueError(f"unknown error class {error_class!r}")
        super().__init__(message)
        self.error_class = error_class

    @property
    def transient(self) -> bool:
        """Tell whether trying again later may succeed."""
        return self.error_class in TRANSIENT


class SelectionError(ValueError):
    """Host selectors that match nothing, a config without hosts, or a missing extra."""


@dataclass(frozen=True, slots=True)
class ProbeOutput:
    """What the probe printed, and how many requests it took."""

    stdout: bytes
    stderr: bytes
    exit_code: int
    requests: int


class Transport(Protocol):
    """One way of running the probe on hosts; ``collect`` takes any (WinRM by default)."""

    @property
    def kind(self) -> str:
        """Name how documents arrive through it, as snapshots record it (``winrm``, ``file``)."""
        ...

    def check(self, hosts: Sequence[HostEntry]) -> None:
        """Refuse, before any host is reached, what it cannot do for ``hosts`` (SelectionError)."""
        ...

    def where(self, host: HostEntry) -> str:
        """Return where ``host`` is reached, as its attempts record it."""
        ...

    def run(
        self, host: HostEntry, script: str, arguments: dict[str, Any], deadline: float
    ) -> ProbeOutput:
        """Run ``script`` on ``host`` before ``deadline`` (a ``time.monotonic()`` instant).

        Raise ``TransportError`` for anything that kept the probe's output from coming back.
        Stop at ``deadline`` where it can: collect stops waiting then, and records a timeout.
        """
        ...
