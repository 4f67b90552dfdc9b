"""Migrations build the schema the models describe, on both backends, and are idempotent."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from control_plane.store.db import Database
from control_plane.store.migrate import current_revision, head_revision, upgrade
from control_plane.store.models import Base


async def test_migrated_schema_matches_the_models(db_url: str) -> None:
    db = Database(db_url)
    try:
        await upgrade(db)
        assert await current_revision(db) == head_revision()

        def diff(sync: Any) -> list[Any]:
            context = MigrationContext.configure(sync, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))

        async with db.engine.connect() as conn:
            differences = await conn.run_sync(diff)
        assert differences == []
        before, after = await upgrade(db)
        assert before == after == head_revision()
    finally:
        await db.dispose()
