"""Migrations build the schema the models describe, on both backends, and are idempotent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from control_plane.app import ControlPlane
from control_plane.config import ServerConfig
from control_plane.errors import FailedPrecondition
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


async def test_a_server_older_than_its_schema_refuses_to_start_and_says_why(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    db = Database(url)
    await upgrade(db)
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    await db.dispose()
    plane = ControlPlane(ServerConfig(db=url, listen="127.0.0.1:0", http_listen="off"))
    with pytest.raises(FailedPrecondition, match="newer than this server knows") as refused:
        await plane.start()
    assert refused.value.reason == "SCHEMA_TOO_NEW"
    assert "0099_future" in refused.value.message and head_revision() in refused.value.message
