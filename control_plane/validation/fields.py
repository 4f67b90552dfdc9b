"""Checks of single values shared by every part of the spec: names, enums, durations,
memory sizes, URLs, label keys and secret references."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import urlsplit

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.duration_pb2 import Duration

from legato.spec.units import UnitError, format_duration, parse_memory

from .violations import Violation, map_key

__all__ = [
    "COLUMN",
    "DAY",
    "HOUR",
    "IDENTIFIER",
    "MINUTE",
    "PIPELINE_NAME",
    "SECOND",
    "TABLE",
    "check_duration",
    "check_enum",
    "check_headers",
    "check_label_keys",
    "check_memory",
    "check_pipeline_name",
    "check_required",
    "check_url",
    "did_you_mean",
    "enum_name",
    "pipeline_label",
    "quote_list",
    "seconds",
]

SECOND = 1.0
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0

PIPELINE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
COLUMN = IDENTIFIER
TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?")
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
# RFC 9110 token characters.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_MEMORY_MIN = 16 * 2**20
_MEMORY_MAX = 2**40


def did_you_mean(value: str, options: Iterable[str]) -> str:
    """`` — did you mean 'x'?`` for the closest of ``options``, or ``""``."""
    candidates = [option for option in options if option]
    folded = {option.lower(): option for option in candidates}
    if value.lower() in folded and folded[value.lower()] != value:
        return f" — did you mean '{folded[value.lower()]}'?"
    close = difflib.get_close_matches(value, candidates, n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""


def quote_list(values: Iterable[str], limit: int = 20) -> str:
    """``'a', 'b'`` for messages, at most ``limit`` of them; ``none`` when empty."""
    quoted = [f"'{value}'" for value in values]
    if not quoted:
        return "none"
    shown = ", ".join(quoted[:limit])
    return shown if len(quoted) <= limit else f"{shown} and {len(quoted) - limit} more"


def pipeline_label(name: str) -> str:
    """``pipeline 'etl'`` for messages, or ``this pipeline`` while it has no name."""
    return f"pipeline '{name}'" if name else "this pipeline"


def check_required(path: str, value: str, description: str) -> Iterator[Violation]:
    """A violation saying ``description`` when ``value`` is empty or blank."""
    if not value.strip():
        yield Violation(path, description)


def check_pipeline_name(path: str, name: str, what: str = "pipeline name") -> Iterator[Violation]:
    if not name:
        yield Violation(path, f"{what} is required; use lower-case letters, digits, '-' and '_'")
    elif not PIPELINE_NAME.fullmatch(name):
        yield Violation(
            path,
            f"'{name}' is not a valid {what}; use 1-63 lower-case letters, digits, '-' and '_', "
            "starting with a letter",
        )


def enum_name(descriptor: EnumDescriptor, number: int) -> str:
    """The spelling users write: ``all_success`` for ``TRIGGER_RULE_ALL_SUCCESS``."""
    prefix = descriptor.values[0].name.removesuffix("UNSPECIFIED")
    value = descriptor.values_by_number.get(number)
    return value.name.removeprefix(prefix).lower() if value else str(number)


def _enum_noun(descriptor: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", descriptor.name).lower()


def check_enum(
    path: str, descriptor: EnumDescriptor, number: int, *, allow_unspecified: bool = True
) -> Iterator[Violation]:
    """A violation when ``number`` is not a value of the enum (proto3 keeps unknown numbers)."""
    if number in descriptor.values_by_number and (number != 0 or allow_unspecified):
        return
    known = ", ".join(enum_name(descriptor, v.number) for v in descriptor.values if v.number)
    shown = "unspecified" if number == 0 else str(number)
    yield Violation(path, f"{shown} is not a known {_enum_noun(descriptor)}; use one of {known}")


def seconds(duration: Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def check_duration(
    path: str, duration: Duration, *, maximum: float, minimum: float = 0.0
) -> Iterator[Violation]:
    """A set duration must be positive and within ``minimum``..``maximum`` seconds."""
    value = seconds(duration)
    shown = format_duration(value)
    if value <= 0:
        yield Violation(path, f"{shown} is not a positive duration; set a duration above 0s")
    elif value < minimum:
        yield Violation(path, f"{shown} is less than the minimum of {format_duration(minimum)}")
    elif value > maximum:
        yield Violation(path, f"{shown} is more than the maximum of {format_duration(maximum)}")


def check_memory(path: str, text: str) -> Iterator[Violation]:
    """A set memory size must parse and lie between 16Mi and 1Ti."""
    if not text:
        return
    try:
        size = parse_memory(text)
    except UnitError as exc:
        yield Violation(path, str(exc))
        return
    if size < _MEMORY_MIN:
        yield Violation(path, f"'{text}' is less than the minimum of 16Mi")
    elif size > _MEMORY_MAX:
        yield Violation(path, f"'{text}' is more than the maximum of 1Ti")


def check_url(path: str, url: str, what: str = "url") -> Iterator[Violation]:
    """``url`` must be an absolute http or https URL."""
    if not url.strip():
        yield Violation(path, f"{what} is required; set an http or https URL")
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        yield Violation(
            path, f"'{url}' is not an http or https URL; write it like https://host/path"
        )


def check_label_keys(path: str, labels: Mapping[str, str]) -> Iterator[Violation]:
    """Label and selector keys: up to 63 letters, digits, '.', '_', '/', '-'."""
    for label in sorted(labels):
        if not _LABEL_KEY.fullmatch(label):
            yield Violation(
                map_key(path, label),
                f"'{label}' is not a valid label key; use up to 63 letters, digits, '.', '_', "
                "'/' and '-', starting with a letter or digit",
            )


def check_headers(path: str, headers: Mapping[str, str]) -> Iterator[Violation]:
    """HTTP header names must be RFC 9110 tokens, and values free of line breaks."""
    for name in sorted(headers):
        header_path = map_key(path, name)
        if not _HEADER_NAME.fullmatch(name):
            yield Violation(header_path, f"'{name}' is not a valid HTTP header name")
        elif "\r" in headers[name] or "\n" in headers[name]:
            yield Violation(header_path, f"the value of header '{name}' contains a line break")
