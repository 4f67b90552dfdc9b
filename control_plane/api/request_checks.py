"""Checks every unary request gets before a servicer sees it, so hostile or broken input
is INVALID_ARGUMENT naming the field and the limit (never INTERNAL, never a write that
half happens, never work in proportion to a huge value):

- **Size.** A request is at most ``MAX_REQUEST_BYTES``; each string at most
  ``MAX_STRING`` characters unless ``STRING_LIMITS`` says otherwise; ``STRUCT_LIMITS``
  bounds JSON-like fields (run params, event payloads) by their encoded size; a pipeline
  spec is at most ``SPEC_LIMIT`` bytes; a repeated field or map of ours holds at most
  ``MAX_ITEMS`` items. The table is in docs/api.md#limits. A request over the total is
  refused naming the field that makes it so (``params: 10485776 bytes, over the limit of
  262144 bytes``).
- **NUL bytes.** No string may hold U+0000: PostgreSQL cannot store it, and no name,
  description or parameter needs it.
- **Enums.** A value the enum does not define (proto3 enums are open) is refused.

Every check is cheap before it is thorough: a string's length is compared before it is
scanned, a Struct's size before it is walked, a repeated field's count before its items,
so the cost of refusing a 60 MB request does not grow with it. Errors quote at most a
short prefix of an offending value (``quote``), never all of it."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from control_plane.errors import FieldViolation, InvalidArgument
from control_plane.quoting import quote

__all__ = [
    "MAX_ITEMS",
    "MAX_REQUEST_BYTES",
    "MAX_STRING",
    "SPEC_LIMIT",
    "STRING_LIMITS",
    "STRUCT_LIMITS",
    "check_request",
    "quote",
]

KIB = 1024
MAX_REQUEST_BYTES = 2 * KIB * KIB
"""Largest unary request (a pipeline spec is at most SPEC_LIMIT of it)."""
MAX_STRING = 4 * KIB
"""Longest string field, in characters, unless STRING_LIMITS names it."""
STRING_LIMITS: dict[tuple[str, str], int] = {
    ("legato.v1.PipelineSpec", "description"): 16 * KIB,
    ("legato.v1.ParamSpec", "description"): 16 * KIB,
    ("legato.v1.Step", "description"): 16 * KIB,
    ("legato.v1.Step", "when"): 16 * KIB,
    ("legato.v1.QueryStep", "sql"): 256 * KIB,
    ("legato.v1.TransformStep", "code"): 256 * KIB,
    ("legato.v1.EventTrigger", "filter"): 16 * KIB,
    ("legato.v1.SlackExport", "text"): 16 * KIB,
    ("legato.v1.SlackChannel", "text"): 16 * KIB,
    ("legato.v1.ApplyPipelineRequest", "message"): 16 * KIB,
    # The spec file's text (the web UI's editor): a spec's worth.
    ("legato.v1.ValidatePipelineRequest", "source"): 1024 * KIB,
    ("legato.v1.RollbackPipelineRequest", "message"): 16 * KIB,
    ("legato.v1.CancelRunRequest", "reason"): 4 * KIB,
    ("legato.v1.PauseScheduleRequest", "reason"): 4 * KIB,
    ("google.protobuf.Value", "string_value"): 64 * KIB,
}
"""Longest string, in characters, of the fields that may be longer than MAX_STRING."""
STRUCT_LIMITS: dict[tuple[str, str], int] = {
    ("legato.v1.TriggerRunRequest", "params"): 256 * KIB,
    ("legato.v1.TestStepRequest", "params"): 256 * KIB,
    ("legato.v1.TestInput", "values"): 256 * KIB,
    ("legato.v1.PublishRequest", "payload"): 256 * KIB,
    ("legato.v1.Schedule", "params"): 256 * KIB,
    ("legato.v1.EventTrigger", "params"): 256 * KIB,
    ("legato.v1.FunctionStep", "args"): 256 * KIB,
}
"""Largest encoded size, in bytes, of the JSON-like (Struct) fields."""
SPEC_LIMIT = 1024 * KIB
"""Largest pipeline spec (encoded), in bytes."""
MAX_ITEMS = 10_000
"""Most items in one repeated field or map of a legato.v1 message (steps, needs, labels,
statuses ...). JSON-like values (Struct, ListValue) are bounded by STRUCT_LIMITS instead."""
MAX_DEPTH = 32
"""Deepest nesting of messages (Struct values nest)."""
MAX_PROBLEMS = 20
"""Most field violations one refusal lists."""


def check_request(request: Any) -> None:
    """Raise InvalidArgument naming every field (up to MAX_PROBLEMS) of ``request`` over
    its limit, holding NUL, or outside its enum."""
    if not isinstance(request, Message):
        return
    size = request.ByteSize()
    problems: list[FieldViolation] = []
    _walk(request, "", problems, 0)
    spec = getattr(request, "spec", None)
    if isinstance(spec, Message) and request.HasField("spec"):
        spec_size = spec.ByteSize()
        if spec_size > SPEC_LIMIT:
            problems.append(FieldViolation("spec", _over(spec_size, SPEC_LIMIT, "bytes")))
    if size > MAX_REQUEST_BYTES:
        culprit = problems[0] if problems else _largest(request)
        raise InvalidArgument(
            f"{culprit.field}: {culprit.description}; the request is {size} bytes and may "
            f"be at most {MAX_REQUEST_BYTES} bytes (see docs/api.md#limits)",
            violations=(problems or [culprit])[:MAX_PROBLEMS],
            reason="REQUEST_TOO_LARGE",
            metadata={"field": culprit.field, "limit_bytes": str(MAX_REQUEST_BYTES)},
        )
    if problems:
        first = problems[0]
        more = len(problems) - 1
        least = "at least " if len(problems) >= MAX_PROBLEMS else ""
        raise InvalidArgument(
            f"{first.field}: {first.description}"
            + (
                f" (and {least}{more} more {'problem' if more == 1 else 'problems'})"
                if more
                else ""
            )
            + "; see docs/api.md#limits",
            violations=problems[:MAX_PROBLEMS],
            reason="INVALID_REQUEST",
            metadata={"field": first.field},
        )


def _walk(message: Message, path: str, problems: list[FieldViolation], depth: int) -> None:
    if depth > MAX_DEPTH:
        problems.append(FieldViolation(path or "request", f"nested deeper than {MAX_DEPTH}"))
        return
    owner: str = message.DESCRIPTOR.full_name
    counted = not owner.startswith("google.protobuf.")
    for field, value in message.ListFields():
        if len(problems) >= MAX_PROBLEMS:
            return
        where = f"{path}.{field.name}" if path else field.name
        repeated = _repeated(field)
        if repeated and counted and len(value) > MAX_ITEMS:
            problems.append(FieldViolation(where, _over(len(value), MAX_ITEMS, "items")))
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                _walk_map(owner, field, value, where, problems, depth)
                continue
            limit = STRUCT_LIMITS.get((owner, field.name))
            items = value if repeated else [value]
            for index, item in enumerate(items):
                entry = f"{where}[{index}]" if repeated else where
                if limit is not None and (item_size := item.ByteSize()) > limit:
                    problems.append(FieldViolation(entry, _over(item_size, limit, "bytes")))
                    continue
                _walk(item, entry, problems, depth + 1)
                if len(problems) >= MAX_PROBLEMS:
                    return
        elif field.type == FieldDescriptor.TYPE_STRING:
            items = value if repeated else [value]
            for index, item in enumerate(items):
                if len(problems) >= MAX_PROBLEMS:
                    return
                entry = f"{where}[{index}]" if repeated else where
                _string(owner, field.name, item, entry, problems)
        elif field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
            enum = field.enum_type
            known = enum.values_by_number
            items = value if repeated else [value]
            for index, item in enumerate(items):
                if len(problems) >= MAX_PROBLEMS:
                    return
                if item not in known:
                    entry = f"{where}[{index}]" if repeated else where
                    names = ", ".join(v.name for v in enum.values if v.number)
                    problems.append(
                        FieldViolation(
                            entry, f"{item} is not a value of {enum.name}; use one of {names}"
                        )
                    )


def _walk_map(
    owner: str,
    field: FieldDescriptor,
    value: Any,
    where: str,
    problems: list[FieldViolation],
    depth: int,
) -> None:
    for key, item in value.items():
        if len(problems) >= MAX_PROBLEMS:
            return
        entry = f"{where}[{quote(str(key))}]"
        if isinstance(key, str):
            _string(owner, field.name, key, entry, problems)
        if isinstance(item, Message):
            _walk(item, entry, problems, depth + 1)
        elif isinstance(item, str):
            _string(owner, field.name, item, entry, problems)


def _string(owner: str, name: str, value: str, where: str, problems: list[FieldViolation]) -> None:
    limit = STRING_LIMITS.get((owner, name), MAX_STRING)
    if len(value) > limit:
        problems.append(
            FieldViolation(
                where, f"{_over(len(value), limit, 'characters')} (starts {quote(value)})"
            )
        )
    elif "\x00" in value:
        problems.append(
            FieldViolation(where, f"{quote(value)} contains a NUL character (\\x00); remove it")
        )


def _largest(request: Message) -> FieldViolation:
    """The top-level field that takes most of an oversized request that no field limit
    refused (many fields, each within its own limit)."""
    best, best_size = "request", 0
    for field, value in request.ListFields():
        if not _repeated(field):
            items = [value]
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            items = [*value.keys(), *value.values()]
        else:
            items = list(value)
        size = sum(_size(item) for item in items)
        if size > best_size:
            best, best_size = field.name, size
    return FieldViolation(best, f"{best_size} bytes, the largest part of the request")


def _size(value: Any) -> int:
    if isinstance(value, Message):
        return value.ByteSize()
    return len(value) if isinstance(value, str | bytes) else 0


def _over(size: int, limit: int, unit: str) -> str:
    return f"{size} {unit}, over the limit of {limit} {unit}"


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)
