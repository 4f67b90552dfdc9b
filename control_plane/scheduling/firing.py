"""What one schedule's fire does, as plain data: which due fire times run (catch-up), how
many runs the overlap policy lets start, and the trigger each run carries. Shared by the
scheduler's fire at the instant and the batches it prepares ahead (``lookahead.py``)."""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from control_plane.execution.runs import TriggerSpec
from control_plane.scheduling.fire_times import FireTime, FireTimes
from legato.v1 import spec_pb2

__all__ = [
    "MAX_CATCHUP",
    "MAX_SCAN",
    "DueTimes",
    "capacity_of",
    "catchup_of",
    "choose",
    "due_times",
    "fire_times_of",
    "overlap_of",
    "trigger_of",
]

MAX_CATCHUP = 100
"""The most missed fire times ``catchup: all`` runs after one downtime."""
MAX_SCAN = 100_000
"""The most missed fire times read after one downtime (the count is still reported)."""
_CATCHUP = {
    spec_pb2.CATCHUP_POLICY_UNSPECIFIED: "latest",
    spec_pb2.CATCHUP_POLICY_NONE: "none",
    spec_pb2.CATCHUP_POLICY_LATEST: "latest",
    spec_pb2.CATCHUP_POLICY_ALL: "all",
}
_OVERLAP = {
    spec_pb2.OVERLAP_POLICY_UNSPECIFIED: "queue",
    spec_pb2.OVERLAP_POLICY_QUEUE: "queue",
    spec_pb2.OVERLAP_POLICY_SKIP: "skip",
    spec_pb2.OVERLAP_POLICY_CANCEL_PREVIOUS: "cancel_previous",
    spec_pb2.OVERLAP_POLICY_ALLOW: "allow",
}


@dataclass(frozen=True)
class DueTimes:
    """What to do with the fire times found due: ``fire`` them, and how many were missed
    and are not run."""

    fire: list[FireTime]
    skipped: int
    catchup: str


@functools.lru_cache(maxsize=4096)
def _fire_times(cron: str, timezone: str, skipped: int, repeated: int) -> FireTimes:
    schedule = spec_pb2.Schedule(cron=cron, timezone=timezone)
    schedule.dst.skipped = skipped  # type: ignore[assignment]
    schedule.dst.repeated = repeated  # type: ignore[assignment]
    return FireTimes.of(schedule)


def fire_times_of(schedule: spec_pb2.Schedule) -> FireTimes:
    """The schedule's fire times, built once per distinct schedule."""
    return _fire_times(
        schedule.cron, schedule.timezone, schedule.dst.skipped, schedule.dst.repeated
    )


def overlap_of(spec: spec_pb2.PipelineSpec) -> str:
    return _OVERLAP.get(spec.schedule.overlap, "queue")


def catchup_of(spec: spec_pb2.PipelineSpec) -> str:
    return _CATCHUP.get(spec.schedule.catchup, "latest")


def capacity_of(spec: spec_pb2.PipelineSpec) -> int:
    """How many runs of the pipeline may be active for a scheduled run to start at once:
    ``limits.max_concurrent_runs``, 1 when unset; 0 (no bound: the overlap policy never
    holds a run back) for ``allow`` without a limit."""
    limit = spec.limits.max_concurrent_runs
    return limit if (limit or overlap_of(spec) == "allow") else 1


def trigger_of(fire: FireTime) -> TriggerSpec:
    """The trigger of the run of one fire time: its logical time and the wall time it
    stands for (and how DST moved it)."""
    details = {"local_time": fire.local.isoformat()}
    if fire.dst:
        details["dst"] = fire.dst
    return TriggerSpec(kind="schedule", logical_time=fire.instant, details=details)


def choose(
    due: list[FireTime], missed_total: int, now: datetime, grace: timedelta, catchup: str
) -> DueTimes:
    """Split due fire times into on time and missed, and apply the catch-up policy.
    ``missed_total`` counts missed fire times beyond those in ``due``."""
    on_time = [f for f in due if now - f.instant <= grace]
    missed = [f for f in due if now - f.instant > grace]
    total_missed = len(missed) + missed_total
    if catchup == "all":
        run = missed[-MAX_CATCHUP:]
    elif catchup == "latest" and missed and not on_time:
        run = missed[-1:]
    else:
        run = []
    return DueTimes(run + on_time, total_missed - len(run), catchup)


def due_times(times: FireTimes, due_at: datetime, now: datetime) -> tuple[list[FireTime], int]:
    """The fire times from ``due_at`` to ``now``: the last :data:`MAX_CATCHUP` + 1 of them,
    and how many more came before those."""
    window: deque[FireTime] = deque(maxlen=MAX_CATCHUP + 1)
    count = 0
    for fire in times.between(due_at - timedelta(microseconds=1), now, limit=MAX_SCAN):
        window.append(fire)
        count += 1
    kept = list(window)
    if count == len(kept) and (not kept or kept[0].instant != due_at):
        # The stored time is not a fire time of the current cron (a new version changed
        # it while it was due): it still fires, as the old version promised.
        zone = times.next_after(due_at).local.tzinfo
        local = due_at.astimezone(zone)
        kept.insert(0, FireTime(due_at, local.replace(tzinfo=None), local, ""))
        count += 1
    return kept, count - len(kept)
