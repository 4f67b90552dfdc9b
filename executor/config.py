"""Agent settings: flags override ``LEGATO_AGENT_*`` variables, which override defaults.
A bad value stops the agent at start with a message naming it."""

from __future__ import annotations

import argparse
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from legato.spec.units import UnitError, parse_duration

__all__ = ["AgentConfig", "ConfigError", "add_agent_arguments", "parse_agent_args"]

_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and what to do."""


@dataclass(frozen=True)
class AgentConfig:
    server: str = "localhost:7470"
    name: str = ""
    """Empty: the name its credential enrols, or (without one) the host name."""
    labels: dict[str, str] = field(default_factory=dict)
    slots: int = field(default_factory=lambda: os.cpu_count() or 1)
    connections_file: Path | None = None
    workdir: Path = field(
        default_factory=lambda: Path(os.environ.get("TMPDIR", "/tmp")) / "legato-agent"
    )
    grace: float = 5.0
    log_format: str = "auto"
    log_level: str = "info"
    token: str = field(default="", repr=False)
    """The enrolment token (lga_...)."""
    ca: str = ""
    cert: str = ""
    key: str = ""
    metrics_listen: str = ""
    """HOST:PORT of the Prometheus page (``executor/metrics.py``); empty: off."""

    @property
    def uses_tls(self) -> bool:
        return bool(self.ca or self.cert)

    @property
    def display_name(self) -> str:
        return self.name or socket.gethostname()

    @classmethod
    def load(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> AgentConfig:
        env = os.environ if env is None else env
        values: dict[str, object] = {}

        def pick(name: str) -> tuple[str | None, str]:
            raw = getattr(args, name, None)
            if raw is not None:
                return str(raw), f"--{name.replace('_', '-')} {raw!r}"
            var = f"LEGATO_AGENT_{name.upper()}"
            if var in env:
                return env[var], f"{var} {env[var]!r}"
            return None, ""

        server, _ = pick("server")
        if server is None and env.get("LEGATO_SERVER"):
            server = env["LEGATO_SERVER"]
        if server is not None:
            values["server"] = server
        name, where = pick("name")
        if name is not None:
            if not _NAME.fullmatch(name):
                raise ConfigError(
                    f"{where} is not a valid agent name; use letters, digits, '.', '_', '-'"
                )
            values["name"] = name
        labels: dict[str, str] = {}
        label_env = env.get("LEGATO_AGENT_LABELS", "")
        for item in [
            *(x for x in label_env.split(",") if x.strip()),
            *(getattr(args, "label", None) or []),
        ]:
            key, sep, value = item.strip().partition("=")
            if not sep or not _LABEL_KEY.fullmatch(key):
                raise ConfigError(
                    f"label {item!r} is not KEY=VALUE with a key of letters, digits, "
                    "'.', '_', '/', '-'"
                )
            labels[key] = value
        values["labels"] = labels
        slots, where = pick("slots")
        if slots is not None:
            if not slots.isdigit() or not 1 <= int(slots) <= 1024:
                raise ConfigError(f"{where} is not a number of slots between 1 and 1024")
            values["slots"] = int(slots)
        connections, where = pick("connections")
        if connections is not None:
            path = Path(connections)
            if not path.is_file():
                raise ConfigError(f"{where}: no such file")
            values["connections_file"] = path
        workdir, _ = pick("workdir")
        if workdir is not None:
            values["workdir"] = Path(workdir)
        grace, where = pick("grace")
        if grace is not None:
            try:
                values["grace"] = parse_duration(grace)
            except UnitError:
                raise ConfigError(f"{where} is not a duration like 5s") from None
        for name in ("log_format", "log_level"):
            raw, where = pick(name)
            if raw is not None:
                values[name] = raw
        token, where = pick("token")
        token_file, file_where = pick("token_file")
        if token is not None and token_file is not None:
            raise ConfigError("give the enrolment token with --token or --token-file, not both")
        if token_file is not None:
            try:
                token = Path(token_file).expanduser().read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{file_where}: {exc.strerror or exc}") from None
        if token is not None:
            if token and not token.startswith("lga_"):
                raise ConfigError(
                    "the agent's token must be an enrolment token (lga_...); an admin makes one "
                    "with `legato agents token create --name NAME`"
                )
            values["token"] = token.strip()
        for name in ("ca", "cert", "key"):
            raw, where = pick(name)
            if raw is None and env.get(f"LEGATO_{name.upper()}"):
                raw, where = env[f"LEGATO_{name.upper()}"], f"LEGATO_{name.upper()}"
            if raw is not None and raw.strip():
                if not Path(raw).expanduser().is_file():
                    raise ConfigError(f"{where}: no such file")
                values[name] = raw.strip()
        metrics, where = pick("metrics_listen")
        if metrics is not None:
            values["metrics_listen"] = _metrics_listen(metrics, where)
        if bool(values.get("cert")) != bool(values.get("key")):
            raise ConfigError(
                "a client certificate needs its key: give both --cert and --key (or neither)"
            )
        return cls(**values)  # type: ignore[arg-type]


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--server",
        help="control plane HOST:PORT (LEGATO_AGENT_SERVER or LEGATO_SERVER, "
        "default localhost:7470)",
    )
    add(
        "--name",
        help="agent name, unique in the fleet (LEGATO_AGENT_NAME; default the name its token "
        "enrols, or the host name)",
    )
    add(
        "--label",
        action="append",
        metavar="KEY=VALUE",
        help="a label steps select on with agent_selector; repeatable "
        "(LEGATO_AGENT_LABELS=k=v,k=v)",
    )
    add("--slots", help="steps run at once (LEGATO_AGENT_SLOTS, default the number of CPUs)")
    add(
        "--connections", help="YAML file of data connections: name → URL (LEGATO_AGENT_CONNECTIONS)"
    )
    add("--workdir", help="where attempts keep their files (LEGATO_AGENT_WORKDIR)")
    add(
        "--grace",
        help="time a stopped step gets between SIGTERM and SIGKILL "
        "(LEGATO_AGENT_GRACE, default 5s)",
    )
    add(
        "--token",
        help="enrolment token (lga_...) from `legato agents token create`; it gives the agent "
        "its name and labels (LEGATO_AGENT_TOKEN; prefer --token-file)",
    )
    add("--token-file", help="file holding the enrolment token (LEGATO_AGENT_TOKEN_FILE)")
    add(
        "--ca",
        help="CA certificate (PEM) the control plane's certificate is checked against; turns "
        "TLS on (LEGATO_AGENT_CA or LEGATO_CA)",
    )
    add(
        "--cert",
        help="this agent's client certificate (PEM) for mTLS; one from `legato certs create "
        "--agent NAME` also proves its name (LEGATO_AGENT_CERT or LEGATO_CERT)",
    )
    add("--key", help="the client certificate's key (LEGATO_AGENT_KEY or LEGATO_KEY)")
    add(
        "--metrics-listen",
        metavar="[HOST:]PORT",
        help="serve Prometheus metrics on this address (a bare port: on 127.0.0.1; port 0 "
        "picks a free one); off by default (LEGATO_AGENT_METRICS_LISTEN)",
    )
    add("--log-format", help="auto, json or console (LEGATO_AGENT_LOG_FORMAT)")
    add("--log-level", help="debug, info, warning or error (LEGATO_AGENT_LOG_LEVEL)")


def _metrics_listen(raw: str, where: str) -> str:
    """``[HOST:]PORT`` as HOST:PORT (127.0.0.1 without a host); empty or off: off."""
    value = raw.strip()
    if value.lower() in ("", "off"):
        return ""
    host, _, port = value.rpartition(":")
    host = host.strip()
    if not port.isdigit() or int(port) > 65535 or (not host and ":" in value):
        raise ConfigError(
            f"{where} is not [HOST:]PORT or off; e.g. 9464 (on 127.0.0.1) or 0.0.0.0:9464"
        )
    return f"{host or '127.0.0.1'}:{int(port)}"


def parse_agent_args(argv: Sequence[str], prog: str) -> AgentConfig:
    parser = argparse.ArgumentParser(prog=prog, description="Run a Legato executor agent.")
    add_agent_arguments(parser)
    return AgentConfig.load(parser.parse_args(list(argv)))
