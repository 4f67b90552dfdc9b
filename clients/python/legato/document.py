"""A pipeline written in Python → the same ``PipelineSpec`` its YAML gives.

``legato.Pipeline`` and its parts build a *document*: the dicts, lists and scalars a YAML
file of the pipeline would hold. This module turns it into YAML nodes and hands them to
the spec loader's own decoder (:class:`legato.spec.decode.Decoder`), so a pipeline
written in Python and one written in YAML become equal messages by construction, and a
mistake gets the same message in both (``unknown field 'timout' — did you mean
'timeout'?``, ``'5 minutes' is not a duration; ...``).

Each node carries where in Python its part was written (the line of the ``Pipeline(...)``
call, of the ``@step`` decorator, of the ``Retry(...)``): problems and the source map of
the result point there, as they point at lines of a YAML file."""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import itertools
import os
import sys
import tokenize
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from yaml import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from legato.spec.decode import Decoder
from legato.spec.loader import LoadedSpec
from legato.spec.paths import PathPart, SourceMap, format_path
from legato.spec.problems import SpecFormatError, SpecProblem
from legato.spec.report import Report
from legato.spec.units import format_duration
from legato.v1 import spec_pb2

__all__ = [
    "Located",
    "Location",
    "Part",
    "Problems",
    "argument_locations",
    "build_spec",
    "caller_location",
]

_PACKAGE = str(Path(__file__).resolve().parent) + os.sep
_TAG = "tag:yaml.org,2002:"


Span = tuple[int, int, int, int]
"""Start line, end line, start column, end column of a call expression."""


@dataclass(frozen=True)
class Location:
    """A line of a Python file; ``span`` is the whole call written there, when known."""

    filename: str
    line: int
    span: Span | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}"


UNKNOWN = Location("<unknown>", 0)


def caller_location() -> Location:
    """Where the code that called into this package is: the innermost frame that is not
    legato's own (nor a dataclass's generated ``__init__``), with the span of the call it
    is making."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE) and filename != "<string>":
            return Location(filename, frame.f_lineno or 0, _call_span(frame))
        frame = frame.f_back
    return UNKNOWN


def _call_span(frame: FrameType) -> Span | None:
    """The source span of the instruction ``frame`` is running (a call, here)."""
    positions = frame.f_code.co_positions()
    try:
        start, end, column, end_column = next(itertools.islice(positions, frame.f_lasti // 2, None))
    except (StopIteration, ValueError):
        return None
    if start is None or end is None or column is None or end_column is None:
        return None
    return start, end, column, end_column


@functools.lru_cache(maxsize=64)
def _calls(filename: str, size: int, mtime: float) -> dict[Span, ast.Call]:
    """The calls of a source file, by span (``size`` and ``mtime`` key the cache)."""
    try:
        with tokenize.open(filename) as source:
            tree = ast.parse(source.read())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return {}
    found: dict[Span, ast.Call] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.end_lineno is not None:
            span = (node.lineno, node.end_lineno, node.col_offset, node.end_col_offset or 0)
            found[span] = node
    return found


def argument_locations(location: Location, positional: Sequence[str] = ()) -> dict[str, Location]:
    """The line of each argument of the call at ``location``, by keyword (positional ones
    by the names in ``positional``); empty when its source cannot be read."""
    if location.span is None:
        return {}
    try:
        stat = os.stat(location.filename)
    except OSError:
        return {}
    call = _calls(location.filename, stat.st_size, stat.st_mtime).get(location.span)
    if call is None:
        return {}
    found = {
        name: Location(location.filename, arg.lineno)
        for name, arg in zip(positional, call.args, strict=False)
    }
    for keyword in call.keywords:
        if keyword.arg is not None:
            found[keyword.arg] = Location(location.filename, keyword.lineno)
    return found


class Located(dict[str, Any]):
    """A mapping of the document, written at ``location``; ``fields`` has the lines of
    those of its entries written on lines of their own (the keyword arguments of a call)."""

    def __init__(
        self,
        location: Location,
        *args: Any,
        fields: Mapping[str, Location] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.location = location
        self.fields = dict(fields or {})


class Part:
    """A piece of a pipeline written in Python that becomes a mapping of the document.
    Subclasses record where they were made, and give their fields."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_location", caller_location())

    @property
    def location(self) -> Location:
        found: Location = getattr(self, "_location", UNKNOWN)
        return found

    def document(self, problems: Problems) -> Located:
        """The fields that were given (not None), by their spec names."""
        declared = dataclasses.fields(self)  # type: ignore[arg-type]
        values = {f.name: getattr(self, f.name) for f in declared}
        positional = [f.name for f in declared if f.init and not f.kw_only]
        return Located(
            self.location,
            {k: v for k, v in values.items() if v is not None},
            fields=argument_locations(self.location, positional),
        )


