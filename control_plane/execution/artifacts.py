"""Artifacts: the tables (and other files) steps produce, stored through the control plane
so that a downstream step on another agent can read them.

Bytes go to the database (default) or to a directory (``--artifacts DIR``); either way the
row in ``artifacts`` describes them. Uploads name the lease of the attempt producing them
(fenced like every report) and are refused beyond the size limit before a byte is kept."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from control_plane.errors import (
    InvalidArgument,
    LeaseLost,
    LimitExceeded,
    NotFound,
    PermissionDenied,
)
from control_plane.execution.ids import new_lease_id
from control_plane.execution.transitions import not_yours
from control_plane.quoting import quote
from control_plane.statuses import ACTIVE_ATTEMPT
from control_plane.store.blobs import artifact_chunks, artifact_range
from control_plane.store.db import Database
from control_plane.store.models import ArtifactRow, AttemptRow, StepRunRow
from legato.spec.artifacts import too_large_message

__all__ = ["ArtifactInfo", "ArtifactStore"]

CHUNK = 1024 * 1024
ARROW_STREAM_MEDIA_TYPE = "application/vnd.apache.arrow.stream"


@dataclass(frozen=True)
class ArtifactInfo:
    id: str
    name: str
    media_type: str
    size_bytes: int
    sha256: str
    create_time: datetime


class ArtifactStore:
    def __init__(
        self, db: Database, *, directory: Path | None, max_bytes: int, clock: Callable[[], datetime]
    ) -> None:
        self._db = db
        self._dir = directory
        self._max = max_bytes
        self._clock = clock
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    async def put(
        self,
        lease_id: str,
        name: str,
        media_type: str,
        size_hint: int,
        chunks: AsyncIterator[bytes],
        *,
        agent: str | None = None,
    ) -> ArtifactInfo:
        """Store an artifact of the attempt under ``lease_id`` (with ``agent``, the lease
        must be that agent's)."""
        if not name or len(name) > 200 or "\x00" in name or "/" in name:
            raise InvalidArgument(
                "an artifact needs a name of at most 200 characters, without '/' or NUL"
            )
        async with self._db.read() as session:
            row = (
                await session.execute(
                    select(AttemptRow, StepRunRow.name)
                    .join(StepRunRow, StepRunRow.id == AttemptRow.step_run_id)
                    .where(AttemptRow.lease_id == lease_id)
                )
            ).first()
        if row is not None and agent is not None and row[0].agent != agent:
            raise not_yours(lease_id, agent)
        if row is None or row[0].status not in ACTIVE_ATTEMPT:
            raise LeaseLost(f"lease {lease_id} is not current; the artifact was not stored")
        attempt, step = row
        if size_hint > self._max:
            raise self._too_big(step, size_hint)
        digest = hashlib.sha256()
        size = 0
        parts: list[bytes] = []
        spool = await asyncio.to_thread(self._spool) if self._dir else None
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > self._max:
                    raise self._too_big(step, size, partial=True)
                digest.update(chunk)
                if spool is not None:
                    await asyncio.to_thread(spool.write, chunk)
                else:
                    parts.append(chunk)
            artifact_id = new_lease_id()
            if spool is not None:
                await asyncio.to_thread(_keep, spool, self._path(artifact_id))
                spool = None
            info = ArtifactInfo(
                artifact_id, name, media_type, size, digest.hexdigest(), self._clock()
            )
            async with self._db.write() as session:
                session.add(
                    ArtifactRow(
                        id=artifact_id,
                        run_id=attempt.run_id,
                        step=step,
                        lease_id=lease_id,
                        name=name,
                        media_type=media_type,
                        size_bytes=size,
                        sha256=info.sha256,
                        storage="file" if self._dir else "db",
                        data=None if self._dir else b"".join(parts),
                        create_time=info.create_time,
                    )
                )
            return info
        finally:
            if spool is not None:
                await asyncio.to_thread(_discard, spool)

    async def put_given(
        self, session: AsyncSession, *, run_id: str, step: str, name: str, data: bytes
    ) -> ArtifactInfo:
        """Store a table (an Arrow IPC stream) a test run was given for ``step``
        (RunService.TestStep), in the caller's transaction: no attempt produced it, so
        it names no lease."""
        if len(data) > self._max:
            raise self._too_big(step, len(data))
        artifact_id = new_lease_id()
        if self._dir is not None:
            await asyncio.to_thread(self._path(artifact_id).write_bytes, data)
        info = ArtifactInfo(
            artifact_id,
            name,
            ARROW_STREAM_MEDIA_TYPE,
            len(data),
            hashlib.sha256(data).hexdigest(),
            self._clock(),
        )
        session.add(
            ArtifactRow(
                id=artifact_id,
                run_id=run_id,
                step=step,
                lease_id="",
                name=name,
                media_type=info.media_type,
                size_bytes=info.size_bytes,
                sha256=info.sha256,
                storage="file" if self._dir else "db",
                data=None if self._dir else data,
                create_time=info.create_time,
            )
        )
        return info

    async def describe(self, artifact_id: str) -> ArtifactInfo:
        row = await self._describe_row(artifact_id)
        return ArtifactInfo(
            row.id, row.name, row.media_type, row.size_bytes, row.sha256, row.create_time
        )

    async def authorize(self, artifact_id: str, lease_id: str, agent: str) -> None:
        """An agent may read an artifact only for a lease it holds whose run has it: an
        output of one of the run's steps (a rerun's reused steps included)."""
        async with self._db.read() as session:
            attempt = (
                await session.execute(select(AttemptRow).where(AttemptRow.lease_id == lease_id))
            ).scalar_one_or_none()
            if attempt is None or attempt.agent != agent:
                raise not_yours(lease_id or "(none)", agent)
            if attempt.status not in ACTIVE_ATTEMPT:
                raise LeaseLost(f"lease {lease_id} is not current; it can read no artifact")
            outputs = await session.execute(
                select(StepRunRow.output).where(StepRunRow.run_id == attempt.run_id)
            )
            for (output,) in outputs:
                output = output or {}
                ids = {output.get("artifact_id")} | {
                    a.get("id") for a in output.get("artifacts") or [] if isinstance(a, dict)
                }
                if artifact_id in ids:
                    return
        raise PermissionDenied(
            f"artifact {quote(artifact_id)} is not an input of the step under lease "
            f"{quote(lease_id)}",
            reason="ARTIFACT_NOT_AN_INPUT",
        )

    async def read(self, artifact_id: str) -> AsyncIterator[bytes]:
        """The artifact's bytes, CHUNK at a time: read from the database or the file one
        chunk at a time, so a slow reader holds one chunk, not the artifact."""
        row = await self._describe_row(artifact_id)
        if row.storage == "db":
            async for chunk in artifact_chunks(self._db, artifact_id, row.size_bytes, CHUNK):
                yield chunk
            return
        handle = await asyncio.to_thread(self._path(artifact_id).open, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk
        finally:
            handle.close()

    async def read_range(self, artifact_id: str, offset: int, length: int) -> bytes:
        """``length`` bytes of the artifact from ``offset``: what a reader that seeks (an
        Arrow file's footer, then one record batch) needs, without the rest."""
        row = await self._describe_row(artifact_id)
        if row.storage == "db":
            return await artifact_range(self._db, artifact_id, offset, length)

        def read() -> bytes:
            with self._path(artifact_id).open("rb") as handle:
                handle.seek(offset)
                return handle.read(length)

        return await asyncio.to_thread(read)

    async def _describe_row(self, artifact_id: str) -> ArtifactRow:
        """The artifact's row without its bytes."""
        async with self._db.read() as session:
            row = (
                await session.execute(
                    select(ArtifactRow)
                    .options(defer(ArtifactRow.data))
                    .where(ArtifactRow.id == artifact_id)
                )
            ).scalar_one_or_none()
        if row is None:
            raise NotFound(
                f"artifact {quote(artifact_id)} does not exist", reason="ARTIFACT_NOT_FOUND"
            )
        return row

    def _spool(self) -> IO[bytes]:
        return tempfile.NamedTemporaryFile(dir=self._dir, delete=False)

    def _path(self, artifact_id: str) -> Path:
        assert self._dir is not None
        return self._dir / artifact_id

    @property
    def max_bytes(self) -> int:
        return self._max

    def _too_big(self, step: str, size: int, *, partial: bool = False) -> LimitExceeded:
        return LimitExceeded(
            too_large_message(step, size, self._max, partial=partial),
            reason="ARTIFACT_TOO_LARGE",
            metadata={"step": step, "limit_bytes": str(self._max)},
        )


def _keep(spool: IO[bytes], path: Path) -> None:
    spool.close()
    os.replace(spool.name, path)


def _discard(spool: IO[bytes]) -> None:
    spool.close()
    os.unlink(spool.name)
