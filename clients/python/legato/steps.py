"""Steps written in Python: one builder per step kind, and decorators for Python
functions.

    @legato.step(timeout="10m")                 # a function step: the agent imports
    def extract(params): ...                    # this module and calls extract(...)

    @legato.transform(needs=[extract])          # a transform step: the function's source
    def clean(data):                            # is the step's code, run on the agent
        return data[data["amount"] > 0]

    totals = legato.transform("totals", needs=[clean], code="result = data.sum()")
    rows = legato.query("rows", connection="warehouse", sql="SELECT * FROM orders")
    load = legato.export("load", needs=[clean], table=legato.TableExport("warehouse", "orders"))
    child = legato.trigger("report", pipeline="daily-report", wait=True)

Every builder takes the step options of the spec (:class:`StepOptions`); ``needs`` takes
steps or their names. A decorated function stays callable as before."""

from __future__ import annotations

import ast
import builtins
import dis
import inspect
import sys
import textwrap
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, ParamSpec, TypedDict, TypeVar, Unpack, overload

from legato.document import Located, Problems, argument_locations, caller_location
from legato.options import (
    Duration,
    Memory,
    Retry,
    SlackExport,
    StepExpectations,
    TableExport,
    WebhookExport,
    as_list,
)

__all__ = [
    "CallableStep",
    "FunctionStep",
    "Step",
    "StepOptions",
    "TransformFunctionStep",
    "export",
    "function",
    "module_name_for",
    "query",
    "step",
    "transform",
    "trigger",
]

P = ParamSpec("P")
R = TypeVar("R")

FUTURE = "from __future__ import annotations"
TRANSFORM_NAMES = ("data", "inputs", "params", "pd")
"""What a transform's code finds: the upstream table, all upstreams, the run's params,
pandas."""


class StepOptions(TypedDict, total=False):
    """The options every step takes, as in the spec (docs/spec.md)."""

    description: str
    needs: Step | str | Sequence[Step | str]
    when: str
    trigger_rule: Literal["all_success", "all_done", "none_failed", "one_success"]
    agent_selector: Mapping[str, str]
    retry: Retry | Mapping[str, Any] | int
    timeout: Duration
    memory: Memory
    isolation: Literal["process", "pooled"]
    expect: StepExpectations | Mapping[str, Any]
    inputs: str | Sequence[str]
    """Datasets a function or transform step reads (``warehouse.public.orders``), for
    lineage."""
    outputs: str | Sequence[str]
    """Datasets a function or transform step writes."""


class Step:
    """One step of a pipeline: its ``name``, its ``kind`` (query, transform, function,
    export, trigger) and the kind's fields; add it to a ``legato.Pipeline``."""

    def __init__(
        self,
        name: str,
        kind: str,
        config: Mapping[str, Any],
        options: StepOptions,
        *,
        positional: Sequence[str] = ("name",),
    ) -> None:
        self.name = name
        self.kind = kind
        self.config = dict(config)
        self.options = options
        self.location = caller_location()
        self._arguments = argument_locations(self.location, positional)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, kind={self.kind!r})"

    @property
    def needs(self) -> list[str]:
        """The names of the steps this one needs."""
        needed = as_list(self.options.get("needs")) or []
        return [item.name if isinstance(item, Step) else str(item) for item in needed]

    def kind_document(self, problems: Problems, path: tuple[str | int, ...]) -> Located:
        """The fields of the step's kind (``{connection: ..., sql: ...}`` for a query)."""
        return Located(
            self.location,
            {k: v for k, v in self.config.items() if v is not None},
            fields={k: v for k, v in self._arguments.items() if k in self.config},
        )

    def document(self, problems: Problems, path: tuple[str | int, ...]) -> Located:
        lines = {k: v for k, v in self._arguments.items() if k not in self.config}
        located = Located(self.location, {"name": self.name}, fields=lines)
        located[self.kind] = self.kind_document(problems, (*path, self.kind))
        for key, value in self.options.items():
            if value is None:
                continue
            if key == "needs":
                value = self.needs
            elif key in ("inputs", "outputs"):
                value = [str(item) for item in as_list(value) or []]
            elif key == "retry" and isinstance(value, int) and not isinstance(value, bool):
                value = {"max_retries": value}
            located[key] = value
        return located


class CallableStep(Step, Generic[P, R]):
    """A step made from a Python function; calling it calls the function."""

    def __init__(
        self, fn: Callable[P, R], name: str, kind: str, options: StepOptions, **config: Any
    ) -> None:
        super().__init__(name, kind, config, options)
        self.fn = fn
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__qualname__ = getattr(fn, "__qualname__", name)
        self.__module__ = getattr(fn, "__module__", __name__)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)


class FunctionStep(CallableStep[P, R]):
    """A ``function`` step calling a Python function by ``module:function``: the agent
    imports the module (so it must be importable there) and calls the function with the
    upstream data and params its parameters name, and the step's ``args``."""

    def kind_document(self, problems: Problems, path: tuple[str | int, ...]) -> Any:
        located = super().kind_document(problems, path)
        reference, problem = function_reference(self.fn)
        if problem:
            problems.add((*path, "function"), self.location, problem)
        located["function"] = reference
        return located


