"""A simulated host for the Kerberos clock-skew test, run in a process of its own.

Started under libfaketime (its clock ahead of the collector's), it serves WinRM over HTTP with
the keytab given, prints its URL, and stops when its standard input closes.

    python tests/skewed_host.py KEYTAB ACCOUNT
"""

from __future__ import annotations

import sys
from pathlib import Path

from collector.simulator.wsman import CommandRequest, CommandResult, WsmanServer


def _echo(request: CommandRequest) -> CommandResult:
    return CommandResult(stdout="skewed\r\n")


def main() -> None:
    keytab, account = Path(sys.argv[1]), sys.argv[2]
    with WsmanServer(_echo, username=account, password="unused", keytab=keytab) as server:
        print(server.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
