"""Published events start the runs of the pipelines subscribed to their type.

A publish is one write transaction: it reads the subscribers of the type (the
``event_subscriptions`` table, never every spec), evaluates the filters of their latest
versions' event triggers over ``event`` = {type, payload, source, id, time}, starts one
run per matching pipeline (trigger kind ``event``, params = the trigger's ``params`` plus
the reserved ``event``), stores the event with its run ids and records the request id.
A repeated request id replays the first result; two concurrent ones collide on the
requests table's key and the loser replays; the id sent with another type, payload or
source is refused (``store/requests.py``). A filter that fails, or a run that cannot
start (a required parameter nobody set), is logged and skips that pipeline only."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from google.protobuf import json_format, struct_pb2
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import Actor
from control_plane.errors import Conflict, FieldViolation, InvalidArgument, LegatoError
from control_plane.execution.effects import Effects
from control_plane.execution.ids import new_run_id
from control_plane.execution.plans import PlanCache
from control_plane.execution.runs import Runs, TriggerSpec
from control_plane.pipelines.expressions import Expression, ExpressionError, parse_expression
from control_plane.store import audit, requests
from control_plane.store.db import Database
from control_plane.store.models import EventRow
from control_plane.triggers.subscriptions import MAX_TYPE_LENGTH, subscribers
from control_plane.validation.params import to_python
from control_plane.validation.triggers import EVENT_ROOTS
from legato.v1 import spec_pb2

__all__ = ["MAX_SOURCE_LENGTH", "Events", "PublishResult"]

log = structlog.get_logger("legato.events")

MAX_SOURCE_LENGTH = 200
_METHOD = "PublishEvent"


@dataclass(frozen=True)
class PublishResult:
    event_id: str
    run_ids: list[str]
    duplicate: bool


class Events:
    def __init__(
        self, db: Database, runs: Runs, plans: PlanCache, *, clock: Callable[[], datetime]
    ) -> None:
        self._db = db
        self._runs = runs
        self._plans = plans
        self._clock = clock

    async def publish(
        self, event_type: str, payload: struct_pb2.Struct, *, source: str, actor: Actor
    ) -> PublishResult:
        """Store the event and start the runs of the pipelines it matches."""
        _check(event_type, source)
        request = requests.Fingerprint.of(
            type=event_type, payload=json_format.MessageToDict(payload), source=source
        )

        async def work(session: AsyncSession, effects: Effects) -> PublishResult:
            return await self._publish(
                session, effects, event_type, payload, source, actor, request
            )

        try:
            return await self._runs.in_transaction(work)
        except IntegrityError:
            if not actor.request_id:
                raise
        # A concurrent call with this request id committed first: answer with its result.
        try:
            return await self._runs.in_transaction(work)
        except IntegrityError:
            raise Conflict(
                "another publish with this request_id is being stored; try again",
                reason="CONCURRENT_MODIFICATION",
            ) from None

    async def _publish(
        self,
        session: AsyncSession,
        effects: Effects,
        event_type: str,
        payload: struct_pb2.Struct,
        source: str,
        actor: Actor,
        request: requests.Fingerprint,
    ) -> PublishResult:
        replay = await requests.find_result(session, _METHOD, actor.request_id, request)
        if replay is not None:
            return PublishResult(str(replay["event_id"]), list(replay["run_ids"]), True)
        now = self._clock()
        event: dict[str, Any] = {
            "type": event_type,
            "payload": {k: to_python(v) for k, v in payload.fields.items()},
            "source": source,
            "id": new_run_id(),
            "time": now.isoformat(),
        }
        run_ids = []
        for subscriber in await subscribers(session, event_type):
            plan = await self._plans.get(
                session, subscriber.pipeline_id, subscriber.pipeline, subscriber.version
            )
            trigger = _first_match(plan.spec, event, subscriber.pipeline)
            if trigger is None:
                continue
            params = struct_pb2.Struct()
            params.CopyFrom(trigger.params)
            params.update({"event": event})
            details = {"event_id": event["id"], "event_type": event_type, "source": source}
            try:
                run = await self._runs.create_in(
                    session,
                    subscriber.pipeline,
                    params,
                    TriggerSpec(kind="event", details=details),
                    Actor(name=actor.name, kind=actor.kind),
                    effects,
                )
            except LegatoError as exc:
                log.warning(
                    "event_run_not_started",
                    event_id=event["id"],
                    event_type=event_type,
                    pipeline=subscriber.pipeline,
                    reason=exc.reason,
                    error=exc.message,
                )
                continue
            run_ids.append(run.id)
        session.add(
            EventRow(
                id=event["id"],
                type=event_type,
                source=source,
                payload=event["payload"],
                run_ids=run_ids,
                create_time=now,
            )
        )
        result = {"event_id": event["id"], "run_ids": run_ids}
        await requests.record_result(session, _METHOD, actor.request_id, result, now, request)
        audit.record(
            session,
            now=now,
            actor=actor,
            action="Publish",  # the RPC's name, as refused and failed calls are recorded
            resource=f"events/{event['id']}",
            details={"type": event_type, "source": source, "run_ids": run_ids},
        )
        log.info("event_published", event_id=event["id"], event_type=event_type, runs=run_ids)
        return PublishResult(event["id"], run_ids, False)


def _check(event_type: str, source: str) -> None:
    violations = []
    if not event_type:
        violations.append(
            FieldViolation("type", "type is required: the type pipelines subscribe to")
        )
    elif len(event_type) > MAX_TYPE_LENGTH:
        violations.append(
            FieldViolation("type", f"type is longer than {MAX_TYPE_LENGTH} characters")
        )
    if len(source) > MAX_SOURCE_LENGTH:
        violations.append(
            FieldViolation("source", f"source is longer than {MAX_SOURCE_LENGTH} characters")
        )
    if violations:
        raise InvalidArgument(
            f"the event cannot be published: {violations[0].description}",
            violations=violations,
            reason="INVALID_EVENT",
        )


def _first_match(
    spec: spec_pb2.PipelineSpec, event: dict[str, Any], pipeline: str
) -> spec_pb2.EventTrigger | None:
    """The first event trigger of ``spec`` for the event's type whose filter is true; None
    when there is none, or when a filter fails (logged: the pipeline is skipped)."""
    for position, trigger in enumerate(spec.triggers):
        if trigger.WhichOneof("kind") != "event" or trigger.event.type != event["type"]:
            continue
        if not trigger.event.filter:
            return trigger.event
        try:
            if _filter(trigger.event.filter).evaluate({"event": event}):
                return trigger.event
        except ExpressionError as exc:
            log.warning(
                "event_filter_failed",
                event_id=event["id"],
                event_type=event["type"],
                pipeline=pipeline,
                trigger=f"triggers[{position}].event.filter",
                error=str(exc),
            )
            return None
    return None


@functools.lru_cache(maxsize=1024)
def _filter(text: str) -> Expression:
    return parse_expression(text, allowed_roots=EVENT_ROOTS)
