"""What a transaction asks for once it has committed: wake the dispatcher, tell watchers
that runs changed, cancel leases on agents, wake again when a retry delay ends, count what
changed (metrics)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from control_plane.execution.signals import Signals
from control_plane.store.models import RunRow
from control_plane.store.steps import Step

__all__ = ["Effects"]


@dataclass
class Effects:
    work: bool = False
    # Trigger steps became ready, or a child run a trigger step may wait for ended: wake
    # the control plane's trigger-step loop (agents' work does not).
    trigger_steps: bool = False
    # Runs that changed in ways not recorded step by step: their watchers re-read them.
    runs: set[str] = field(default_factory=set)
    # Runs whose changes are known: run id → the steps that changed (empty: only the run
    # row or its log), so a watcher reads those rows, not the whole run.
    steps: dict[str, set[str]] = field(default_factory=dict)
    cancels: list[tuple[str, str, str]] = field(default_factory=list)
    wake_at: list[datetime] = field(default_factory=list)
    # (step, run row) pairs made ready in this transaction, for an inline claim.
    ready: list[tuple[Step, RunRow]] = field(default_factory=list)
    # The steps of those runs, already read (run id → name → step).
    siblings: dict[str, dict[str, Step]] = field(default_factory=dict)
    # Trace spans to record once the transaction has committed.
    spans: list[Callable[[], None]] = field(default_factory=list)
    # Metrics to record once it has committed (``observer.py``: in memory, no statement).
    observed: list[Callable[[], None]] = field(default_factory=list)

    def changed(self, run_id: str, *steps: str) -> None:
        """The run changed: its row, and the named steps' rows (with their attempts)."""
        self.steps.setdefault(run_id, set()).update(steps)

    async def apply(self, signals: Signals, now: datetime) -> None:
        """Call after the commit."""
        for record in [*self.spans, *self.observed]:
            record()
        for agent, lease_id, reason in self.cancels:
            await signals.cancel_lease(agent, lease_id, reason)
        if self.work:
            await signals.work_ready()
        if self.trigger_steps:
            await signals.trigger_steps_ready()
        changed = self.runs | self.steps.keys()
        if changed:
            known = {run: names for run, names in self.steps.items() if run not in self.runs}
            await signals.run_changed(*sorted(changed), steps=known)
        loop = asyncio.get_running_loop()
        for moment in self.wake_at:
            delay = max(0.0, (moment - now).total_seconds())
            loop.call_later(delay, signals.work.set)
