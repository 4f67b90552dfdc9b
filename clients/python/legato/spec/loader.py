"""Spec files (YAML or JSON) → :class:`~legato.v1.spec_pb2.PipelineSpec`, with the
line of every field and every problem found in one pass."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from yaml.nodes import MappingNode

from legato.spec.decode import Decoder
from legato.spec.nodes import YamlSyntaxError, compose, describe, line_of
from legato.spec.paths import SourceMap
from legato.spec.problems import SpecFormatError, SpecProblem
from legato.spec.report import Report
from legato.v1 import spec_pb2

__all__ = ["LoadedSpec", "load_spec_file", "load_spec_text"]

STDIN = "-"
"""The path :func:`load_spec_file` reads standard input for."""


@dataclass(frozen=True)
class LoadedSpec:
    """A loaded spec and where its fields were written."""

    spec: spec_pb2.PipelineSpec
    source_map: SourceMap
    filename: str


def _is_json(text: str, filename: str) -> bool:
    return filename.lower().endswith(".json") or text.lstrip().startswith("{")


def _untab(text: str) -> str:
    """``text`` with the tabs between JSON tokens turned into spaces.

    JSON is YAML but for whitespace: PyYAML refuses a tab wherever a token may start.
    Tabs inside double-quoted strings are kept; lines and columns do not move.
    """
    out = list(text)
    in_string = escaped = False
    for index, char in enumerate(out):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "\t":
            out[index] = " "
    return "".join(out)


def load_spec_text(text: str, filename: str = "<stdin>") -> LoadedSpec:
    """Read the spec in ``text`` (YAML, or JSON: a ``.json`` file or text starting
    with ``{``). ``filename`` only names the source in problems.

    Raises :class:`SpecFormatError` with every problem found, sorted by line.
    """
    if _is_json(text, filename):
        text = _untab(text)
    try:
        root = compose(text)
    except YamlSyntaxError as exc:
        raise SpecFormatError([SpecProblem("", exc.line, exc.message)], filename) from None
    if root is None:
        message = "the document is empty; a pipeline spec needs a name and steps"
        raise SpecFormatError([SpecProblem("", None, message)], filename)
    if not isinstance(root, MappingNode):
        message = f"the top level must be a mapping of pipeline fields, got {describe(root)}"
        raise SpecFormatError([SpecProblem("", line_of(root), message)], filename)
    report = Report()
    spec = spec_pb2.PipelineSpec()
    Decoder(report).message(root, spec, ())
    if report.problems:
        raise SpecFormatError(report.problems, filename)
    return LoadedSpec(spec=spec, source_map=SourceMap(report.lines), filename=filename)


def load_spec_file(path: str | os.PathLike[str]) -> LoadedSpec:
    """Read the spec file at ``path``; ``-`` reads standard input.

    Raises :class:`SpecFormatError` when the file cannot be read or holds a bad spec.
    """
    filename = os.fspath(path)
    if filename == STDIN:
        return load_spec_text(sys.stdin.read(), "<stdin>")
    try:
        with open(filename, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        message = "no such file; check the path, or pass - to read the spec from standard input"
        raise SpecFormatError([SpecProblem("", None, message)], filename) from None
    except IsADirectoryError:
        message = "is a directory; pass the path of a spec file (.yaml, .yml or .json)"
        raise SpecFormatError([SpecProblem("", None, message)], filename) from None
    except OSError as exc:
        message = f"cannot be read: {exc.strerror or exc}"
        raise SpecFormatError([SpecProblem("", None, message)], filename) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        message = f"is not UTF-8 text (byte {exc.start}); save the file as UTF-8"
        raise SpecFormatError([SpecProblem("", line, message)], filename) from None
    return load_spec_text(text, filename)
