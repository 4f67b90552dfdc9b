"""Enum values as users write them: lower case without the enum's prefix.

``OVERLAP_POLICY_SKIP`` is written ``skip``; the ``*_UNSPECIFIED`` value is never
written and never accepted.
"""

from __future__ import annotations

import re

from google.protobuf.descriptor import EnumDescriptor, EnumValueDescriptor

__all__ = ["enum_choices", "enum_number", "short_name"]

_UNSPECIFIED = "UNSPECIFIED"


def _prefix(enum: EnumDescriptor) -> str:
    """``OVERLAP_POLICY_`` for ``OverlapPolicy``: the part before ``UNSPECIFIED`` of the
    zero value, else the enum's name in upper snake case."""
    for value in enum.values:
        if value.name.endswith("_" + _UNSPECIFIED):
            return value.name[: -len(_UNSPECIFIED)]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def _is_unspecified(value: EnumValueDescriptor) -> bool:
    return value.name == _UNSPECIFIED or value.name.endswith("_" + _UNSPECIFIED)


def short_name(value: EnumValueDescriptor) -> str:
    """``skip`` for ``OVERLAP_POLICY_SKIP``."""
    prefix = _prefix(value.type)
    name = value.name[len(prefix) :] if value.name.startswith(prefix) else value.name
    return name.lower()


def enum_choices(enum: EnumDescriptor) -> list[str]:
    """The short names a user may write, in number order."""
    values = sorted(enum.values, key=lambda v: v.number)
    return [short_name(v) for v in values if not _is_unspecified(v)]


def enum_number(enum: EnumDescriptor, text: str) -> int | None:
    """The number of the value named ``text`` (short lower-case or full upper-case name),
    or None when there is no such value or it is the unspecified one."""
    for value in enum.values:
        if not _is_unspecified(value) and text in (short_name(value), value.name):
            return value.number
    return None
