"""The YAML configuration: a validated model, and errors that name the key and the line."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_ENV = "PORTFLEET_CONFIG"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_KEYS = {"password", "passwd", "secret", "token", "pass"}

Transport = Literal["ntlm", "kerberos", "credssp", "basic", "certificate"]


class ConfigError(Exception):
    """A configuration that cannot be used; the message says where and what to write."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Credential(_Strict):
    """Where a host's credentials come from: environment variables or the OS keyring."""

    username_env: str | None = None
    password_env: str | None = None
    keyring_service: str | None = None
    username: str | None = None
    cert_pem: Path | None = None
    cert_key_pem: Path | None = None
    # Kerberos: the keytab of ``username`` (a service account's principal) to get tickets from.
    keytab: Path | None = None

    @field_validator("username_env", "password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(
                f"{value!r} is not an environment variable name (e.g. PORTFLEET_PASSWORD)"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Credential:
        if self.password_env and self.keyring_service:
            raise ValueError("give either password_env or keyring_service, not both")
        if self.keyring_service and not (self.username or self.username_env):
            raise ValueError("keyring_service needs username (or username_env) to look up")
        if self.keytab and (self.password_env or self.keyring_service):
            raise ValueError("give either keytab or a password (password_env, keyring_service)")
        if self.keytab and not (self.username or self.username_env):
            raise ValueError("keytab needs username: the principal whose keys it holds")
        return self


class HostDefaults(_Strict):
    """Settings every host inherits unless it sets its own."""

    transport: Transport = "ntlm"
    https: bool = True
    port: int | None = Field(default=None, ge=1, le=65535)
    verify_tls: bool = True
    ca_file: Path | None = None
    allow_unencrypted_basic: bool = False
    credential: Credential = Credential(
        username_env="PORTFLEET_USER", password_env="PORTFLEET_PASSWORD"
    )
    # The site (network zone) whose collector reaches the host: ``collect --site NAME``.
    site: str | None = Field(default=None, min_length=1, max_length=64)


class HostEntry(_Strict):
    """One workstation to collect from."""

    name: str = Field(min_length=1, max_length=255)
    address: str | None = None
    groups: tuple[str, ...] = ()
    transport: Transport | None = None
    https: bool | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    verify_tls: bool | None = None
    ca_file: Path | None = None
    allow_unencrypted_basic: bool | None = None
    credential: Credential | None = None
    site: str | None = Field(default=None, min_length=1, max_length=64)
    # Kerberos: the name in the host's service principal (HTTP/<name>) when the address is not
    # it; an IP address in ``address`` makes it the host's ``name`` unless given.
    kerberos_hostname: str | None = Field(default=None, min_length=1, max_length=255)

    def settings(self, defaults: HostDefaults) -> HostDefaults:
        """Return the defaults with this host's own settings laid over them."""
        own = {
            name: value
            for name in HostDefaults.model_fields
            if (value := getattr(self, name)) is not None
        }
        return defaults.model_copy(update=own)


class ProbeOptions(_Strict):
    """How the probe runs on each host."""

    deadline_seconds: float = Field(default=600, gt=0)
    operation_timeout_seconds: int = Field(default=20, ge=1, le=60)
    bind_sweep: bool = True
    sweep_udp: bool = False
    update_history_limit: int = Field(default=500, ge=0)
    max_document_mb: int = Field(default=64, ge=1, le=4096)


class CollectOptions(_Strict):
    """How ``collect`` schedules its work."""

    concurrency: int = Field(default=16, ge=1, le=512)
    retries: int = Field(default=2, ge=0, le=10)
    retry_delay_seconds: float = Field(default=5, ge=0)
    # A night runs from this UTC hour to the same hour the next day; its key is the UTC date
    # it began on. Collectors sharing a store collect each host once per night.
    night_starts_utc_hour: int = Field(default=12, ge=0, le=23)
    # How long a collector's claim on its hosts lasts unless renewed (it renews every third).
    lease_seconds: float = Field(default=120, ge=1)
    # Who this collector is in runs and summaries; the machine's name and the process id if unset.
    collector_name: str | None = Field(default=None, min_length=1, max_length=255)


class ReportOptions(_Strict):
    """How the report and ``explain`` read the store."""

    stale_days: float = Field(default=3, gt=0)


class NotifyChannel(_Strict):
    """Where ``notify`` sends: e-mail over SMTP, or a webhook (JSON, Slack, Teams workflow).

    Secrets come from the environment: ``password_env`` for SMTP, ``url_env`` for a webhook
    whose URL holds its token (Slack, Teams, most JSON hooks). ``url`` is only for a JSON hook
    whose address is no secret.
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["email", "webhook", "slack", "teams"]
    # e-mail
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username_env: str | None = None
    password_env: str | None = None
    sender: str | None = Field(default=None, alias="from")
    to: tuple[str, ...] = ()
    # webhooks
    url: str | None = None
    url_env: str | None = None
    verify_tls: bool = True  # check the server's certificate (a channel's opt-out is logged)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("username_env", "password_env", "url_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @model_validator(mode="after")
    def _complete(self) -> NotifyChannel:
        if self.kind == "email":
            if not (self.host and self.sender and self.to):
                raise ValueError("an email channel needs host, from and to")
            if self.password_env and not self.username_env:
                raise ValueError("password_env needs username_env (the SMTP login)")
        elif self.kind == "webhook":
            if bool(self.url) == bool(self.url_env):
                raise ValueError("a webhook channel needs url or url_env (one of them)")
        elif self.url or not self.url_env:
            raise ValueError(
                f"a {self.kind} channel needs url_env: its URL holds a token, keep it in the "
                "environment"
            )
        return self


class NotifyOptions(_Strict):
    """What ``notify`` tells, how, and how often it retries a channel that failed."""

    digest: bool = False  # one message per run and channel, instead of one per event
    failing_nights: int = Field(default=3, ge=1, le=365)
    max_tries: int = Field(default=5, ge=1, le=100)
    timeout_seconds: float = Field(default=20, gt=0, le=600)
    channels: tuple[NotifyChannel, ...] = ()

    @model_validator(mode="after")
    def _unique_channels(self) -> NotifyOptions:
        names = [channel.name for channel in self.channels]
        if len(names) != len(set(names)):
            raise ValueError("channel names must be unique")
        return self


class PortfleetConfig(_Strict):
    """The whole configuration file."""

    database: str | None = None
    wanted_ports: tuple[int, ...] = ()
    # The process that serves a wanted port: when it holds the port, that is fine, not blocked.
    wanted_services: dict[int, str] = Field(default_factory=dict)
    report: ReportOptions = ReportOptions()
    defaults: HostDefaults = HostDefaults()
    probe: ProbeOptions = ProbeOptions()
    collect: CollectOptions = CollectOptions()
    notify: NotifyOptions = NotifyOptions()
    hosts: tuple[HostEntry, ...] = ()

    @field_validator("wanted_ports")
    @classmethod
    def _ports(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        bad = [port for port in value if not 1 <= port <= 65535]
        if bad:
            raise ValueError(f"ports must be 1-65535, got {bad}")
        return tuple(sorted(set(value)))

    @field_validator("wanted_services")
    @classmethod
    def _services(cls, value: dict[int, str]) -> dict[int, str]:
        bad = [port for port in value if not 1 <= port <= 65535]
        if bad:
            raise ValueError(f"ports must be 1-65535, got {bad}")
        return value

    def wanted(self) -> dict[int, str | None]:
        """Return every wanted port, in order, with the process that serves it (None: not said).

        A port ``wanted_services`` names is wanted too, listed in ``wanted_ports`` or not.
        """
        ports = sorted({*self.wanted_ports, *self.wanted_services})
        return {port: self.wanted_services.get(port) for port in ports}

    @model_validator(mode="after")
    def _unique_names(self) -> PortfleetConfig:
        seen: set[str] = set()
        for host in self.hosts:
            key = host.name.lower()
            if key in seen:
                raise ValueError(f"host {host.name!r} is listed twice; host names must be unique")
            seen.add(key)
        return self


def find_config_path(cli_path: Path | None) -> Path | None:
    """Pick the config file: ``--config``, else ``$PORTFLEET_CONFIG``, else ``./config.yaml``."""
    if cli_path is not None:
        return cli_path
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    local = Path("config.yaml")
    return local if local.is_file() else None


def load_config(path: Path | None) -> PortfleetConfig:
    """Read and validate a config file; None gives the defaults."""
    if path is None:
        return PortfleetConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    return anchor_paths(parse_config(text, str(path)), path.parent)


def anchor_paths(config: PortfleetConfig, base: Path) -> PortfleetConfig:
    """Make the config's relative file paths relative to ``base``, the config's folder.

    The config is read from wherever cron or an operator happens to be; what it names must not
    depend on that.
    """
    base = base.expanduser().absolute()

    def anchored(path: Path | None) -> Path | None:
        if path is None or path.expanduser().is_absolute():
            return None if path is None else path.expanduser()
        return base / path

    def credential(value: Credential | None) -> Credential | None:
        if value is None:
            return None
        update = {
            "cert_pem": anchored(value.cert_pem),
            "cert_key_pem": anchored(value.cert_key_pem),
        }
        return value.model_copy(update=update)

    def host(value: Any) -> Any:
        return value.model_copy(
            update={"ca_file": anchored(value.ca_file), "credential": credential(value.credential)}
        )

    database = config.database
    if database and "://" not in database:  # a bare SQLite path
        database = str(anchored(Path(database)))
    return config.model_copy(
        update={
            "database": database,
            "defaults": host(config.defaults),
            "hosts": tuple(host(entry) for entry in config.hosts),
        }
    )


def parse_config(text: str, name: str = "config.yaml") -> PortfleetConfig:
    """Validate YAML text; a ConfigError names the key, the line, and what to write instead."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "somewhere"
        raise ConfigError(
            f"{name}, {where}: not valid YAML: {getattr(exc, 'problem', exc)}"
        ) from exc
    if data is None:
        return PortfleetConfig()
    if not isinstance(data, dict):
        raise ConfigError(
            f"{name}, line 1: the file must be a mapping of keys (database:, hosts:, …)"
        )
    lines = _line_index(node)
    _refuse_secrets(data, lines, name)
    try:
        return PortfleetConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, lines, name)) from exc


