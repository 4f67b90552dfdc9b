"""Reading a large binary column a chunk at a time, without loading the value whole.

- **SQLite**: ``substr(blob, offset, n)`` reads the value from its start on every call, so
  reading a 64 MiB artifact in 1 MiB chunks costs ~100 ms a chunk and grows with the offset.
  SQLite's incremental blob I/O (``sqlite3.Connection.blobopen``) reads only the pages of
  each chunk: the reader opens its own read-only connection (WAL: it never waits for the
  server's writer, and sees a committed row) in a worker thread.
- **PostgreSQL**: ``substring(bytea from offset for n)`` fetches only the TOAST chunks it
  needs when the column is stored uncompressed (``STORAGE EXTERNAL``, set on
  ``artifacts.data`` by migration 0008); compressed values would be decompressed whole.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import func, select

from control_plane.store.db import Database
from control_plane.store.models import ArtifactRow

__all__ = ["artifact_chunks", "artifact_range"]


async def artifact_chunks(
    db: Database, artifact_id: str, size: int, chunk: int
) -> AsyncIterator[bytes]:
    """The bytes of artifact ``artifact_id`` (``size`` long), ``chunk`` at a time."""
    path = _sqlite_file(db)
    if path is not None:
        async for piece in _sqlite_chunks(path, artifact_id, chunk):
            yield piece
        return
    for start in range(0, size, chunk):
        part = await _substr(db, artifact_id, start, chunk)
        if part is None:  # gone (or never stored in the database)
            return
        yield part


async def _substr(db: Database, artifact_id: str, offset: int, length: int) -> bytes | None:
    """``length`` bytes from ``offset`` with one query (None: no such artifact)."""
    async with db.read() as session:
        part = (
            await session.execute(
                select(func.substr(ArtifactRow.data, offset + 1, length)).where(
                    ArtifactRow.id == artifact_id
                )
            )
        ).scalar_one_or_none()
    return None if part is None else bytes(part)


def _sqlite_file(db: Database) -> Path | None:
    if db.dialect != "sqlite":
        return None
    database = db.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


async def _sqlite_chunks(path: Path, artifact_id: str, chunk: int) -> AsyncIterator[bytes]:
    connection, blob = await asyncio.to_thread(_open_blob, path, artifact_id)
    try:
        if blob is None:
            return
        while part := await asyncio.to_thread(blob.read, chunk):
            yield part
    finally:
        await asyncio.to_thread(_close, connection, blob)


def _open_blob(path: Path, artifact_id: str) -> tuple[sqlite3.Connection, sqlite3.Blob | None]:
    connection = sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=30
    )
    try:
        # Blob I/O reads through the page cache; a reader needs only the pages of one chunk
        # at a time, and a hundred slow readers must not hold 2 MiB of cache each.
        connection.execute("PRAGMA cache_size = -256")
        found = connection.execute(
            "SELECT rowid FROM artifacts WHERE id = ? AND data IS NOT NULL", (artifact_id,)
        ).fetchone()
        if found is None:
            return connection, None
        return connection, connection.blobopen("artifacts", "data", found[0], readonly=True)
    except BaseException:
        connection.close()
        raise


def _close(connection: sqlite3.Connection, blob: sqlite3.Blob | None) -> None:
    if blob is not None:
        blob.close()
    connection.close()


async def artifact_range(db: Database, artifact_id: str, offset: int, length: int) -> bytes:
    """``length`` bytes of artifact ``artifact_id`` from ``offset`` (fewer at its end)."""
    path = _sqlite_file(db)
    if path is not None:
        return await asyncio.to_thread(_sqlite_range, path, artifact_id, offset, length)
    return await _substr(db, artifact_id, offset, length) or b""


def _sqlite_range(path: Path, artifact_id: str, offset: int, length: int) -> bytes:
    connection, blob = _open_blob(path, artifact_id)
    try:
        if blob is None:
            return b""
        blob.seek(min(offset, len(blob)))
        return blob.read(length)
    finally:
        _close(connection, blob)
