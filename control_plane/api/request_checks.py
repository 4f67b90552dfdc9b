"""Checks every request gets before a servicer sees it, so hostile or broken input is
INVALID_ARGUMENT naming the field (never INTERNAL, never a write that half happens):

- **Size.** A unary request is at most ``MAX_REQUEST_BYTES``; each string at most
  ``MAX_STRING`` characters unless ``STRING_LIMITS`` says otherwise; ``STRUCT_LIMITS``
  bounds JSON-like fields (run params, event payloads) by their encoded size. Limits are
  documented in docs/api.md; a refusal names the field and the limit.
- **NUL bytes.** No string may hold U+0000: PostgreSQL cannot store it, and no name,
  description or parameter needs it.
- **Enums.** A value the enum does not define (proto3 enums are open) is refused.

Errors quote at most a short prefix of an offending value (``quote``), never all of it."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from control_plane.errors import FieldViolation, InvalidArgument

__all__ = [
    "MAX_REQUEST_BYTES",
    "MAX_STRING",
    "STRING_LIMITS",
    "STRUCT_LIMITS",
    "check_request",
    "quote",
]

KIB = 1024
MAX_REQUEST_BYTES = 2 * KIB * KIB
"""Largest unary request (a pipeline spec is at most 1 MiB of it)."""
MAX_STRING = 4 * KIB
"""Longest string field, unless STRING_LIMITS names it."""
STRING_LIMITS: dict[tuple[str, str], int] = {
    ("legato.v1.PipelineSpec", "description"): 16 * KIB,
    ("legato.v1.Step", "description"): 16 * KIB,
    ("legato.v1.Step", "when"): 16 * KIB,
    ("legato.v1.QueryStep", "sql"): 256 * KIB,
    ("legato.v1.TransformStep", "code"): 256 * KIB,
    ("legato.v1.EventTrigger", "filter"): 16 * KIB,
    ("legato.v1.SlackExport", "text"): 16 * KIB,
    ("legato.v1.SlackChannel", "text"): 16 * KIB,
    ("legato.v1.ApplyPipelineRequest", "message"): 16 * KIB,
    ("legato.v1.RollbackPipelineRequest", "message"): 16 * KIB,
    ("legato.v1.CancelRunRequest", "reason"): 4 * KIB,
    ("legato.v1.PauseScheduleRequest", "reason"): 4 * KIB,
    ("google.protobuf.Value", "string_value"): 64 * KIB,
}
STRUCT_LIMITS: dict[tuple[str, str], int] = {
    ("legato.v1.TriggerRunRequest", "params"): 256 * KIB,
    ("legato.v1.PublishRequest", "payload"): 256 * KIB,
    ("legato.v1.Schedule", "params"): 256 * KIB,
    ("legato.v1.EventTrigger", "params"): 256 * KIB,
    ("legato.v1.FunctionStep", "args"): 256 * KIB,
}
SPEC_LIMIT = 1024 * KIB
"""Largest pipeline spec (encoded)."""
MAX_DEPTH = 32
"""Deepest nesting of messages (Struct values nest)."""
PREVIEW = 40


def quote(value: str, limit: int = PREVIEW) -> str:
    """``value`` quoted for an error message: at most ``limit`` characters of it."""
    if len(value) <= limit:
        return repr(value)
    return repr(value[:limit]) + f"… ({len(value)} characters)"


def check_request(request: Any) -> None:
    if not isinstance(request, Message):
        return
    size = request.ByteSize()
    if size > MAX_REQUEST_BYTES:
        raise InvalidArgument(
            f"the request is {size} bytes, over the limit of {MAX_REQUEST_BYTES} bytes "
            "(see docs/api.md#limits)",
            reason="REQUEST_TOO_LARGE",
            metadata={"limit_bytes": str(MAX_REQUEST_BYTES)},
        )
    problems: list[FieldViolation] = []
    spec = getattr(request, "spec", None)
    if isinstance(spec, Message) and request.HasField("spec"):
        spec_size = spec.ByteSize()
        if spec_size > SPEC_LIMIT:
            problems.append(
                FieldViolation("spec", f"{spec_size} bytes, over the limit of {SPEC_LIMIT} bytes")
            )
    _walk(request, "", problems, 0)
    if problems:
        first = problems[0]
        raise InvalidArgument(
            f"{first.field}: {first.description}"
            + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""),
            violations=problems[:20],
            reason="INVALID_REQUEST",
        )


def _walk(message: Message, path: str, problems: list[FieldViolation], depth: int) -> None:
    if depth > MAX_DEPTH:
        problems.append(FieldViolation(path or "request", f"nested deeper than {MAX_DEPTH}"))
        return
    owner = message.DESCRIPTOR.full_name
    for field, value in message.ListFields():
        where = f"{path}.{field.name}" if path else field.name
        if len(problems) >= 20:
            return
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            limit = STRUCT_LIMITS.get((owner, field.name))
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    entry = f"{where}[{quote(str(key))}]"
                    if isinstance(key, str):
                        _string(owner, field.name, key, entry, problems)
                    if isinstance(item, Message):
                        _walk(item, entry, problems, depth + 1)
                    elif isinstance(item, str):
                        _string(owner, field.name, item, entry, problems)
                continue
            items = value if _repeated(field) else [value]
            for index, item in enumerate(items):
                entry = f"{where}[{index}]" if _repeated(field) else where
                if limit is not None and item.ByteSize() > limit:
                    problems.append(
                        FieldViolation(
                            entry, f"{item.ByteSize()} bytes, over the limit of {limit} bytes"
                        )
                    )
                    continue
                _walk(item, entry, problems, depth + 1)
        elif field.type == FieldDescriptor.TYPE_STRING:
            items = value if _repeated(field) else [value]
            for index, item in enumerate(items):
                entry = f"{where}[{index}]" if _repeated(field) else where
                _string(owner, field.name, item, entry, problems)
        elif field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
            enum = field.enum_type
            known = enum.values_by_number
            items = value if _repeated(field) else [value]
            for index, item in enumerate(items):
                if item not in known:
                    entry = f"{where}[{index}]" if _repeated(field) else where
                    names = ", ".join(v.name for v in enum.values if v.number)
                    problems.append(
                        FieldViolation(
                            entry,
                            f"{item} is not a value of {enum.name}; use one of {names}",
                        )
                    )


def _string(owner: str, name: str, value: str, where: str, problems: list[FieldViolation]) -> None:
    limit = STRING_LIMITS.get((owner, name), MAX_STRING)
    if len(value) > limit:
        problems.append(
            FieldViolation(
                where,
                f"{len(value)} characters, over the limit of {limit} (starts {quote(value)})",
            )
        )
    elif "\x00" in value:
        problems.append(
            FieldViolation(where, f"{quote(value)} contains a NUL character (\\x00); remove it")
        )


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)
