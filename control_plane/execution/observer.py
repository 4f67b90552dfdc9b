"""What the execution tells whoever counts it (the server's Prometheus metrics,
``control_plane/metrics``), without knowing who that is.

Every call is in memory and cheap — a counter, a histogram — and never touches the
database: the transitions, the dispatcher and the reaper call it on the hot path. Calls
for a change made in a transaction are queued on its :class:`Effects` and made once it
has committed (``Effects.observed``), so a rolled-back change is never counted."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from control_plane.execution.effects import Effects
from control_plane.execution.settling import AttemptOutcome
from control_plane.store.attempts import AttemptState

__all__ = ["NO_OBSERVER", "ExecutionObserver", "observe", "observe_attempt"]


class ExecutionObserver(Protocol):
    def run_finished(self, status: str) -> None:
        """A run ended: succeeded, failed, cancelled or timed_out."""

    def step_finished(self, status: str) -> None:
        """A step ended for good (not a failed attempt that is retried): succeeded,
        failed, timed_out, skipped, upstream_failed or cancelled."""

    def attempt_ended(self, kind: str, outcome: str, seconds: float) -> None:
        """An attempt of a step of ``kind`` ended as ``outcome`` (succeeded, cancelled,
        or the failure kind: error, timeout, memory, lost) after ``seconds`` (from its
        start, or from its lease when it never started)."""

    def step_leased(self, waited_seconds: float) -> None:
        """A step was leased to an agent ``waited_seconds`` after it could run (made
        ready, or its retry delay ended)."""

    def leases_expired(self, count: int) -> None:
        """The reaper ended ``count`` attempts whose lease had expired."""


class _Unobserved:
    def run_finished(self, status: str) -> None:
        pass

    def step_finished(self, status: str) -> None:
        pass

    def attempt_ended(self, kind: str, outcome: str, seconds: float) -> None:
        pass

    def step_leased(self, waited_seconds: float) -> None:
        pass

    def leases_expired(self, count: int) -> None:
        pass


NO_OBSERVER: ExecutionObserver = _Unobserved()
"""The observer of parts wired without metrics (tests, tools)."""


def observe(effects: Effects, record: Callable[..., None], *args: Any) -> None:
    """``record(*args)`` once the transaction of ``effects`` has committed."""
    effects.observed.append(functools.partial(record, *args))


def observe_attempt(
    effects: Effects,
    observer: ExecutionObserver,
    kind: str,
    attempt: AttemptState,
    outcome: AttemptOutcome,
    now: datetime,
) -> None:
    """An attempt of a step of ``kind`` ended with ``outcome`` (once committed)."""
    end = outcome.end_time or now
    seconds = max(0.0, (end - (attempt.start_time or attempt.create_time)).total_seconds())
    if outcome.status in ("succeeded", "cancelled"):
        label = outcome.status
    else:
        label = outcome.failure_kind or "error"
    observe(effects, observer.attempt_ended, kind, label, seconds)
