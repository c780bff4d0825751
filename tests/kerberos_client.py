"""Collect one host over Kerberos in a process of its own, and print how it ended.

For the expired-ticket test: run under libfaketime with its clock an hour on, it uses a ticket
that ran out long ago, as a cron job does the morning after a ``kinit``.

    python tests/kerberos_client.py URL KERBEROS_HOSTNAME
"""

from __future__ import annotations

import sys
import time

from collector.config import PortfleetConfig
from collector.transport import TransportError
from collector.winrm import WinrmTransport


def main() -> None:
    url, name = sys.argv[1], sys.argv[2]
    config = PortfleetConfig.model_validate(
        {
            "defaults": {"transport": "kerberos", "https": False, "credential": {}},
            "hosts": [{"name": "ws01", "address": url, "kerberos_hostname": name}],
        }
    )
    try:
        WinrmTransport(config).run(config.hosts[0], "probe", {}, time.monotonic() + 30)
    except TransportError as exc:
        print(f"{exc.error_class}: {exc}")
        return
    print("ok")


if __name__ == "__main__":
    main()
