"""Kerberos, the domain's transport, for real: MIT's KDC on loopback, tickets, sealed WinRM.

A throwaway realm (``collector.simulator.realm``) issues the tickets; simulated hosts joined to
it accept ``HTTP/<host>`` with their own keytab, answer with the AP-REP, and seal every message
over HTTP. The collector gets its ticket from ``kinit`` (``KRB5CCNAME``), a keytab or a
password, and each way a ticket fails becomes an ``auth`` attempt that says what to fix.

Without MIT Kerberos's tools or the ``kerberos`` extra these tests are skipped, by name, with
the command that installs what is missing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from winrm import transport as winrm_transport

from collector.collect import collect
from collector.config import PortfleetConfig
from collector.plan import plan_collection
from collector.simulator.certs import CertFiles, write_server_cert
from collector.simulator.cluster import SimulatedFleet, fleet_config
from collector.simulator.fleet import Fleet, FleetSpec
from collector.simulator.realm import DOMAIN, INSTALL, Realm, missing_tools
from collector.simulator.wsman import CommandRequest, CommandResult, WsmanServer
from collector.store.database import Store
from collector.transport import TransportError
from collector.winrm import WinrmTransport

FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
ACCOUNT, PASSWORD = "portfleet", "Kerb-Pässw0rd"


def _missing() -> str | None:
    tools = missing_tools()
    if tools:
        return f"MIT Kerberos is not installed ({', '.join(tools)}): {INSTALL}"
    if importlib.util.find_spec("gssapi") is None or not winrm_transport.HAVE_KERBEROS:
        return (
            "the kerberos extra is not installed: apt-get install gcc libkrb5-dev, then "
            "pip install -e '.[dev,kerberos]'"
        )
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
NEEDS_FAKETIME = pytest.mark.skipif(
    not FAKETIME.exists(), reason="libfaketime is missing: apt-get install faketime"
)


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    with pytest.MonkeyPatch.context() as patch, Realm(tmp_path_factory.mktemp("realm")) as kdc:
        for name, value in kdc.environment().items():
            patch.setenv(name, value)
        kdc.add_principal(ACCOUNT, password=PASSWORD)
        yield kdc


@pytest.fixture
def ticket(realm: Realm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What an admin's ``kinit portfleet`` leaves: a ticket in the cache KRB5CCNAME names."""
    cache = realm.kinit(ACCOUNT, tmp_path / "ccache", password=PASSWORD)
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{cache}")
    return cache


_hosts: dict[str, Path] = {}


def _joined(realm: Realm, tmp_path: Path, name: str) -> Path:
    """Join host ``name`` to the realm (once per module); return its keytab."""
    if name not in _hosts or not _hosts[name].exists():
        service = realm.add_service(f"{name}.{DOMAIN}")
        _hosts[name] = realm.export_keytab(service, tmp_path / f"{name}.keytab")
    return _hosts[name]


def _echo(request: CommandRequest) -> CommandResult:
    return CommandResult(stdout="ran hostname\r\n")


def _serve(servers: list[WsmanServer], keytab: Path, tls: CertFiles | None = None) -> WsmanServer:
    server = WsmanServer(_echo, username=ACCOUNT, password="unused", keytab=keytab, tls=tls)
    servers.append(server.start())
    return server


def _run(server: WsmanServer, tls: CertFiles | None = None, **host: Any) -> str:
    """Collect one host through the WinRM transport; return its output or raise."""
    host.setdefault("kerberos_hostname", f"ws01.{DOMAIN}")
    defaults: dict[str, Any] = {
        "transport": "kerberos",
        "https": tls is not None,
        "ca_file": str(tls.cert) if tls else None,
        "credential": host.pop("credential", {}),
    }
    config = PortfleetConfig.model_validate(
        {"defaults": defaults, "hosts": [{"name": "ws01", "address": server.url, **host}]}
    )
    output = WinrmTransport(config).run(config.hosts[0], "probe", {}, time.monotonic() + 30)
    return output.stdout.decode()


