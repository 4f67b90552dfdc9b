"""Named values configured where they are used: an agent's connections, the control plane's
secrets. Both come from a YAML file of ``name: value`` (with ``${ENV}`` substitution) and
from variables ``<PREFIX><NAME>`` (upper case, ``__`` for ``-``; a variable wins over the
file). Errors name the file, the entry and what to do, and never quote a value: YAML's own
message is left out, as it quotes the line it failed on."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

__all__ = ["NAME", "NamedValuesError", "load_named_values", "variable_name"]

NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class NamedValuesError(ValueError):
    """A file or variable of named values that cannot be used."""


def variable_name(prefix: str, name: str) -> str:
    """The variable that sets ``name``: ``LEGATO_SECRET_`` + ``orders-hook`` →
    ``LEGATO_SECRET_ORDERS__HOOK``."""
    return prefix + name.upper().replace("-", "__")


def load_named_values(
    path: Path | None,
    *,
    prefix: str,
    noun: str,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The values of ``path`` (None: no file) and of ``prefix*`` variables; ``noun``
    (``connection``, ``secret``) names an entry in messages."""
    env = os.environ if env is None else env
    found = _read_file(path, env, noun) if path is not None else {}
    for key, value in env.items():
        if key.startswith(prefix) and value:
            name = key.removeprefix(prefix).lower().replace("__", "-")
            if not NAME.fullmatch(name):
                raise NamedValuesError(
                    f"{key} does not name a {noun}: after {prefix} write the name in upper "
                    f"case, with __ for '-' ({variable_name(prefix, 'orders-db')} is orders-db)"
                )
            found[name] = value
    return found


def _read_file(path: Path, env: Mapping[str, str], noun: str) -> dict[str, str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise NamedValuesError(f"{path}: cannot read {noun}s: {exc.strerror or exc}") from None
    except yaml.YAMLError:
        raise NamedValuesError(f"{path}: is not valid YAML; expected `name: value` lines") from None
    if not isinstance(data, dict):
        raise NamedValuesError(f"{path}: expected a mapping of {noun} name to value")
    found: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise NamedValuesError(
                f"{path}: {str(name)[:70]!r} is not a {noun} name (lower case letters, "
                "digits, '-' and '_', starting with a letter)"
            )
        if not isinstance(value, str) or not value:
            raise NamedValuesError(f"{path}: {noun} {name!r} must be a non-empty string")
        found[name] = _substitute(value, env, f"{path}: {noun} {name!r}")
    return found


def _substitute(text: str, env: Mapping[str, str], where: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise NamedValuesError(f"{where} uses ${{{name}}}, which is not set")
        return env[name]

    return _ENV.sub(one, text)
