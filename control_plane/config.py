"""Server settings: flags override ``LEGATO_SERVER_*`` variables, which override defaults.
Every value is checked at start-up; a bad one stops the server with a message naming the
flag, the variable, the value and what is accepted."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from control_plane.store.urls import DatabaseUrlError, to_async_url
from legato.spec.units import UnitError, parse_duration

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_HTTP_LISTEN",
    "DEFAULT_LISTEN",
    "ConfigError",
    "ServerConfig",
    "add_server_arguments",
    "is_loopback",
]

DEFAULT_LISTEN = "127.0.0.1:7470"
DEFAULT_HTTP_LISTEN = "127.0.0.1:7471"
DEFAULT_DB = "sqlite:///./.legato/legato.db"
ENV_PREFIX = "LEGATO_SERVER_"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and what to do."""


@dataclass(frozen=True)
class ServerConfig:
    listen: str = DEFAULT_LISTEN
    db: str = DEFAULT_DB
    log_format: str = "auto"
    log_level: str = "info"
    max_message_mb: int = 64
    shutdown_grace: float = 10.0
    migrate: bool = True
    lease_timeout: float = 20.0
    artifacts: str = "db"
    artifact_max_mb: int = 256
    # Webhooks, /metrics and the web UI: "off" serves none.
    http_listen: str = DEFAULT_HTTP_LISTEN
    # The web UI's address as browsers reach it (sign-in links); "" = the HTTP listener's.
    ui_url: str = ""
    secrets_file: str = field(default="", metadata={"flag": "--secrets", "env": "SECRETS"})
    # Transport: TLS with this certificate and key; with client_ca, clients must present a
    # certificate it signed (mTLS).
    tls_cert: str = ""
    tls_key: str = ""
    client_ca: str = ""
    # "token": every call needs a credential; "none": anyone (loopback only).
    auth: str = "token"
    # Listen on a non-loopback address without TLS (TLS ends in front of the server).
    insecure: bool = False
    max_streams_per_caller: int = 32
    # Email notifications: the SMTP relay ("" sends no email), how to reach it (starttls,
    # tls or none), the login (its password is the server secret named here), the sender
    # address, and a CA bundle to trust instead of the system's.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_tls: str = "starttls"
    smtp_user: str = ""
    smtp_password_secret: str = ""
    smtp_from: str = ""
    smtp_ca: str = ""
    # The PagerDuty Events API v2 endpoint (a proxy, or a receiver in tests).
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    # YAML file of default notifications (`notifications:`) every pipeline gets unless it
    # sets `default_notifications: false`.
    notifications_file: str = field(
        default="", metadata={"flag": "--notifications", "env": "NOTIFICATIONS"}
    )
    # OpenLineage: the receiver's base URL ("" emits nothing), its path, the server secret
    # holding its API key (sent as a bearer token), and the namespace of Legato's jobs.
    openlineage_url: str = ""
    openlineage_endpoint: str = "api/v1/lineage"
    openlineage_api_key_secret: str = ""
    openlineage_namespace: str = "legato"

    def __post_init__(self) -> None:
        _check_transport(self)
        _check_smtp(self)
        _check_openlineage(self)

    @classmethod
    def load(
        cls, args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None
    ) -> ServerConfig:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            flag = f.metadata.get("flag", f"--{f.name.replace('_', '-')}")
            var = ENV_PREFIX + f.metadata.get("env", f.name.upper())
            raw = getattr(args, f.name, None) if args is not None else None
            source = flag
            if raw is None and var in env:
                raw, source = env[var], var
            if raw is None:
                continue
            values[f.name] = _PARSERS[f.name](str(raw), f"{source} {raw!r}")
        return cls(**values)


def is_loopback(address: str) -> bool:
    """Whether HOST:PORT listens on a loopback interface only."""
    host = address.rpartition(":")[0].strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_smtp(config: ServerConfig) -> None:
    """SMTP settings that cannot work, or would send a password in clear."""
    if not config.smtp_host:
        return
    if config.smtp_tls == "none" and config.smtp_user and not is_loopback(f"{config.smtp_host}:0"):
        raise ConfigError(
            f"--smtp-tls none with --smtp-user would send the password to {config.smtp_host} "
            "in clear; use starttls or tls (or a relay on loopback)"
        )
    if bool(config.smtp_user) != bool(config.smtp_password_secret):
        raise ConfigError(
            "--smtp-user and --smtp-password-secret go together: the login and the name of "
            "the server secret that holds its password"
        )
    if config.smtp_ca and not os.path.isfile(config.smtp_ca):
        raise ConfigError(f"--smtp-ca {config.smtp_ca!r}: no such file")
    if config.smtp_port > 65535:
        raise ConfigError(f"--smtp-port {config.smtp_port} is not a port (1-65535)")


