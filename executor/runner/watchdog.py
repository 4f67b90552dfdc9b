"""The memory watchdog: polls the memory of attempts' process groups, every 100 ms, and
reports a group that is over its limit (the runner then kills it).

A group's usage is the sum over its processes of the memory each has written and holds
alone (Private_Dirty + Swap of smaps_rollup), so pages the child still shares with the
fork server are not counted (see :mod:`.limits`). Reading smaps_rollup costs about a
millisecond for a process with pandas loaded, so each poll first bounds the usage from
statm (a few µs): the anonymous resident memory of the group is an upper bound, and minus
the fork server's share a lower bound; smaps_rollup is read only between the two.

It also keeps each watched group's use while it runs (:class:`GroupUsage`), whether or not
it has a limit: its peak memory, counted as the limit counts it but from the cheap bound
(the group's anonymous resident memory less what the leader shares with the fork server,
or less the leader's own at the start for a pooled worker), and the CPU time last seen of
each process other than the leader (the leader's, and that of the processes it waited
for, comes from its rusage when it is reaped).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from executor.runner.procfs import GroupScanner, anon_bytes, cpu_seconds, private_bytes

__all__ = ["GroupUsage", "MemoryWatchdog"]


@dataclass
class GroupUsage:
    """What the watchdog saw of one group while it was watched."""

    peak_bytes: int | None = None
    """The highest memory use sampled; None before the first sample."""
    cpu: dict[int, float] = field(default_factory=dict)
    """The CPU seconds last seen of each member other than the leader, by pid."""


@dataclass
class _Watched:
    limit: int | None
    base_anon: int
    on_exceeded: Callable[[int], None] | None
    usage: GroupUsage
    baseline: int
    """What the leader held when the watch began that the attempt does not own."""


class MemoryWatchdog:
    def __init__(self, *, interval: float = 0.1) -> None:
        self.interval = interval
        self._watched: dict[int, _Watched] = {}
        self._scanner = GroupScanner()
        self._task: asyncio.Task[None] | None = None

    def watch(
        self,
        pgid: int,
        *,
        limit: int | None,
        base_anon: int,
        on_exceeded: Callable[[int], None] | None = None,
        baseline: int | None = None,
    ) -> GroupUsage:
        """Watch the group ``pgid`` and return what it uses, updated as it runs; call
        ``on_exceeded(usage)`` once if it goes over ``limit`` bytes (None: no limit).
        ``base_anon`` is what its leader shares with the fork server; ``baseline``, what
        the leader holds that the attempt does not own (a pooled worker's memory as the
        attempt starts; default ``base_anon``)."""
        usage = GroupUsage()
        held = base_anon if baseline is None else baseline
        self._watched[pgid] = _Watched(limit, base_anon, on_exceeded, usage, held)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="memory-watch")
        return usage

    def unwatch(self, pgid: int, usage: GroupUsage | None = None) -> None:
        """Stop watching ``pgid`` (only if it is watched for ``usage``, when given: a
        pooled worker's group is watched for one attempt after another)."""
        watched = self._watched.get(pgid)
        if watched is not None and usage in (None, watched.usage):
            del self._watched[pgid]

    async def close(self) -> None:
        self._watched.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        while self._watched:
            self.check()
            await asyncio.sleep(self.interval)

    def check(self) -> None:
        for pgid, pids in self._scanner.members(self._watched).items():
            watched = self._watched.get(pgid)
            if watched is None or not pids:
                continue
            upper = sum(anon_bytes(pid) or 0 for pid in pids)
            _sample(watched, pgid, pids, upper)
            if watched.limit is None or watched.on_exceeded is None:
                continue
            over = self._over(pgid, pids, watched, watched.limit, upper)
            if over is not None:
                self._watched.pop(pgid, None)
                watched.on_exceeded(over)

    @staticmethod
    def _over(pgid: int, pids: list[int], watched: _Watched, limit: int, upper: int) -> int | None:
        """The group's usage when it is over its limit, else None."""
        if upper <= limit:
            return None
        lower = upper - (watched.base_anon if pgid in pids else 0)
        if lower > limit:
            return lower
        usage = sum(private_bytes(pid) or 0 for pid in pids)
        # The exact count is the attempt's own, unless the leader is a pooled worker whose
        # memory from before the attempt it includes.
        if watched.baseline == watched.base_anon and usage > (watched.usage.peak_bytes or 0):
            watched.usage.peak_bytes = usage
        return usage if usage > limit else None


def _sample(watched: _Watched, pgid: int, pids: list[int], upper: int) -> None:
    """Record one sample of the group's memory and its members' CPU time."""
    usage = watched.usage
    held = max(0, upper - (watched.baseline if pgid in pids else 0))
    if usage.peak_bytes is None or held > usage.peak_bytes:
        usage.peak_bytes = held
    for pid in pids:
        if pid != pgid:
            seen = cpu_seconds(pid)
            if seen is not None:
                usage.cpu[pid] = seen