class TransformFunctionStep(CallableStep[P, R]):
    """A ``transform`` step whose code is a Python function's source: the agent runs the
    function's definition and binds ``result`` to what it returns. Its parameters are
    ``data``, ``inputs``, ``params``, ``pd`` or the name of a step it needs (that step's
    table); it may use builtins and ``pd``, and import what else it needs inside."""

    def kind_document(self, problems: Problems, path: tuple[str | int, ...]) -> Any:
        code, problem = transform_code(self.fn, self.needs)
        if problem:
            problems.add((*path, "code"), self.location, problem)
        return Located(self.location, {"code": code})


# -- function references ------------------------------------------------------------------


def module_name_for(path: Path) -> tuple[str, Path]:
    """The module name an import finds ``path`` by, and the folder that must be on
    ``sys.path`` (the agent's ``PYTHONPATH``) for it: the parent of its outermost
    package (folders with an ``__init__.py``)."""
    path = path.resolve()
    parts = [] if path.stem == "__init__" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts), folder


def _main_module_name() -> str | None:
    """The name ``__main__`` is importable by: ``python -m pkg.mod`` gives it, a script
    ``python path/mod.py`` its file's module name."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name)
    filename = getattr(main, "__file__", None)
    if not filename:
        return None
    return module_name_for(Path(filename))[0] or None


def function_reference(fn: Callable[..., Any]) -> tuple[str, str]:
    """``module:qualname`` of ``fn`` and, when an agent cannot import it by that, why."""
    module = getattr(fn, "__module__", None) or ""
    qualname = getattr(fn, "__qualname__", "") or getattr(fn, "__name__", "")
    reference = f"{module}:{qualname}"
    if "<lambda>" in qualname:
        return reference, "a lambda has no name an agent can import; use a def at module level"
    if "<locals>" in qualname:
        return reference, (
            f"{qualname.replace('.<locals>', '')} is defined inside a function, where an agent "
            "cannot import it; define it at the top level of a module"
        )
    if module == "__main__":
        found = _main_module_name()
        if found is None:
            return reference, (
                f"{qualname} is defined in an interactive session; define it in a module the "
                "agent can import"
            )
        reference = f"{found}:{qualname}"
    return reference, ""


# -- transforms from functions ------------------------------------------------------------


def _globals_read(code: types.CodeType) -> tuple[set[str], set[str]]:
    """The global names ``code`` (and the functions and comprehensions in it) reads, and
    those it assigns."""
    read: set[str] = set()
    written: set[str] = set()
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            read.add(str(instruction.argval))
        elif instruction.opname == "STORE_GLOBAL":
            written.add(str(instruction.argval))
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            inner_read, inner_written = _globals_read(constant)
            read |= inner_read
            written |= inner_written
    return read, written


def _source(fn: Callable[..., Any]) -> tuple[str, ast.FunctionDef | None, str]:
    """The function's source without its decorators, its node, or why there is none."""
    name = getattr(fn, "__name__", repr(fn))
    try:
        text = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return (
            "",
            None,
            (
                f"the source of {name} cannot be read (defined in an interactive session?); "
                "pass the code as a string: transform(name, code=...)"
            ),
        )
    tree = ast.parse(text)
    node = tree.body[0] if tree.body else None
    if isinstance(node, ast.AsyncFunctionDef):
        return "", None, f"{name} is async; a transform's code runs synchronously"
    if not isinstance(node, ast.FunctionDef):
        return "", None, f"{name} is not a function written with def"
    lines = text.splitlines()
    return "\n".join(lines[node.lineno - 1 : node.end_lineno]), node, ""


def transform_code(fn: Callable[..., Any], needs: Sequence[str]) -> tuple[str, str]:
    """The code of a transform made from ``fn``, or why it cannot be made."""
    source, node, problem = _source(fn)
    if node is None:
        return "", problem
    code: types.CodeType = fn.__code__
    if code.co_freevars:
        return "", (
            f"{fn.__name__} uses {', '.join(code.co_freevars)} of the function it is defined "
            "in; only its own code goes to the agent, so pass values through params"
        )
    read, written = _globals_read(code)
    for default in [*node.args.defaults, *node.args.kw_defaults]:
        read |= {n.id for n in ast.walk(default) if isinstance(n, ast.Name)} if default else set()
    known = set(dir(builtins)) | set(TRANSFORM_NAMES) | written | {fn.__name__}
    missing = sorted(read - known)
    if missing:
        return "", (
            f"{fn.__name__} uses {', '.join(repr(n) for n in missing)} from its module, but only "
            "the function's own code goes to the agent: import inside the function, or make "
            "it a function step (@legato.step) so the agent imports its module"
        )
    arguments = []
    for parameter in inspect.signature(fn).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            return "", f"{fn.__name__} takes *{parameter.name}; name each parameter"
        if parameter.name in TRANSFORM_NAMES:
            value = parameter.name
        elif parameter.name in needs:
            value = f"inputs[{parameter.name!r}]"
        elif parameter.default is not parameter.empty:
            continue
        else:
            offer = ", ".join([*TRANSFORM_NAMES, *needs])
            return "", (
                f"parameter {parameter.name!r} of {fn.__name__} is not one a transform can "
                f"pass; name one of {offer} (a step in needs gives its table)"
            )
        if parameter.kind is parameter.POSITIONAL_ONLY:
            arguments.append(value)
        else:
            arguments.append(f"{parameter.name}={value}")
    # Annotations stay unevaluated: the names they use are the module's, not the agent's.
    code_text = f"{FUTURE}\n\n{source}\n\n\nresult = {fn.__name__}({', '.join(arguments)})\n"
    return code_text, ""


