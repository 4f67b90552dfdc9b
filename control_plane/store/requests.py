"""Request ids of mutations: a retried call with the same id replays the first result.

The row is written in the same transaction as the mutation, and (method, request_id) is
the primary key, so two concurrent calls with one id cannot both take effect: the loser's
insert fails on the key (on PostgreSQL it waits until the winner commits), and ``once``
runs it again, when it finds the winner's row and replays it.

A request id names one request, as an idempotency key does in payment APIs: the row keeps
a fingerprint of what the first call asked for (its method and a SHA-256 of each of its
meaningful fields in canonical JSON, with a short preview of each). A later call with the
id and other fields is refused (``ALREADY_EXISTS``, reason ``REQUEST_ID_REUSED``) naming
the id and the fields that differ, instead of silently answering with the first result.
Rows written before fingerprints existed replay without the check."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.errors import AlreadyExists
from control_plane.quoting import quote
from control_plane.store.models import RequestRow

__all__ = ["Fingerprint", "find_result", "once", "record_result"]

T = TypeVar("T")

_REQUESTS = cast(Table, RequestRow.__table__)
_r = _REQUESTS.c
_FIND = select(_r.result, _r.fingerprint, _r.fields).where(
    _r.method == bindparam("find_method"), _r.request_id == bindparam("find_request_id")
)
_INSERT = insert(_REQUESTS)


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no spaces: equal values, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """What one call asked for: its meaningful fields, each as canonical JSON text."""

    fields: dict[str, str]

    @classmethod
    def of(cls, **fields: Any) -> Fingerprint:
        """The fingerprint of JSON-able field values (dicts, lists, strings, numbers)."""
        return cls({name: canonical_json(value) for name, value in fields.items()})

    def digest(self, method: str) -> str:
        """SHA-256 over the method and every field: what a replay is compared by."""
        return _sha256(canonical_json({"method": method, "fields": self.fields}))

    def stored(self) -> dict[str, Any]:
        """Per field: its SHA-256 and a short quoted preview, so a refusal can say which
        fields differ and show what they were."""
        return {
            name: {"sha256": _sha256(text), "value": quote(text)}
            for name, text in self.fields.items()
        }


async def find_result(
    session: AsyncSession, method: str, request_id: str, request: Fingerprint | None = None
) -> dict[str, Any] | None:
    """The first result of ``method`` under ``request_id``, or None when there is none.
    Raises AlreadyExists when the id was first used with other fields than ``request``."""
    if not request_id:
        return None
    found = await session.execute(_FIND, {"find_method": method, "find_request_id": request_id})
    row = found.one_or_none()
    if row is None:
        return None
    if request is not None and row.fingerprint and row.fingerprint != request.digest(method):
        raise _reused(method, request_id, row.fields or {}, request)
    result: dict[str, Any] = row.result
    return result


async def record_result(
    session: AsyncSession,
    method: str,
    request_id: str,
    result: dict[str, Any],
    now: datetime,
    request: Fingerprint | None = None,
) -> None:
    """Keep ``result`` under ``request_id`` (nothing without one), with the fingerprint
    of the ``request`` that produced it. Raises IntegrityError when a concurrent call
    with the id has stored its own: see ``once``."""
    if request_id:
        # Flush first, as callers have always had it: their pending rows meet their
        # constraints here, before the id is kept.
        await session.flush()
        await session.execute(
            _INSERT,
            {
                "method": method,
                "request_id": request_id,
                "result": result,
                "create_time": now,
                "fingerprint": request.digest(method) if request else None,
                "fields": request.stored() if request else None,
            },
        )


async def once(request_id: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call`` (one write transaction that replays or records ``request_id``); when
    it fails on a unique key while the id is set, a concurrent call with the id committed
    first, so run it again: in a fresh transaction it finds that call's row and answers
    with its result (or refuses a differing request). A second failure is raised."""
    try:
        return await call()
    except IntegrityError:
        if not request_id:
            raise
    return await call()


def _reused(
    method: str, request_id: str, first: dict[str, Any], request: Fingerprint
) -> AlreadyExists:
    stored = request.stored()
    names = sorted(set(first) | set(stored))
    differing = [
        n for n in names if first.get(n, {}).get("sha256") != stored.get(n, {}).get("sha256")
    ]
    shown = "; ".join(
        f"{name} was {first.get(name, {}).get('value', 'not set')}, "
        f"now {stored.get(name, {}).get('value', 'not set')}"
        for name in differing[:3]
    )
    more = f" (and {len(differing) - 3} more)" if len(differing) > 3 else ""
    return AlreadyExists(
        f"request_id {quote(request_id)} was already used for a {method} with other fields: "
        f"{shown}{more}; a retry must repeat the first request exactly, and a new request "
        "needs a new request_id",
        reason="REQUEST_ID_REUSED",
        metadata={"method": method, "request_id": request_id, "fields": ",".join(differing)},
    )