@pytest.mark.parametrize("https", [False, True], ids=["http-sealed", "https"])
def test_a_joined_host_accepts_a_ticket_for_its_own_name_and_proves_it_holds_the_key(
    realm: Realm, ticket: Path, servers: list[WsmanServer], tmp_path: Path, https: bool
) -> None:
    tls = write_server_cert(tmp_path) if https else None
    server = _serve(servers, _joined(realm, tmp_path, "ws01"), tls)
    offered = requests.post(server.url, data=b"", verify=str(tls.cert) if tls else True)
    assert offered.status_code == 401
    assert offered.headers["WWW-Authenticate"].split(", ")[:2] == ["Negotiate", "Kerberos"]

    before = len(server.exchanges())
    assert _run(server, tls).startswith("ran ")  # pywinrm requires the AP-REP (mutual auth)
    exchanges = server.exchanges()[before:]
    winrs = [e for e in exchanges if e.operation in ("Create", "Command", "Receive", "Delete")]
    assert [e.operation for e in winrs][:2] == ["Create", "Command"]
    # Over HTTP every WinRS message went sealed with the ticket's session key; over HTTPS, TLS.
    assert all(e.sealed is (not https) for e in winrs)
    assert not any(e.operation == "Unauthorized" for e in exchanges)  # the ticket went first


def test_a_ticket_bound_to_another_certificate_is_refused(
    realm: Realm, ticket: Path, servers: list[WsmanServer], tmp_path: Path
) -> None:
    import kerberos

    tls = write_server_cert(tmp_path)
    server = _serve(servers, _joined(realm, tmp_path, "ws01"), tls)

    def answer(binding: bytes) -> int:
        flags = kerberos.GSS_C_MUTUAL_FLAG | kerberos.GSS_C_SEQUENCE_FLAG
        _, context = kerberos.authGSSClientInit(f"HTTP@ws01.{DOMAIN}", gssflags=flags)
        bindings = kerberos.channelBindings(application_data=binding)
        kerberos.authGSSClientStep(context, "", channel_bindings=bindings)
        token = kerberos.authGSSClientResponse(context)
        reply = requests.post(
            server.url,
            data=b"",
            headers={"Authorization": f"Negotiate {token}"},
            verify=str(tls.cert),
        )
        return reply.status_code

    from collector.simulator.ntlm import certificate_binding

    assert answer(certificate_binding(tls.cert)) == 200  # this server's certificate
    assert answer(b"tls-server-end-point:" + bytes(32)) == 401  # a proxy's, say