def _line_index(node: yaml.Node | None, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map each key path (keys and list indexes) to its 1-based line in the file."""
    index: dict[tuple[Any, ...], int] = {}
    if node is None:
        return index
    index[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, key_node.value)
            index.update(_line_index(value_node, key_path))
            index[key_path] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            index.update(_line_index(item, (*path, position)))
    return index


def _refuse_secrets(data: Any, lines: dict[tuple[Any, ...], int], name: str) -> None:
    """Refuse a password written into the file; it belongs in the environment or a keyring."""

    def walk(value: Any, path: tuple[Any, ...]) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if str(key).lower() in _SECRET_KEYS:
                    line = lines.get((*path, key), 0)
                    dotted = _dotted((*path, key))
                    raise ConfigError(
                        f"{name}, line {line}: '{dotted}' holds a secret; never write "
                        "one in the config. Put it in an environment variable and write "
                        "'password_env: THAT_VARIABLE' (or 'keyring_service: NAME')."
                    )
                walk(item, (*path, key))
        elif isinstance(value, list):
            for position, item in enumerate(value):
                walk(item, (*path, position))

    walk(data, ())


def _explain(exc: ValidationError, lines: dict[tuple[Any, ...], int], name: str) -> str:
    """Turn pydantic's errors into lines that name the key, the line and the fix."""
    messages = []
    for error in exc.errors():
        path = tuple(error["loc"])
        line = _nearest_line(path, lines)
        key = _dotted(path) or "(top level)"
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(path)
            hint = f"; known keys here: {', '.join(allowed)}" if allowed else ""
            messages.append(f"{name}, line {line}: unknown key '{key}'{hint}")
        elif error["type"] == "missing":
            messages.append(f"{name}, line {line}: '{key}' is required; add it")
        else:
            messages.append(f"{name}, line {line}: '{key}': {error['msg']}")
    return "\n".join(messages)


def _nearest_line(path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get((), 1)


def _dotted(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _allowed_keys(path: tuple[Any, ...]) -> list[str]:
    """List the field names of the model that holds the unknown key at ``path``."""
    model: Any = PortfleetConfig
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if model is None:
            return []
    return sorted(model.model_fields)
