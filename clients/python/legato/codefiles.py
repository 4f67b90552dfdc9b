"""Pipelines in Python files: ``legato apply -f pipelines.py`` imports the file and
applies every :class:`legato.Pipeline` it binds to a global name.

The file is imported as the module an agent would import it as (``pkg.pipelines`` for
``pkg/pipelines.py`` when ``pkg`` has an ``__init__.py``), with the folder above its
outermost package first on ``sys.path`` — so the ``module:function`` references of its
``@legato.step`` functions are the ones an agent with that folder on its ``PYTHONPATH``
imports. The import is isolated: ``sys.path`` is restored and the modules it loaded from
that folder are forgotten afterwards, so a second call reads the file anew. Code under
``if __name__ == "__main__":`` does not run.

Problems come back as :class:`legato.spec.SpecFormatError`, ``FILE:LINE: message`` as
for YAML files: a syntax error, an exception raised while importing (at the line of the
file it came through), a file with no pipeline, two pipelines with one name, and every
problem of each pipeline."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from legato.pipeline import Pipeline
from legato.spec import LoadedSpec, SpecFormatError, SpecProblem
from legato.steps import module_name_for
from legato.v1 import spec_pb2

__all__ = ["load_pipeline_file", "pipelines_in", "specs_from_file"]

PYTHON_SUFFIX = ".py"


def specs_from_file(path: str | os.PathLike[str]) -> list[spec_pb2.PipelineSpec]:
    """The ``PipelineSpec`` of every pipeline the Python file at ``path`` defines, in
    the order of the file; raises ``SpecFormatError`` naming the file and line."""
    return [loaded.spec for loaded in load_pipeline_file(path)]


def load_pipeline_file(path: str | os.PathLike[str]) -> list[LoadedSpec]:
    """Like :func:`specs_from_file`, each spec with the source map of the file its
    pipeline is written in (for the server's violations, as for a YAML file)."""
    filename = os.fspath(path)
    pipelines = pipelines_in(filename)
    loaded: list[LoadedSpec] = []
    problems: list[SpecProblem] = []
    for pipeline in pipelines:
        try:
            loaded.append(pipeline.to_loaded_spec())
        except SpecFormatError as error:
            problems.extend(_moved(error, filename))
    if problems:
        raise SpecFormatError(problems, filename)
    return loaded


def pipelines_in(filename: str) -> list[Pipeline]:
    """The pipelines the file binds to global names (directly, or in a list, tuple or
    dict), once each, in the order of its globals."""
    module = _import(filename)
    found: dict[int, Pipeline] = {}
    for value in vars(module).values():
        for pipeline in _pipelines(value):
            found.setdefault(id(pipeline), pipeline)
    pipelines = list(found.values())
    if not pipelines:
        message = (
            "defines no pipeline; make one with legato.Pipeline(name=...) and bind it to a "
            "name at the top level of the file"
        )
        raise SpecFormatError([SpecProblem("", None, message)], filename)
    first: dict[str, Pipeline] = {}
    problems: list[SpecProblem] = []
    for pipeline in pipelines:
        other = first.setdefault(pipeline.name, pipeline)
        if other is not pipeline:
            line = pipeline.location.line if _same_file(pipeline, filename) else None
            message = (
                f"two pipelines are named {pipeline.name!r} (the other at {other.location}); "
                "give each its own name"
            )
            problems.append(SpecProblem("name", line, message))
    if problems:
        raise SpecFormatError(problems, filename)
    return pipelines


def _pipelines(value: Any) -> Iterator[Pipeline]:
    if isinstance(value, Pipeline):
        yield value
    elif isinstance(value, list | tuple):
        yield from (item for item in value if isinstance(item, Pipeline))
    elif isinstance(value, dict):
        yield from (item for item in value.values() if isinstance(item, Pipeline))


def _same_file(pipeline: Pipeline, filename: str) -> bool:
    return _resolved(pipeline.location.filename) == _resolved(filename)


def _resolved(filename: str) -> str:
    try:
        return str(Path(filename).resolve())
    except OSError:
        return filename


def _moved(error: SpecFormatError, filename: str) -> list[SpecProblem]:
    """``error``'s problems as problems of ``filename``: those of another file say where."""
    if _resolved(error.filename) == _resolved(filename):
        return error.problems
    return [
        SpecProblem(
            p.path,
            None,
            f"{p.message} (at {error.filename}:{p.line})" if p.line else p.message,
        )
        for p in error.problems
    ]


def _refuse(filename: str, message: str, line: int | None = None) -> SpecFormatError:
    return SpecFormatError([SpecProblem("", line, message)], filename)


def _import(filename: str) -> ModuleType:
    """Import the file as its module name, isolated (see the module's docstring)."""
    path = Path(filename)
    if not path.exists():
        raise _refuse(filename, "no such file; check the path")
    if path.is_dir():
        raise _refuse(filename, "is a directory; pass the path of a Python file (.py)")
    if path.suffix != PYTHON_SUFFIX:
        raise _refuse(filename, f"is not a Python file ({PYTHON_SUFFIX}); YAML is read as a spec")
    name, root = module_name_for(path)
    if not all(part.isidentifier() for part in name.split(".")):
        raise _refuse(
            filename,
            f"cannot be imported as {name!r}: rename the file (and its package folders) to "
            "names made of letters, digits and _",
        )
    top = name.split(".")[0]
    taken = sys.modules.get(top)
    if taken is not None and not _inside(taken, root):
        where = getattr(taken, "__file__", None) or "Python itself"
        raise _refuse(
            filename,
            f"its module name {top!r} is taken by the module already loaded from {where}; "
            "rename the file (or its package folder)",
        )
    before = set(sys.modules)
    saved_path = list(sys.path)
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(name)
    except SyntaxError as error:
        line = error.lineno if _resolved(error.filename or "") == _resolved(filename) else None
        where = "" if line is not None else f" (in {error.filename}:{error.lineno})"
        raise _refuse(filename, f"invalid Python: {error.msg}{where}", line) from None
    except SpecFormatError:
        raise
    except (Exception, SystemExit) as error:
        line, elsewhere = _line_of(error, filename)
        message = f"importing it raised {type(error).__name__}: {error}{elsewhere}"
        raise _refuse(filename, message, line) from None
    finally:
        sys.path[:] = saved_path
        for module_name in set(sys.modules) - before:
            if _inside(sys.modules[module_name], root):
                del sys.modules[module_name]


def _inside(module: ModuleType, root: Path) -> bool:
    """Whether ``module`` was loaded from under ``root``."""
    location = getattr(module, "__file__", None)
    paths = [location] if location else list(getattr(module, "__path__", []) or [])
    return any(_resolved(str(p)).startswith(str(root) + os.sep) for p in paths)


def _line_of(error: BaseException, filename: str) -> tuple[int | None, str]:
    """The line of ``filename`` the exception came through (the innermost), and where it
    was raised when that is another file."""
    frames = traceback.extract_tb(error.__traceback__)
    target = _resolved(filename)
    line = None
    for frame in frames:
        if _resolved(frame.filename) == target:
            line = frame.lineno
    last = frames[-1] if frames else None
    elsewhere = ""
    if last is not None and _resolved(last.filename) != target:
        elsewhere = f" (raised at {last.filename}:{last.lineno})"
    return line, elsewhere
