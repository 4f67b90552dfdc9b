"""YAML nodes → protobuf messages, walking the message descriptors.

Nothing here names a message of ``spec.proto``: fields are found through
``DESCRIPTOR.fields``, well-known types are recognised by their full name and memory
sizes by their field name, so a new field in the proto is read without a code change.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any, Final, cast

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from legato.spec.enums import enum_choices, enum_number
from legato.spec.nodes import (
    Entry,
    describe,
    is_null,
    line_of,
    mapping_entries,
    scalar_value,
    string_key,
)
from legato.spec.report import Path, Report
from legato.spec.wellknown import decode_well_known, is_well_known

__all__ = ["MEMORY_FIELDS", "Decoder"]

MEMORY_FIELDS: Final = frozenset({"memory", "step_memory"})
"""String fields that hold a memory size (``512Mi``); the server checks the grammar."""

_INVALID: Final = object()
_F = FieldDescriptor
_INTEGER_RANGES: Final = {
    _F.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    _F.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    _F.CPPTYPE_UINT32: (0, 2**32 - 1),
    _F.CPPTYPE_UINT64: (0, 2**64 - 1),
}
_FLOATS: Final = frozenset({_F.CPPTYPE_DOUBLE, _F.CPPTYPE_FLOAT})


def _descriptor(message: Message) -> Descriptor:
    return cast(Descriptor, message.DESCRIPTOR)


def _entry_type(field: FieldDescriptor) -> Descriptor:
    """The message type of a message or map field."""
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return field.message_type


def _enum_type(field: FieldDescriptor) -> EnumDescriptor:
    if field.enum_type is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return field.enum_type


def _is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return field.is_repeated and entry is not None and entry.GetOptions().map_entry


def _noun(descriptor: Descriptor) -> str:
    """``an export step`` for ``ExportStep``."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", descriptor.name).lower()
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _field_names(descriptor: Descriptor) -> list[str]:
    return [field.name for field in sorted(descriptor.fields, key=lambda f: f.number)]


def _is_plain_text(node: ScalarNode) -> bool:
    """Whether ``node`` is text that YAML reads as a string."""
    try:
        return isinstance(scalar_value(node), str)
    except ValueError:
        return False


def _quote_hint(node: ScalarNode, value: object) -> str:
    """How to turn a scalar that YAML read as another type into a string."""
    if value is None or isinstance(value, bytes):
        return ""
    return f"; put it in quotes: {json.dumps(str(node.value))}"


