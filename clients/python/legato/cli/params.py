"""Run parameters on the command line: ``-p KEY=VALUE`` and ``--params-file``.

Each value is read by the type its pipeline declares for it (``params:`` of the version
that will run, fetched from the server), so what the user wrote is what the run gets:

- ``string``: the text as written (``0123``, ``no``, ``null`` stay text);
- ``integer`` / ``number``: a decimal number (``500``, ``2.5``, ``1e3``);
- ``boolean``: ``true``/``false`` (also ``yes``/``no``, ``on``/``off``, ``1``/``0``);
- ``date``: ``YYYY-MM-DD``; ``datetime``: ISO 8601 with an offset; both sent as written;
- ``json``: a JSON (or YAML flow) object or list.

A parameter the pipeline declares without a type reads as a JSON scalar (``7``, ``2.5``,
``true``, ``null``; ``'7'`` quoted is text) or else as the text; one it does not declare
is refused with the names it does declare. A value that does not fit says which
parameter, what was written and what is expected."""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode

from legato.v1 import spec_pb2

__all__ = ["ParamError", "param", "parse_param_value", "plain_scalars", "typed_params"]

T = spec_pb2.ParamType
# Numbers in a Struct are doubles: larger integers would not come back as written.
EXACT_INT = 2**53
JSON_INT = re.compile(r"-?(0|[1-9][0-9]*)")
JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})
TYPE_NAMES: dict[int, str] = {
    T.PARAM_TYPE_STRING: "string",
    T.PARAM_TYPE_INTEGER: "integer",
    T.PARAM_TYPE_NUMBER: "number",
    T.PARAM_TYPE_BOOLEAN: "boolean",
    T.PARAM_TYPE_DATE: "date",
    T.PARAM_TYPE_DATETIME: "datetime",
    T.PARAM_TYPE_JSON: "json",
}


class ParamError(ValueError):
    """A value that does not fit its parameter; the message says why and what to write."""


