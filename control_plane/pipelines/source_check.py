"""A spec file's text checked as a whole, for an editor: every problem at its line.

The text is read with the same loader as ``legato apply -f`` (:mod:`legato.spec`), so
the YAML a user types in the web UI means what it means in a file; what the loader
accepts is then validated like any spec, and each violation is placed at the line of
its field (or of the nearest enclosing field the text writes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from control_plane.errors import InvalidSpec
from control_plane.pipelines.registry import ValidSpec
from legato.spec.loader import load_spec_text
from legato.spec.problems import SpecFormatError
from legato.v1 import spec_pb2

__all__ = ["SourceCheck", "SourceProblem", "check_source"]

DEFAULT_FILENAME = "pipeline.yaml"


@dataclass(frozen=True)
class SourceProblem:
    line: int
    """1-based; 0 when the problem has no place in the text."""
    field: str
    message: str


@dataclass(frozen=True)
class SourceCheck:
    spec: spec_pb2.PipelineSpec | None
    """The canonical spec when valid; what could be read when only validation failed;
    None when the text could not be read."""
    content_hash: str = ""
    problems: list[SourceProblem] = field(default_factory=list)


def check_source(
    text: str,
    validate: Callable[[spec_pb2.PipelineSpec], ValidSpec],
    filename: str = "",
) -> SourceCheck:
    try:
        loaded = load_spec_text(text, filename or DEFAULT_FILENAME)
    except SpecFormatError as error:
        return SourceCheck(
            None,
            problems=[SourceProblem(p.line or 0, p.path, p.message) for p in error.problems],
        )
    try:
        valid = validate(loaded.spec)
    except InvalidSpec as error:
        problems = [
            SourceProblem(loaded.source_map.line_for(v.field) or 0, v.field, v.description)
            for v in error.violations
        ]
        problems.sort(key=lambda p: p.line)
        return SourceCheck(loaded.spec, problems=problems)
    return SourceCheck(valid.spec, valid.content_hash)
