"""The well-known types of the spec, both ways: ``Duration`` as ``90s``/``5m``/``1h30m``,
``Struct``/``Value``/``ListValue`` as any YAML value."""

from __future__ import annotations

import datetime
import math
from typing import Any

from google.protobuf import duration_pb2, struct_pb2
from google.protobuf.message import Message
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from legato.spec.nodes import describe, line_of, mapping_entries, scalar_value, string_key
from legato.spec.report import Path, Report
from legato.spec.units import UnitError, format_duration, parse_duration

__all__ = ["decode_well_known", "is_well_known", "well_known_to_python"]

_DURATION = "google.protobuf.Duration"
_STRUCT = "google.protobuf.Struct"
_VALUE = "google.protobuf.Value"
_LIST_VALUE = "google.protobuf.ListValue"
_WELL_KNOWN = frozenset({_DURATION, _STRUCT, _VALUE, _LIST_VALUE})
_MAX_DURATION_SECONDS = 315_576_000_000  # the range of google.protobuf.Duration
_UNITS_HINT = "write a number with a unit, like 90s, 5m, 1h30m or 250ms"
# Numbers in a Struct are doubles; integers up to this size print as integers.
_EXACT_INT = 2**53


def is_well_known(message: Message) -> bool:
    """Whether ``message`` is written as a plain YAML value rather than a mapping of its
    fields."""
    return message.DESCRIPTOR.full_name in _WELL_KNOWN


def decode_well_known(report: Report, node: Node, target: Message, path: Path) -> None:
    """Set ``target`` (a well-known type, see :func:`is_well_known`) from ``node``."""
    decoder = _ValueDecoder(report)
    if isinstance(target, duration_pb2.Duration):
        _decode_duration(report, node, target, path)
    elif isinstance(target, struct_pb2.Struct):
        decoder.struct(node, target, path, frozenset())
    elif isinstance(target, struct_pb2.Value):
        decoder.value(node, target, path, frozenset())
    elif isinstance(target, struct_pb2.ListValue):
        decoder.list_value(node, target, path, frozenset())
    else:
        raise TypeError(f"{target.DESCRIPTOR.full_name} is not a well-known type of the spec")


def _decode_duration(report: Report, node: Node, target: duration_pb2.Duration, path: Path) -> None:
    line = line_of(node)
    if not isinstance(node, ScalarNode):
        report.problem(path, line, f"expected a duration, got {describe(node)}; {_UNITS_HINT}")
        return
    try:
        value = scalar_value(node)
    except ValueError as exc:
        report.problem(path, line, str(exc))
        return
    if isinstance(value, int | float) and not isinstance(value, bool):
        report.problem(path, line, f"{node.value} has no unit; {_UNITS_HINT}")
        return
    if not isinstance(value, str):
        report.problem(path, line, f"expected a duration, got {describe(node)}; {_UNITS_HINT}")
        return
    try:
        seconds = parse_duration(value)
    except UnitError as exc:
        report.problem(path, line, str(exc))
        return
    if seconds > _MAX_DURATION_SECONDS:
        report.problem(path, line, f"{value!r} is too long; a duration is at most 10000 years")
        return
    target.FromNanoseconds(round(seconds * 1e9))


class _ValueDecoder:
    """YAML nodes → ``Struct``/``Value``/``ListValue``. ``active`` holds the collections
    being decoded, so that an alias of an enclosing node is refused instead of recursing
    forever."""

    def __init__(self, report: Report) -> None:
        self._report = report

    def _enter(self, node: Node, path: Path, active: frozenset[int]) -> frozenset[int] | None:
        if id(node) in active:
            message = "a value cannot contain itself (through an alias)"
            self._report.problem(path, line_of(node), message)
            return None
        return active | {id(node)}

    def struct(
        self, node: Node, target: struct_pb2.Struct, path: Path, active: frozenset[int]
    ) -> None:
        if not isinstance(node, MappingNode):
            self._report.problem(path, line_of(node), f"expected a mapping, got {describe(node)}")
            return
        inner = self._enter(node, path, active)
        if inner is None:
            return
        entries, problems = mapping_entries(node)
        for line, message in problems:
            self._report.problem(path, line, message)
        for entry in entries:
            key, why = string_key(entry.key_node)
            if key is None:
                self._report.problem(path, line_of(entry.key_node), why)
                continue
            self._report.record((*path, key), line_of(entry.key_node))
            self.value(entry.value, target.fields[key], (*path, key), inner)

    def list_value(
        self, node: Node, target: struct_pb2.ListValue, path: Path, active: frozenset[int]
    ) -> None:
        if not isinstance(node, SequenceNode):
            self._report.problem(path, line_of(node), f"expected a list, got {describe(node)}")
            return
        inner = self._enter(node, path, active)
        if inner is None:
            return
        for index, item in enumerate(node.value):
            self._report.record((*path, index), line_of(item))
            self.value(item, target.values.add(), (*path, index), inner)

    def value(
        self, node: Node, target: struct_pb2.Value, path: Path, active: frozenset[int]
    ) -> None:
        if isinstance(node, MappingNode):
            self.struct(node, target.struct_value, path, active)
        elif isinstance(node, SequenceNode):
            self.list_value(node, target.list_value, path, active)
        elif isinstance(node, ScalarNode):
            self._scalar(node, target, path)

    def _scalar(self, node: ScalarNode, target: struct_pb2.Value, path: Path) -> None:
        try:
            value = scalar_value(node)
        except ValueError as exc:
            self._report.problem(path, line_of(node), str(exc))
            return
        if value is None:
            target.null_value = struct_pb2.NULL_VALUE
        elif isinstance(value, bool):
            target.bool_value = value
        elif isinstance(value, int | float):
            if not math.isfinite(value):
                self._report.problem(
                    path, line_of(node), f"{node.value} is not a finite number; write a number"
                )
                return
            target.number_value = value
        elif isinstance(value, str):
            target.string_value = value
        elif isinstance(value, datetime.date):
            target.string_value = value.isoformat()
        else:
            self._report.problem(
                path, line_of(node), f"expected a JSON value, got {describe(node)}"
            )


def well_known_to_python(message: Message) -> Any:
    """``message`` (a well-known type) as the plain value users write."""
    if isinstance(message, duration_pb2.Duration):
        return format_duration(message.ToNanoseconds() / 1e9)
    if isinstance(message, struct_pb2.Struct):
        return {key: _value(message.fields[key]) for key in sorted(message.fields)}
    if isinstance(message, struct_pb2.ListValue):
        return [_value(item) for item in message.values]
    if isinstance(message, struct_pb2.Value):
        return _value(message)
    raise TypeError(f"{message.DESCRIPTOR.full_name} is not a well-known type of the spec")


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return well_known_to_python(value.struct_value)
    if kind == "list_value":
        return well_known_to_python(value.list_value)
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and abs(number) <= _EXACT_INT:
            return int(number)
        return number
    if kind in ("string_value", "bool_value"):
        return getattr(value, kind)
    return None