@pytest.mark.parametrize("source", ["keytab", "password"])
def test_portfleet_gets_the_ticket_itself_from_a_keytab_or_a_password(
    realm: Realm,
    servers: list[WsmanServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'nothing-here'}")  # no kinit was run
    server = _serve(servers, _joined(realm, tmp_path, "ws01"))
    credential: dict[str, Any] = {"username": f"{ACCOUNT}@{realm.name}"}
    if source == "keytab":
        credential["keytab"] = str(realm.export_keytab(ACCOUNT, tmp_path / "svc.keytab"))
    else:
        monkeypatch.setenv("PORTFLEET_KRB_PASSWORD", PASSWORD)
        credential["password_env"] = "PORTFLEET_KRB_PASSWORD"
    assert _run(server, credential=credential).startswith("ran ")
    # The ticket went to portfleet's own cache; the user's (empty) one was never written.
    assert not (tmp_path / "nothing-here").exists()


def test_a_wrong_password_is_an_auth_failure_that_says_so(
    realm: Realm, servers: list[WsmanServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _serve(servers, _joined(realm, tmp_path, "ws01"))
    monkeypatch.setenv("PORTFLEET_KRB_PASSWORD", "not-" + PASSWORD)
    credential = {"username": ACCOUNT, "password_env": "PORTFLEET_KRB_PASSWORD"}
    with pytest.raises(TransportError) as refused:
        _run(server, credential=credential)
    assert refused.value.error_class == "auth"
    assert "refused (wrong password?)" in str(refused.value)
    assert "not-" + PASSWORD not in str(refused.value)


def test_a_host_name_the_realm_does_not_know_says_which_name_to_use(
    realm: Realm, ticket: Path, servers: list[WsmanServer], tmp_path: Path
) -> None:
    server = _serve(servers, _joined(realm, tmp_path, "ws01"))
    with pytest.raises(TransportError) as refused:
        _run(server, kerberos_hostname=f"ws01-alias.{DOMAIN}")
    assert refused.value.error_class == "auth"
    assert f"no service principal HTTP/ws01-alias.{DOMAIN}" in str(refused.value)
    assert "FQDN" in str(refused.value) and "setspn -S" in str(refused.value)


@pytest.mark.skipif(
    not FAKETIME.exists(), reason="libfaketime is missing: apt-get install faketime"
)
def test_an_expired_ticket_says_to_renew_it(
    realm: Realm, servers: list[WsmanServer], tmp_path: Path
) -> None:
    server = _serve(servers, _joined(realm, tmp_path, "ws01"))
    cache = realm.kinit(ACCOUNT, tmp_path / "short", password=PASSWORD, lifetime="10m")
    # The collector runs an hour later (its clock moved on): the ticket ran out 50 min ago.
    environment = {**os.environ, **_faked("+1h"), "KRB5CCNAME": f"FILE:{cache}"}
    client = Path(__file__).with_name("kerberos_client.py")
    done = subprocess.run(
        [sys.executable, str(client), server.url, f"ws01.{DOMAIN}"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer = done.stdout.strip()
    assert answer.startswith("auth: "), (answer, done.stderr[-2000:])
    assert "has expired" in answer and "kinit" in answer
    assert not any(e.operation == "Create" for e in server.exchanges())  # refused here


def _faked(offset: str) -> dict[str, str]:
    """The environment that runs a process with its clock ``offset`` from the real one."""
    return {"LD_PRELOAD": str(FAKETIME), "FAKETIME": offset, "FAKETIME_DONT_RESET": "1"}


def test_a_service_principal_of_another_account_says_the_host_cannot_read_it(
    realm: Realm, ticket: Path, servers: list[WsmanServer], tmp_path: Path
) -> None:
    # ws02 answers, but the name asked for is ws01's: its ticket is sealed with ws01's key.
    _joined(realm, tmp_path, "ws01")
    server = _serve(servers, _joined(realm, tmp_path, "ws02"))
    with pytest.raises(TransportError) as refused:
        _run(server, kerberos_hostname=f"ws01.{DOMAIN}")
    assert refused.value.error_class == "auth"
    assert f"could not read the ticket for HTTP/ws01.{DOMAIN}" in str(refused.value)
    assert "duplicate SPN" in str(refused.value)


@pytest.mark.skipif(
    not FAKETIME.exists(), reason="libfaketime is missing: apt-get install faketime"
)
def test_a_host_clock_ten_minutes_ahead_says_to_fix_time_sync(
    realm: Realm, ticket: Path, tmp_path: Path
) -> None:
    keytab = _joined(realm, tmp_path, "ws01")
    environment = {**os.environ, **_faked("+10m")}
    host = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("skewed_host.py")), str(keytab), ACCOUNT],
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert host.stdout is not None
        url = host.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url

        class _Skewed:
            pass

        server = _Skewed()
        server.url = url  # type: ignore[attr-defined]
        with pytest.raises(TransportError) as refused:
            _run(server)  # type: ignore[arg-type]
    finally:
        host.communicate(timeout=10)
    assert refused.value.error_class == "auth"
    message = str(refused.value)
    assert "clock differs from this collector's by more than 5 minutes" in message
    assert "(10 min ahead of this one)" in message and "w32tm /resync" in message


@pytest.mark.parametrize("https", [False, True], ids=["http-sealed", "https"])
def test_a_fleet_is_collected_over_kerberos_and_a_bad_password_is_its_own_attempt(
    realm: Realm, tmp_path: Path, https: bool
) -> None:
    fleet = Fleet(FleetSpec(hosts=10, nights=12))  # 10 hosts: two of them have troubles
    night = next(
        n for n in range(12) if any(fleet.outage(h.name, n) == "auth" for h in fleet.hosts)
    )
    with (
        SimulatedFleet(fleet, tmp_path, lambda: night, https, time_scale=0, realm=realm) as served,
        Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store,
    ):
        addresses = served.addresses()
        addresses.export_credentials()
        config = PortfleetConfig.model_validate(fleet_config(fleet, addresses, night))
        assert config.defaults.transport == "kerberos"
        plan = plan_collection(config, [], concurrency=4, deadline_seconds=30, retries=0)
        outcomes = {o.host: o for o in collect(store, config, plan)}
        exchanges = {h.name: served.exchanges(h.name) for h in fleet.hosts}
    for host in fleet.hosts:
        outcome, outage = outcomes[host.name], fleet.outage(host.name, night)
        if outage is None:
            assert outcome.status in ("ok", "partial"), outcome
            winrs = [e for e in exchanges[host.name] if e.operation in ("Create", "Receive")]
            assert winrs and all(e.sealed is not https for e in winrs)
        elif outage == "auth":
            assert (outcome.status, outcome.error_class) == ("failed", "auth"), outcome
            assert "refused (wrong password?)" in outcome.message
    assert any(fleet.outage(h.name, night) is None for h in fleet.hosts)
