"""Rows a transaction inserts when it commits: one multi-row Core ``INSERT`` per table, in
the order they were added, instead of an ORM object per row and a unit-of-work flush.

For rows nobody reads back in the transaction that writes them: the run log's lines and
the activity log's entries. A transaction that rolls back inserts none.

``add_later`` defers building the rows too, to the commit: rows that describe objects of
the session (a notification about a run) are then made from their final state — after the
scheduler has restamped a run built ahead of its fire time — and not at all for an object
taken out of the session meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

__all__ = ["add", "add_later", "rows_of"]

_PENDING = "legato.pending_rows"
_LATER = "legato.pending_builders"
Builder = Callable[[Session], list[dict[str, Any]]]


def _pending(info: dict[Any, Any]) -> dict[Table, list[dict[str, Any]]]:
    found: dict[Table, list[dict[str, Any]]] = info.setdefault(_PENDING, {})
    return found


def add(session: AsyncSession, table: Table, row: dict[str, Any]) -> None:
    """Insert ``row`` (its columns) into ``table`` when the transaction commits."""
    _pending(session.info).setdefault(table, []).append(row)


def add_later(session: AsyncSession, table: Table, build: Builder) -> None:
    """Insert the rows ``build`` returns when the transaction commits (it is called then,
    with the session)."""
    later: list[tuple[Table, Builder]] = session.info.setdefault(_LATER, [])
    later.append((table, build))


def rows_of(session: AsyncSession | Session, table: Table) -> list[dict[str, Any]]:
    """The rows waiting for the commit in ``table``: the list itself, so that a caller
    that builds rows ahead of time may restamp them or drop some."""
    return _pending(session.info).setdefault(table, [])


@event.listens_for(Session, "before_commit")
def _insert_pending(session: Session) -> None:
    for table, build in session.info.pop(_LATER, []):
        _pending(session.info).setdefault(table, []).extend(build(session))
    for table, rows in session.info.pop(_PENDING, {}).items():
        if rows:
            session.execute(insert(table), rows)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_LATER, None)