_OPENLINEAGE_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}")


def _check_openlineage(config: ServerConfig) -> None:
    if not config.openlineage_url:
        if config.openlineage_api_key_secret:
            raise ConfigError(
                "--openlineage-api-key-secret is set but --openlineage-url is not; give the "
                "receiver's URL with --openlineage-url (LEGATO_SERVER_OPENLINEAGE_URL)"
            )
        return
    if not _OPENLINEAGE_NAMESPACE.fullmatch(config.openlineage_namespace):
        raise ConfigError(
            f"--openlineage-namespace {config.openlineage_namespace!r} is not a namespace: "
            "letters, digits, '_', '-' and '.', at most 63, e.g. legato or legato-prod"
        )
    if config.openlineage_endpoint.startswith(("http://", "https://")):
        raise ConfigError(
            f"--openlineage-endpoint {config.openlineage_endpoint!r} is a URL; give the "
            "path on --openlineage-url's host, e.g. api/v1/lineage"
        )


def _check_transport(config: ServerConfig) -> None:
    """The combinations of transport and authentication settings that are refused."""
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError(
            "--tls-cert and --tls-key go together: give both (the server's certificate and "
            "its private key, PEM files), or neither"
        )
    if config.client_ca and not config.tls_cert:
        raise ConfigError(
            "--client-ca needs TLS: give --tls-cert and --tls-key too (client certificates "
            "are checked in the TLS handshake)"
        )
    for flag, path in (
        ("--tls-cert", config.tls_cert),
        ("--tls-key", config.tls_key),
        ("--client-ca", config.client_ca),
    ):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{flag} {path!r}: no such file")
    listeners = [("--listen", config.listen)]
    if config.http_listen != "off":
        listeners.append(("--http-listen", config.http_listen))
    if config.auth == "none":
        for flag, address in listeners:
            if not is_loopback(address):
                raise ConfigError(
                    f"--auth none serves everyone without a credential, so it is only allowed "
                    f"on a loopback address; {flag} is {address}. Use 127.0.0.1, or keep "
                    "authentication on (the default)"
                )
    if not config.tls_cert and not config.insecure:
        for flag, address in listeners:
            if not is_loopback(address):
                raise ConfigError(
                    f"refusing to serve {flag} {address} without TLS: tokens and step code "
                    "would cross the network in plaintext. Give --tls-cert and --tls-key "
                    "(`legato certs create` makes development ones), or --insecure if TLS "
                    "ends in front of the server"
                )


def _listen(raw: str, where: str) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"{where} is not HOST:PORT; e.g. 127.0.0.1:7470, 0.0.0.0:7470 or [::]:7470"
        )
    return f"{host or '0.0.0.0'}:{port}"


def _http_listen(raw: str, where: str) -> str:
    if raw.strip().lower() == "off":
        return "off"
    try:
        return _listen(raw, where)
    except ConfigError:
        raise ConfigError(f"{where} is not HOST:PORT or off; e.g. 0.0.0.0:7471") from None


def _db(raw: str, where: str) -> str:
    try:
        to_async_url(raw)
    except DatabaseUrlError as exc:
        raise ConfigError(f"{where.split(' ')[0]}: {exc}") from None
    return raw