def param(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``-p``; the value is read once the parameter's type is known."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, raw


def parse_param_value(raw: str) -> Any:
    """VALUE of a parameter without a declared type, as a JSON scalar: ``7`` → 7, ``2.5``
    → 2.5, ``true`` → True, ``null`` → None, ``'7'`` or ``"7"`` → '7'. Anything else
    (``0123``, ``no``, a date, ``[1, 2]``) and integers beyond 2**53 stay the text as
    written."""
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~"):
        return None
    if JSON_INT.fullmatch(text):
        value = int(text)
        return value if abs(value) <= EXACT_INT else raw
    if JSON_NUMBER.fullmatch(text):
        number = float(text)
        return number if math.isfinite(number) else raw
    return raw


def typed_params(
    pairs: list[tuple[str, str]],
    spec: spec_pb2.PipelineSpec | None,
    *,
    file_values: Mapping[str, Any] | None = None,
    file_texts: Mapping[str, str] | None = None,
    file_name: str = "the params file",
) -> dict[str, Any]:
    """The run's parameters: the params file's values, then ``-p`` (which wins), each
    read by its declared type. ``file_texts`` holds the file's plain scalars as written
    (see :func:`plain_scalars`), so that a string parameter gets ``0123`` rather than
    YAML's 83. Without ``spec`` (the pipeline could not be read) values read as
    untyped. Raises ParamError."""
    values: dict[str, Any] = {}
    texts = file_texts or {}
    for name, value in (file_values or {}).items():
        given = f"{file_name}: {name}: {texts.get(name, json.dumps(value, default=str))}"
        declared = _declared(name, spec, given)
        if name in texts and declared is not None:
            values[name] = _typed(name, texts[name], declared, given)
        else:
            values[name] = value
    for name, raw in pairs:
        declared = _declared(name, spec, f"-p {name}={raw}")
        values[name] = (
            parse_param_value(raw) if declared is None else _typed(name, raw, declared, None)
        )
    return values


def plain_scalars(text: str) -> dict[str, str]:
    """The top-level ``key: value`` pairs of a YAML mapping whose value is an unquoted
    scalar, as written (YAML would read ``0123`` as 83 and ``no`` as false)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(root, MappingNode):
        return {}
    found: dict[str, str] = {}
    for key, value in root.value:
        if isinstance(key, ScalarNode) and isinstance(value, ScalarNode) and not value.style:
            found[str(key.value)] = str(value.value)
    return found


def _declared(
    name: str, spec: spec_pb2.PipelineSpec | None, given: str
) -> spec_pb2.ParamSpec | None:
    """The declaration of ``name``; None when untyped (or the spec is unknown)."""
    if spec is None:
        return None
    if name not in spec.params:
        declared = sorted(spec.params)
        if not declared:
            raise ParamError(
                f"{given}: pipeline '{spec.name}' declares no parameters; declare "
                f"'{name}' under params: in its spec, or leave it out"
            )
        hint = _closest(name, declared)
        raise ParamError(
            f"{given}: pipeline '{spec.name}' has no parameter '{name}' "
            f"(its parameters: {', '.join(declared)})"
            + (f"; did you mean '{hint}'?" if hint else "")
        )
    found = spec.params[name]
    return found if found.type != T.PARAM_TYPE_UNSPECIFIED else None


def _typed(name: str, raw: str, declared: spec_pb2.ParamSpec, given: str | None) -> Any:
    kind = int(declared.type)
    shown = given or f"-p {name}={raw}"
    text = raw.strip()

    def refuse(why: str, expected: str) -> ParamError:
        return ParamError(
            f"{shown}: parameter '{name}' has type {TYPE_NAMES[kind]}; "
            f"{raw!r} {why}; write {expected}"
        )

    if kind == T.PARAM_TYPE_STRING:
        return raw
    if kind == T.PARAM_TYPE_INTEGER:
        if not re.fullmatch(r"[-+]?[0-9]+", text):
            raise refuse("is not an integer", "digits, e.g. 500")
        value = int(text)
        if abs(value) > EXACT_INT:
            raise refuse(
                "is too large to send exactly (JSON numbers are doubles)",
                f"an integer of at most {EXACT_INT:,} in size",
            )
        return value
    if kind == T.PARAM_TYPE_NUMBER:
        try:
            number = float(text)
        except ValueError:
            raise refuse("is not a number", "a decimal number, e.g. 2.5 or 1e3") from None
        if not math.isfinite(number):
            raise refuse("is not a finite number", "a decimal number, e.g. 2.5 or 1e3")
        return int(number) if number.is_integer() and abs(number) <= EXACT_INT else number
    if kind == T.PARAM_TYPE_BOOLEAN:
        word = text.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise refuse("is not true or false", "true or false")
    if kind == T.PARAM_TYPE_DATE:
        try:
            date.fromisoformat(text)
        except ValueError as error:
            raise refuse(f"is not a date ({error})", "YYYY-MM-DD, e.g. 2026-06-12") from None
        return text
    if kind == T.PARAM_TYPE_DATETIME:
        example = "an ISO 8601 time with an offset, e.g. 2026-06-12T09:00:00+02:00 or …Z"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as error:
            raise refuse(f"is not a date and time ({error})", example) from None
        if moment.tzinfo is None:
            raise refuse("has no UTC offset", example)
        return text
    if kind == T.PARAM_TYPE_JSON:
        try:
            document: Any = yaml.safe_load(text)
        except (yaml.YAMLError, ValueError):
            document = None
        if not isinstance(document, dict | list):
            raise refuse("is not a JSON object or list", 'JSON, e.g. {"region": "eu"} or [1, 2]')
        return json.loads(json.dumps(document, default=str))
    return parse_param_value(raw)


def _closest(name: str, names: list[str]) -> str:
    found = difflib.get_close_matches(name, names, n=1)
    return found[0] if found else ""
