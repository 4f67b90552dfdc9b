"""Reading the outbox for users: notifications newest first, a page at a time."""

from __future__ import annotations

from control_plane.errors import NotFound
from control_plane.pagination import Page, PageRequest
from control_plane.quoting import quote
from control_plane.store import notifications as outbox
from control_plane.store.db import Database
from control_plane.store.models import RunRow
from control_plane.store.notifications import Notification

__all__ = ["list_notifications"]


async def list_notifications(
    db: Database, *, run_id: str, page_size: int, page_token: str
) -> Page[Notification]:
    """A page of notifications (of one run, with ``run_id``: NotFound if it does not
    exist)."""
    page = PageRequest.parse(page_size, page_token, run=run_id)
    async with db.read() as session:
        if run_id and await session.get(RunRow, run_id) is None:
            raise NotFound(
                f"run {quote(run_id)} does not exist; `legato runs` lists recent runs",
                reason="RUN_NOT_FOUND",
                metadata={"run_id": run_id},
            )
        rows = await outbox.listed(session, run_id=run_id, limit=page.size + 1, before=page.after)
    return page.page(rows, key=lambda row: row.id)
