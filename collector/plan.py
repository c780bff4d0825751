"""What a collection does: which hosts, how many at once, how long each may take.

The plan is made, and the transport asked whether it can reach the chosen hosts, before the
night starts: a mistake in the config or a missing package stops the run with one clear message
instead of failing every host.
"""

from __future__ import annotations

import fnmatch
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from collector.config import HostEntry, PortfleetConfig
from collector.probe import probe_arguments
from collector.transport import SelectionError, Transport
from collector.winrm import WinrmTransport


@dataclass(frozen=True, slots=True)
class CollectPlan:
    """What ``collect`` does: which hosts, how many at once, how long each may take."""

    hosts: tuple[HostEntry, ...]
    concurrency: int
    deadline_seconds: float
    retries: int
    retry_delay_seconds: float
    probe_arguments: dict[str, Any]
    run_kind: str = "collect"
    # The night this run shares with other collectors (None: collect every planned host).
    night: str | None = None
    again: bool = False
    collector: str = ""
    site: str | None = None
    lease_seconds: float = 120.0


def collector_identity(config: PortfleetConfig) -> str:
    """Return who this collector is: ``collect.collector_name``, else machine:process id."""
    return config.collect.collector_name or f"{socket.gethostname()}:{os.getpid()}"


def select_hosts(
    config: PortfleetConfig, selectors: Sequence[str], site: str | None = None
) -> tuple[HostEntry, ...]:
    """Pick hosts by name, glob pattern (``dev-ws-*``) or group (``@backend``); none = all.

    With ``site``, only the hosts of that site (``site:`` on the host or in the defaults).
    """
    if not config.hosts:
        raise SelectionError(
            "the config lists no hosts; add them under 'hosts:' (see config.example.yaml)"
        )
    if site is not None:
        hosts = tuple(h for h in config.hosts if (h.site or config.defaults.site) == site)
        if not hosts:
            known = sorted({s for h in config.hosts if (s := h.site or config.defaults.site)})
            raise SelectionError(
                f"no configured host is at site {site!r} "
                f"(sites: {', '.join(known) or 'none; set site: on hosts or in defaults'})"
            )
        config = config.model_copy(update={"hosts": hosts})
    if not selectors:
        return config.hosts
    chosen: dict[str, HostEntry] = {}
    for selector in selectors:
        if selector.startswith("@"):
            matches = [h for h in config.hosts if selector[1:] in h.groups]
        else:
            matches = [
                h for h in config.hosts if fnmatch.fnmatchcase(h.name.lower(), selector.lower())
            ]
        if not matches:
            raise SelectionError(
                f"no configured host matches {selector!r} (names, patterns like dev-*, or @group)"
            )
        chosen.update((h.name, h) for h in matches)
    return tuple(h for h in config.hosts if h.name in chosen)


def plan_collection(
    config: PortfleetConfig,
    selectors: Sequence[str],
    concurrency: int | None = None,
    deadline_seconds: float | None = None,
    retries: int | None = None,
    run_kind: str = "collect",
    transport: Transport | None = None,
    night: str | None = None,
    again: bool = False,
    site: str | None = None,
) -> CollectPlan:
    """Combine the config with command-line overrides (None keeps the config's value).

    ``transport`` (WinRM by default) checks it can reach the chosen hosts; collect them with it.
    With a ``night`` the run shares that night's hosts with other collectors of the store,
    each host once (``again``: the hosts done tonight before this run too).
    """
    arguments = probe_arguments(
        bind_sweep=config.probe.bind_sweep,
        sweep_udp=config.probe.sweep_udp,
        update_history_limit=config.probe.update_history_limit,
    )
    hosts = select_hosts(config, selectors, site)
    (transport or WinrmTransport(config)).check(hosts)
    return CollectPlan(
        hosts=hosts,
        concurrency=concurrency if concurrency is not None else config.collect.concurrency,
        deadline_seconds=deadline_seconds
        if deadline_seconds is not None
        else config.probe.deadline_seconds,
        retries=retries if retries is not None else config.collect.retries,
        retry_delay_seconds=config.collect.retry_delay_seconds,
        probe_arguments=arguments,
        run_kind=run_kind,
        night=night,
        again=again,
        collector=collector_identity(config),
        site=site,
        lease_seconds=config.collect.lease_seconds,
    )
