"""One unit of work for everything that changes runs: write, collect the effects, lease the
steps it made ready in the same transaction, commit, then push.

A result from an agent, a new run, a cancellation, a lease the reaper reclaims, a trigger
step's child run: each is a function of the write session and the :class:`Effects` it
fills. :meth:`UnitOfWork.run` opens the transaction, calls it, claims the ready steps for
agents with credit (so a step goes straight to ``leased``, written once, without a
dispatcher pass; see ``store/steps``: deferred writes),
commits, and only then sends the assignments and applies the effects (wake-ups, lease
cancellations, watchers' hints). If the transaction fails, the credits the claim reserved
are given back and nothing is sent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.execution.dispatch import Dispatcher
from control_plane.execution.effects import Effects
from control_plane.execution.signals import Signals
from control_plane.store import steps
from control_plane.store.db import Database

__all__ = ["UnitOfWork", "Work"]

R = TypeVar("R")
T = TypeVar("T")
Work = Callable[[AsyncSession, Effects], Awaitable[R]]


class UnitOfWork:
    def __init__(
        self,
        db: Database,
        dispatcher: Dispatcher,
        signals: Signals,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._dispatcher = dispatcher
        self._signals = signals
        self._clock = clock

    async def run(self, work: Work[R]) -> R:
        """``work`` in one write transaction, the steps it made ready leased in it."""

        async def same(_: AsyncSession, result: R) -> R:
            return result

        return await self.run_then(work, same)

    async def run_then(self, work: Work[R], answer: Callable[[AsyncSession, R], Awaitable[T]]) -> T:
        """Like :meth:`run`; ``answer`` (in the same transaction, after the claim) builds
        the reply from what ``work`` returned, so it shows the steps leased."""
        effects = Effects()
        claimed: list[Any] = []
        try:
            async with self._db.write() as session:
                done = await work(session, effects)
                claimed = await self._dispatcher.claim_inline(
                    session, effects.ready, effects.siblings
                )
                await steps.flush_deferred(session)  # the ready steps no agent took
                result = await answer(session, done)
        except BaseException:
            self._dispatcher.release(claimed)
            raise
        await self._dispatcher.send(claimed)
        if len(claimed) == len(effects.ready):
            effects.work = False  # nothing left for the dispatcher
        await effects.apply(self._signals, self._clock())
        return result
