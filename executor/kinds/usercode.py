"""Errors raised by user code: a traceback on stderr (so it is in the attempt's logs) that
starts at the user's first frame, and a one-line summary for the attempt's error, like
``ValueError: bad value (transform line 3)``."""

from __future__ import annotations

import linecache
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType

from executor.kinds.base import StepError

__all__ = ["failure", "register_source"]

_OURS = str(Path(__file__).resolve().parent.parent) + os.sep  # the executor package
_MAX_MESSAGE = 500


def register_source(filename: str, code: str) -> None:
    """Make ``code`` the source shown for ``filename`` in tracebacks."""
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without the leading frames of the executor itself."""
    start = tb
    while start is not None and start.tb_frame.f_code.co_filename.startswith(_OURS):
        start = start.tb_next
    return start if start is not None else tb


def failure(exc: BaseException, where: Callable[[FrameType, int], str | None]) -> StepError:
    """Print ``exc``'s traceback to stderr and return the StepError to fail with.

    ``where(frame, line)`` names a frame of the user's code (``transform line 3``) or
    returns None for library frames; the innermost named frame locates the error."""
    tb = _user_frames(exc.__traceback__)
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
    sys.stderr.flush()
    location = None
    while tb is not None:
        location = where(tb.tb_frame, tb.tb_lineno) or location
        tb = tb.tb_next
    return StepError(
        summary(exc, location), kind="memory" if isinstance(exc, MemoryError) else "error"
    )


def summary(exc: BaseException, location: str | None) -> str:
    lines = str(exc).strip().splitlines()
    text = type(exc).__name__ + (f": {lines[0]}" if lines else "")
    if len(lines) > 1:
        text += " …"
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 1] + "…"
    return f"{text} ({location})" if location else text
