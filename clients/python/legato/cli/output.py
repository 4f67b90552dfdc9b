"""Rendering of responses: ``-o json`` (proto3 JSON, proto field names), ``-o yaml`` (the
same document as YAML) and ``-o table`` (for people).

Proto3 JSON writes every number of a ``Struct`` as a double (``rows: 500.0``) and every
64-bit integer field as a string (``"records_in": "127"``). ``-o json`` prints them as the
user wrote them instead: integral numbers of ``Struct``/``Value`` as integers, 64-bit
integers as numbers, both only while a double holds them exactly (up to 2**53; a larger
64-bit integer stays a string).

Every time printed for people carries its zone: ``2026-06-12 11:00:00 CEST`` in the
machine's zone, or in a schedule's (``zoned_time``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = [
    "FORMATS",
    "emit_message",
    "format_moment",
    "local_time",
    "render_table",
    "schedule_zone",
    "to_json_dict",
    "zoned_time",
]

FORMATS = ("table", "json", "yaml")
EXACT_INT = 2**53
"""The largest integer every double holds exactly."""
_INT64 = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_JSON_VALUES = frozenset(
    {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
)
_INT64_WRAPPERS = frozenset({"google.protobuf.Int64Value", "google.protobuf.UInt64Value"})


def to_json_dict(message: Message) -> dict[str, Any]:
    """``message`` in proto3 JSON with the proto field names, numbers as written (see the
    module docstring)."""
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    fixed: dict[str, Any] = _exact(message, data)
    return fixed


def _exact(message: Message, data: Any) -> Any:
    descriptor = message.DESCRIPTOR
    if descriptor.full_name in _JSON_VALUES:
        return _integral(data)
    if descriptor.full_name in _INT64_WRAPPERS:
        return _number(data)
    if not isinstance(data, dict):  # Timestamp, Duration, FieldMask: strings
        return data
    for field, value in message.ListFields():
        if field.name not in data or field.is_extension:
            continue
        data[field.name] = _field(field, value, data[field.name])
    return data


def _field(field: FieldDescriptor, value: Any, data: Any) -> Any:
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        value_field = entry.fields_by_name["value"]
        if not isinstance(data, dict):
            return data
        keys = {_map_key(k): k for k in value}
        return {
            key: _single(value_field, value[keys[key]], item) if key in keys else item
            for key, item in data.items()
        }
    if field.is_repeated:
        return [_single(field, v, d) for v, d in zip(value, data, strict=False)]
    return _single(field, value, data)


def _single(field: FieldDescriptor, value: Any, data: Any) -> Any:
    if field.message_type is not None:
        return _exact(value, data)
    if field.type in _INT64:
        return _number(data)
    return data


def _map_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _number(text: Any) -> Any:
    """A 64-bit integer (a string in proto3 JSON) as a number, when a double holds it."""
    try:
        number = int(text)
    except (TypeError, ValueError):
        return text
    return number if abs(number) <= EXACT_INT else text


def _integral(value: Any) -> Any:
    """A JSON value with its integral doubles as integers (``500.0`` → ``500``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= EXACT_INT:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


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


def local_time(ts: timestamp_pb2.Timestamp, *, seconds: bool = True) -> str:
    """A timestamp in the machine's time zone, to the second (or minute), with the zone:
    ``2026-06-12 11:00:00 CEST``; '-' when unset."""
    if not ts.seconds and not ts.nanos:
        return "-"
    moment = datetime.fromtimestamp(ts.seconds, tz=UTC).astimezone()
    return format_moment(moment, seconds=seconds)


def zoned_time(ts: timestamp_pb2.Timestamp, zone: tzinfo) -> str:
    """A timestamp in ``zone`` (a schedule's), to the second, with the zone's name for
    that moment: ``2026-03-29 03:00:00 CEST``; '-' when unset."""
    if not ts.seconds and not ts.nanos:
        return "-"
    return format_moment(datetime.fromtimestamp(ts.seconds, tz=zone))


def format_moment(moment: datetime, *, seconds: bool = True) -> str:
    """``2026-06-12 11:00:00 CEST``: an aware datetime with its zone's abbreviation, or its
    UTC offset (``UTC+05:30``) where the zone has none."""
    label = moment.tzname() or ""
    if not label or label[0] in "+-":
        offset = moment.strftime("%z")
        label = "UTC" if offset in ("+0000", "") else f"UTC{offset[:3]}:{offset[3:]}"
    shown = moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{shown} {label}"


def schedule_zone(name: str) -> tzinfo:
    """The zone a schedule's cron is read in (UTC when it names none or one this machine
    does not know, which the server would have refused)."""
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC
