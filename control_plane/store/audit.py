"""The activity log: one entry per mutation, written in the mutation's transaction (or,
for a refused or failed call, by the access interceptor after it), never updated."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import Actor
from control_plane.store import pending
from control_plane.store.models import AuditEntryRow

__all__ = ["MAX_ERROR", "entry", "record"]

_TABLE = cast(Table, AuditEntryRow.__table__)

MAX_ERROR = 500
"""Characters of an error message kept in an entry."""


def entry(
    *,
    now: datetime,
    actor: Actor,
    action: str,
    resource: str,
    pipeline: str | None = None,
    outcome: str = "succeeded",
    code: int = 0,
    error: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntryRow:
    """An entry; ``pipeline`` defaults to the one a ``pipelines/<name>`` resource names."""
    return AuditEntryRow(
        **_columns(
            now=now,
            actor=actor,
            action=action,
            resource=resource,
            pipeline=pipeline,
            outcome=outcome,
            code=code,
            error=error,
            details=details,
        )
    )


def _columns(
    *,
    now: datetime,
    actor: Actor,
    action: str,
    resource: str,
    pipeline: str | None,
    outcome: str,
    code: int,
    error: str,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    if pipeline is None and resource.startswith("pipelines/"):
        pipeline = resource.removeprefix("pipelines/").split("/", 1)[0]
    return {
        "time": now,
        "actor": _storable(actor.name, 200),
        "actor_kind": actor.kind,
        "action": action,
        "resource": _storable(resource, 300),
        "pipeline": _storable(pipeline or "", 63) or None,
        "request_id": _storable(actor.request_id or "", 200) or None,
        "outcome": outcome,
        "code": code,
        "error": _storable(error, MAX_ERROR),
        "details": {**actor.details, **(details or {})},
    }


def _storable(text: str, limit: int) -> str:
    """``text`` as its column takes it on every store: at most ``limit`` characters, no
    NUL (PostgreSQL refuses it; a refused request may hold one)."""
    text = text[:limit]
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def record(
    session: AsyncSession,
    *,
    now: datetime,
    actor: Actor,
    action: str,
    resource: str,
    pipeline: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add a successful mutation's entry to ``session``'s transaction: inserted with the
    transaction's other entries in one Core statement when it commits (``store/pending``)."""
    columns = _columns(
        now=now,
        actor=actor,
        action=action,
        resource=resource,
        pipeline=pipeline,
        outcome="succeeded",
        code=0,
        error="",
        details=details,
    )
    pending.add(session, _TABLE, columns)
