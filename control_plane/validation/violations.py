"""What validation reports, and the field-path syntax that points into the spec.

A field path is written the way the CLI maps it back to a line of the YAML file:
proto field names joined by dots, list items as ``[i]`` (0-based), and map keys as ``.key``
when they match ``^[A-Za-z_][A-Za-z0-9_-]*$``, otherwise as ``["key"]`` (JSON-quoted):
``steps[2].needs[0]``, ``params.days.default``, ``labels["app.kubernetes.io/name"]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = ["Violation", "index", "join", "map_key"]

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Violation:
    """One problem in a spec: where it is and what to do about it."""

    field: str
    description: str


def join(base: str, name: str) -> str:
    """The path of field ``name`` inside ``base`` (``""`` for the spec itself)."""
    return f"{base}.{name}" if base else name


def index(base: str, position: int) -> str:
    """The path of list item ``position`` of ``base``."""
    return f"{base}[{position}]"


def map_key(base: str, name: str) -> str:
    """The path of the entry ``name`` of the map at ``base``."""
    if _PLAIN_KEY.fullmatch(name):
        return f"{base}.{name}"
    return f"{base}[{json.dumps(name, ensure_ascii=False)}]"
