"""The pipeline registry: pipelines, their immutable versions, diff, rollback, archive.

Plain domain code over the store; servicers in ``api/`` translate to and from the wire.
Every mutation runs in one write transaction that also records the audit entry and, when
the caller sent one, the request id, so a retried call replays instead of acting twice.
Version numbers are unique per pipeline (a constraint); on PostgreSQL the pipeline row is
locked for the transaction, and a writer that still loses a race retries from the start.

An apply does its CPU work first — validation, canonical form, hash, fingerprint — and only
then opens the transaction, so writers of one pipeline hold its row lock for the
compare-and-insert alone: one statement reads the pipeline, its latest version and its
schedule (and locks the row); an unchanged spec writes nothing more (the audit entry and
request id aside); a change is an insert of the version and an update of the row (or an
insert of a new pipeline), the watchers, the audit entry and the request id. The rows are
written with Core statements; responses are built from what the apply already holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import Actor
from control_plane.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    InvalidSpec,
    NotFound,
    pipeline_not_found,
)
from control_plane.errors import FieldViolation as ErrorFieldViolation
from control_plane.pagination import Page, PageRequest
from control_plane.pipelines import versioning
from control_plane.store import audit, requests
from control_plane.store import pipelines as repo
from control_plane.store.db import Database
from control_plane.store.models import PipelineRow, PipelineVersionRow, ScheduleRow
from control_plane.validation import validate_spec
from legato.v1 import spec_pb2

__all__ = ["Actor", "ApplyResult", "PipelineInfo", "Registry", "ValidSpec", "VersionInfo"]

T = TypeVar("T")

_WRITE_ATTEMPTS = 8


@dataclass(frozen=True)
class ValidSpec:
    spec: spec_pb2.PipelineSpec
    canonical_json: str
    content_hash: str


@dataclass(frozen=True)
class PipelineInfo:
    name: str
    description: str
    latest_version: int
    archived: bool
    create_time: datetime
    update_time: datetime
    archive_time: datetime | None
    spec: spec_pb2.PipelineSpec
    schedule: ScheduleRow | None = None


@dataclass(frozen=True)
class VersionInfo:
    pipeline: str
    number: int
    spec: spec_pb2.PipelineSpec
    content_hash: str
    author: str
    message: str
    create_time: datetime
    rollback_of: int | None


@dataclass(frozen=True)
class ApplyResult:
    pipeline: PipelineInfo
    version: VersionInfo
    created: bool


class PipelineWatcher(Protocol):
    """Kept in step with pipelines: told, inside the transaction, when a pipeline gets a new
    latest version or is archived or restored (the schedule, event subscriptions), and
    once that transaction has committed."""

    async def pipeline_changed(
        self,
        session: AsyncSession,
        pipeline: PipelineRow,
        spec: spec_pb2.PipelineSpec,
        now: datetime,
    ) -> None: ...

    async def committed(self) -> None: ...


class Registry:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None) -> None:
        self._db = db
        self._clock = clock or (lambda: datetime.now(UTC))
        self._watchers: list[PipelineWatcher] = []

    def watch(self, watcher: PipelineWatcher) -> None:
        self._watchers.append(watcher)

    # -- validation ---------------------------------------------------------------------

    def validate(self, spec: spec_pb2.PipelineSpec) -> ValidSpec:
        """The spec in canonical form with its hash, or InvalidSpec with every violation."""
        violations = validate_spec(spec)
        if violations:
            raise InvalidSpec(
                spec.name or "<unnamed>",
                [ErrorFieldViolation(v.field, v.description) for v in violations],
            )
        canonical = versioning.canonicalize(spec)
        text = versioning.canonical_json(canonical)
        return ValidSpec(canonical, text, versioning.content_hash(text))

    # -- mutations ----------------------------------------------------------------------

    async def apply(self, spec: spec_pb2.PipelineSpec, message: str, actor: Actor) -> ApplyResult:
        """Create the pipeline or add version N+1; an unchanged spec returns the latest
        version with ``created=False``."""
        valid = self.validate(spec)
        name = valid.spec.name
        request = requests.Fingerprint.of(pipeline=name, spec=valid.content_hash, message=message)

        async def attempt(session: AsyncSession) -> ApplyResult:
            replay = await requests.find_result(session, "ApplyPipeline", actor.request_id, request)
            if replay is not None:
                return await self._replay(session, replay)
            now = self._clock()
            head = await repo.lock_head(session, name)
            if head is not None and head.pipeline.archived:
                raise _archived(name)
            result = await self._add_version(session, name, head, valid, message, actor, now, None)
            await self._finish(session, "ApplyPipeline", actor, now, result, request)
            return result

        return await self._write(attempt)

    async def rollback(self, name: str, number: int, message: str, actor: Actor) -> ApplyResult:
        """Add a version whose content equals version ``number``."""
        request = requests.Fingerprint.of(pipeline=name, version=number, message=message)

        async def attempt(session: AsyncSession) -> ApplyResult:
            replay = await requests.find_result(
                session, "RollbackPipeline", actor.request_id, request
            )
            if replay is not None:
                return await self._replay(session, replay)
            now = self._clock()
            if not name:
                raise InvalidArgument("a pipeline name is required")
            head = await repo.lock_head(session, name)
            if head is None:
                raise pipeline_not_found(name)
            if head.pipeline.archived:
                raise _archived(name)
            target = await self._version(session, head.pipeline, number)
            spec = versioning.spec_from_json(target.spec)
            valid = ValidSpec(spec, target.spec, target.content_hash)
            note = message or f"rollback to version {number}"
            result = await self._add_version(session, name, head, valid, note, actor, now, number)
            await self._finish(session, "RollbackPipeline", actor, now, result, request)
            return result

        return await self._write(attempt)

    async def set_archived(self, name: str, archived: bool, actor: Actor) -> PipelineInfo:
        """Archive or restore; doing it twice is harmless."""
        action = "ArchivePipeline" if archived else "RestorePipeline"

        async def attempt(session: AsyncSession) -> PipelineInfo:
            now = self._clock()
            pipeline = await self._pipeline(session, name, for_update=True)
            if pipeline.archived == archived:
                return await self._info(session, pipeline)
            pipeline.archived = archived
            pipeline.archive_time = now if archived else None
            pipeline.update_time = now
            info = await self._info(session, pipeline)
            schedule = await self._changed(session, pipeline, info.spec, info.schedule)
            audit.record(session, now=now, actor=actor, action=action, resource=f"pipelines/{name}")
            return replace(info, schedule=schedule)

        return await self._write(attempt)

    # -- queries ------------------------------------------------------------------------

    async def get(self, name: str) -> PipelineInfo:
        async with self._db.read() as session:
            return await self._info(session, await self._pipeline(session, name))

    async def list(
        self, *, page_size: int, page_token: str, show_archived: bool, name_prefix: str
    ) -> Page[PipelineInfo]:
        page = PageRequest.parse(
            page_size, page_token, show_archived=show_archived, name_prefix=name_prefix
        )
        async with self._db.read() as session:
            rows = await repo.list_pipelines(
                session,
                show_archived=show_archived,
                name_prefix=name_prefix,
                after_name=page.after,
                limit=page.size + 1,
            )
            schedules = await repo.schedules_of(session, [row.id for row, _ in rows])
        infos = [
            _pipeline_info(row, _stored_spec(spec), schedules.get(row.id)) for row, spec in rows
        ]
        return page.page(infos, key=lambda info: info.name)

    async def get_version(self, name: str, number: int) -> VersionInfo:
        """Version ``number`` of the pipeline; 0 means the latest."""
        async with self._db.read() as session:
            pipeline = await self._pipeline(session, name)
            row = await self._version(session, pipeline, number or pipeline.latest_version)
            return _version_info(pipeline.name, row)

    async def list_versions(
        self, name: str, *, page_size: int, page_token: str
    ) -> Page[VersionInfo]:
        page = PageRequest.parse(page_size, page_token, pipeline=name)
        async with self._db.read() as session:
            pipeline = await self._pipeline(session, name)
            rows = await repo.list_versions(
                session, pipeline.id, before_number=page.after, limit=page.size + 1
            )
        return page.page([_version_info(name, r) for r in rows], key=lambda v: v.number)

    async def diff(
        self, name: str, from_number: int, to_number: int
    ) -> tuple[int, int, versioning.SpecDiff]:
        """The diff from version ``from_number`` to ``to_number`` (0: latest)."""
        if from_number == 0:
            raise InvalidArgument("from_version is required (a version number, 1 or more)")
        async with self._db.read() as session:
            pipeline = await self._pipeline(session, name)
            to_number = to_number or pipeline.latest_version
            old = await self._version(session, pipeline, from_number)
            new = await self._version(session, pipeline, to_number)
        result = versioning.diff_specs(
            versioning.spec_from_json(old.spec),
            versioning.spec_from_json(new.spec),
            old_label=f"{name}@v{from_number}",
            new_label=f"{name}@v{to_number}",
        )
        return from_number, to_number, result

    # -- internals ----------------------------------------------------------------------

    async def _write(self, attempt: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``attempt`` in a write transaction, again from the start when it loses a
        race on a unique constraint (two creators of one pipeline, one version number)."""
        for _ in range(_WRITE_ATTEMPTS):
            try:
                async with self._db.write() as session:
                    result = await attempt(session)
            except IntegrityError:
                continue
            for watcher in self._watchers:
                await watcher.committed()
            return result
        raise Conflict(
            "the pipeline is being changed by other requests at the same time; try again",
            reason="CONCURRENT_MODIFICATION",
        )

    async def _add_version(
        self,
        session: AsyncSession,
        name: str,
        head: repo.Head | None,
        valid: ValidSpec,
        message: str,
        actor: Actor,
        now: datetime,
        rollback_of: int | None,
    ) -> ApplyResult:
        """Compare with the latest version and, when the content differs, insert the next.
        The pipeline row is locked (or the SQLite writer is alone), so ``head`` is current;
        the unique (pipeline, number) constraint catches anything else."""
        if head is not None and head.latest and head.latest.content_hash == valid.content_hash:
            info = _pipeline_info(head.pipeline, valid.spec, head.schedule)
            return ApplyResult(info, _head_version(name, head.latest, valid.spec), False)
        description = valid.spec.description
        if head is None:
            number = 1
            pipeline = PipelineRow(
                id=await repo.create_pipeline(
                    session, name=name, description=description, latest_version=1, now=now
                ),
                name=name,
                description=description,
                latest_version=1,
                archived=False,
                create_time=now,
                update_time=now,
                archive_time=None,
            )
        else:
            number = head.pipeline.latest_version + 1
            await repo.move_head(
                session, head.pipeline.id, number=number, description=description, now=now
            )
            pipeline = head.pipeline
            pipeline.latest_version = number
            pipeline.description = description
            pipeline.update_time = now
        await repo.insert_version(
            session,
            pipeline_id=pipeline.id,
            number=number,
            spec=valid.canonical_json,
            content_hash=valid.content_hash,
            author=actor.name,
            message=message,
            now=now,
            rollback_of=rollback_of,
        )
        schedule = await self._changed(
            session, pipeline, valid.spec, head.schedule if head is not None else None
        )
        version = VersionInfo(
            pipeline=name,
            number=number,
            spec=valid.spec,
            content_hash=valid.content_hash,
            author=actor.name,
            message=message,
            create_time=now,
            rollback_of=rollback_of,
        )
        return ApplyResult(_pipeline_info(pipeline, valid.spec, schedule), version, True)

    async def _changed(
        self,
        session: AsyncSession,
        pipeline: PipelineRow,
        spec: spec_pb2.PipelineSpec,
        schedule: ScheduleRow | None,
    ) -> ScheduleRow | None:
        """Tell the watchers, in the transaction, that ``pipeline`` has a new latest version;
        returns its schedule row as they leave it (``schedule`` is the one read with the
        pipeline). The rows the watchers load or add are kept as they go by, so reading the
        result back costs no statement: the session holds its rows only weakly."""
        seen: list[ScheduleRow] = []

        def keep(_session: Any, instance: object) -> None:
            if isinstance(instance, ScheduleRow) and instance.pipeline_id == pipeline.id:
                seen.append(instance)

        listened = session.sync_session
        event.listen(listened, "loaded_as_persistent", keep)
        event.listen(listened, "pending_to_persistent", keep)
        try:
            for watcher in self._watchers:
                await watcher.pipeline_changed(session, pipeline, spec, self._clock())
            await session.flush()
        finally:
            event.remove(listened, "loaded_as_persistent", keep)
            event.remove(listened, "pending_to_persistent", keep)
        return seen[-1] if seen else schedule

    async def _finish(
        self,
        session: AsyncSession,
        action: str,
        actor: Actor,
        now: datetime,
        result: ApplyResult,
        request: requests.Fingerprint,
    ) -> None:
        summary: dict[str, Any] = {
            "pipeline": result.pipeline.name,
            "version": result.version.number,
            "created": result.created,
        }
        if result.created or actor.request_id:
            audit.record(
                session,
                now=now,
                actor=actor,
                action=action,
                resource=f"pipelines/{result.pipeline.name}",
                details={**summary, "content_hash": result.version.content_hash},
            )
        await requests.record_result(session, action, actor.request_id, summary, now, request)

    async def _replay(self, session: AsyncSession, result: dict[str, Any]) -> ApplyResult:
        pipeline = await self._pipeline(session, str(result["pipeline"]))
        version = await self._version(session, pipeline, int(result["version"]))
        return ApplyResult(
            await self._info(session, pipeline),
            _version_info(pipeline.name, version),
            bool(result["created"]),
        )

    async def _pipeline(
        self, session: AsyncSession, name: str, *, for_update: bool = False
    ) -> PipelineRow:
        if not name:
            raise InvalidArgument("a pipeline name is required")
        pipeline = await repo.find_pipeline(session, name, for_update=for_update)
        if pipeline is None:
            raise pipeline_not_found(name)
        return pipeline

    async def _version(
        self, session: AsyncSession, pipeline: PipelineRow, number: int
    ) -> PipelineVersionRow:
        row = await repo.find_version(session, pipeline.id, number)
        if row is None:
            raise NotFound(
                f"pipeline {pipeline.name!r} has no version {number}; its versions are "
                f"1 to {pipeline.latest_version}",
                reason="VERSION_NOT_FOUND",
                metadata={"pipeline": pipeline.name, "version": str(number)},
            )
        return row

    async def _info(self, session: AsyncSession, pipeline: PipelineRow) -> PipelineInfo:
        latest = await repo.find_version(session, pipeline.id, pipeline.latest_version)
        schedule = await session.get(ScheduleRow, pipeline.id)
        return _pipeline_info(pipeline, _stored_spec(latest.spec if latest else None), schedule)


