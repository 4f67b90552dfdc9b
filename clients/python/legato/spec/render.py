""":class:`~legato.v1.spec_pb2.PipelineSpec` → the plain dict and YAML text users write.

The output is what :mod:`legato.spec.loader` reads back to an equal message: fields in
proto field number order, fields at their default left out, enum values in short lower
case, durations as ``90s``/``1h30m``, map keys sorted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from legato.spec.enums import short_name
from legato.spec.wellknown import is_well_known, well_known_to_python
from legato.v1 import spec_pb2

__all__ = ["dump_spec_yaml", "spec_to_dict"]

_F = FieldDescriptor
_YAML_WIDTH = 100
_KeyType = Callable[[str], str]


def spec_to_dict(spec: spec_pb2.PipelineSpec) -> dict[str, Any]:
    """``spec`` in the user format, as plain dicts, lists and scalars."""
    return _message(spec, str)


def dump_spec_yaml(spec: spec_pb2.PipelineSpec) -> str:
    """``spec`` as YAML: :func:`spec_to_dict` with multi-line strings (SQL, code) as
    literal ``|`` blocks. ``load_spec_text(dump_spec_yaml(s)).spec == s``."""
    return yaml.dump(
        _message(spec, _FieldName),
        Dumper=_SpecDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=_YAML_WIDTH,
    )


def _message(message: Message, key: _KeyType) -> dict[str, Any]:
    """The set fields of ``message``; ``key`` wraps field names (not map keys)."""
    fields = sorted(message.ListFields(), key=lambda item: item[0].number)
    return {key(field.name): _field(field, value, key) for field, value in fields}


def _field(field: FieldDescriptor, value: Any, key: _KeyType) -> Any:
    entry = field.message_type
    if field.is_repeated and entry is not None and entry.GetOptions().map_entry:
        value_field = entry.fields_by_name["value"]
        return {k: _single(value_field, value[k], key) for k in sorted(value)}
    if field.is_repeated:
        return [_single(field, item, key) for item in value]
    return _single(field, value, key)


def _single(field: FieldDescriptor, value: Any, key: _KeyType) -> Any:
    if field.cpp_type == _F.CPPTYPE_MESSAGE:
        if is_well_known(value):
            return well_known_to_python(value)
        return _message(value, key)
    if field.cpp_type == _F.CPPTYPE_ENUM:
        known = field.enum_type.values_by_number.get(value) if field.enum_type else None
        return short_name(known) if known is not None else value
    return value


class _FieldName(str):
    """A field name as a YAML key: written plain even where YAML 1.1 would read it as
    another type (``on``), since the loader reads field names as written."""

    __slots__ = ()


class _SpecDumper(yaml.SafeDumper):
    """SafeDumper with literal blocks for multi-line strings, plain field names, and
    list items indented under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


# Line breaks of YAML 1.1 that PyYAML writes unescaped in plain and block styles, where
# they would read back as "\n" or a space; double quotes escape them.
_UNUSUAL_BREAKS = frozenset("\x85\u2028\u2029")


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = None
    if _UNUSUAL_BREAKS.intersection(data):
        style = '"'
    elif "\n" in data:
        style = "|"
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


def _represent_field_name(dumper: yaml.SafeDumper, data: _FieldName) -> yaml.ScalarNode:
    # Tagging the scalar with the type YAML resolves it to lets the emitter leave it
    # unquoted; the loader never looks at the tag of a field name.
    tag = dumper.resolve(yaml.ScalarNode, str(data), (True, False))  # type: ignore[no-untyped-call]
    return dumper.represent_scalar(tag, str(data))


_SpecDumper.add_representer(str, _represent_str)
_SpecDumper.add_representer(_FieldName, _represent_field_name)
