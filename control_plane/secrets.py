"""Named secrets of the control plane (the HMAC keys of webhook triggers): a YAML file of
``name: value`` (``--secrets``, with ``${ENV}`` substitution) and ``LEGATO_SECRET_<NAME>``
variables (``LEGATO_SECRET_ORDERS__HOOK`` is ``orders-hook``; a variable wins over the
file). The rules are those of the agent's connections (``executor/connections.py``).

Specs name secrets, never hold them. Values are read once at start-up and never logged:
``Secrets`` shows only its names."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

__all__ = ["ENV_PREFIX", "Secrets", "SecretsError", "load_secrets"]

ENV_PREFIX = "LEGATO_SECRET_"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")


class SecretsError(ValueError):
    """A secrets file or variable that cannot be used; the message never holds a value."""


class Secrets:
    """Secret values by name."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._values)

    def __repr__(self) -> str:
        return f"Secrets(names={self.names!r})"


def load_secrets(path: Path | None, env: Mapping[str, str] | None = None) -> Secrets:
    """The secrets of ``path`` (None: no file) and of ``LEGATO_SECRET_*`` variables."""
    env = os.environ if env is None else env
    found: dict[str, str] = {}
    if path is not None:
        found.update(_read_file(path, env))
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and value:
            name = key.removeprefix(ENV_PREFIX).lower().replace("__", "-")
            if not _NAME.fullmatch(name):
                raise SecretsError(
                    f"{key} does not name a secret: after {ENV_PREFIX} write the name in "
                    "upper case, with __ for '-' (LEGATO_SECRET_ORDERS__HOOK is orders-hook)"
                )
            found[name] = value
    return Secrets(found)


def _read_file(path: Path, env: Mapping[str, str]) -> dict[str, str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise SecretsError(f"{path}: cannot read secrets: {exc.strerror or exc}") from None
    except yaml.YAMLError:
        # The parser's message quotes the offending line, which may hold a value.
        raise SecretsError(f"{path}: is not valid YAML; expected `name: value` lines") from None
    if not isinstance(data, dict):
        raise SecretsError(f"{path}: expected a mapping of secret name to value")
    found: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SecretsError(
                f"{path}: {str(name)[:70]!r} is not a secret name (lower case letters, digits, "
                "'-' and '_', starting with a letter)"
            )
        if not isinstance(value, str) or not value:
            raise SecretsError(f"{path}: secret {name!r} must be a non-empty string")
        found[name] = _substitute(value, env, f"{path}: secret {name!r}")
    return found


def _substitute(text: str, env: Mapping[str, str], where: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise SecretsError(f"{where} uses ${{{name}}}, which is not set")
        return env[name]

    return _ENV.sub(one, text)
