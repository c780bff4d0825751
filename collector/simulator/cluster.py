"""Serve a simulated fleet over real WinRM on loopback, night after night.

Every host gets its own WS-Management server answering the probe with that host's document
for the current night. Hosts with a recurring problem get a second server that misbehaves
(hangs, resets the connection, answers with a fault); on a night with an outage, the config
points the host at that server, at a closed port (offline), or at a wrong password (auth).

``FleetProcess`` runs the servers in a child process, so the collector and the simulated
Windows hosts do not share one interpreter lock: that is how the demo and the benchmark run.

The hosts' clocks run ``time_scale`` times as fast as real time: a probe takes as long as its
document says it did (its duration_ms, 44-100 s in the model) times the scale, and a Receive
waits OperationTimeout times the scale before the w:TimedOut fault. 1 (what ``simulate``
serves unless PORTFLEET_SIM_TIME_SCALE says otherwise) is real time; the demo runs at 1/400.
``probe_seconds`` instead gives every probe the same run time (the collection benchmark's).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from types import TracebackType
from typing import Any

from collector.simulator.certs import write_server_cert
from collector.simulator.envelope import ACCESS_DENIED
from collector.simulator.fleet import Fleet, FleetSpec
from collector.simulator.realm import DOMAIN, Realm
from collector.simulator.responder import ProbeResponder
from collector.simulator.wsman import Behaviour, Exchange, WsmanServer

USER_ENV = "PORTFLEET_SIM_USER"
PASSWORD_ENV = "PORTFLEET_SIM_PASSWORD"
WRONG_PASSWORD_ENV = "PORTFLEET_SIM_WRONG_PASSWORD"
SIM_USER = "portfleet"
TIME_SCALE_ENV = "PORTFLEET_SIM_TIME_SCALE"
# Nothing listens on the discard port of loopback: an "offline" laptop refuses the connection.
OFFLINE_URL = "http://127.0.0.1:9/wsman"

_TROUBLE = {
    "hang": Behaviour(hang_on=frozenset({"Receive"})),
    "reset": Behaviour(reset_on_receive=1_000_000),
    "fault": Behaviour(fault_on={"Command": ACCESS_DENIED}),
}


@dataclass(frozen=True, slots=True)
class FleetAddresses:
    """How to reach a served fleet: each host's URL, its misbehaving twins, the credentials."""

    urls: dict[str, str]
    trouble: dict[tuple[str, str], str]
    password: str = ""
    ca_file: str | None = None
    # Joined to a Kerberos realm: each host's name in its service principal HTTP/<name>.
    kerberos_names: dict[str, str] | None = None

    def credentials(self) -> dict[str, str]:
        """Return the environment variables the configs name, with their throwaway values."""
        return {
            USER_ENV: SIM_USER,
            PASSWORD_ENV: self.password,
            WRONG_PASSWORD_ENV: "not-" + self.password,
        }

    def export_credentials(self) -> None:
        """Put the credentials the configs name into this process's environment."""
        os.environ.update(self.credentials())

    def write_credentials(self, path: Path) -> None:
        """Write the credentials as an environment file only its owner can read."""
        path.touch(mode=0o600)
        os.chmod(path, 0o600)
        lines = (f"{name}={value}\n" for name, value in self.credentials().items())
        path.write_text("".join(lines), encoding="utf-8")


