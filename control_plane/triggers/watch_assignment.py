"""Handing each watch (a database trigger, see ``triggers.watches``) to exactly one
connected agent that has the trigger's connection.

Each replica runs one task that reconciles the ``watches`` table with the agents connected
to it. It is woken when an agent connects or disconnects here and when a pipeline changed,
and it runs every ``interval`` seconds anyway: that pass picks up what other replicas did.

- **Claims** are conditional UPDATEs on the row (``agent``, ``replica``, ``claim_time``),
  so two replicas never both win one watch. A replica takes a watch when nobody holds it,
  when it holds it itself, when the holder's claim was not refreshed for longer than the
  lease (that replica is gone), or when the holding agent has connected here since the
  claim was last refreshed (an agent has one stream; its old replica restarted or has not
  yet noticed that the stream broke). A replica that lost a claim (too slow to refresh
  it) notices on its next pass and cancels the watch on its agent.
- **Refresh and release**: the holding replica refreshes its claims while the agent stays
  connected; when the agent disconnects, the watch goes to another agent here that has
  the connection, or is released for any replica to claim; a stopping replica releases
  its claims. ``agent`` keeps naming the last holder until someone else claims the watch,
  so the changes it reports when it reconnects still count; it gets the watch back first
  if it is still eligible.
- **Messages**: a claimed watch goes to its agent as ``WatchAssignment`` with the stored
  watermark; an agent that should no longer watch (the trigger was removed or changed, the
  pipeline archived, the watch moved) gets ``WatchCancelled``.
- A watch no connected agent can take is logged once (``watch_unassigned``) until one can.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, false, select, update
from sqlalchemy.engine import CursorResult

from control_plane.execution.hub import AgentHub, AgentSession, Outgoing
from control_plane.store.db import Database
from control_plane.store.models import WatchRow
from legato.spec.connections import connection_label, connection_variable

__all__ = ["WatchAssigner", "WatchMessage"]

log = structlog.get_logger("legato.watches")


@dataclass(frozen=True)
class WatchMessage(Outgoing):
    """An Outgoing of ``kind`` "watch" (watch ``trigger``, proto3 JSON of a
    DatabaseTrigger, from ``watermark``) or "unwatch"."""

    watch_id: str = ""
    pipeline: str = ""
    trigger: dict[str, Any] = field(default_factory=dict)
    watermark: str = ""


class WatchAssigner:
    def __init__(
        self,
        db: Database,
        hub: AgentHub,
        *,
        replica: str,
        lease_seconds: float,
        clock: Callable[[], datetime],
        interval: float | None = None,
    ) -> None:
        self._db = db
        self._hub = hub
        self._replica = replica
        self._lease = timedelta(seconds=lease_seconds)
        self._clock = clock
        self.interval = interval if interval is not None else min(5.0, max(0.5, lease_seconds / 4))
        # What this replica told agents to watch: watch id → the session it went to.
        self._held: dict[str, AgentSession] = {}
        self._unassigned: set[str] = set()
        self._refreshed: datetime | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Reconcile soon: agents or pipelines changed."""
        self._wake.set()

    def held(self) -> dict[str, str]:
        """Watch id → agent, for what this replica handed out."""
        return {watch: session.name for watch, session in self._held.items()}

    async def release(self) -> None:
        """Give up this replica's claims (it is stopping), so that other replicas need not
        wait for them to go stale."""
        self._held.clear()
        async with self._db.write() as db:
            await db.execute(
                update(WatchRow)
                .where(WatchRow.replica == self._replica)
                .values(replica=None, claim_time=None)
                .execution_options(synchronize_session=False)
            )

    async def run_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:
                log.exception("watch_assignment_failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()

    async def reconcile(self) -> None:
        """One pass: refresh this replica's claims, cancel what moved away, claim what no
        live claim covers, send the assignments once the claims are committed."""
        now = self._clock()
        live = {session.name: session for session in self._hub.sessions()}
        await self._refresh(now, live)
        async with self._db.read() as db:
            rows = list((await db.execute(select(WatchRow).order_by(WatchRow.id))).scalars())
        self._forget_removed({row.id for row in rows}, live)
        claims: list[tuple[WatchRow, AgentSession]] = []
        releases: list[WatchRow] = []
        load = Counter(session.name for session in self._held.values())
        for row in rows:
            if self._still_held(row, live):
                continue
            self._cancel(row.id, live)
            if self._held_elsewhere(row, now, live):
                self._unassigned.discard(row.id)
                continue
            chosen = _choose(row, live.values(), load)
            if chosen is None:
                if row.replica == self._replica:
                    releases.append(row)
                self._log_unassigned(row)
                continue
            load[chosen.name] += 1
            claims.append((row, chosen))
        if claims or releases:
            await self._write(claims, releases, now)

    # -- the pass, step by step ----------------------------------------------------------

    async def _refresh(self, now: datetime, live: Mapping[str, AgentSession]) -> None:
        """Renew the claims of watches whose agent is still connected here, every third
        of the lease (one statement for all of them)."""
        ids = [w for w, session in self._held.items() if live.get(session.name) is session]
        if not ids or (self._refreshed is not None and now < self._refreshed + self._lease / 3):
            return
        async with self._db.write() as db:
            await db.execute(
                update(WatchRow)
                .where(WatchRow.id.in_(ids), WatchRow.replica == self._replica)
                .values(claim_time=now)
                .execution_options(synchronize_session=False)
            )
        self._refreshed = now

    def _forget_removed(self, ids: set[str], live: Mapping[str, AgentSession]) -> None:
        for watch in [w for w in self._held if w not in ids]:
            self._cancel(watch, live)
        self._unassigned &= ids

    def _still_held(self, row: WatchRow, live: Mapping[str, AgentSession]) -> bool:
        session = self._held.get(row.id)
        return (
            session is not None
            and row.replica == self._replica
            and row.agent == session.name
            and live.get(session.name) is session
        )

    def _cancel(self, watch: str, live: Mapping[str, AgentSession]) -> None:
        """Forget ``watch``; tell its agent to stop if that agent is still connected."""
        session = self._held.pop(watch, None)
        if session is not None and live.get(session.name) is session:
            session.send(WatchMessage(kind="unwatch", watch_id=watch))
            log.info("watch_cancelled", watch_id=watch, agent=session.name)

    def _held_elsewhere(
        self, row: WatchRow, now: datetime, live: Mapping[str, AgentSession]
    ) -> bool:
        """Claimed by another replica that keeps refreshing the claim, and the agent did
        not connect here since that claim was last refreshed."""
        return (
            row.replica is not None
            and row.replica != self._replica
            and row.claim_time is not None
            and row.claim_time >= now - self._lease
            and not _moved_here(row, live)
        )

    def _log_unassigned(self, row: WatchRow) -> None:
        if row.id in self._unassigned:
            return
        self._unassigned.add(row.id)
        log.warning(
            "watch_unassigned",
            watch_id=row.id,
            pipeline=row.pipeline,
            connection=row.connection,
            message=f"no agent connected to this control plane has connection "
            f"{row.connection!r}, so the database trigger of pipeline {row.pipeline!r} is not "
            f"watched; start an agent with it ({connection_variable(row.connection)}"
            "=URL or --connections FILE); `legato agents` lists agents and their connections",
        )

    async def _write(
        self,
        claims: Sequence[tuple[WatchRow, AgentSession]],
        releases: Sequence[WatchRow],
        now: datetime,
    ) -> None:
        won: list[tuple[WatchRow, AgentSession]] = []
        async with self._db.write() as db:
            for row in releases:
                await db.execute(
                    update(WatchRow)
                    .where(WatchRow.id == row.id, WatchRow.replica == self._replica)
                    .values(replica=None, claim_time=None)
                    .execution_options(synchronize_session=False)
                )
            for row, session in claims:
                result = await db.execute(
                    update(WatchRow)
                    .where(
                        WatchRow.id == row.id,
                        (WatchRow.replica.is_(None))
                        | (WatchRow.replica == self._replica)
                        | (WatchRow.claim_time.is_(None))
                        | (WatchRow.claim_time < now - self._lease)
                        | _claimed_before(session),
                    )
                    .values(agent=session.name, replica=self._replica, claim_time=now)
                    .execution_options(synchronize_session=False)
                )
                if isinstance(result, CursorResult) and result.rowcount == 1:
                    won.append((row, session))
        for row, session in won:
            self._held[row.id] = session
            self._unassigned.discard(row.id)
            session.send(
                WatchMessage(
                    kind="watch",
                    watch_id=row.id,
                    pipeline=row.pipeline,
                    trigger=dict(row.trigger),
                    watermark=row.watermark,
                )
            )
            log.info(
                "watch_assigned",
                watch_id=row.id,
                pipeline=row.pipeline,
                agent=session.name,
                watermark=row.watermark,
            )


def _moved_here(row: WatchRow, live: Mapping[str, AgentSession]) -> bool:
    """The holding agent connected here after its claim was last refreshed elsewhere: it
    has one stream, so that claim is over (the other replica restarted, or has not yet
    noticed that the stream broke)."""
    session = live.get(row.agent) if row.agent else None
    return (
        session is not None
        and session.connect_time is not None
        and row.claim_time is not None
        and session.connect_time > row.claim_time
    )


def _claimed_before(session: AgentSession) -> ColumnElement[bool]:
    """The condition of ``_moved_here`` in SQL, for ``session``."""
    if session.connect_time is None:
        return false()
    return (WatchRow.agent == session.name) & (WatchRow.claim_time < session.connect_time)


def _choose(
    row: WatchRow, sessions: Iterable[AgentSession], load: Mapping[str, int]
) -> AgentSession | None:
    """The previous holder if it can still take the watch, else the eligible agent with
    the fewest watches from here (then by name)."""
    needs = {connection_label(row.connection): "true"}
    eligible = [s for s in sessions if s.matches(needs) and not s.draining]
    for session in eligible:
        if session.name == row.agent:
            return session
    return min(eligible, key=lambda s: (load.get(s.name, 0), s.name), default=None)
