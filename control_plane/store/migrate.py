"""Schema upgrades. The server runs them at start-up and ``legato db upgrade`` on demand;
on PostgreSQL an advisory lock makes replicas that start together take turns."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from control_plane.store.db import Database

__all__ = ["current_revision", "downgrade", "head_revision", "is_known_revision", "upgrade"]

_MIGRATIONS = Path(__file__).with_name("migrations")
# Arbitrary but fixed: the key of the advisory lock held while migrating.
_ADVISORY_LOCK_KEY = 0x1E6A70


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {_MIGRATIONS}")
    return head


def is_known_revision(revision: str) -> bool:
    """Whether this installation's migrations include ``revision`` (a newer server's is
    not: the database was upgraded past this code)."""
    scripts = ScriptDirectory.from_config(_config())
    return any(script.revision == revision for script in scripts.walk_revisions())


async def current_revision(db: Database) -> str | None:
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def upgrade(db: Database, revision: str = "head") -> tuple[str | None, str]:
    """Upgrade the schema to ``revision``; returns (revision before, revision after)."""
    before = await current_revision(db)
    async with db.engine.connect() as conn:
        if db.is_postgres:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
            await conn.commit()
        try:
            await conn.run_sync(lambda sync: command.upgrade(_config(sync), revision))
            await conn.commit()
        finally:
            if db.is_postgres:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_LOCK_KEY})
                await conn.commit()
    after = await current_revision(db)
    return before, after or ""


async def downgrade(db: Database, revision: str) -> None:
    """Downgrade the schema to ``revision`` (tests of data migrations use it to rebuild
    an old schema around rows the current code wrote)."""
    async with db.engine.connect() as conn:
        await conn.run_sync(lambda sync: command.downgrade(_config(sync), revision))
        await conn.commit()