def fleet_config(
    fleet: Fleet, addresses: FleetAddresses, night: int, **sections: Any
) -> dict[str, Any]:
    """Return the content of a config file that reaches every host as it is on ``night``.

    Outages included. The caller validates it as portfleet's config; the simulator stays on its
    side of the house.
    """
    hosts = []
    for host in fleet.hosts:
        outage = fleet.outage(host.name, night)
        if outage == "offline":
            url = OFFLINE_URL
        elif outage in _TROUBLE:
            url = addresses.trouble[(host.name, outage)]
        else:
            url = addresses.urls[host.name]
        entry: dict[str, Any] = {"name": host.name, "address": url, "groups": list(host.groups)}
        if addresses.kerberos_names is not None:
            entry["kerberos_hostname"] = addresses.kerberos_names[host.name]
        if outage == "auth":
            entry["credential"] = {"username_env": USER_ENV, "password_env": WRONG_PASSWORD_ENV}
        hosts.append(entry)
    # The default transport, NTLM, sealed over HTTP and channel-bound over HTTPS; Kerberos on a
    # fleet joined to a realm, the password getting the collecting account's ticket.
    kerberos = {"transport": "kerberos"} if addresses.kerberos_names is not None else {}
    body: dict[str, Any] = {
        "defaults": {
            **kerberos,
            "https": addresses.ca_file is not None,
            "ca_file": addresses.ca_file,
            "credential": {"username_env": USER_ENV, "password_env": PASSWORD_ENV},
        },
        "hosts": hosts,
        **sections,
    }
    return body


class SimulatedFleet:
    """WS-Management servers for every host of a ``Fleet``; ``night()`` picks what they answer."""

    def __init__(
        self,
        fleet: Fleet,
        workdir: Path,
        night: Callable[[], int],
        https: bool = False,
        latency: float = 0.0,
        time_scale: float | None = None,
        probe_seconds: float | None = None,
        realm: Realm | None = None,
    ) -> None:
        """Serve ``fleet``; ``time_scale`` None reads PORTFLEET_SIM_TIME_SCALE, else 1.

        With a ``realm`` the hosts are joined to it: each holds the key of HTTP/<name>.<domain>
        in a keytab of its own, and the collecting account is a principal with the password.
        """
        self._probe_seconds = probe_seconds
        self.fleet = fleet
        self._night = night
        self._password = os.urandom(12).hex()
        self._tls = write_server_cert(workdir) if https else None
        self._keytabs: dict[str, Path] = {}
        self._kerberos_names: dict[str, str] | None = None
        if realm is not None:
            self._kerberos_names = self._join(realm, workdir)
        self.time_scale = resolve_time_scale(time_scale)
        healthy = Behaviour(latency=latency)
        self._servers = {host.name: self._server(host.name, healthy) for host in fleet.hosts}
        self._trouble: dict[tuple[str, str], WsmanServer] = {}
        for host in fleet.hosts:
            for night_index in range(fleet.spec.nights):
                kind = fleet.outage(host.name, night_index)
                if kind in _TROUBLE and (host.name, kind) not in self._trouble:
                    self._trouble[(host.name, kind)] = self._server(host.name, _TROUBLE[kind])

    def __enter__(self) -> SimulatedFleet:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> SimulatedFleet:
        """Start every server."""
        for server in (*self._servers.values(), *self._trouble.values()):
            server.start()
        return self

    def stop(self) -> None:
        """Stop every server."""
        for server in (*self._servers.values(), *self._trouble.values()):
            server.stop()

    def addresses(self) -> FleetAddresses:
        """Return the URLs and credentials of the running servers."""
        return FleetAddresses(
            urls={name: server.url for name, server in self._servers.items()},
            trouble={key: server.url for key, server in self._trouble.items()},
            password=self._password,
            ca_file=str(self._tls.cert) if self._tls else None,
            kerberos_names=self._kerberos_names,
        )

    def _join(self, realm: Realm, workdir: Path) -> dict[str, str]:
        """Join every host to ``realm`` as a domain join does; return their principal names."""
        realm.set_user(SIM_USER, self._password)
        keytabs = workdir / "keytabs"
        keytabs.mkdir(mode=0o700, parents=True, exist_ok=True)
        names = {}
        for host in self.fleet.hosts:
            names[host.name] = f"{host.name}.{DOMAIN}"
            service = realm.add_service(names[host.name])
            self._keytabs[host.name] = realm.export_keytab(service, keytabs / f"{host.name}.keytab")
        return names

    def exchanges(self, name: str) -> list[Exchange]:
        """Return every request host ``name``'s healthy server answered, in order."""
        return self._servers[name].exchanges()

    def probe_seconds(self, name: str) -> float:
        """Return how long the probe runs on host ``name`` tonight, on the real clock."""
        if self._probe_seconds is not None:
            return self._probe_seconds
        state = self.fleet.state(name, self._night())
        return state.duration_ms / 1000 * self.time_scale

    def _server(self, name: str, behaviour: Behaviour) -> WsmanServer:
        responder = ProbeResponder(
            lambda: self.fleet.document(name, self._night()),
            sweep_seconds=lambda: self.probe_seconds(name),
            state=lambda: self.fleet.state(name, self._night()),
        )
        host = self.fleet.host(name)
        return WsmanServer(
            responder,
            username=SIM_USER,
            password=self._password,
            behaviour=replace(
                behaviour,
                operation_timeout_scale=self.time_scale,
                allow_unencrypted=host.allow_unencrypted,
            ),
            tls=self._tls,
            machine=name.upper(),
            keytab=self._keytabs.get(name),
        )