def _pipeline_info(
    pipeline: PipelineRow, spec: spec_pb2.PipelineSpec, schedule: ScheduleRow | None = None
) -> PipelineInfo:
    return PipelineInfo(
        name=pipeline.name,
        description=pipeline.description,
        latest_version=pipeline.latest_version,
        archived=pipeline.archived,
        create_time=pipeline.create_time,
        update_time=pipeline.update_time,
        archive_time=pipeline.archive_time,
        spec=spec,
        schedule=schedule,
    )


def _stored_spec(spec_json: str | None) -> spec_pb2.PipelineSpec:
    """A stored canonical spec (an empty one for a pipeline without versions)."""
    return versioning.spec_from_json(spec_json) if spec_json else spec_pb2.PipelineSpec()


def _archived(name: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"pipeline {name!r} is archived; restore it first (legato restore {name})",
        reason="PIPELINE_ARCHIVED",
        metadata={"pipeline": name},
    )


def _version_info(name: str, row: PipelineVersionRow) -> VersionInfo:
    return VersionInfo(
        pipeline=name,
        number=row.number,
        spec=versioning.spec_from_json(row.spec),
        content_hash=row.content_hash,
        author=row.author,
        message=row.message,
        create_time=row.create_time,
        rollback_of=row.rollback_of,
    )


def _head_version(name: str, head: repo.HeadVersion, spec: spec_pb2.PipelineSpec) -> VersionInfo:
    """The latest version read with the pipeline; ``spec`` has its content hash."""
    return VersionInfo(
        pipeline=name,
        number=head.number,
        spec=spec,
        content_hash=head.content_hash,
        author=head.author,
        message=head.message,
        create_time=head.create_time,
        rollback_of=head.rollback_of,
    )
