"""The delivery loop: sends what the outbox holds, on every replica.

Every half second it claims up to ``BATCH`` due notifications for ``HOLD`` (15 s: longer
than a send with its timeout), sends them concurrently, and records each outcome in its own
transaction, fenced on the claim: a replica that crashed mid-send leaves its claim to run
out, and another replica (or itself, restarted) sends the notification again with the same
``Idempotency-Key``. A failed send is tried again after ``5 s * 2^(n-1)`` (at most 10
minutes) until ``MAX_ATTEMPTS``; then it is ``failed`` and the server logs
``notification_failed`` with the channel and the reason. Every failure is logged as it
happens (``notification_retry``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import aiohttp
import structlog

from control_plane.notifications.channels import Settings, send
from control_plane.notifications.errors import DeliveryError, RetryableError
from control_plane.store import notifications as outbox
from control_plane.store.db import Database
from control_plane.store.notifications import Notification

__all__ = ["Delivery", "backoff"]

log = structlog.get_logger("legato.notifications")

BATCH = 16
# A send ends within its timeout (channels.TIMEOUT_SECONDS); the claim outlasts it.
HOLD = timedelta(seconds=15)
MAX_ATTEMPTS = 8
FIRST_BACKOFF = 5.0
MAX_BACKOFF = 600.0


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed sends."""
    return min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** max(0, attempts - 1))


class Delivery:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        clock: Callable[[], datetime],
        poll_seconds: float = 0.5,
        on_outcome: Callable[[str, str], None] | None = None,
    ) -> None:
        """``on_outcome``: told (channel, delivered | retried | failed) of every send
        once recorded (the metrics' counter; in memory)."""
        self._db = db
        self._on_outcome = on_outcome
        self._settings = settings
        self._clock = clock
        self._poll = poll_seconds

    async def run_forever(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    while await self.deliver_once(http) == BATCH:
                        pass
                except Exception:
                    log.exception("notification_delivery_failed")
                await asyncio.sleep(self._poll)

    async def deliver_once(self, http: aiohttp.ClientSession) -> int:
        """Claim and send what is due; returns how many were claimed."""
        # Most passes find nothing: look with a read, so that they take no write lock
        # (one writer at a time on SQLite).
        async with self._db.read() as probe:
            if not await outbox.any_due(probe, self._clock()):
                return 0
        async with self._db.write() as session:
            claimed = await outbox.claim(
                session,
                self._clock(),
                limit=BATCH,
                hold=HOLD,
                postgres=self._db.is_postgres,
            )
        if claimed:
            await asyncio.gather(*(self._deliver(http, n) for n in claimed))
        return len(claimed)

    async def _deliver(self, http: aiohttp.ClientSession, notification: Notification) -> None:
        error, again = "", False
        try:
            await send(notification, http, self._settings)
        except RetryableError as exc:
            error, again = str(exc), notification.attempts < MAX_ATTEMPTS
        except DeliveryError as exc:
            error = str(exc)
        now = self._clock()
        async with self._db.write() as session:
            if not error:
                await outbox.delivered(session, notification, now)
            elif again:
                at = now + timedelta(seconds=backoff(notification.attempts))
                await outbox.retry(session, notification, error, at)
            else:
                await outbox.failed(session, notification, error)
        if self._on_outcome is not None:
            outcome = "retried" if again else "failed" if error else "delivered"
            self._on_outcome(notification.channel, outcome)
        if error:
            (log.warning if again else log.error)(
                "notification_retry" if again else "notification_failed",
                run_id=notification.run_id,
                pipeline=notification.pipeline,
                notification_event=notification.event,
                target=notification.target,
                attempts=notification.attempts,
                error=error,
            )