def resolve_time_scale(time_scale: float | None) -> float:
    """Return the hosts' time scale: the one given, else PORTFLEET_SIM_TIME_SCALE, else 1."""
    if time_scale is None:
        text = os.environ.get(TIME_SCALE_ENV, "1")
        try:
            time_scale = float(text)
        except ValueError:
            raise ValueError(f"{TIME_SCALE_ENV}={text!r} is not a number") from None
    if not 0 <= time_scale <= 1:
        raise ValueError(f"a time scale is from 0 to 1 (real time), not {time_scale}")
    return time_scale


class FleetProcess:
    """A ``SimulatedFleet`` in a child process; setting ``night`` here changes what it serves."""

    def __init__(
        self,
        spec: FleetSpec,
        workdir: Path,
        https: bool = False,
        latency: float = 0.0,
        time_scale: float | None = None,
        probe_seconds: float | None = None,
        realm: Realm | None = None,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._night: Synchronized[int] = context.Value("i", 0)
        self._parent, child = context.Pipe()
        scale = resolve_time_scale(time_scale)
        self._process = context.Process(
            target=_serve,
            args=(spec, workdir, https, latency, scale, probe_seconds, realm, self._night, child),
            daemon=True,
            name="portfleet-fleet",
        )
        self.addresses: FleetAddresses | None = None
        self._hosts = spec.hosts

    @property
    def night(self) -> int:
        """Return the night the hosts answer for."""
        return int(self._night.value)

    @night.setter
    def night(self, value: int) -> None:
        self._night.value = value

    @property
    def pid(self) -> int | None:
        """Return the serving process's PID (None before it started): to measure its CPU apart."""
        return self._process.pid

    def __enter__(self) -> FleetProcess:
        self._process.start()
        # Building each host's state and listener takes a few ms: 10,000 hosts need minutes.
        patience = max(60.0, self._hosts * 0.03)
        if not self._parent.poll(patience):
            self._process.kill()
            raise RuntimeError(f"the simulated fleet did not start within {patience:.0f} s")
        self.addresses = self._parent.recv()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._parent.send("stop")
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()


def _serve(
    spec: FleetSpec,
    workdir: Path,
    https: bool,
    latency: float,
    time_scale: float,
    probe_seconds: float | None,
    realm: Realm | None,
    night: Synchronized[int],
    pipe: Connection,
) -> None:
    """Run in the child: serve the fleet until the parent says stop (or goes away)."""
    _lift_file_limit()
    fleet = Fleet(spec)
    if realm is not None:
        os.environ.update(realm.environment())  # the hosts' GSSAPI reads this realm's krb5.conf
    with SimulatedFleet(
        fleet,
        workdir,
        lambda: int(night.value),
        https,
        latency,
        time_scale,
        probe_seconds,
        realm=realm,
    ) as served:
        pipe.send(served.addresses())
        with contextlib.suppress(EOFError):  # the parent went away: stop as well
            pipe.recv()


def _lift_file_limit() -> None:
    """Raise the soft limit of open files to the hard one: a listening socket per host."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to lift
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):  # an unlimited hard limit may be refused
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
