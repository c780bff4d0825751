"""Send what is worth telling: e-mail and webhooks through Apprise, recorded in the outbox.

``notify(store, options, events)`` queues the events for every configured channel (once: see
``collector.store.outbox``), then sends what is pending, one message per event or one digest
per channel, and records each try. A channel that fails is logged (its name and a reason with
every secret taken out), counted, and tried again on the next run, ``max_tries`` times at most;
it never raises into the collection that called it.

Each channel gets the event worded for it, with every host string escaped for its markup:
HTML for e-mail, mrkdwn for Slack (``&``, ``<``, ``>``), Markdown for a Teams workflow's
Adaptive Card, plain text inside JSON for a generic webhook. Delivery is Apprise's (SMTP with
STARTTLS or implicit TLS, JSON POST, Teams workflows); Slack's incoming webhook takes a JSON
POST of ``{"text": …}``, sent by Apprise's JSON plugin so that it goes exactly where the URL says.
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from collector.config import NotifyChannel, NotifyOptions
from collector.store.database import Store
from collector.store.outbox import Event, Pending, given_up, mark_failed, mark_sent, pending, queue

log = logging.getLogger(__name__)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TEAMS_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<])")


class ChannelError(Exception):
    """A channel that cannot be used as configured (a variable not set, a bad URL)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message for one channel: its title and body, in the channel's markup."""

    title: str
    body: str
    markup: str  # "html", "text" or "markdown"


@dataclass(slots=True)
class ChannelResult:
    """What one channel did in this run."""

    name: str
    sent: int = 0
    failed: int = 0
    reasons: list[str] = field(default_factory=list)


@dataclass(slots=True)
class NotifyResult:
    """What ``notify`` queued, sent and failed to send, per channel."""

    queued: int = 0
    channels: list[ChannelResult] = field(default_factory=list)
    given_up: int = 0

    @property
    def sent(self) -> int:
        """Notifications delivered in this run."""
        return sum(c.sent for c in self.channels)

    @property
    def failed(self) -> int:
        """Notifications whose delivery failed in this run (retried next run, within bounds)."""
        return sum(c.failed for c in self.channels)

    def describe(self) -> str:
        """Return one line for the operator."""
        line = f"notify: {self.queued} queued, {self.sent} sent, {self.failed} failed"
        if self.given_up:
            line += f", {self.given_up} given up after too many tries"
        return line


def notify(
    store: Store,
    options: NotifyOptions,
    events: Sequence[Event],
    *,
    now: datetime | None = None,
    environ: Mapping[str, str] | None = None,
) -> NotifyResult:
    """Queue ``events`` for every channel, send what is pending, and record each try."""
    now = now or datetime.now(UTC)
    environ = os.environ if environ is None else environ
    result = NotifyResult()
    channels = {channel.name: channel for channel in options.channels}
    with store.transaction() as connection:
        result.queued = queue(connection, events, channels, now)
    with store.connect() as connection:
        waiting = pending(connection, options.max_tries)
    by_channel: dict[str, list[Pending]] = defaultdict(list)
    for item in waiting:
        if item.channel in channels:  # a channel taken out of the config keeps its rows
            by_channel[item.channel].append(item)
    for name, items in by_channel.items():
        result.channels.append(_deliver(store, channels[name], items, options, environ, now))
    with store.connect() as connection:
        result.given_up = given_up(connection, options.max_tries)
    return result