def _choice(*allowed: str) -> Any:
    def parse(raw: str, where: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ConfigError(f"{where} is not one of {', '.join(allowed)}")
        return value

    return parse


def _positive_int(raw: str, where: str) -> int:
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ConfigError(f"{where} is not a positive whole number")
    return int(raw)


def _duration(raw: str, where: str) -> float:
    try:
        return parse_duration(raw)
    except UnitError:
        raise ConfigError(f"{where} is not a duration; write e.g. 10s or 1m") from None


def _bool(raw: str, where: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{where} is not true or false")


def _http_url(raw: str, where: str) -> str:
    value = raw.strip()
    if not value.startswith(("https://", "http://")):
        raise ConfigError(f"{where} is not an http(s) URL")
    return value


_PARSERS: dict[str, Any] = {
    "listen": _listen,
    "db": _db,
    "log_format": _choice("auto", "json", "console"),
    "log_level": _choice("debug", "info", "warning", "error"),
    "max_message_mb": _positive_int,
    "shutdown_grace": _duration,
    "migrate": _bool,
    "lease_timeout": _duration,
    "artifacts": lambda raw, where: raw.strip() or "db",
    "artifact_max_mb": _positive_int,
    "http_listen": _http_listen,
    "ui_url": lambda raw, where: _http_url(raw, where).rstrip("/") if raw.strip() else "",
    "secrets_file": lambda raw, where: raw.strip(),
    "tls_cert": lambda raw, where: raw.strip(),
    "tls_key": lambda raw, where: raw.strip(),
    "client_ca": lambda raw, where: raw.strip(),
    "auth": _choice("token", "none"),
    "insecure": _bool,
    "max_streams_per_caller": _positive_int,
    "smtp_host": lambda raw, where: raw.strip(),
    "smtp_port": _positive_int,
    "smtp_tls": _choice("starttls", "tls", "none"),
    "smtp_user": lambda raw, where: raw.strip(),
    "smtp_password_secret": lambda raw, where: raw.strip(),
    "smtp_from": lambda raw, where: raw.strip(),
    "smtp_ca": lambda raw, where: raw.strip(),
    "pagerduty_url": lambda raw, where: _http_url(raw, where),
    "notifications_file": lambda raw, where: raw.strip(),
    "openlineage_url": lambda raw, where: _http_url(raw, where) if raw.strip() else "",
    "openlineage_endpoint": lambda raw, where: raw.strip().lstrip("/") or "api/v1/lineage",
    "openlineage_api_key_secret": lambda raw, where: raw.strip(),
    "openlineage_namespace": lambda raw, where: raw.strip(),
}


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``legato server``; each defaults to its LEGATO_SERVER_* variable."""
    add = parser.add_argument
    add("--listen", help=f"gRPC address HOST:PORT (LEGATO_SERVER_LISTEN, default {DEFAULT_LISTEN})")
    add(
        "--db",
        help=f"sqlite:///PATH or postgresql://... (LEGATO_SERVER_DB, default {DEFAULT_DB})",
    )
    add(
        "--log-format",
        help="auto (pretty on a terminal, else JSON), json or console (LEGATO_SERVER_LOG_FORMAT)",
    )
    add("--log-level", help="debug, info, warning or error (LEGATO_SERVER_LOG_LEVEL, default info)")
    add(
        "--max-message-mb",
        help="largest gRPC message in MiB (LEGATO_SERVER_MAX_MESSAGE_MB, default 64)",
    )
    add(
        "--shutdown-grace",
        help="time in-flight calls get on SIGTERM (LEGATO_SERVER_SHUTDOWN_GRACE, default 10s)",
    )
    add(
        "--lease-timeout",
        help="how long a task lease lasts without a heartbeat (LEGATO_SERVER_LEASE_TIMEOUT, "
        "default 20s); a crashed agent's steps run again elsewhere after it",
    )
    add(
        "--artifacts",
        help="where step outputs are stored: db (default) or a directory (LEGATO_SERVER_ARTIFACTS)",
    )
    add(
        "--artifact-max-mb",
        help="largest step output in MiB; bigger ones fail the step "
        "(LEGATO_SERVER_ARTIFACT_MAX_MB, default 256)",
    )
    add(
        "--http-listen",
        help="HTTP address HOST:PORT of the web UI (/), webhook triggers (POST "
        "/hooks/<pipeline>) and /metrics, or off; loopback unless TLS or --insecure "
        f"(LEGATO_SERVER_HTTP_LISTEN, default {DEFAULT_HTTP_LISTEN})",
    )
    add(
        "--ui-url",
        help="the web UI's address as browsers reach it, for sign-in links, e.g. "
        "https://legato.example.com behind a proxy (LEGATO_SERVER_UI_URL; default the "
        "HTTP listener's own address)",
    )
    add(
        "--secrets",
        dest="secrets_file",
        metavar="FILE",
        help="YAML file of secret name: value (${ENV} substituted), e.g. webhook keys; "
        "LEGATO_SECRET_<NAME> variables add to it (LEGATO_SERVER_SECRETS)",
    )
    add(
        "--tls-cert",
        metavar="PEM",
        help="serve gRPC and HTTP over TLS with this certificate (LEGATO_SERVER_TLS_CERT)",
    )
    add("--tls-key", metavar="PEM", help="the certificate's private key (LEGATO_SERVER_TLS_KEY)")
    add(
        "--client-ca",
        metavar="PEM",
        help="require gRPC clients to present a certificate signed by this CA: mTLS "
        "(LEGATO_SERVER_CLIENT_CA)",
    )
    add(
        "--auth",
        help="token (default): every call needs an API token or agent credential; none: "
        "anyone may do anything, allowed only on loopback (LEGATO_SERVER_AUTH)",
    )
    add(
        "--insecure",
        action="store_const",
        const="true",
        help="allow a non-loopback --listen/--http-listen without TLS, e.g. behind a proxy "
        "that terminates TLS (LEGATO_SERVER_INSECURE)",
    )
    add(
        "--max-streams-per-caller",
        help="streaming calls (WatchRun, DownloadArtifact, ...) one caller may hold at once "
        "(LEGATO_SERVER_MAX_STREAMS_PER_CALLER, default 32)",
    )
    add(
        "--smtp-host",
        metavar="HOST",
        help="SMTP relay of email notifications; none: email is not sent (LEGATO_SERVER_SMTP_HOST)",
    )
    add("--smtp-port", help="its port (LEGATO_SERVER_SMTP_PORT, default 587)")
    add(
        "--smtp-tls",
        help="starttls (default), tls (implicit, usually port 465) or none "
        "(LEGATO_SERVER_SMTP_TLS)",
    )
    add("--smtp-user", help="login at the relay (LEGATO_SERVER_SMTP_USER)")
    add(
        "--smtp-password-secret",
        metavar="NAME",
        help="the server secret that holds the login's password "
        "(LEGATO_SERVER_SMTP_PASSWORD_SECRET)",
    )
    add(
        "--smtp-from",
        metavar="ADDRESS",
        help="sender of notification emails (LEGATO_SERVER_SMTP_FROM, default legato@<host name>)",
    )
    add(
        "--smtp-ca",
        metavar="PEM",
        help="CA bundle the relay's certificate is checked against, instead of the system's "
        "(LEGATO_SERVER_SMTP_CA)",
    )
    add(
        "--pagerduty-url",
        metavar="URL",
        help="PagerDuty Events API v2 endpoint of pagerduty notifications "
        "(LEGATO_SERVER_PAGERDUTY_URL, default https://events.pagerduty.com/v2/enqueue)",
    )
    add(
        "--notifications",
        dest="notifications_file",
        metavar="FILE",
        help="YAML file of default notifications (a `notifications:` list, as in a pipeline "
        "spec) that every pipeline gets unless it sets default_notifications: false "
        "(LEGATO_SERVER_NOTIFICATIONS)",
    )
    add(
        "--openlineage-url",
        metavar="URL",
        help="send OpenLineage run events to this receiver, e.g. http://marquez:5000; "
        "unset: none are sent (LEGATO_SERVER_OPENLINEAGE_URL)",
    )
    add(
        "--openlineage-endpoint",
        metavar="PATH",
        help="the receiver's path for events (LEGATO_SERVER_OPENLINEAGE_ENDPOINT, default "
        "api/v1/lineage)",
    )
    add(
        "--openlineage-api-key-secret",
        metavar="NAME",
        help="the server secret holding the receiver's API key, sent as a bearer token "
        "(LEGATO_SERVER_OPENLINEAGE_API_KEY_SECRET)",
    )
    add(
        "--openlineage-namespace",
        metavar="NAME",
        help="the OpenLineage namespace of Legato's jobs (LEGATO_SERVER_OPENLINEAGE_NAMESPACE, "
        "default legato)",
    )
    add(
        "--no-migrate",
        dest="migrate",
        action="store_const",
        const="false",
        help="refuse to start on an old schema, do not upgrade it (LEGATO_SERVER_MIGRATE=false)",
    )


def parse_server_args(argv: Sequence[str], prog: str) -> ServerConfig:
    parser = argparse.ArgumentParser(prog=prog, description="Run the Legato control plane.")
    add_server_arguments(parser)
    return ServerConfig.load(parser.parse_args(list(argv)))