# -- builders -----------------------------------------------------------------------------


def query(
    name: str,
    /,
    *,
    connection: str,
    sql: str,
    parameters: Mapping[str, str] | None = None,
    **options: Unpack[StepOptions],
) -> Step:
    """A ``query`` step: ``sql`` on a connection an agent holds; its rows are the table."""
    config = {"connection": connection, "sql": sql, "parameters": parameters}
    return Step(name, "query", config, options)


def function(
    name: str,
    reference: str | Callable[..., Any],
    /,
    *,
    args: Mapping[str, Any] | None = None,
    **options: Unpack[StepOptions],
) -> Step:
    """A ``function`` step calling ``"package.module:function"`` (or a function given
    itself, by its module and name) on the agent, with ``args`` as keyword arguments."""
    if callable(reference):
        return FunctionStep(reference, name, "function", options, args=args)
    config = {"function": reference, "args": args}
    return Step(name, "function", config, options, positional=("name", "function"))


@overload
def step(fn: Callable[P, R], /) -> FunctionStep[P, R]: ...
@overload
def step(
    *,
    name: str | None = None,
    args: Mapping[str, Any] | None = None,
    **options: Unpack[StepOptions],
) -> Callable[[Callable[P, R]], FunctionStep[P, R]]: ...
def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    args: Mapping[str, Any] | None = None,
    **options: Unpack[StepOptions],
) -> FunctionStep[P, R] | Callable[[Callable[P, R]], FunctionStep[P, R]]:
    """Make a Python function a ``function`` step named after it (or ``name``). The step
    references it as ``module:function``, so define it at the top level of a module the
    agent can import; ``args`` are extra keyword arguments."""

    def decorate(target: Callable[P, R]) -> FunctionStep[P, R]:
        return FunctionStep(target, name or target.__name__, "function", options, args=args)

    return decorate(fn) if fn is not None else decorate


@overload
def transform(name: str, /, *, code: str, **options: Unpack[StepOptions]) -> Step: ...
@overload
def transform(fn: Callable[P, R], /) -> TransformFunctionStep[P, R]: ...
@overload
def transform(
    *, name: str | None = None, **options: Unpack[StepOptions]
) -> Callable[[Callable[P, R]], TransformFunctionStep[P, R]]: ...
def transform(
    first: str | Callable[P, R] | None = None,
    /,
    *,
    code: str | None = None,
    name: str | None = None,
    **options: Unpack[StepOptions],
) -> Step | TransformFunctionStep[P, R] | Callable[[Callable[P, R]], TransformFunctionStep[P, R]]:
    """A ``transform`` step: ``transform("totals", code="result = ...")``, or a
    decorated function whose source becomes the code and whose return value the
    step's output."""
    if isinstance(first, str):
        if code is None:
            raise TypeError(
                f"transform {first!r} needs its code: transform({first!r}, code='result = ...'), "
                "or decorate a function with @legato.transform"
            )
        return Step(first, "transform", {"code": code}, options)
    if code is not None:
        raise TypeError("code= is for transform(name, code=...); a decorated function is the code")

    def decorate(target: Callable[P, R]) -> TransformFunctionStep[P, R]:
        return TransformFunctionStep(target, name or target.__name__, "transform", options)

    return decorate(first) if first is not None else decorate


def export(
    name: str,
    /,
    *,
    input: Step | str | None = None,
    table: TableExport | Mapping[str, Any] | None = None,
    webhook: WebhookExport | Mapping[str, Any] | None = None,
    slack: SlackExport | Mapping[str, Any] | None = None,
    **options: Unpack[StepOptions],
) -> Step:
    """An ``export`` step writing the table of ``input`` (may be left out when one
    upstream has a table) to one target: a ``table``, a ``webhook`` or ``slack``."""
    config = {"input": input, "table": table, "webhook": webhook, "slack": slack}
    return Step(name, "export", config, options)


def trigger(
    name: str,
    /,
    *,
    pipeline: Any,
    params: Mapping[str, str] | None = None,
    wait: bool | None = None,
    **options: Unpack[StepOptions],
) -> Step:
    """A ``trigger`` step starting ``pipeline`` (a name or a ``legato.Pipeline``) with
    ``params`` (expressions over params and upstream values); with ``wait`` it ends when
    the child run ends, and fails when it fails."""
    config = {"pipeline": pipeline, "params": params, "wait": wait}
    return Step(name, "trigger", config, options)
