"""Field paths into a pipeline spec, and the source map from paths to lines.

A field path names one place in a :class:`~legato.v1.spec_pb2.PipelineSpec` the way
the loader and the control plane's validator both report it:

* proto field names joined by dots: ``schedule.cron``;
* list items as ``[i]``, 0-based: ``steps[2].needs[0]``;
* map keys as ``.key`` when the key matches ``^[A-Za-z_][A-Za-z0-9_-]*$``, else as a
  JSON string in brackets: ``labels["team.name"]``.

The empty path ``''`` names the whole document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

__all__ = ["PathPart", "SourceMap", "format_path", "parse_path"]

PathPart = str | int
"""One step of a field path: a field name or map key (str), or a list index (int)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INDEX = re.compile(r"\[(\d+)\]")
_DECODER = json.JSONDecoder()


def format_path(parts: Sequence[PathPart]) -> str:
    """The path text of ``parts``: ``["steps", 2, "needs", 0]`` → ``steps[2].needs[0]``."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, int):
            if part < 0:
                raise ValueError(f"a list index in a field path is >= 0, got {part}")
            out.append(f"[{part}]")
        elif _NAME.fullmatch(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out)


def parse_path(path: str) -> list[PathPart]:
    """The parts of ``path``, the inverse of :func:`format_path`.

    Raises ``ValueError`` naming the position of the first character that does not fit
    the syntax.
    """
    parts: list[PathPart] = []
    pos = 0
    while pos < len(path):
        if path[pos] == "[":
            part, pos = _parse_bracket(path, pos)
        else:
            if parts:
                if path[pos] != ".":
                    raise _syntax_error(path, pos, "expected '.' or '['")
                pos += 1
            match = _NAME.match(path, pos)
            if match is None:
                raise _syntax_error(path, pos, "expected a field name")
            part, pos = match.group(), match.end()
        parts.append(part)
    return parts


def _parse_bracket(path: str, pos: int) -> tuple[PathPart, int]:
    """The index or quoted key of the ``[...]`` at ``pos``, and the position after it."""
    index = _INDEX.match(path, pos)
    if index is not None:
        return int(index.group(1)), index.end()
    if not path.startswith('["', pos):
        raise _syntax_error(path, pos, 'expected [<index>] or ["<key>"]')
    try:
        key, end = _DECODER.raw_decode(path, pos + 1)
    except json.JSONDecodeError:
        raise _syntax_error(path, pos + 1, "expected a JSON string") from None
    if not path.startswith("]", end):
        raise _syntax_error(path, end, "expected ']'")
    return str(key), end + 1


def _syntax_error(path: str, pos: int, expected: str) -> ValueError:
    return ValueError(f"invalid field path {path!r} at position {pos}: {expected}")


class SourceMap:
    """1-based source lines of the field paths of one loaded document.

    A field's line is the line of its key; a list item's line is the line the item
    starts on. Paths are compared by their parts, so ``labels.team`` and
    ``labels["team"]`` are the same path.
    """

    def __init__(self, lines: Mapping[str, int] | None = None) -> None:
        self._lines: dict[tuple[PathPart, ...], int] = {
            tuple(parse_path(path)): line for path, line in (lines or {}).items()
        }

    def line_for(self, path: str) -> int | None:
        """The line of ``path``, else of its nearest ancestor that has one, else None.

        A path that has no node of its own (``steps[2].kind``, a default the user did not
        write, a path that does not parse) falls back to the closest enclosing field or
        item written in the document.
        """
        try:
            parts = tuple(parse_path(path))
        except ValueError:
            return None
        for end in range(len(parts), 0, -1):
            line = self._lines.get(parts[:end])
            if line is not None:
                return line
        return None

    def __len__(self) -> int:
        return len(self._lines)

    def __repr__(self) -> str:
        return f"SourceMap({len(self._lines)} paths)"
