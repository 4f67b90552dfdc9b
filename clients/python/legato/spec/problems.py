"""What is wrong with a spec file: one :class:`SpecProblem` per mistake, all of them
raised together in one :class:`SpecFormatError`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["SpecFormatError", "SpecProblem"]


@dataclass(frozen=True)
class SpecProblem:
    """One mistake in a spec document.

    ``path`` is the field path (``''`` for the whole document), ``line`` the 1-based
    line to look at (None when there is none), ``message`` says what is wrong with the
    value and what to write instead.
    """

    path: str
    line: int | None
    message: str

    def format(self, filename: str) -> str:
        """``FILE:LINE: path: message``, leaving out the parts that are unknown."""
        where = f"{filename}:{self.line}" if self.line is not None else filename
        what = f"{self.path}: {self.message}" if self.path else self.message
        return f"{where}: {what}"


def _by_line(problem: SpecProblem) -> tuple[int, int]:
    """Document-wide problems (no line) first, then in the order of the file."""
    return (0, 0) if problem.line is None else (1, problem.line)


class SpecFormatError(Exception):
    """A spec document that cannot be loaded: YAML syntax, unknown fields, wrong types.

    ``problems`` holds every problem found, sorted by line; ``str()`` gives one
    ``FILE:LINE: path: message`` line per problem.
    """

    def __init__(self, problems: Iterable[SpecProblem], filename: str) -> None:
        self.problems: list[SpecProblem] = sorted(problems, key=_by_line)
        self.filename = filename
        super().__init__("\n".join(p.format(filename) for p in self.problems))

    def __reduce__(self) -> tuple[type[SpecFormatError], tuple[list[SpecProblem], str]]:
        return (SpecFormatError, (self.problems, self.filename))
