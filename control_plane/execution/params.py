"""The parameters of a run: what the caller gave, checked against the spec's ``params``,
with defaults filled in.

``event`` and ``webhook`` are reserved: runs started by an event or a webhook carry the
event (type, payload, source, id, time) or the request's JSON body under that name, and a
pipeline reads it without declaring it. An undeclared reserved parameter is passed through
as given, from any caller (so a run started by hand can stand in for an event); a pipeline
that declares one gets it checked like any other parameter."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from control_plane.errors import FieldViolation, InvalidArgument
from control_plane.validation.params import check_param_values, has_value, to_python
from control_plane.validation.violations import map_key
from legato.v1 import spec_pb2

__all__ = ["RESERVED_PARAMS", "resolve_params"]

RESERVED_PARAMS = frozenset({"event", "webhook"})


def resolve_params(spec: spec_pb2.PipelineSpec, given: struct_pb2.Struct) -> dict[str, Any]:
    """Declared parameters with their values: given, else default, else None. Unknown
    names, wrong types, values outside ``choices`` and missing required parameters are
    refused together, one field violation each. Reserved parameters the spec does not
    declare are kept as given."""
    reserved = {
        name: to_python(given.fields[name])
        for name in RESERVED_PARAMS
        if name in given.fields and name not in spec.params
    }
    if reserved:
        rest = struct_pb2.Struct()
        rest.CopyFrom(given)
        for name in reserved:
            del rest.fields[name]
        given = rest
    violations = [
        FieldViolation(v.field, v.description) for v in check_param_values("params", given, spec)
    ]
    values: dict[str, Any] = {}
    for name in sorted(spec.params):
        param = spec.params[name]
        if name in given.fields and has_value(given.fields[name]):
            values[name] = to_python(given.fields[name])
        elif param.HasField("default") and has_value(param.default):
            values[name] = to_python(param.default)
        elif param.required:
            violations.append(
                FieldViolation(
                    map_key("params", name),
                    f"parameter '{name}' is required; pass it, e.g. `legato run "
                    f"{spec.name} -p {name}=VALUE`",
                )
            )
        else:
            values[name] = None
    if violations:
        raise InvalidArgument(
            f"the parameters do not fit pipeline {spec.name!r}: {violations[0].description}",
            violations=violations,
            reason="INVALID_PARAMS",
            metadata={"pipeline": spec.name},
        )
    return {**values, **reserved}
