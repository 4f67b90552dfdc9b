"""The connections and secrets a step names: what an agent must hold to run it, the label
an agent advertises for each one it holds, and the variable that configures one."""

from __future__ import annotations

from legato.named_values import variable_name
from legato.v1 import spec_pb2

__all__ = [
    "CONNECTION_LABEL",
    "ENV_PREFIX",
    "connection_label",
    "connection_variable",
    "connections_of",
]

CONNECTION_LABEL = "connection/"
"""Prefix of the labels (``connection/<name>=true``) of an agent's connections."""
ENV_PREFIX = "LEGATO_CONNECTION_"


def connection_label(name: str) -> str:
    return CONNECTION_LABEL + name


def connection_variable(name: str) -> str:
    """The environment variable that configures connection ``name`` on an agent
    (``shop-eu`` → ``LEGATO_CONNECTION_SHOP__EU``)."""
    return variable_name(ENV_PREFIX, name)


def connections_of(step: spec_pb2.Step) -> list[str]:
    """The names of the connections and secrets ``step`` uses, in a stable order: a query's
    or a table export's ``connection``, a webhook export's ``secret``, a Slack export's
    ``webhook``."""
    names: list[str] = []
    kind = step.WhichOneof("kind")
    if kind == "query":
        names.append(step.query.connection)
    elif kind == "export":
        target = step.export.WhichOneof("target")
        if target == "table":
            names.append(step.export.table.connection)
        elif target == "webhook":
            names.append(step.export.webhook.secret)
        elif target == "slack":
            names.append(step.export.slack.webhook)
    return [name for name in dict.fromkeys(names) if name]
