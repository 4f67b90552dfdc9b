"""Data connections configured on the agent: a YAML file of ``name: URL`` (with ``${ENV}``
substitution) and ``LEGATO_CONNECTION_<NAME>`` variables. Only their names leave the
agent (as ``connection/<name>`` labels); URLs and credentials never do."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from legato.spec.connections import ENV_PREFIX

__all__ = ["ConnectionsError", "load_connections"]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")


class ConnectionsError(ValueError):
    """A connections file or variable that cannot be used."""


def load_connections(path: Path | None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    found: dict[str, str] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConnectionsError(f"{path}: cannot read connections: {exc}") from None
        if not isinstance(data, dict):
            raise ConnectionsError(f"{path}: expected a mapping of connection name to URL")
        for name, url in data.items():
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ConnectionsError(
                    f"{path}: {name!r} is not a connection name (lower case, digits, '-', '_')"
                )
            if not isinstance(url, str):
                raise ConnectionsError(f"{path}: connection {name!r} must be a URL string")
            found[name] = _substitute(url, env, f"{path}: connection {name!r}")
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and value:
            found[key.removeprefix(ENV_PREFIX).lower().replace("__", "-")] = value
    return found


def _substitute(text: str, env: Mapping[str, str], where: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConnectionsError(f"{where} uses ${{{name}}}, which is not set")
        return env[name]

    return _ENV.sub(one, text)
