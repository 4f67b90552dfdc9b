"""``function``: calls ``package.module:callable``, installed where the agent finds modules.

The callable gets the keyword arguments of ``args`` and, by the names of its parameters:
``data`` (the upstream table when exactly one upstream has a table, else None), ``inputs``
(upstream name → DataFrame or values), ``params`` (the run's parameters) and any parameter
named like an upstream step (that upstream's DataFrame, or its values). ``args`` win over
the others, the three reserved names over upstream names. Its return value is the step's
output, as for a transform's ``result``. A coroutine function is run to completion.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

from executor.kinds.base import StepContext, StepError, StepResult
from executor.kinds.output import to_output
from executor.kinds.usercode import failure

__all__ = ["FunctionKind", "load_callable"]

_RESERVED = ("data", "inputs", "params")


def load_callable(ref: str) -> Callable[..., Any]:
    """Import ``package.module:callable`` (the callable may be dotted: ``module:Class.method``)."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise StepError(f"function {ref!r} must be written as 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise StepError(f"cannot import {ref!r} on agent: {exc}") from None
    except Exception as exc:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        raise StepError(
            f"cannot import {ref!r} on agent: importing {module_name!r} raised "
            f"{type(exc).__name__}: {exc}"
        ) from None
    path = module_name
    for part in attr.split("."):
        if not hasattr(target, part):
            raise StepError(f"cannot import {ref!r} on agent: {path!r} has no attribute {part!r}")
        target = getattr(target, part)
        path = f"{path}.{part}"
    if not callable(target):
        raise StepError(f"{ref!r} is a {type(target).__name__}, not something that can be called")
    return target  # type: ignore[no-any-return]


def _arguments(
    ref: str, fn: Callable[..., Any], args: dict[str, Any], ctx: StepContext
) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for ``fn``, chosen by its parameter names."""
    available: dict[str, Callable[[], Any]] = {u.step: u.value for u in ctx.upstreams}
    available.update(data=ctx.single_table, inputs=ctx.inputs, params=lambda: dict(ctx.params))
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none: pass the args alone
        return [], dict(args)
    parameters = signature.parameters.values()
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
    named = {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    unexpected = sorted(set(args) - named) if not takes_any else []
    if unexpected:
        raise StepError(
            f"function {ref!r} has no parameter {_names(unexpected)} given in args; "
            f"its parameters are {_names(sorted(named)) or 'none'}"
        )
    positional: list[Any] = []
    keywords = dict(args)
    missing: list[str] = []
    positional_open = True  # positional-only values stop at the first one left to its default
    for p in parameters:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.name in args:
            value = keywords.pop(p.name) if p.kind is p.POSITIONAL_ONLY else None
        elif p.name in available:
            value = available[p.name]()
            if p.kind is not p.POSITIONAL_ONLY:
                keywords[p.name] = value
        elif p.default is p.empty:
            missing.append(p.name)
            continue
        else:
            positional_open = positional_open and p.kind is not p.POSITIONAL_ONLY
            continue
        if p.kind is p.POSITIONAL_ONLY and positional_open:
            positional.append(value)
    if missing:
        upstreams = [u.step for u in ctx.upstreams]
        raise StepError(
            f"function {ref!r} needs {_names(missing)}, which the step does not provide; "
            f"it can pass args ({_names(sorted(args)) or 'none given'}), "
            f"{', '.join(_RESERVED)} and the upstream steps ({_names(upstreams) or 'none'})"
        )
    return positional, keywords


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


class FunctionKind:
    name = "function"

    def run(self, config: dict[str, Any], ctx: StepContext) -> StepResult:
        ref = config.get("function", "")
        if not isinstance(ref, str) or not ref:
            raise StepError(f"step {ctx.step!r} names no function to call")
        args = config.get("args") or {}
        if not isinstance(args, dict):
            raise StepError(f"the args of function {ref!r} must be a mapping of names to values")
        fn = load_callable(ref)
        package = ref.partition(":")[0].split(".")[0]

        def where(frame: FrameType, line: int) -> str | None:
            module = str(frame.f_globals.get("__name__", ""))
            if module == package or module.startswith(package + "."):
                return f"{module} line {line}"
            return None

        positional, keywords = _arguments(ref, fn, args, ctx)
        records_in = ctx.records_in()
        try:
            value = fn(*positional, **keywords)
            if inspect.iscoroutine(value):
                value = asyncio.run(value)
        except SystemExit as exc:
            if exc.code not in (None, 0):
                raise StepError(f"function {ref!r} called sys.exit({exc.code!r})") from None
            value = None
        except Exception as exc:
            raise failure(exc, where) from None
        table, values = to_output(value, source=f"the value returned by {ref!r}")
        return StepResult(table=table, values=values, records_in=records_in)
