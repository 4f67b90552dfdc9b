"""What one pass of the loader collects: the problems it found and the line of every
field path it read."""

from __future__ import annotations

from collections.abc import Sequence

from legato.spec.paths import PathPart, format_path
from legato.spec.problems import SpecProblem

__all__ = ["Path", "Report"]

Path = tuple[PathPart, ...]


class Report:
    """Problems (deduplicated, in the order found) and the source lines of paths."""

    def __init__(self) -> None:
        self.problems: list[SpecProblem] = []
        self.lines: dict[str, int] = {}
        self._seen: set[tuple[int | None, str]] = set()

    def problem(self, path: Sequence[PathPart], line: int | None, message: str) -> None:
        """Record one problem. The same message on the same line is kept once: a value
        shared through a YAML alias is reported where it is written, not per use."""
        if (line, message) in self._seen:
            return
        self._seen.add((line, message))
        self.problems.append(SpecProblem(format_path(path), line, message))

    def record(self, path: Sequence[PathPart], line: int) -> None:
        """Remember that ``path`` is written on ``line``."""
        self.lines[format_path(path)] = line
