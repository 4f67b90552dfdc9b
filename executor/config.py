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
    name: str = field(default_factory=socket.gethostname)
    labels: dict[str, str] = field(default_factory=dict)
    slots: int = field(default_factory=lambda: os.cpu_count() or 1)
    connections_file: Path | None = None
    workdir: Path = field(
        default_factory=lambda: Path(os.environ.get("TMPDIR", "/tmp")) / "legato-agent"
    )
    grace: float = 5.0
    log_format: str = "auto"
    log_level: str = "info"

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
        return cls(**values)  # type: ignore[arg-type]


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--server",
        help="control plane HOST:PORT (LEGATO_AGENT_SERVER or LEGATO_SERVER, "
        "default localhost:7470)",
    )
    add("--name", help="agent name, unique in the fleet (LEGATO_AGENT_NAME, default the host name)")
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
    add("--log-format", help="auto, json or console (LEGATO_AGENT_LOG_FORMAT)")
    add("--log-level", help="debug, info, warning or error (LEGATO_AGENT_LOG_LEVEL)")


def parse_agent_args(argv: Sequence[str], prog: str) -> AgentConfig:
    parser = argparse.ArgumentParser(prog=prog, description="Run a Legato executor agent.")
    add_agent_arguments(parser)
    return AgentConfig.load(parser.parse_args(list(argv)))
