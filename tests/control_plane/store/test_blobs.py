"""Artifacts are read a chunk at a time on both stores, and the chunks make the value."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from sqlalchemy import text

from control_plane.store.blobs import artifact_chunks
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from control_plane.store.models import ArtifactRow


async def test_chunks_make_the_whole_value(db_url: str) -> None:
    db = Database(db_url)
    try:
        await upgrade(db)
        data = os.urandom(5 * 1024 * 1024 + 123)
        async with db.write() as session:
            session.add(
                ArtifactRow(
                    id="a1",
                    run_id="r",
                    step="s",
                    lease_id="l",
                    name="output.arrow",
                    media_type="application/vnd.apache.arrow.file",
                    size_bytes=len(data),
                    sha256="",
                    storage="db",
                    data=data,
                    create_time=datetime.now(UTC),
                )
            )
        chunks = [c async for c in artifact_chunks(db, "a1", len(data), 1024 * 1024)]
        assert [len(c) for c in chunks] == [1024 * 1024] * 5 + [123]
        assert b"".join(chunks) == data
        assert [c async for c in artifact_chunks(db, "missing", 10, 4)] == []
        if db.is_postgres:
            async with db.read() as session:
                storage = await session.scalar(
                    text(
                        "SELECT attstorage FROM pg_attribute WHERE attrelid = "
                        "'artifacts'::regclass AND attname = 'data'"
                    )
                )
            assert storage in ("e", b"e")  # EXTERNAL: substring reads only the chunk's pages
    finally:
        await db.dispose()
