"""Data connections configured on the agent: a YAML file of ``name: URL`` (with ``${ENV}``
substitution) and ``LEGATO_CONNECTION_<NAME>`` variables (rules in
:mod:`legato.named_values`). Only their names leave the agent (as ``connection/<name>``
labels); URLs and credentials never do."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from legato.named_values import NamedValuesError, load_named_values
from legato.spec.connections import ENV_PREFIX

__all__ = ["ConnectionsError", "load_connections"]


class ConnectionsError(ValueError):
    """A connections file or variable that cannot be used."""


def load_connections(path: Path | None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    try:
        return load_named_values(path, prefix=ENV_PREFIX, noun="connection", env=env)
    except NamedValuesError as exc:
        raise ConnectionsError(str(exc)) from None
