"""Server settings: flags override ``LEGATO_SERVER_*`` variables, which override defaults.
Every value is checked at start-up; a bad one stops the server with a message naming the
flag, the variable, the value and what is accepted."""

from __future__ import annotations

import argparse
import os
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
]

DEFAULT_LISTEN = "127.0.0.1:7470"
DEFAULT_HTTP_LISTEN = "0.0.0.0:7471"
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
    # Webhooks: "off" serves none.
    http_listen: str = DEFAULT_HTTP_LISTEN
    secrets_file: str = field(default="", metadata={"flag": "--secrets", "env": "SECRETS"})

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
    "secrets_file": lambda raw, where: raw.strip(),
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
        help="HTTP address HOST:PORT of webhook triggers (POST /hooks/<pipeline>), or off "
        f"(LEGATO_SERVER_HTTP_LISTEN, default {DEFAULT_HTTP_LISTEN})",
    )
    add(
        "--secrets",
        dest="secrets_file",
        metavar="FILE",
        help="YAML file of secret name: value (${ENV} substituted), e.g. webhook keys; "
        "LEGATO_SECRET_<NAME> variables add to it (LEGATO_SERVER_SECRETS)",
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
