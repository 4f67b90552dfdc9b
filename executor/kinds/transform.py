"""``transform``: the step's Python code, run over its upstream tables.

The code runs with these globals: ``data`` (the upstream table as a pandas DataFrame when
exactly one upstream has a table, else None), ``inputs`` (upstream name → its DataFrame, or
its values when it has no table), ``params`` (the run's parameters) and ``pd`` (pandas).
Its output is what it binds to ``result`` (see :mod:`executor.kinds.output`); code that
never binds ``result`` fails the step, so that a forgotten assignment does not pass
nothing downstream as if it were the output: ``result = None`` says the step has none.
This is the user's code on the user's agent: running it is the point, in a child process
under limits.
"""

from __future__ import annotations

import builtins
import sys
import traceback
from types import FrameType
from typing import Any

import pandas as pd

from executor.kinds.base import StepContext, StepError, StepResult
from executor.kinds.output import to_output
from executor.kinds.usercode import failure, register_source

__all__ = ["TransformKind"]

FILENAME = "<transform>"


def _where(frame: FrameType, line: int) -> str | None:
    return f"transform line {line}" if frame.f_code.co_filename == FILENAME else None


class TransformKind:
    name = "transform"

    def run(self, config: dict[str, Any], ctx: StepContext) -> StepResult:
        code = config.get("code", "")
        if not isinstance(code, str) or not code.strip():
            raise StepError(f"step {ctx.step!r} has no transform code")
        register_source(FILENAME, code)
        try:
            compiled = compile(code, FILENAME, "exec")
        except SyntaxError as exc:
            traceback.print_exception(type(exc), exc, None, file=sys.stderr)
            raise StepError(f"SyntaxError: {exc.msg} (transform line {exc.lineno})") from None
        scope: dict[str, Any] = {
            "__name__": "__transform__",
            "__builtins__": builtins,
            "data": ctx.single_table(),
            "inputs": ctx.inputs(),
            "params": dict(ctx.params),
            "pd": pd,
        }
        records_in = ctx.records_in()
        try:
            exec(compiled, scope)
        except SystemExit as exc:
            if exc.code not in (None, 0):
                raise StepError(f"the transform called sys.exit({exc.code!r})") from None
        except Exception as exc:
            raise failure(exc, _where) from None
        if "result" not in scope:
            raise StepError(
                f"the transform of step {ctx.step!r} never sets `result`, so it has no output "
                "to pass on; assign the output to `result` (a DataFrame, a list of dicts or "
                "a dict of values), or write `result = None` if the step has none"
            )
        table, values = to_output(scope["result"], source="the transform's result")
        return StepResult(table=table, values=values, records_in=records_in)
