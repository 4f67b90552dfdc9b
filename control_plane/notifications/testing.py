"""Test sends of a pipeline's notifications (``legato notify test``), so that users can check
their settings before a real failure needs them.

Each chosen notification gets one message now, straight through its channel — not through
the outbox: nothing is stored, retried or listed by ``legato notifications`` — about a run
that does not exist: run id ``test``, status and trigger ``test``, event ``test``, ``"test":
true`` in the webhook's ``run`` object and an error saying it is a test. The message is the
one a real event sends, templates, signature and headers included (``Legato-Event: test``,
``Legato-Run: test``, an ``Idempotency-Key`` of its own). All of them are sent at once,
each send within ``TIMEOUT_SECONDS``, and one that fails does not stop the others.

- **email** goes through the server's SMTP relay; without ``--smtp-host`` the result says
  so and is not ok.
- **pagerduty** sends ``trigger`` and then ``resolve`` under a ``dedup_key`` of the test's
  own, ``legato/<pipeline>/test/<random>``: the test opens an incident and closes it at
  once, and never touches the pipeline's own incident (``legato/<pipeline>``). A service
  that pages on every trigger still pages once. When the resolve fails, the result is not
  ok and names the incident to resolve by hand.

Every test is recorded in the activity log (``TestNotifications``, with the positions
tried and those that failed)."""

from __future__ import annotations

import asyncio
import secrets as random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import aiohttp
import structlog
from google.protobuf import json_format

from control_plane.access.actors import Actor
from control_plane.errors import FailedPrecondition, FieldViolation, InvalidArgument
from control_plane.notifications.channels import Settings, send
from control_plane.notifications.errors import DeliveryError
from control_plane.notifications.events import target_of
from control_plane.store import audit
from control_plane.store.db import Database
from control_plane.store.notifications import SENDING, Notification
from legato.v1 import spec_pb2

__all__ = [
    "TEST_ERROR",
    "TEST_RUN",
    "TIMEOUT_SECONDS",
    "NotificationTests",
    "Trial",
    "chosen",
    "made_up_run",
]

log = structlog.get_logger("legato.notifications")

EVENT = "test"
TEST_RUN = "test"
TEST_ERROR = (
    "This is a test notification from `legato notify test`; no run failed and nothing needs "
    "to be done."
)
TIMEOUT_SECONDS = 5.0
"""How long one send may take (PagerDuty's trigger and its resolve each)."""
# An event the PagerDuty channel sends as ``resolve`` (pagerduty.RESOLVING).
_RESOLVE = "succeeded"


@dataclass(frozen=True)
class Trial:
    """How one notification's test went: ``detail`` is the receiver's answer (``200 OK``)
    or why the send failed."""

    position: int
    channel: str
    target: str
    ok: bool
    detail: str


def made_up_run(pipeline: str, version: int, now: datetime) -> dict[str, Any]:
    """The made-up run a test message is about (the webhook's ``run`` object)."""
    moment = now.isoformat()
    return {
        "id": TEST_RUN,
        "pipeline": pipeline,
        "version": version,
        "status": "test",
        "trigger": "test",
        "error": TEST_ERROR,
        "params": {},
        "logical_time": None,
        "create_time": moment,
        "start_time": moment,
        "end_time": moment,
        "duration_seconds": 0.0,
        "event_time": moment,
        "test": True,
    }


def chosen(
    spec: spec_pb2.PipelineSpec, positions: Sequence[int]
) -> list[tuple[int, spec_pb2.Notification]]:
    """The notifications at ``positions`` (all of them when empty), in order; an error
    when the spec has none or a position is not one of its notifications."""
    name = spec.name
    count = len(spec.notifications)
    if count == 0:
        raise FailedPrecondition(
            f"{name} has no notifications; add some under `notifications:` in its spec "
            "(see docs/notifications.md)",
            reason="NO_NOTIFICATIONS",
            metadata={"pipeline": name},
        )
    where = "at position 0" if count == 1 else f"at positions 0 to {count - 1}"
    there = f"{name} has {count} notification{'' if count == 1 else 's'}, {where}"
    wrong = [(index, position) for index, position in enumerate(positions) if position >= count]
    if wrong:
        shown = ", ".join(str(position) for _, position in wrong)
        raise InvalidArgument(
            f"{there}; there is no notification at {shown}",
            violations=[
                FieldViolation(f"positions[{index}]", f"{there}; there is none at {position}")
                for index, position in wrong
            ],
            reason="INVALID_POSITION",
            metadata={"pipeline": name},
        )
    picked = sorted(set(positions)) if positions else range(count)
    return [(position, spec.notifications[position]) for position in picked]


