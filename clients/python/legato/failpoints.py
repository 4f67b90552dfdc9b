"""Fail points: named places in Legato's code where a test can make the process sleep,
fail or exit, to hit a window that is otherwise a race — after the commit and before the
report, say. Modelled on etcd's gofail and FreeBSD's fail(9), smaller than both.

    from legato.failpoints import failpoint

    failpoint("export.after_commit")

does nothing unless that point is armed; unarmed, it costs one dict lookup. Points are
armed from the environment variable ``LEGATO_FAILPOINTS``, read once, when this module is
first imported — so an agent's fork server and the step processes it forks share the
agent's setting:

    LEGATO_FAILPOINTS='export.after_commit=sleep(30000)'
    LEGATO_FAILPOINTS='export.staged=sleep(200);export.before_commit=raise(disk full)'

``;`` separates points, each ``name=term``; spaces around them are ignored. The terms:

============================  =========================================================
``off``                       nothing, as if the point were not named
``sleep(ms)``                 sleeps ``ms`` milliseconds, then goes on
``raise``, ``raise(message)`` raises :class:`FailpointError` (``failpoint '<name>'
                              fired`` without a message)
``exit``, ``exit(status)``    ends the process at once with ``os._exit(status)`` (1
                              without one): no cleanup, no buffered output flushed, as
                              a crash would
============================  =========================================================

A setting that does not parse raises ``ValueError`` naming the variable and the item (at
import for the variable, so a bad one stops the process that reads it). Tests in one
process arm points with :func:`armed` (a term, or any callable, which then runs at the
point) or :func:`configure`. There are no counts or probabilities (gofail's ``3*term``,
``10%term``): a point fires every time it is reached while armed.

The points in Legato:

========================  ==============================================================
``export.staged``         table export, mode ``replace``: the rows are loaded into the
                          staging table, the live table not yet touched
``export.before_commit``  table export: rows and ledger row written, not yet committed
``export.after_commit``   table export: this attempt's rows committed, the connection
                          closed, the result not yet handed to the runner (so not
                          reported); not reached by an attempt that skips its export
========================  ==============================================================
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["VARIABLE", "FailpointError", "armed", "configure", "failpoint"]

VARIABLE = "LEGATO_FAILPOINTS"

Action = Callable[[], None]

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_TERM = re.compile(r"(?P<verb>[a-z_]+)(?:\((?P<arg>.*)\))?", re.DOTALL)
_TERMS = "off, sleep(ms), raise(message), exit(status)"

_points: dict[str, Action] = {}


class FailpointError(RuntimeError):
    """What a point armed with ``raise`` raises."""


def failpoint(name: str) -> None:
    """Run what point ``name`` is armed with, if anything."""
    action = _points.get(name)
    if action is not None:
        action()


def configure(text: str) -> None:
    """Arm exactly the points of ``text`` (written as ``LEGATO_FAILPOINTS`` is), disarming
    all others."""
    points = _parse(text)
    _points.clear()
    _points.update(points)


@contextmanager
def armed(name: str, action: str | Action) -> Iterator[None]:
    """Point ``name`` armed with ``action`` (a term, or a callable to run at the point)
    for the block; what it was armed with before is restored at the end."""
    before = _points.get(name)
    found = _action(name, action, f"{name}={action}") if isinstance(action, str) else action
    _arm(name, found)
    try:
        yield
    finally:
        _arm(name, before)


def _arm(name: str, action: Action | None) -> None:
    if action is None:
        _points.pop(name, None)
    else:
        _points[name] = action


def _parse(text: str) -> dict[str, Action]:
    points: dict[str, Action] = {}
    for item in (part.strip() for part in text.split(";")):
        if not item:
            continue
        name, equals, term = (part.strip() for part in item.partition("="))
        if not equals or not _NAME.fullmatch(name):
            raise _bad(item, "is not name=term")
        action = _action(name, term, item)
        if action is not None:
            points[name] = action
    return points


def _action(name: str, term: str, item: str) -> Action | None:
    match = _TERM.fullmatch(term.strip())
    verb = match["verb"] if match else term
    arg = match["arg"] if match else None
    if verb == "off":
        if arg is not None:
            raise _bad(item, "takes no argument")
        return None
    if verb == "sleep":
        try:
            seconds = float(arg or "") / 1000
        except ValueError:
            raise _bad(item, "needs milliseconds: sleep(500)") from None
        return lambda: time.sleep(seconds)
    if verb == "raise":
        message = arg if arg else f"failpoint {name!r} fired"
        return lambda: _raise(message)
    if verb == "exit":
        try:
            status = 1 if arg is None else int(arg)
        except ValueError:
            raise _bad(item, "needs an exit status: exit(1)") from None
        return lambda: os._exit(status)
    raise _bad(item, f"has no term {verb!r}")


def _raise(message: str) -> None:
    raise FailpointError(message)


def _bad(item: str, problem: str) -> ValueError:
    return ValueError(f"{VARIABLE}: {item!r} {problem}; the terms are {_TERMS}")


configure(os.environ.get(VARIABLE, ""))
