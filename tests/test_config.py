"""The config loader: the example is valid; mistakes name the key, the line and the fix."""

from __future__ import annotations

import pytest

from collector.config import ConfigError, load_config, parse_config
from tests.conftest import REPO


def test_the_example_config_is_valid() -> None:
    config = load_config(REPO / "config.example.yaml")
    assert config.wanted_ports == (5000, 5432, 8080, 49786)
    assert [h.name for h in config.hosts] == ["dev-ws-01", "dev-ws-02", "build-07"]
    assert config.defaults.credential.password_env == "PORTFLEET_PASSWORD"
    assert config.hosts[2].credential is not None
    assert config.hosts[2].credential.keyring_service == "portfleet-build"


def test_an_empty_file_gives_the_defaults() -> None:
    config = parse_config("")
    assert config.database is None and config.hosts == () and config.collect.concurrency == 16


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "hosts:\n  - name: a\n    adress: x\n",
            ["line 3", "unknown key 'hosts[0].adress'", "known keys here: address"],
        ),
        ("wanted_ports: [80, 70000]\n", ["line 1", "'wanted_ports'", "1-65535"]),
        (
            "collect:\n  concurrency: 0\n",
            ["line 2", "'collect.concurrency'", "greater than or equal to 1"],
        ),
        ("hosts:\n- name: a\n- name: A\n", ["listed twice"]),
        (
            "defaults:\n  credential:\n    password_env: 'not a name'\n",
            ["line 3", "not an environment variable name"],
        ),
        (
            "hosts:\n  - name: a\n    credential:\n      password: hunter2\n",
            ["line 4", "holds a secret", "password_env"],
        ),
        ("hosts: [\n", ["not valid YAML"]),
        ("- just\n- a list\n", ["must be a mapping"]),
        ("hosts:\n  - address: x\n", ["line 2", "'hosts[0].name' is required"]),
    ],
)
def test_mistakes_are_explained(text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "config.yaml")
    message = str(caught.value)
    for part in expected:
        assert part in message
    assert "hunter2" not in message


def test_the_example_notify_section_is_valid() -> None:
    notify = load_config(REPO / "config.example.yaml").notify
    assert [(c.name, c.kind) for c in notify.channels] == [
        ("it-mail", "email"), ("team-slack", "slack")
    ]  # fmt: skip
    assert notify.channels[0].sender == "portfleet@corp.example"
    assert notify.channels[0].password_env == "PORTFLEET_SMTP_PASSWORD"


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("{name: m, kind: email, host: h}", "needs host, from and to"),
        ("{name: s, kind: slack, url: 'https://hooks.slack.com/services/T/B/X'}", "url_env"),
        ("{name: w, kind: webhook}", "needs url or url_env"),
        ("{name: m, kind: email, host: h, from: a@b, to: [c@d], password: x}", "holds a secret"),
        ("{name: 'a b', kind: webhook, url: 'http://x'}", "should match pattern"),
    ],
)
def test_a_bad_notify_channel_is_refused(channel: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_config(f"notify:\n  channels:\n    - {channel}\n")
