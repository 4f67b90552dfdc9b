"""Run parameters: their declarations and the values schedules and triggers give them.

A ``default`` (or choice, or value) of ``null`` counts as no value. Numbers are JSON numbers,
so an integer parameter accepts ``3`` and ``3.0`` but not ``3.5``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from google.protobuf import struct_pb2

from legato.v1 import spec_pb2

from .fields import check_enum, did_you_mean, enum_name, pipeline_label
from .violations import Violation, index, join, map_key

__all__ = ["check_param_values", "check_params", "has_value", "to_python"]

PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TYPE = spec_pb2.ParamType


def has_value(value: struct_pb2.Value) -> bool:
    return value.WhichOneof("kind") not in (None, "null_value")


def to_python(value: struct_pb2.Value) -> Any:
    """The JSON value ``value`` holds, with integral numbers as ``int``."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {k: to_python(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [to_python(v) for v in value.list_value.values]
    return None


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _problem(param_type: int, value: Any) -> str | None:
    """Why ``value`` does not fit ``param_type``, or ``None`` when it does."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if param_type == _TYPE.PARAM_TYPE_STRING and not isinstance(value, str):
        return "is not a string"
    if param_type == _TYPE.PARAM_TYPE_INTEGER and not (is_number and float(value).is_integer()):
        return "is not an integer"
    if param_type == _TYPE.PARAM_TYPE_NUMBER and not (is_number and math.isfinite(value)):
        return "is not a number"
    if param_type == _TYPE.PARAM_TYPE_BOOLEAN and not isinstance(value, bool):
        return "is not true or false"
    if param_type == _TYPE.PARAM_TYPE_JSON and not isinstance(value, dict | list):
        return "is not a JSON object or list"
    if param_type == _TYPE.PARAM_TYPE_DATE:
        return _date_problem(value)
    if param_type == _TYPE.PARAM_TYPE_DATETIME:
        return _datetime_problem(value)
    return None


def _date_problem(value: Any) -> str | None:
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        return "is not an ISO 8601 date like 2026-06-12"
    return None


def _datetime_problem(value: Any) -> str | None:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return "is not an ISO 8601 date and time like 2026-06-12T09:00:00+02:00"
    if moment.tzinfo is None:
        return "has no UTC offset; add one, like 2026-06-12T09:00:00+02:00 or 2026-06-12T07:00:00Z"
    return None


def _type_name(param_type: int) -> str:
    return enum_name(_TYPE.DESCRIPTOR, param_type)


def check_params(spec: spec_pb2.PipelineSpec) -> Iterator[Violation]:
    """Parameter names, types, defaults, ``required`` and choices."""
    for name in sorted(spec.params):
        yield from _check_param(map_key("params", name), name, spec.params[name])


def _check_param(path: str, name: str, param: spec_pb2.ParamSpec) -> Iterator[Violation]:
    if not PARAM_NAME.fullmatch(name):
        yield Violation(
            path,
            f"'{name}' is not a valid parameter name; use letters, digits and '_', "
            "starting with a letter or '_'",
        )
    yield from check_enum(join(path, "type"), _TYPE.DESCRIPTOR, param.type)
    choices = [to_python(choice) for choice in param.choices]
    if param.HasField("default") and has_value(param.default):
        yield from _check_default(path, name, param, to_python(param.default), choices)
        if param.required:
            yield Violation(
                join(path, "required"),
                f"parameter '{name}' is required and has a default, so it is never missing; "
                "remove required or the default",
            )
    yield from _check_choices(path, name, param.type, choices)


def _check_default(
    path: str, name: str, param: spec_pb2.ParamSpec, default: Any, choices: list[Any]
) -> Iterator[Violation]:
    problem = _problem(param.type, default)
    if problem:
        yield Violation(
            join(path, "default"),
            f"default {_show(default)} {problem}; parameter '{name}' has type "
            f"{_type_name(param.type)}",
        )
    elif choices and default not in choices:
        yield Violation(
            join(path, "default"),
            f"default {_show(default)} is not one of the choices of parameter '{name}' "
            f"({', '.join(_show(c) for c in choices)}); pick one of them",
        )


def _check_choices(
    path: str, name: str, param_type: int, choices: list[Any]
) -> Iterator[Violation]:
    for position, choice in enumerate(choices):
        choice_path = index(join(path, "choices"), position)
        problem = "is not a value" if choice is None else _problem(param_type, choice)
        if problem:
            yield Violation(
                choice_path,
                f"choice {_show(choice)} {problem}; parameter '{name}' has type "
                f"{_type_name(param_type)}",
            )
        elif choice in choices[:position]:
            yield Violation(
                choice_path,
                f"choice {_show(choice)} is listed twice (first at choices"
                f"[{choices.index(choice)}]); remove the repeat",
            )


def check_param_values(
    path: str, values: struct_pb2.Struct, spec: spec_pb2.PipelineSpec
) -> Iterator[Violation]:
    """Values given to parameters (``schedule.params``, ``triggers[i].event.params``)."""
    declared = sorted(spec.params)
    for name in sorted(values.fields):
        value_path = map_key(path, name)
        if name not in spec.params:
            yield Violation(value_path, _undeclared(name, declared, spec))
            continue
        param = spec.params[name]
        value = to_python(values.fields[name])
        if value is None:
            continue
        problem = _problem(param.type, value)
        choices = [to_python(choice) for choice in param.choices]
        if problem:
            yield Violation(
                value_path,
                f"{_show(value)} {problem}; parameter '{name}' has type {_type_name(param.type)}",
            )
        elif choices and value not in choices:
            yield Violation(
                value_path,
                f"{_show(value)} is not one of the choices of parameter '{name}' "
                f"({', '.join(_show(c) for c in choices)})",
            )


def _undeclared(name: str, declared: list[str], spec: spec_pb2.PipelineSpec) -> str:
    owner = pipeline_label(spec.name)
    if not declared:
        return f"'{name}' is not a parameter of {owner}, which declares none; declare it in params"
    return (
        f"'{name}' is not a parameter of {owner} (declared: {', '.join(declared)})"
        f"{did_you_mean(name, declared)}"
    )
