"""Choosing hosts and resolving their endpoints and credentials, before any network."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import keyring
import keyring.backends.fail
import pytest
import winrm.transport

from collector.config import parse_config
from collector.endpoint import build_endpoint
from collector.plan import plan_collection, select_hosts
from collector.transport import SelectionError, TransportError

CONFIG = parse_config(
    """
defaults:
  credential: {username_env: PF_USER, password_env: PF_PASS}
hosts:
  - {name: dev-ws-01, address: 10.0.0.1, groups: [backend]}
  - name: dev-ws-02
    address: 'fe80::1'
    groups: [backend, qa]
    https: false
    transport: basic
    allow_unencrypted_basic: true
  - {name: build-07, address: 'https://build-07.corp:5986/wsman', groups: [ci], verify_tls: false}
  - {name: qa-01, https: false, transport: basic}
"""
)
ENV = {"PF_USER": "CORP\\svc", "PF_PASS": "s3cret!"}


@pytest.mark.parametrize(
    ("selectors", "names"),
    [
        ((), ["dev-ws-01", "dev-ws-02", "build-07", "qa-01"]),
        (("dev-ws-*",), ["dev-ws-01", "dev-ws-02"]),
        (("@qa", "BUILD-07"), ["dev-ws-02", "build-07"]),
        (("@backend", "dev-ws-01"), ["dev-ws-01", "dev-ws-02"]),
    ],
)
def test_selectors_pick_hosts_in_config_order(selectors: tuple[str, ...], names: list[str]) -> None:
    assert [h.name for h in select_hosts(CONFIG, selectors)] == names


def test_a_selector_matching_nothing_is_refused() -> None:
    with pytest.raises(SelectionError, match="'@nobody'"):
        select_hosts(CONFIG, ["@nobody"])
    with pytest.raises(SelectionError, match="lists no hosts"):
        select_hosts(parse_config(""), [])


def test_endpoints_get_urls_transports_and_credentials(caplog: pytest.LogCaptureFixture) -> None:
    by_name = {h.name: h for h in CONFIG.hosts}
    first = build_endpoint(by_name["dev-ws-01"], CONFIG, ENV)
    assert (first.url, first.transport, first.username, first.password) == (
        "https://10.0.0.1:5986/wsman",
        "ntlm",
        "CORP\\svc",
        "s3cret!",
    )
    assert "s3cret" not in repr(first)
    with caplog.at_level(logging.WARNING):
        second = build_endpoint(by_name["dev-ws-02"], CONFIG, ENV)
        third = build_endpoint(by_name["build-07"], CONFIG, ENV)
    assert second.url == "http://[fe80::1]:5985/wsman" and second.transport == "basic"
    assert third.url == "https://build-07.corp:5986/wsman" and third.verify_tls is False
    assert "dev-ws-02: basic authentication over unencrypted HTTP" in caplog.text
    assert "build-07: TLS certificate validation is off" in caplog.text
    assert "s3cret" not in caplog.text


def test_basic_over_http_is_refused_without_the_opt_in() -> None:
    qa = next(h for h in CONFIG.hosts if h.name == "qa-01")
    with pytest.raises(TransportError, match="allow_unencrypted_basic") as caught:
        build_endpoint(qa, CONFIG, ENV)
    assert caught.value.error_class == "auth"


def test_a_missing_password_variable_is_an_auth_failure_naming_the_variable() -> None:
    with pytest.raises(TransportError, match="PF_PASS") as caught:
        build_endpoint(CONFIG.hosts[0], CONFIG, {"PF_USER": "u"})
    assert caught.value.error_class == "auth" and not caught.value.transient


def test_a_transport_or_keyring_whose_package_is_missing_is_refused_before_any_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = parse_config(
        """
defaults: {transport: kerberos}
hosts:
  - {name: k1}
  - {name: k2}
  - {name: k3}
  - {name: k4}
  - {name: k5}
  - {name: c1, transport: credssp}
  - {name: n1, transport: ntlm}
"""
    )
    monkeypatch.setattr(winrm.transport, "HAVE_KERBEROS", False)  # as without pykerberos
    monkeypatch.setenv("PORTFLEET_USER", "portfleet")  # the default credential variables
    monkeypatch.setenv("PORTFLEET_PASSWORD", "secret")
    with pytest.raises(SelectionError) as refused:
        plan_collection(config, [])
    assert str(refused.value) == (
        "transport kerberos for k1, k2, k3 and 2 more needs pip install 'portfleet[kerberos]' "
        "(pykerberos and gssapi build against MIT Kerberos: apt-get install gcc libkrb5-dev)"
    )
    # The dev extras install requests-credssp; the hosts chosen are the ones checked.
    assert [h.name for h in plan_collection(config, ["c1", "n1"]).hosts] == ["c1", "n1"]
    monkeypatch.setattr(winrm.transport, "HAVE_CREDSSP", False)
    with pytest.raises(SelectionError, match=r"transport credssp for c1 needs .*\[credssp\]"):
        plan_collection(config, ["c1", "n1"])
    monkeypatch.setitem(sys.modules, "keyring", None)  # as without the keyring extra
    with pytest.raises(SelectionError) as refused:
        plan_collection(KEYRING_CONFIG, [])
    assert str(refused.value) == (
        "keyring_service for build-07 needs pip install 'portfleet[keyring]'"
    )


KEYRING_CONFIG = parse_config(
    """
defaults:
  transport: basic
hosts:
  - name: build-07
    credential: {username: svc-portfleet, keyring_service: portfleet-test}
"""
)


@pytest.fixture
def failing_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    # What a server without a desktop keyring or a configured backend has.
    keyring.set_keyring(keyring.backends.fail.Keyring())  # type: ignore[no-untyped-call]
    yield
    keyring.set_keyring(previous)


def test_a_keyring_without_a_backend_is_an_auth_failure_that_says_what_to_do(
    failing_keyring: None,
) -> None:
    with pytest.raises(TransportError) as caught:
        build_endpoint(KEYRING_CONFIG.hosts[0], KEYRING_CONFIG, {})
    assert caught.value.error_class == "auth"
    message = str(caught.value)
    assert message.startswith("build-07: the keyring gave no answer for service 'portfleet-test'")
    assert "NoKeyringError" in message and "PYTHON_KEYRING_BACKEND" in message
