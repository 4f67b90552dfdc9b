"""The connections and secrets a step names: what an agent must hold to run it."""

from __future__ import annotations

from legato.v1 import spec_pb2

__all__ = ["connections_of"]


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
