"""Wake-ups: when work may be ready, when a run changed, when a lease must be cancelled.

Inside one control plane these are asyncio events, so the dispatcher pushes a ready step
the moment its transaction commits. With PostgreSQL, the same signals go to the other
replicas through LISTEN/NOTIFY on one dedicated connection. Signals are hints, sent after
the commit that caused them: a lost one costs latency, never correctness, because the
reaper's periodic pass finds whatever a missed wake-up left behind.

The listening connection is watched: when it breaks (the database restarted, a network
blip), publishing becomes a no-op at once — a change already committed must never fail
because its hint could not be sent — and it is opened again in the background with
backoff; once it is back every local waiter is woken, as notifications may have been
missed meanwhile."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import asyncpg
import structlog
from sqlalchemy.engine import URL

__all__ = ["CHANNEL", "RunWatch", "Signals"]

CHANNEL = "legato_signals"
# A notification's payload must stay under PostgreSQL's 8,000 bytes: the names of the
# changed steps are sent only while they fit, else the watchers re-read the whole run.
_MAX_STEP_HINTS_BYTES = 4000
# Run ids are 26 characters: 100 of them (~3,000 bytes) leave room for the step hints.
_RUNS_PER_NOTIFICATION = 100
log = structlog.get_logger("legato.signals")

CancelHandler = Callable[[str, str, str], None]


class RunWatch(asyncio.Event):
    """Set whenever its run changes; :meth:`take` says which steps changed since the last
    call: a set of names (empty: only the run row or its log), or ``None`` when that is not
    known (a replica's notification too large to name them, a reconnect), so the watcher
    re-reads every step."""

    def __init__(self) -> None:
        super().__init__()
        self._steps: set[str] | None = set()

    def changed(self, steps: Collection[str] | None) -> None:
        if steps is None:
            self._steps = None
        elif self._steps is not None:
            self._steps.update(steps)
        self.set()

    def take(self) -> set[str] | None:
        """The steps changed since the last call, and clear the event."""
        steps, self._steps = self._steps, set()
        self.clear()
        return steps


class Signals:
    def __init__(self, replica: str, *, postgres_url: URL | None = None) -> None:
        self.replica = replica
        self.work = asyncio.Event()
        # Trigger steps (run by the control plane itself) may have something to do.
        self.pipeline_triggers = asyncio.Event()
        # A pipeline's schedule may have changed: the scheduler recomputes its sleep.
        self.schedules = asyncio.Event()
        self._watchers: dict[str, set[RunWatch]] = defaultdict(set)
        self._cancel_handler: CancelHandler | None = None
        self._url = postgres_url
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._reconnecting: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        if self._url is None:
            return
        self._conn = await self._listen()

    async def _listen(self) -> Any:
        assert self._url is not None
        dsn = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn, timeout=10)
        await conn.add_listener(CHANNEL, self._on_notify)
        conn.add_termination_listener(self._on_terminated)
        return conn

    async def stop(self) -> None:
        self._stopped = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            await asyncio.gather(self._reconnecting, return_exceptions=True)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await conn.close(timeout=5)

    def _on_terminated(self, conn: Any) -> None:
        if conn is self._conn:
            self._lost("the connection was closed")

    def _lost(self, why: str) -> None:
        """The listening connection is gone: publish nothing until it is open again."""
        if self._stopped or self._reconnecting is not None:
            return
        log.warning("signals_connection_lost", error=why)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        try:
            while not self._stopped:
                await asyncio.sleep(delay)
                try:
                    conn = await self._listen()
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    delay = min(delay * 2, 5.0)
                    continue
                self._conn = conn
                log.info("signals_connection_restored")
                self._wake_everything()
                return
        finally:
            self._reconnecting = None

    def _wake_everything(self) -> None:
        self.work.set()
        self.pipeline_triggers.set()
        self.schedules.set()
        for run_id in list(self._watchers):
            self._wake_watchers(run_id)

    def on_cancel(self, handler: CancelHandler) -> None:
        """``handler(agent, lease_id, reason)`` for cancellations of leases, wherever raised."""
        self._cancel_handler = handler

    # -- raising --------------------------------------------------------------------

    async def work_ready(self) -> None:
        """Steps may be ready for agents."""
        self.work.set()
        await self._publish({"k": "work"})

    async def trigger_steps_ready(self) -> None:
        """Trigger steps (run by the control plane) may have something to do."""
        self.pipeline_triggers.set()
        await self._publish({"k": "triggers"})

    async def schedules_changed(self) -> None:
        self.schedules.set()
        await self._publish({"k": "schedules"})

    async def run_changed(
        self, *run_ids: str, steps: Mapping[str, Collection[str]] | None = None
    ) -> None:
        """Runs changed; ``steps`` names, per run, the steps that did (a run without an
        entry: unknown, its watchers re-read every step)."""
        steps = steps or {}
        for run_id in run_ids:
            self._wake_watchers(run_id, steps.get(run_id))
        # PostgreSQL refuses a payload over 8,000 bytes: a transaction that changed many
        # runs (a scheduler batch of 1,000) is announced in several notifications.
        for start in range(0, len(run_ids), _RUNS_PER_NOTIFICATION):
            chunk = run_ids[start : start + _RUNS_PER_NOTIFICATION]
            message: dict[str, Any] = {"k": "runs", "ids": list(chunk)}
            hints = {run_id: sorted(steps[run_id]) for run_id in chunk if run_id in steps}
            if hints and sum(len(name) + 3 for names in hints.values() for name in names) < (
                _MAX_STEP_HINTS_BYTES
            ):
                message["s"] = hints
            await self._publish(message)

    async def cancel_lease(self, agent: str, lease_id: str, reason: str) -> None:
        if self._cancel_handler is not None:
            self._cancel_handler(agent, lease_id, reason)
        await self._publish({"k": "cancel", "agent": agent, "lease": lease_id, "reason": reason})

    # -- watching -------------------------------------------------------------------

    @contextmanager
    def watch(self, run_id: str) -> Iterator[RunWatch]:
        """An event set whenever ``run_id`` changes, for as long as the block runs."""
        event = RunWatch()
        self._watchers[run_id].add(event)
        try:
            yield event
        finally:
            watchers = self._watchers.get(run_id)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._watchers[run_id]

    # -- plumbing -------------------------------------------------------------------

    def _wake_watchers(self, run_id: str, steps: Collection[str] | None = None) -> None:
        for event in self._watchers.get(run_id, ()):
            event.changed(steps)

    async def _publish(self, message: dict[str, Any]) -> None:
        conn = self._conn
        if conn is None:
            return
        payload = json.dumps({**message, "r": self.replica}, separators=(",", ":"))
        try:
            async with self._lock:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload, timeout=5)
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            # The connection was terminated while a notification was on it: asyncpg says
            # "cannot switch to state ...; another operation is in progress".
            asyncpg.InternalClientError,
        ) as exc:
            log.warning("notify_failed", error=str(exc))
            if (
                conn.is_closed()
                or not isinstance(exc, asyncpg.PostgresError)
                or isinstance(exc, asyncpg.PostgresConnectionError)
            ):
                self._lost(str(exc))

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if message.get("r") == self.replica:
            return
        kind = message.get("k")
        if kind == "work":
            self.work.set()
        elif kind == "triggers":
            self.pipeline_triggers.set()
        elif kind == "schedules":
            self.schedules.set()
        elif kind == "runs":
            hints = message.get("s") or {}
            for run_id in message.get("ids", []):
                named = hints.get(run_id)
                known = [str(n) for n in named] if isinstance(named, list) else None
                self._wake_watchers(str(run_id), known)
        elif kind == "cancel" and self._cancel_handler is not None:
            self._cancel_handler(
                str(message["agent"]), str(message["lease"]), str(message["reason"])
            )