def _deliver(
    store: Store,
    channel: NotifyChannel,
    items: list[Pending],
    options: NotifyOptions,
    environ: Mapping[str, str],
    now: datetime,
) -> ChannelResult:
    """Send one channel's pending items; stop at its first failure (it will fail again)."""
    outcome = ChannelResult(channel.name)
    batches = [items] if options.digest else [[item] for item in items]
    try:
        url, secrets = apprise_url(channel, environ, options.timeout_seconds)
    except ChannelError as exc:
        reason = str(exc)
        url, secrets = "", []
    else:
        reason = ""
    for position, batch in enumerate(batches):
        ids = [item.id for item in batch]
        if not reason:
            message = render([item.event for item in batch], channel.kind)
            reason = _send(url, message, secrets)
            if not reason:
                with store.transaction() as connection:
                    mark_sent(connection, ids, now)
                outcome.sent += len(ids)
                continue
        # This try failed, and so would the rest: count them all as tried once.
        rest = [item.id for later in batches[position:] for item in later]
        with store.transaction() as connection:
            mark_failed(connection, rest, now, reason)
        outcome.failed += len(rest)
        outcome.reasons.append(reason)
        log.warning(
            "notify: channel %s: %d message(s) not delivered, kept for the next run: %s",
            channel.name, len(rest), reason,
        )  # fmt: skip
        break
    return outcome


def _send(url: str, message: Message, secrets: Sequence[str]) -> str:
    """Send one message through Apprise; return "" when delivered, else a redacted reason."""
    import apprise

    formats = {
        "html": apprise.NotifyFormat.HTML,
        "markdown": apprise.NotifyFormat.MARKDOWN,
        "text": apprise.NotifyFormat.TEXT,
    }
    # What Apprise logs may quote a URL with its token: it reaches only this capture, redacted.
    logging.getLogger("apprise").propagate = False
    sender = apprise.Apprise()
    if not sender.add(url):
        return "Apprise could not read the channel's settings (its host, from and to, or its URL)"
    capture = apprise.LogCapture(level=logging.WARNING, fmt="%(message)s")  # type: ignore[no-untyped-call]
    with capture as captured:
        try:
            delivered = sender.notify(
                body=message.body, title=message.title, body_format=formats[message.markup]
            )
        except Exception as exc:  # Apprise's plugins may raise; a channel never stops the run
            return redact(f"{type(exc).__name__}: {exc}", secrets)
        said = captured.getvalue() if hasattr(captured, "getvalue") else ""
    if delivered:
        return ""
    lines = [line.strip() for line in str(said).splitlines() if line.strip()]
    return redact("; ".join(lines[-3:]) or "delivery failed", secrets)


def redact(text: str, secrets: Sequence[str]) -> str:
    """Take every secret (and its URL-quoted form) out of a text, longest first."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, "***")
    return _CONTROL.sub(" ", text)[:2000]


def apprise_url(
    channel: NotifyChannel, environ: Mapping[str, str], timeout: float
) -> tuple[str, list[str]]:
    """Return the channel's Apprise URL and the secrets in it (to redact from any message)."""

    def variable(name: str) -> str:
        value = environ.get(name)
        if not value:
            raise ChannelError(f"environment variable {name} is not set")
        return value

    waits = f"cto={timeout:g}&rto={timeout:g}"
    verify = "" if channel.verify_tls else "&verify=no"
    if channel.kind == "email":
        assert channel.host is not None and channel.sender is not None
        mode = {"starttls": "starttls", "tls": "ssl", "none": "insecure"}[channel.security]
        scheme = "mailto" if channel.security == "none" else "mailtos"
        port = channel.port or {"starttls": 587, "tls": 465, "none": 25}[channel.security]
        secrets: list[str] = []
        login = ""
        if channel.username_env:
            user = variable(channel.username_env)
            login = quote(user, safe="")
            if channel.password_env:
                password = variable(channel.password_env)
                secrets.append(password)
                login += ":" + quote(password, safe="")
            login += "@"
        to = ",".join(quote(address, safe="@") for address in channel.to)
        query = (
            f"smtp={quote(channel.host, safe='')}&from={quote(channel.sender, safe='@')}"
            f"&to={to}&mode={mode}&{waits}{verify}"
        )
        return f"{scheme}://{login}{quote(channel.host, safe='')}:{port}/?{query}", secrets
    raw = channel.url or variable(channel.url_env or "")
    secrets = [raw, *_url_secrets(raw)]
    if channel.kind == "teams":
        # image=no: the card would show an icon fetched from the internet.
        return _with_query(raw, f"{waits}{verify}&image=no"), secrets
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ChannelError(f"channel {channel.name}: the webhook URL must be http:// or https://")
    scheme = "jsons" if parts.scheme == "https" else "json"
    extra = f"{waits}{verify}"
    if channel.kind == "slack":
        # Slack's incoming webhook reads {"text": …}: rename Apprise's message, drop the rest.
        extra += "&:message=text&:version=&:title=&:attachments=&:type="
    target = f"{scheme}://{parts.netloc}{parts.path or '/'}"
    query = f"{parts.query}&{extra}" if parts.query else extra
    return f"{target}?{query}", secrets


