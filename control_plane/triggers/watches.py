"""Database triggers: the ``watches`` table, and the runs the changes agents see start.

Each database trigger of a non-archived pipeline's latest version is one row of
``watches``. Its id is the pipeline id and a hash of the trigger, so it stays the same (and
keeps its watermark and its agent) across versions that leave the trigger unchanged;
changing the trigger replaces the row, archiving removes it, restoring adds it anew.
:class:`WatchSync` keeps the table in step inside the registry's transaction, like the
event subscriptions; ``triggers.watch_assignment`` hands each row to one agent.

A change an agent reports (``DatabaseChange``) starts a run of the pipeline like an event:
trigger kind ``event``, the reserved parameter ``event`` = {type: "database", payload,
watch_id, watermark, source: "agent <name>", time}. The watermark is stored on the row in
the same transaction, and the request id ``watch:<watch_id>:<watermark>`` makes a report
the agent sends again after a reconnect start nothing new. Only the agent the row names
is heard; a change from any other is logged and ignored."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from google.protobuf import json_format, struct_pb2
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import Actor
from control_plane.errors import LegatoError
from control_plane.execution.effects import Effects
from control_plane.execution.runs import Runs, TriggerSpec
from control_plane.store import audit, requests
from control_plane.store import pipelines as pipeline_queries
from control_plane.store.models import PipelineRow, WatchRow
from control_plane.validation.params import to_python
from legato.v1 import spec_pb2

__all__ = ["WatchSync", "Watches", "database_triggers", "watch_id"]

log = structlog.get_logger("legato.watches")

_METHOD = "DatabaseChange"


def watch_id(pipeline_id: int, trigger: dict[str, Any]) -> str:
    """``<pipeline id>-<hash>`` of a database trigger in its proto3 JSON form (as versions
    store it); migration 0006 computes the same."""
    text = json.dumps(trigger, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{pipeline_id}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def database_triggers(spec: spec_pb2.PipelineSpec) -> list[dict[str, Any]]:
    """The database triggers of ``spec`` in proto3 JSON form, each distinct one once."""
    found: dict[str, dict[str, Any]] = {}
    for trigger in spec.triggers:
        if trigger.WhichOneof("kind") == "database":
            data = json_format.MessageToDict(trigger.database, preserving_proto_field_name=True)
            found.setdefault(json.dumps(data, sort_keys=True), data)
    return list(found.values())


class WatchSync:
    """A ``registry.PipelineWatcher``: adds, keeps and removes a pipeline's watches when it
    gets a new latest version, drops them when it is archived and adds them on restore;
    ``on_commit`` (the assigner's wake-up) runs once the change is committed."""

    def __init__(self, on_commit: Callable[[], None]) -> None:
        self._on_commit = on_commit

    async def pipeline_changed(
        self,
        session: AsyncSession,
        pipeline: PipelineRow,
        spec: spec_pb2.PipelineSpec,
        now: datetime,
    ) -> None:
        wanted = {} if pipeline.archived else _wanted(pipeline.id, spec)
        have = set(
            (
                await session.execute(
                    select(WatchRow.id).where(WatchRow.pipeline_id == pipeline.id)
                )
            ).scalars()
        )
        gone = sorted(have - set(wanted))
        if gone:
            await session.execute(delete(WatchRow).where(WatchRow.id.in_(gone)))
        session.add_all(
            WatchRow(
                id=key,
                pipeline_id=pipeline.id,
                pipeline=pipeline.name,
                connection=str(trigger.get("connection", "")),
                trigger=trigger,
                watermark="",
                create_time=now,
            )
            for key, trigger in sorted(wanted.items())
            if key not in have
        )
        await session.flush()

    async def committed(self) -> None:
        self._on_commit()


def _wanted(pipeline_id: int, spec: spec_pb2.PipelineSpec) -> dict[str, dict[str, Any]]:
    return {watch_id(pipeline_id, t): t for t in database_triggers(spec)}


class Watches:
    """Changes reported by agents: each starts a run of the watch's pipeline."""

    def __init__(
        self,
        runs: Runs,
        *,
        clock: Callable[[], datetime],
        on_agents_changed: Callable[[], None],
    ) -> None:
        self._runs = runs
        self._clock = clock
        self._on_agents_changed = on_agents_changed

    def agents_changed(self) -> None:
        """An agent connected or disconnected here: watches may move."""
        self._on_agents_changed()

    async def change(
        self, agent: str, watch: str, payload: struct_pb2.Struct, watermark: str
    ) -> str | None:
        """Start the run for a change ``agent`` saw on watch ``watch``; returns its id, or
        None when nothing started (a repeated report, a watch the agent does not hold, a
        run that cannot start — each logged)."""

        async def work(session: AsyncSession, effects: Effects) -> str | None:
            return await self._change(session, effects, agent, watch, payload, watermark)

        try:
            return await self._runs.in_transaction(work)
        except IntegrityError:
            # The same report committed meanwhile (through another replica): a repeat.
            log.info("watch_change_repeated", watch_id=watch, watermark=watermark, agent=agent)
            return None

    async def _change(
        self,
        session: AsyncSession,
        effects: Effects,
        agent: str,
        watch: str,
        payload: struct_pb2.Struct,
        watermark: str,
    ) -> str | None:
        key = f"watch:{watch}:{watermark}"
        if await requests.find_result(session, _METHOD, key) is not None:
            log.info("watch_change_repeated", watch_id=watch, watermark=watermark, agent=agent)
            return None
        row = await session.get(WatchRow, watch)
        if row is not None:
            # Lock order: the pipeline first, then the watch, as the registry does.
            await pipeline_queries.find_pipeline(session, row.pipeline, for_update=True)
            row = await session.get(WatchRow, watch, with_for_update=True, populate_existing=True)
        if row is None or row.agent != agent:
            log.warning(
                "watch_change_ignored",
                watch_id=watch,
                agent=agent,
                holder=None if row is None else row.agent,
                reason="the watch no longer exists"
                if row is None
                else "another agent holds the watch",
            )
            return None
        now = self._clock()
        event: dict[str, Any] = {
            "type": "database",
            "payload": {k: to_python(v) for k, v in payload.fields.items()},
            "watch_id": watch,
            "watermark": watermark,
            "source": f"agent {agent}",
            "time": now.isoformat(),
        }
        params = struct_pb2.Struct()
        params.update({"event": event})
        details = {"watch_id": watch, "watermark": watermark, "source": event["source"]}
        run_id = ""
        try:
            run = await self._runs.create_in(
                session,
                row.pipeline,
                params,
                TriggerSpec(kind="event", details=details),
                Actor(name=agent, kind="agent"),
                effects,
            )
            run_id = run.id
        except LegatoError as exc:
            log.warning(
                "watch_run_not_started",
                watch_id=watch,
                pipeline=row.pipeline,
                reason=exc.reason,
                error=exc.message,
            )
        row.watermark = watermark
        row.change_time = now
        await requests.record_result(session, _METHOD, key, {"run_id": run_id}, now)
        audit.record(
            session,
            now=now,
            actor=Actor(name=agent, kind="agent", request_id=key),
            action=_METHOD,
            resource=f"pipelines/{row.pipeline}",
            details={"watch_id": watch, "watermark": watermark, "run_id": run_id},
        )
        log.info("watch_change", watch_id=watch, pipeline=row.pipeline, agent=agent, run_id=run_id)
        return run_id or None
