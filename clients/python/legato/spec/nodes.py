"""The YAML side of the loader: text → composed node tree, and reading those nodes.

The loader works on PyYAML's composed nodes rather than on constructed Python objects
so that every value keeps its line, duplicate keys can be seen (PyYAML's constructor
silently keeps the last one), and field names are read as written (YAML 1.1 would
turn the key ``on`` into ``True``).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "Entry",
    "YamlSyntaxError",
    "compose",
    "describe",
    "is_null",
    "line_of",
    "mapping_entries",
    "scalar_value",
    "string_key",
]

_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_CONSTRUCTOR = SafeConstructor()
_SHOWN_CHARS = 40


class YamlSyntaxError(Exception):
    """Text that is not YAML; ``line`` is 1-based, or None when PyYAML gives none."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def compose(text: str) -> Node | None:
    """The node tree of the single document in ``text``; None for an empty document."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(text, exc) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(None, f"invalid YAML: {exc}") from None


_QUOTES = {'"': "double-quoted", "'": "single-quoted"}


def _syntax_error(text: str, exc: yaml.MarkedYAMLError) -> YamlSyntaxError:
    """The error at the line to fix. A quoted string left open is reported by PyYAML at
    the end of the file ("found unexpected end of stream"), or wherever a later quote
    happened to close it: both point at the line where the string opens instead."""
    problem = exc.problem_mark
    context = exc.context_mark
    what = ", ".join(part for part in (exc.context, exc.problem) if part)
    if exc.context == "while scanning a quoted scalar" and context is not None:
        quote = _QUOTES.get(text[context.index : context.index + 1], "quoted")
        closing = text[context.index : context.index + 1] or '"'
        return YamlSyntaxError(
            context.line + 1,
            f"invalid YAML: the {quote} string that opens at column {context.column + 1} "
            f"is never closed; end it with {closing}",
        )
    mark = problem or context
    if mark is None:
        return YamlSyntaxError(None, f"invalid YAML: {what}")
    opened = _open_quote_before(text, mark.line)
    if opened is not None:
        line, column, quote = opened
        return YamlSyntaxError(
            line + 1,
            f"invalid YAML: the {_QUOTES[quote]} string that opens at column {column + 1} "
            f"runs on to line {mark.line + 1}, where the document stops making sense "
            f"({what}); is its closing {quote} missing?",
        )
    return YamlSyntaxError(mark.line + 1, f"invalid YAML: {what}")


def _open_quote_before(text: str, error_line: int) -> tuple[int, int, str] | None:
    """Where a quoted scalar that spans lines and ends on ``error_line`` opens (line,
    column, quote), if there is one: the likely cause of an error found on that line."""
    found: tuple[int, int, str] | None = None
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            start, end = token.start_mark, token.end_mark
            if start.line > error_line:
                break
            if (
                isinstance(token, yaml.ScalarToken)
                and token.style in _QUOTES
                and start.line < end.line
                and end.line == error_line
            ):
                found = (start.line, start.column, token.style)
    except yaml.YAMLError:
        pass
    return found


def line_of(node: Node) -> int:
    """The 1-based line ``node`` starts on."""
    return int(node.start_mark.line) + 1


def is_null(node: Node) -> bool:
    """Whether ``node`` is ``null``, ``~`` or an empty value."""
    return isinstance(node, ScalarNode) and node.tag == _NULL_TAG


def scalar_value(node: ScalarNode) -> Any:
    """The Python value of a scalar as YAML reads it: str, int, float, bool, None,
    date, datetime or bytes. Raises ``ValueError`` for a tag the loader cannot read."""
    if node.tag == _MERGE_TAG:
        return str(node.value)
    construct = SafeConstructor.yaml_constructors.get(node.tag)
    if construct is None:
        raise ValueError(f"the tag {node.tag} is not supported; remove it")
    value = construct(_CONSTRUCTOR, node)
    if inspect.isgenerator(value):
        value.close()
        raise ValueError(f"the tag {node.tag} does not fit a single value; remove it")
    return value


def string_key(node: ScalarNode) -> tuple[str | None, str]:
    """The key ``node`` as a string of a map, or None and a message saying why it is not
    one (YAML reads ``1``, ``yes`` or ``2024-01-01`` unquoted as other types)."""
    try:
        value = scalar_value(node)
    except ValueError as exc:
        return None, str(exc)
    if isinstance(value, str):
        return value, ""
    quoted = json.dumps(str(node.value))
    return None, f"a key must be a string, got {describe(node)}; put it in quotes: {quoted}"


def describe(node: Node) -> str:
    """``node`` for a message: ``a mapping``, ``the integer 3``, ``'five'``."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if not isinstance(node, ScalarNode):
        return "a list"
    try:
        value = scalar_value(node)
    except ValueError:
        return shorten(str(node.value))
    return describe_value(value, str(node.value))


def describe_value(value: object, text: str) -> str:
    """A scalar ``value``, written ``text`` in the document, for a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {text}"
    if isinstance(value, int):
        return f"the integer {text}"
    if isinstance(value, float):
        return f"the number {text}"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, str):
        return shorten(value)
    return f"the date {text}"


def shorten(text: str) -> str:
    """``text`` quoted, cut to a length that fits in a one-line message."""
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return repr(text)


@dataclass(frozen=True)
class Entry:
    """One ``key: value`` of a mapping; ``key`` is the key's text as written."""

    key: str
    key_node: ScalarNode
    value: Node


Problem = tuple[int, str]
"""A line and a message, before the caller adds the path."""


def mapping_entries(node: MappingNode) -> tuple[list[Entry], list[Problem]]:
    """The entries of ``node`` with ``<<`` merge keys applied, and the problems found:
    keys that are not scalars, duplicate keys, merges of something other than mappings.

    As in YAML's merge-key type, keys written in the mapping win over merged ones, and
    among several merged mappings the first one wins.
    """
    return _entries(node, {id(node)})


def _entries(node: MappingNode, seen: set[int]) -> tuple[list[Entry], list[Problem]]:
    own: dict[str, Entry] = {}
    merged: list[Entry] = []
    problems: list[Problem] = []
    for key_node, value_node in node.value:
        if not isinstance(key_node, ScalarNode):
            problems.append((line_of(key_node), f"a key must be a name, got {describe(key_node)}"))
        elif key_node.tag == _MERGE_TAG:
            merged.extend(_merged(value_node, seen, problems))
        elif key_node.value in own:
            first = line_of(own[key_node.value].key_node)
            problems.append(
                (
                    line_of(key_node),
                    f"duplicate key {key_node.value!r}; it is already set on line {first}",
                )
            )
        else:
            own[key_node.value] = Entry(str(key_node.value), key_node, value_node)
    entries = list(own.values())
    for entry in merged:
        if entry.key not in own:
            own[entry.key] = entry
            entries.append(entry)
    return entries, problems


def _merged(value: Node, seen: set[int], problems: list[Problem]) -> list[Entry]:
    """The entries a ``<<`` key brings in, in order of precedence."""
    sources = value.value if isinstance(value, SequenceNode) else [value]
    entries: list[Entry] = []
    for source in sources:
        if not isinstance(source, MappingNode):
            problems.append((line_of(source), f"'<<' merges mappings, got {describe(source)}"))
        elif id(source) in seen:
            problems.append((line_of(source), "'<<' merges a mapping into itself"))
        else:
            found, nested = _entries(source, seen | {id(source)})
            entries.extend(found)
            problems.extend(nested)
    return entries
