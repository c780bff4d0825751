"""One thread accepts connections for every simulated host's listener in the process.

A fleet of thousands of hosts, each with a ``serve_forever`` thread waking every few
milliseconds to check for shutdown, burns a core doing nothing. Here one thread waits in epoll
(``selectors``) on all listening sockets at once and sleeps while nobody connects; each accepted
connection is then served on its own thread, as ``socketserver.ThreadingMixIn`` does.
"""

from __future__ import annotations

import selectors
import socket
import threading
from dataclasses import dataclass, field
from socketserver import BaseServer
from typing import Literal

_Change = Literal["add", "remove"]


@dataclass(slots=True)
class _Request:
    change: _Change
    server: BaseServer
    done: threading.Event = field(default_factory=threading.Event)


class Acceptor:
    """Accept for many ``socketserver`` servers on one thread, started on first use."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._requests: list[_Request] = []
        self._thread: threading.Thread | None = None

    def add(self, server: BaseServer) -> None:
        """Start accepting for ``server`` (its socket is made non-blocking)."""
        sock = server.socket  # type: ignore[attr-defined]  # TCPServer's, not BaseServer's
        # Non-blocking: a client that resets between epoll and accept must not stall the fleet.
        sock.setblocking(False)
        self._change("add", server)

    def remove(self, server: BaseServer) -> None:
        """Stop accepting for ``server``; no connection is accepted for it once this returns."""
        self._change("remove", server)

    def _change(self, change: _Change, server: BaseServer) -> None:
        request = _Request(change, server)
        with self._lock:
            self._requests.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="acceptor", daemon=True)
                self._thread.start()
        self._wake_write.send(b"\0")
        request.done.wait()

    def _apply(self) -> None:
        """Register and unregister what ``add`` and ``remove`` asked for."""
        try:
            while self._wake_read.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            requests, self._requests = self._requests, []
        for request in requests:
            sock = request.server.socket  # type: ignore[attr-defined]
            if request.change == "add":
                self._selector.register(sock, selectors.EVENT_READ, request.server)
            elif sock.fileno() >= 0 and sock in self._selector.get_map():
                self._selector.unregister(sock)
            request.done.set()

    def _run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    self._apply()
                else:
                    # Accepts one connection (a BlockingIOError there is swallowed as an
                    # OSError) and hands it to process_request: a thread per connection.
                    key.data._handle_request_noblock()


ACCEPTOR = Acceptor()
