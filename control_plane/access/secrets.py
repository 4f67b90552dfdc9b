"""Named secrets of the control plane (the HMAC keys of webhook triggers): a YAML file of
``name: value`` (``--secrets``, with ``${ENV}`` substitution) and ``LEGATO_SECRET_<NAME>``
variables (``LEGATO_SECRET_ORDERS__HOOK`` is ``orders-hook``; a variable wins over the
file) — the rules of :mod:`legato.named_values`, which the agent's connections follow too.

Specs name secrets, never hold them. Values are read once at start-up and never logged:
``Secrets`` shows only its names."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from legato.named_values import NamedValuesError, load_named_values

__all__ = ["ENV_PREFIX", "Secrets", "SecretsError", "load_secrets"]

ENV_PREFIX = "LEGATO_SECRET_"


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
    try:
        return Secrets(load_named_values(path, prefix=ENV_PREFIX, noun="secret", env=env))
    except NamedValuesError as exc:
        raise SecretsError(str(exc)) from None