def _with_query(url: str, extra: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{extra}"


def _url_secrets(url: str) -> list[str]:
    """Return the parts of a URL that may be tokens: its path segments, query values, password."""
    parts = urlsplit(url)
    found = [segment for segment in parts.path.split("/") if len(segment) >= 6]
    found += [pair.split("=", 1)[1] for pair in parts.query.split("&") if "=" in pair]
    if parts.password:
        found.append(parts.password)
    return [value for value in found if len(value) >= 6]


# --- wording, per channel ---------------------------------------------------------------------


def clean(text: str) -> str:
    """Show control characters from a host as escapes: nothing a host sent acts as markup."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def slack_escape(text: str) -> str:
    """Escape text for Slack mrkdwn: ``&``, ``<`` and ``>`` (no mention, link or markup)."""
    return clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def teams_escape(text: str) -> str:
    """Escape text for the Markdown of a Teams Adaptive Card (every markup character)."""
    return _TEAMS_SPECIAL.sub(r"\\\1", clean(text))


def render(events: Sequence[Event], kind: str) -> Message:
    """Word one event, or a digest of several, for a channel of ``kind``."""
    title = (
        clean(events[0].title)
        if len(events) == 1
        else f"portfleet: {len(events)} things to know about the fleet"
    )
    title = title.replace("\n", " ")[:200]
    if kind == "email":
        parts = [_html(event) for event in events]
        body = "".join(parts)
        return Message(title, f"<html><body>{body}</body></html>", "html")
    if kind == "slack":
        return Message(title, "\n\n".join(_slack(e) for e in events), "text")
    if kind == "teams":
        return Message(title, "\n\n".join(_teams(e) for e in events), "markdown")
    return Message(title, "\n\n".join(_text(e) for e in events), "text")


def _text(event: Event) -> str:
    lines = [clean(event.title), *(f"- {clean(line)}" for line in event.lines)]
    if event.commands:
        lines += ["Fix (elevated Command Prompt):", *(f"  {clean(c)}" for c in event.commands)]
    return "\n".join(lines)


def _html(event: Event) -> str:
    escape = html.escape
    items = "".join(f"<li>{escape(clean(line))}</li>" for line in event.lines)
    body = f"<h3>{escape(clean(event.title))}</h3>"
    if items:
        body += f"<ul>{items}</ul>"
    if event.commands:
        commands = escape("\n".join(clean(c) for c in event.commands))
        body += f"<p>Fix (elevated Command Prompt):</p><pre>{commands}</pre>"
    return body


def _slack(event: Event) -> str:
    lines = [f"*{slack_escape(event.title)}*"]
    lines += [f"• {slack_escape(line)}" for line in event.lines]
    if event.commands:
        code = "\n".join(slack_escape(c).replace("`", "'") for c in event.commands)
        lines.append(f"Fix (elevated Command Prompt):\n```{code}```")
    return "\n".join(lines)


def _teams(event: Event) -> str:
    lines = [f"**{teams_escape(event.title)}**"]
    lines += [f"- {teams_escape(line)}" for line in event.lines]
    if event.commands:
        lines.append("Fix (elevated Command Prompt):")
        lines += [f"- {teams_escape(c)}" for c in event.commands]
    return "\n".join(lines)