class Problems:
    """Problems found while building the document, before the decoder sees it."""

    def __init__(self) -> None:
        self.found: list[tuple[tuple[PathPart, ...], Location, str]] = []

    def add(self, path: tuple[PathPart, ...], location: Location, message: str) -> None:
        self.found.append((path, location, message))


class _Builder:
    """Document → YAML nodes, each marked with a pseudo line: the index of its location
    (the decoder reports lines; they are mapped back to locations afterwards)."""

    def __init__(self, problems: Problems) -> None:
        self.locations: list[Location] = []
        self._index: dict[Location, int] = {}
        self.problems = problems

    def line(self, location: Location) -> int:
        """The pseudo line of ``location`` (1-based)."""
        if location not in self._index:
            self.locations.append(location)
            self._index[location] = len(self.locations)
        return self._index[location]

    def _mark(self, location: Location) -> Mark:
        return Mark("<python>", 0, self.line(location) - 1, 0, None, 0)

    def node(self, value: Any, path: tuple[PathPart, ...], location: Location) -> Node:
        if isinstance(value, Part):
            value = value.document(self.problems)
        if isinstance(value, Located):
            location = value.location
        mark = self._mark(location)
        if isinstance(value, Mapping):
            lines = value.fields if isinstance(value, Located) else {}
            pairs = []
            for key, item in value.items():
                child = (*path, str(key))
                at = lines.get(key, location)
                pairs.append((self._scalar(key, child, at), self.node(item, child, at)))
            return MappingNode(_TAG + "map", pairs, mark, mark)
        if isinstance(value, list | tuple):
            items = [self.node(item, (*path, i), location) for i, item in enumerate(value)]
            return SequenceNode(_TAG + "seq", items, mark, mark)
        return self._scalar(value, path, location)

    def _scalar(self, value: Any, path: tuple[PathPart, ...], location: Location) -> ScalarNode:
        mark = self._mark(location)
        tag, text = _scalar_text(value)
        if tag is None:
            self.problems.add(
                path,
                location,
                f"{type(value).__name__} is not a value a pipeline takes; use str, int, float, "
                "bool, None, a date, a timedelta (for a duration), or lists and dicts of them",
            )
            tag, text = "null", "null"
        return ScalarNode(_TAG + tag, text, mark, mark)


def _scalar_text(value: Any) -> tuple[str | None, str]:
    """The YAML tag and text of a scalar, as a file would write it."""
    from legato.pipeline import Pipeline
    from legato.steps import Step

    if isinstance(value, Step | Pipeline):
        return "str", value.name
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "null", "null"
    if isinstance(value, bool):
        return "bool", "true" if value else "false"
    if isinstance(value, int):
        return "int", str(value)
    if isinstance(value, float):
        return "float", repr(value)
    if isinstance(value, str):
        return "str", value
    if isinstance(value, timedelta):
        return "str", format_duration(value.total_seconds())
    if isinstance(value, date):  # datetime too: ISO text, as YAML's dates are read
        return "str", value.isoformat()
    return None, ""


def build_spec(document: Located, problems: Problems) -> LoadedSpec:
    """The ``PipelineSpec`` of ``document``, with a source map into the file the document
    was written in; raises :class:`SpecFormatError` with every problem found (those of
    ``problems`` first found while building the document)."""
    builder = _Builder(problems)
    root = builder.node(document, (), document.location)
    report = Report()
    spec = spec_pb2.PipelineSpec()
    Decoder(report).message(root, spec, ())
    home = document.location.filename
    found = [_problem(path, location, message, home) for path, location, message in problems.found]
    for problem in report.problems:
        location = builder.locations[problem.line - 1] if problem.line else document.location
        found.append(_problem(problem.path, location, problem.message, home))
    if found:
        raise SpecFormatError(found, home)
    lines = {
        path: builder.locations[line - 1].line
        for path, line in report.lines.items()
        if builder.locations[line - 1].filename == home
    }
    return LoadedSpec(spec=spec, source_map=SourceMap(lines), filename=home)


def _problem(
    path: tuple[PathPart, ...] | str, location: Location, message: str, home: str
) -> SpecProblem:
    text = path if isinstance(path, str) else format_path(path)
    if location.filename == home:
        return SpecProblem(text, location.line or None, message)
    return SpecProblem(text, None, f"{message} (written at {location})")
