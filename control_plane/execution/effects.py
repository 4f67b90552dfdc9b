"""What a transaction asks for once it has committed: wake the dispatcher, tell watchers
that runs changed, cancel leases on agents, wake again when a retry delay ends."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from control_plane.execution.signals import Signals

__all__ = ["Effects"]


@dataclass
class Effects:
    work: bool = False
    runs: set[str] = field(default_factory=set)
    cancels: list[tuple[str, str, str]] = field(default_factory=list)
    wake_at: list[datetime] = field(default_factory=list)

    def merge(self, other: Effects) -> None:
        self.work |= other.work
        self.runs |= other.runs
        self.cancels.extend(other.cancels)
        self.wake_at.extend(other.wake_at)

    async def apply(self, signals: Signals, now: datetime) -> None:
        """Call after the commit."""
        for agent, lease_id, reason in self.cancels:
            await signals.cancel_lease(agent, lease_id, reason)
        if self.work:
            await signals.work_ready()
        if self.runs:
            await signals.run_changed(*sorted(self.runs))
        loop = asyncio.get_running_loop()
        for moment in self.wake_at:
            delay = max(0.0, (moment - now).total_seconds())
            loop.call_later(delay, signals.work.set)
