"""A transport for tests: each host answers from a script of canned replies, no network.

For collect's own logic (retries, deadlines, recording, the identity check), where a real
WinRM exchange would add time and nothing to check; tests/test_transport.py and the CLI tests
drive the real pywinrm against simulated hosts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.config import HostEntry
from collector.framing import frame_document
from collector.transport import ProbeOutput, SelectionError, TransportError


@dataclass(frozen=True, slots=True)
class Slow:
    """Answer ``then`` after ``seconds`` (or never, before the test ends, when ``then`` is None)."""

    seconds: float
    then: Reply | None = None


# A probe document (framed as the probe prints it), output as is, a failure, or a slow answer.
Reply = dict[str, Any] | ProbeOutput | TransportError | Slow


@dataclass(frozen=True, slots=True)
class Call:
    """One try the transport was asked for."""

    host: str
    script: str
    arguments: dict[str, Any]
    seconds_left: float  # until the deadline it was given, when asked


def framed(document: dict[str, Any], stderr: bytes = b"", exit_code: int = 0) -> ProbeOutput:
    """Return the output the probe prints for ``document``."""
    body = json.dumps(document, ensure_ascii=False).encode("utf-8")
    return ProbeOutput(frame_document(body), stderr, exit_code, requests=1)


@dataclass
class CannedTransport:
    """Answer each try at a host with its next reply; the last one repeats.

    Hosts without replies are refused by ``check``, as a transport that cannot reach them would.
    """

    replies: Mapping[str, Sequence[Reply]]
    kind: str = "file"
    calls: list[Call] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, hosts: Sequence[HostEntry]) -> None:
        """Refuse hosts this transport has no reply for."""
        missing = [h.name for h in hosts if not self.replies.get(h.name)]
        if missing:
            raise SelectionError(f"no canned reply for {', '.join(missing)}")

    def where(self, host: HostEntry) -> str:
        """Return a made-up place the host is reached at."""
        return f"canned://{host.name}"

    def run(
        self, host: HostEntry, script: str, arguments: dict[str, Any], deadline: float
    ) -> ProbeOutput:
        """Give the host's next reply: its output, or raise its failure."""
        with self._lock:
            tries = sum(1 for c in self.calls if c.host == host.name)
            self.calls.append(Call(host.name, script, arguments, deadline - time.monotonic()))
        replies = self.replies[host.name]
        return self._answer(replies[min(tries, len(replies) - 1)])

    def tries(self, host: str) -> int:
        """Count the tries made at ``host``."""
        return sum(1 for c in self.calls if c.host == host)

    def _answer(self, reply: Reply) -> ProbeOutput:
        if isinstance(reply, Slow):
            # Wait on an event, not sleep: the test's teardown frees a reply cut at its deadline.
            self.released.wait(reply.seconds)
            if reply.then is None:
                raise TransportError("timeout", "a silent host, released at the test's end")
            return self._answer(reply.then)
        if isinstance(reply, TransportError):
            raise TransportError(reply.error_class, str(reply))  # a fresh one for each try
        if isinstance(reply, ProbeOutput):
            return reply
        return framed(reply)
