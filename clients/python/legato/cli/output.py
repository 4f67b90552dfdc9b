"""Rendering of responses: ``-o json`` (proto3 JSON, proto field names), ``-o yaml`` (the
same document as YAML) and ``-o table`` (for people)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import yaml
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message

__all__ = ["FORMATS", "emit_message", "local_time", "render_table", "to_json_dict"]

FORMATS = ("table", "json", "yaml")


def to_json_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def emit_message(message: Message | Sequence[Message], fmt: str) -> None:
    """Print a response (or several) as JSON or YAML."""
    data: Any = (
        to_json_dict(message)
        if isinstance(message, Message)
        else [to_json_dict(m) for m in message]
    )
    if fmt == "json":
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    cells = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def local_time(ts: timestamp_pb2.Timestamp) -> str:
    """A timestamp in the machine's time zone, to the second; '-' when unset."""
    if not ts.seconds and not ts.nanos:
        return "-"
    return datetime.fromtimestamp(ts.seconds, tz=None).astimezone().strftime("%Y-%m-%d %H:%M:%S")