class NotificationTests:
    """Sends test messages with the server's channel settings (secrets, SMTP relay,
    PagerDuty endpoint) and records each test in the activity log."""

    def __init__(self, db: Database, settings: Settings, *, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock

    async def send(
        self,
        spec: spec_pb2.PipelineSpec,
        *,
        version: int,
        positions: Sequence[int],
        actor: Actor,
    ) -> list[Trial]:
        """Test the notifications of ``spec`` (a validated spec; ``version`` is its version
        number, 0 for a spec that is not applied) at ``positions``, all when empty."""
        picked = chosen(spec, positions)
        now = self._clock()
        facts = made_up_run(spec.name, version, now)
        batch = random.token_hex(6)
        async with aiohttp.ClientSession() as http:
            trials = await asyncio.gather(
                *(
                    self._try(http, position, notification, facts, f"test-{batch}-{position}")
                    for position, notification in picked
                )
            )
        async with self._db.write() as session:
            audit.record(
                session,
                now=now,
                actor=actor,
                action="TestNotifications",
                resource=f"pipelines/{spec.name}",
                details={
                    "version": version,
                    "positions": [trial.position for trial in trials],
                    "failed": [trial.position for trial in trials if not trial.ok],
                },
            )
        return list(trials)

    async def _try(
        self,
        http: aiohttp.ClientSession,
        position: int,
        notification: spec_pb2.Notification,
        facts: dict[str, Any],
        key: str,
    ) -> Trial:
        kind, target = target_of(notification)
        settings = json_format.MessageToDict(getattr(notification, kind)) if kind else {}
        message = Notification(
            id=0,
            idempotency_key=key,
            run_id=TEST_RUN,
            pipeline=str(facts["pipeline"]),
            event=EVENT,
            channel=kind,
            target=target,
            settings=settings,
            facts=facts,
            status=SENDING,
            attempts=1,
            next_attempt_time=self._clock(),
            claim_expire_time=None,
            last_error="",
            create_time=self._clock(),
            deliver_time=None,
        )

        def trial(ok: bool, detail: str) -> Trial:
            return Trial(position, kind, target, ok, detail)

        try:
            if kind == "pagerduty":
                return await self._pagerduty(http, message, trial)
            async with asyncio.timeout(TIMEOUT_SECONDS):
                return trial(True, await send(message, http, self._settings))
        except DeliveryError as exc:
            return trial(False, exc.answer or str(exc))
        except TimeoutError:
            return trial(False, _NO_ANSWER)
        except Exception:  # a bug of one channel must not fail the others' tests
            log.exception("notification_test_failed", pipeline=message.pipeline, target=target)
            return trial(False, "the test could not be sent (an error of the server; see its log)")

    async def _pagerduty(
        self,
        http: aiohttp.ClientSession,
        message: Notification,
        trial: Callable[[bool, str], Trial],
    ) -> Trial:
        """``trigger``, then ``resolve``, under a dedup_key of this test's own."""
        dedup_key = f"legato/{message.pipeline}/test/{random.token_hex(4)}"
        async with asyncio.timeout(TIMEOUT_SECONDS):
            opened = await send(message, http, self._settings, dedup_key=dedup_key)
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                await send(
                    replace(message, event=_RESOLVE), http, self._settings, dedup_key=dedup_key
                )
        except DeliveryError as exc:
            why = exc.answer or str(exc)
        except TimeoutError:
            why = _NO_ANSWER
        else:
            return trial(True, f"{opened}; incident {dedup_key} triggered and resolved")
        return trial(
            False,
            f"triggered ({opened}) but the resolve failed ({why}): resolve the incident "
            f"{dedup_key} in PagerDuty",
        )


_NO_ANSWER = f"no answer within {TIMEOUT_SECONDS:g} s"
