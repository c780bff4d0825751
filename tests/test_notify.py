"""`notify` delivery for real: SMTP on loopback (plain, STARTTLS, TLS, auth) and webhooks."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from collector.config import NotifyOptions
from collector.notify import notify, render, slack_escape, teams_escape
from collector.store.database import Store
from collector.store.models import Notification
from collector.store.outbox import Event
from tests.mailhooks import SmtpServer, WebhookServer, free_port, server_context

PASSWORD = "smtp-S3cret&pw"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    """Delivery does not depend on the database: SQLite only (the outbox runs on both)."""
    with Store.open(sqlite_url) as opened:
        yield opened


HOSTILE = "ws-<b>&*evil*_<!channel>\x1b[2J"


def _events() -> list[Event]:
    return [
        Event(
            key="blocked:ws-01:5432:7",
            kind="blocked",
            title=f"{HOSTILE} TCP 5432: reserved",
            host=HOSTILE,
            port=5432,
            lines=("since 2026-11-20 02:00 UTC", "process <script>alert(1)</script>"),
            commands=("net stop winnat", "net start winnat"),
        ),
        Event(key="host-failing:ws-02:3", kind="host-failing", title="ws-02: failed 3 runs"),
    ]


def _email(port: int, security: str, login: bool = False, **extra: Any) -> NotifyOptions:
    channel: dict[str, Any] = {
        "name": "it-mail", "kind": "email", "host": "127.0.0.1", "port": port,
        "security": security, "from": "portfleet@example.org", "to": ["it@example.org"],
        "verify_tls": False,
    }  # fmt: skip
    if login:
        channel.update(username_env="PF_SMTP_USER", password_env="PF_SMTP_PASSWORD")
    return NotifyOptions.model_validate({"channels": [channel], "timeout_seconds": 3, **extra})


def _rows(store: Store) -> list[Any]:
    table = Notification.__table__
    with store.connect() as connection:
        return list(connection.execute(select(table).order_by(table.c.id)).all())


# aiosmtpd warns that AUTH without STARTTLS is unsafe; over implicit TLS it is encrypted anyway.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize(
    ("security", "login"), [("none", False), ("starttls", True), ("tls", True), ("tls", False)]
)
def test_mail_arrives_once_over_each_kind_of_smtp(
    store: Store,
    tmp_path: Path,
    security: str,
    login: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {"PF_SMTP_USER": "portfleet", "PF_SMTP_PASSWORD": PASSWORD}
    with SmtpServer(
        tmp_path, security=security, login=("portfleet", PASSWORD) if login else None
    ) as smtp:
        options = _email(smtp.port, security, login)
        with caplog.at_level(logging.DEBUG):
            result = notify(store, options, _events(), environ=environ)
            again = notify(store, options, _events(), environ=environ)
    assert (result.queued, result.sent, result.failed) == (2, 2, 0)
    assert (again.queued, again.sent, again.failed) == (0, 0, 0)
    box = smtp.mailbox
    assert len(box.messages) == 2
    if login:
        assert box.logins == [("portfleet", PASSWORD)] * 2
    first = box.messages[0]
    assert first["To"] == "it@example.org"
    html = box.html(0)
    assert "&lt;b&gt;&amp;" in html and "<b>&" not in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "\x1b" not in html and "\\x1b" in html
    assert "<pre>net stop winnat\r\nnet start winnat</pre>" in html  # SMTP lines end CRLF
    assert all(row.sent_at is not None and row.tries == 1 for row in _rows(store))
    _nothing_leaks(store, caplog, box_text=[m.as_string() for m in box.messages])


def _nothing_leaks(store: Store, caplog: pytest.LogCaptureFixture, box_text: list[str]) -> None:
    stored = " ".join(f"{r.payload} {r.last_error}" for r in _rows(store))
    for text in (stored, caplog.text, *box_text):
        assert PASSWORD not in text
        assert "S3cret" not in text


def test_a_digest_is_one_mail_with_every_event(store: Store, tmp_path: Path) -> None:
    with SmtpServer(tmp_path) as smtp:
        result = notify(store, _email(smtp.port, "none", digest=True), _events(), environ={})
    assert result.sent == 2
    (message,) = smtp.mailbox.messages
    assert message["Subject"] == "portfleet: 2 things to know about the fleet"
    html = smtp.mailbox.html()
    assert "TCP 5432: reserved" in html and "ws-02: failed 3 runs" in html


def test_a_mail_server_that_is_down_keeps_every_event_and_the_next_run_delivers(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    environ = {"PF_SMTP_USER": "portfleet", "PF_SMTP_PASSWORD": PASSWORD}
    options = _email(port, "starttls", login=True, max_tries=2)
    with caplog.at_level(logging.DEBUG):
        down = notify(store, options, _events(), environ=environ)
    assert (down.queued, down.sent, down.failed) == (2, 0, 2)
    assert "it-mail" in caplog.text and "kept for the next run" in caplog.text
    rows = _rows(store)
    assert [(r.tries, r.sent_at) for r in rows] == [(1, None), (1, None)]
    assert all(r.last_error for r in rows)
    with SmtpServer(
        tmp_path, security="starttls", login=("portfleet", PASSWORD), port=port
    ) as smtp:
        up = notify(store, options, _events(), environ=environ)
    assert (up.queued, up.sent, up.failed) == (0, 2, 0)
    assert len(smtp.mailbox.messages) == 2
    _nothing_leaks(store, caplog, [m.as_string() for m in smtp.mailbox.messages])


def test_retries_are_bounded(store: Store) -> None:
    options = _email(free_port(), "none", max_tries=2)
    first = notify(store, options, _events()[:1], environ={})
    second = notify(store, options, _events()[:1], environ={})
    third = notify(store, options, _events()[:1], environ={})
    assert (first.failed, second.failed, third.failed) == (1, 1, 0)
    assert third.given_up == 1
    assert [r.tries for r in _rows(store)] == [2]


def test_a_missing_variable_fails_the_channel_not_the_run(store: Store) -> None:
    result = notify(store, _email(25, "starttls", login=True), _events(), environ={})
    assert result.failed == 2
    assert result.channels[0].reasons == ["environment variable PF_SMTP_USER is not set"]


def _hook(kind: str, url_env: str = "PF_HOOK_URL", **extra: Any) -> NotifyOptions:
    channel = {"name": f"{kind}-hook", "kind": kind, "url_env": url_env, "verify_tls": False}
    return NotifyOptions.model_validate({"channels": [channel], "timeout_seconds": 2, **extra})


def test_a_json_webhook_receives_each_event(store: Store) -> None:
    with WebhookServer() as server:
        url = f"{server.url}/hooks/T0KEN-abcdef?sig=S1GNATURE99"
        result = notify(store, _hook("webhook"), _events(), environ={"PF_HOOK_URL": url})
    assert result.sent == 2
    first = server.hook.bodies[0]
    assert first["title"].startswith("ws-<b>&*evil*_<!channel>\\x1b[2J TCP 5432")
    assert "process <script>alert(1)</script>" in first["message"]
    assert server.hook.paths[0].startswith("/hooks/T0KEN-abcdef")


def test_slack_gets_mrkdwn_with_host_strings_escaped(store: Store) -> None:
    with WebhookServer() as server:
        url = f"{server.url}/services/T000/B000/XXXXSECRET"
        result = notify(store, _hook("slack"), _events()[:1], environ={"PF_HOOK_URL": url})
    assert result.sent == 1
    (body,) = server.hook.bodies
    assert set(body) == {"text"}
    text = body["text"]
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text
    assert "&lt;script&gt;" in text and "&amp;" in text
    assert "```net stop winnat\nnet start winnat```" in text


def test_a_webhook_answering_500_is_kept_and_retried(store: Store) -> None:
    with WebhookServer() as server:
        environ = {"PF_HOOK_URL": f"{server.url}/hook/SECRETTOKEN123"}
        server.hook.mode = "500"
        failed = notify(store, _hook("webhook"), _events()[:1], environ=environ)
        server.hook.mode = "ok"
        delivered = notify(store, _hook("webhook"), _events()[:1], environ=environ)
    assert (failed.failed, delivered.sent) == (1, 1)
    (row,) = _rows(store)
    assert row.tries == 2 and row.sent_at is not None
    assert len(server.hook.bodies) == 2  # the 500 one arrived, and the retry


def test_a_webhook_that_hangs_is_cut_at_the_timeout(store: Store) -> None:
    with WebhookServer() as server:
        server.hook.mode = "hang"
        server.hook.hang_seconds = 6
        environ = {"PF_HOOK_URL": f"{server.url}/hook/SECRETTOKEN123"}
        started = time.monotonic()
        result = notify(store, _hook("webhook", timeout_seconds=1), _events(), environ=environ)
        took = time.monotonic() - started
    assert result.failed == 2 and result.sent == 0
    assert took < 5, took  # one try cut at the timeout; the second event waits for the next run
    (reason,) = result.channels[0].reasons
    assert "SECRETTOKEN123" not in reason
    assert all("SECRETTOKEN123" not in (r.last_error or "") for r in _rows(store))


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_a_teams_workflow_gets_an_adaptive_card(store: Store, tmp_path: Path) -> None:
    with WebhookServer(server_context(tmp_path)) as server:
        url = f"workflows://127.0.0.1:{server.port}/WORKFLOW123/SIGNATURE456"
        result = notify(store, _hook("teams"), _events()[:1], environ={"PF_HOOK_URL": url})
    assert result.sent == 1, result.channels[0].reasons
    (card,) = server.hook.bodies
    text = str(card)
    assert "AdaptiveCard" in text
    assert "\\\\<b\\\\>" in text or "\\<b\\>" in text


def test_escaping_per_channel() -> None:
    assert slack_escape("a<@U1>&b") == "a&lt;@U1&gt;&amp;b"
    assert teams_escape("*x*_[y](z)") == "\\*x\\*\\_\\[y\\]\\(z\\)"
    message = render(_events()[:1], "email")
    assert message.markup == "html" and "<script>" not in message.body
