"""SQLite statements run inline on the event loop, and a lock held by another process is
waited for without stopping the loop: other tasks run meanwhile, the write goes through
once the lock is released, and a lock held past the wait is an error naming it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from control_plane.store import sqlite_inline
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade


async def test_a_write_waits_for_another_writer_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path}/legato.db")
    await upgrade(db)
    other = sqlite3.connect(tmp_path / "legato.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        async def write() -> None:
            async with db.write() as session:
                await session.execute(text("CREATE TABLE probe (x INTEGER)"))

        ticker = asyncio.create_task(tick())
        writer = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        assert not writer.done()
        assert ticks >= 20  # the loop kept running while the write waited
        other.execute("COMMIT")
        async with asyncio.timeout(5):
            await writer
        ticker.cancel()
        async with db.read() as session:
            assert (await session.execute(text("SELECT count(*) FROM probe"))).scalar() == 0
    finally:
        other.close()
        await db.dispose()


async def test_a_lock_held_past_the_wait_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_WAIT_SECONDS", 0.2)
    db = Database(f"sqlite:///{tmp_path}/legato.db")
    await upgrade(db)
    other = sqlite3.connect(tmp_path / "legato.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Exception, match="database is locked"):
            async with db.write() as session:
                await session.execute(text("CREATE TABLE probe (x INTEGER)"))
    finally:
        other.execute("ROLLBACK")
        other.close()
        await db.dispose()