class Decoder:
    """Fills messages from nodes; problems and lines go to ``report``."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def fill(self, node: Node, target: Message, path: Path) -> None:
        """Set ``target`` from ``node``: a well-known type from its plain value, any other
        message from a mapping of its fields."""
        if is_well_known(target):
            decode_well_known(self.report, node, target, path)
        else:
            self.message(node, target, path)

    def message(self, node: Node, target: Message, path: Path) -> None:
        """Set the fields of ``target`` from the mapping ``node``."""
        if not isinstance(node, MappingNode):
            self.report.problem(path, line_of(node), f"expected a mapping, got {describe(node)}")
            return
        entries, problems = mapping_entries(node)
        for line, message in problems:
            self.report.problem(path, line, message)
        descriptor = _descriptor(target)
        oneofs: dict[str, list[Entry]] = {}
        for entry in entries:
            field = descriptor.fields_by_name.get(entry.key)
            if field is None:
                self._unknown_field(descriptor, entry, path)
                continue
            field_path = (*path, entry.key)
            self.report.record(field_path, line_of(entry.key_node))
            if is_null(entry.value):
                continue
            if field.containing_oneof is not None:
                oneofs.setdefault(field.containing_oneof.name, []).append(entry)
            self._field(target, field, entry.value, field_path)
        for oneof, members in oneofs.items():
            if len(members) > 1:
                self._oneof_conflict(descriptor, oneof, members, path)

    def _unknown_field(self, descriptor: Descriptor, entry: Entry, path: Path) -> None:
        names = _field_names(descriptor)
        close = difflib.get_close_matches(entry.key, names, n=1)
        if close:
            message = f"unknown field {entry.key!r} — did you mean {close[0]!r}?"
        else:
            message = f"unknown field {entry.key!r}; valid fields are {', '.join(names)}"
        self.report.problem(path, line_of(entry.key_node), message)

    def _oneof_conflict(
        self, descriptor: Descriptor, oneof: str, members: list[Entry], path: Path
    ) -> None:
        names = [repr(member.key) for member in members]
        listed = f"{', '.join(names[:-1])} and {names[-1]}"
        if len(names) == 2:
            listed = "both " + listed
        self.report.problem(
            path,
            line_of(members[1].key_node),
            f"has {listed}; {_noun(descriptor)} has exactly one {oneof}",
        )

    def _field(self, target: Message, field: FieldDescriptor, node: Node, path: Path) -> None:
        if _is_map(field):
            self._map(target, field, node, path)
        elif field.is_repeated:
            self._list(target, field, node, path)
        elif field.cpp_type == _F.CPPTYPE_MESSAGE:
            child = getattr(target, field.name)
            child.SetInParent()
            self.fill(node, child, path)
        else:
            value = self.scalar(field, node, path)
            if value is not _INVALID:
                setattr(target, field.name, value)

    def _list(self, target: Message, field: FieldDescriptor, node: Node, path: Path) -> None:
        if not isinstance(node, SequenceNode):
            hint = ""
            if isinstance(node, ScalarNode) and node.style is None and _is_plain_text(node):
                hint = f"; write it as a list: [{node.value}]"
            self.report.problem(path, line_of(node), f"expected a list, got {describe(node)}{hint}")
            return
        container = getattr(target, field.name)
        for index, item in enumerate(node.value):
            item_path = (*path, index)
            self.report.record(item_path, line_of(item))
            if field.cpp_type == _F.CPPTYPE_MESSAGE:
                self.fill(item, container.add(), item_path)
            else:
                value = self.scalar(field, item, item_path)
                if value is not _INVALID:
                    container.append(value)

    def _map(self, target: Message, field: FieldDescriptor, node: Node, path: Path) -> None:
        if not isinstance(node, MappingNode):
            self.report.problem(path, line_of(node), f"expected a mapping, got {describe(node)}")
            return
        entries, problems = mapping_entries(node)
        for line, message in problems:
            self.report.problem(path, line, message)
        key_field = _entry_type(field).fields_by_name["key"]
        value_field = _entry_type(field).fields_by_name["value"]
        container = getattr(target, field.name)
        for entry in entries:
            key = self._map_key(key_field, entry, path)
            if key is _INVALID:
                continue
            entry_path = (*path, str(key))
            self.report.record(entry_path, line_of(entry.key_node))
            if value_field.cpp_type == _F.CPPTYPE_MESSAGE:
                child = container[key]
                # `name:` with no value declares an entry whose fields all have defaults.
                if not (is_null(entry.value) and not is_well_known(child)):
                    self.fill(entry.value, child, entry_path)
            else:
                value = self.scalar(value_field, entry.value, entry_path, in_map=True)
                if value is not _INVALID:
                    container[key] = value

    def _map_key(self, key_field: FieldDescriptor, entry: Entry, path: Path) -> Any:
        if key_field.cpp_type != _F.CPPTYPE_STRING:
            return self.scalar(key_field, entry.key_node, path)
        key, why = string_key(entry.key_node)
        if key is None:
            self.report.problem(path, line_of(entry.key_node), why)
            return _INVALID
        return key

    def scalar(
        self, field: FieldDescriptor, node: Node, path: Path, *, in_map: bool = False
    ) -> Any:
        """The value of a scalar field, or ``_INVALID`` after reporting why it is not one.
        ``in_map``: the value of a ``map<string, string>``, where numbers are taken as
        the text written."""
        if not isinstance(node, ScalarNode):
            self.report.problem(
                path, line_of(node), f"expected {_expected(field)}, got {describe(node)}"
            )
            return _INVALID
        try:
            value = scalar_value(node)
        except ValueError as exc:
            self.report.problem(path, line_of(node), str(exc))
            return _INVALID
        result, message = _convert(field, node, value, in_map=in_map)
        if message:
            self.report.problem(path, line_of(node), message)
            return _INVALID
        return result


def _expected(field: FieldDescriptor) -> str:
    """What a scalar field holds, for a message."""
    if field.cpp_type == _F.CPPTYPE_STRING:
        if field.name in MEMORY_FIELDS:
            return "a memory size like 512Mi or 4Gi"
        return "binary data" if field.type == _F.TYPE_BYTES else "a string"
    if field.cpp_type == _F.CPPTYPE_BOOL:
        return "true or false"
    if field.cpp_type in _INTEGER_RANGES:
        return "a whole number"
    if field.cpp_type in _FLOATS:
        return "a number"
    return "one of " + ", ".join(enum_choices(_enum_type(field)))


def _convert(
    field: FieldDescriptor, node: ScalarNode, value: object, *, in_map: bool
) -> tuple[Any, str]:
    """``value`` as the field's Python type, or an error message."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    cpp = field.cpp_type
    if cpp == _F.CPPTYPE_STRING:
        if field.type == _F.TYPE_BYTES and isinstance(value, bytes | str):
            return (value.encode() if isinstance(value, str) else value), ""
        if isinstance(value, str):
            return value, ""
        if is_number and (in_map or (field.name in MEMORY_FIELDS and isinstance(value, int))):
            return str(node.value), ""
        hint = "" if field.name in MEMORY_FIELDS else _quote_hint(node, value)
        return None, f"expected {_expected(field)}, got {describe(node)}{hint}"
    if cpp == _F.CPPTYPE_BOOL:
        if isinstance(value, bool):
            return value, ""
    elif cpp in _INTEGER_RANGES:
        if is_number and isinstance(value, int):
            low, high = _INTEGER_RANGES[cpp]
            if low <= value <= high:
                return value, ""
            return None, f"{node.value} is out of range; write a whole number from {low} to {high}"
    elif cpp in _FLOATS:
        if is_number:
            return float(value), ""  # type: ignore[arg-type]
    elif cpp == _F.CPPTYPE_ENUM:
        number = enum_number(_enum_type(field), value) if isinstance(value, str) else None
        if number is not None:
            return number, ""
        shown = repr(value) if isinstance(value, str) else str(node.value)
        return None, f"{shown} is not one of {', '.join(enum_choices(_enum_type(field)))}"
    return None, f"expected {_expected(field)}, got {describe(node)}"
