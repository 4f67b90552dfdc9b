"""The memory watchdog: polls the memory of attempts' process groups, every 100 ms, and
reports a group that is over its limit (the runner then kills it).

A group's usage is the sum over its processes of the memory each has written and holds
alone (Private_Dirty + Swap of smaps_rollup), so pages the child still shares with the
fork server are not counted (see :mod:`.limits`). Reading smaps_rollup costs about a
millisecond for a process with pandas loaded, so each poll first bounds the usage from
statm (a few µs): the anonymous resident memory of the group is an upper bound, and minus
the fork server's share a lower bound; smaps_rollup is read only between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from executor.runner.procfs import GroupScanner, anon_bytes, private_bytes

__all__ = ["MemoryWatchdog"]


@dataclass
class _Watched:
    limit: int
    base_anon: int
    on_exceeded: Callable[[int], None]


class MemoryWatchdog:
    def __init__(self, *, interval: float = 0.1) -> None:
        self.interval = interval
        self._watched: dict[int, _Watched] = {}
        self._scanner = GroupScanner()
        self._task: asyncio.Task[None] | None = None

    def watch(
        self, pgid: int, *, limit: int, base_anon: int, on_exceeded: Callable[[int], None]
    ) -> None:
        """Watch the group ``pgid``; call ``on_exceeded(usage)`` once if it goes over
        ``limit`` bytes. ``base_anon`` is what its leader shares with the fork server."""
        self._watched[pgid] = _Watched(limit, base_anon, on_exceeded)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="memory-watch")

    def unwatch(self, pgid: int, on_exceeded: Callable[[int], None] | None = None) -> None:
        """Stop watching ``pgid`` (only if it is watched for ``on_exceeded``, when given:
        a pooled worker's group is watched for one attempt after another)."""
        watched = self._watched.get(pgid)
        if watched is not None and on_exceeded in (None, watched.on_exceeded):
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
            usage = self._over(pgid, pids, watched)
            if usage is not None:
                self.unwatch(pgid)
                watched.on_exceeded(usage)

    @staticmethod
    def _over(pgid: int, pids: list[int], watched: _Watched) -> int | None:
        """The group's usage when it is over its limit, else None."""
        upper = sum(anon_bytes(pid) or 0 for pid in pids)
        if upper <= watched.limit:
            return None
        lower = upper - (watched.base_anon if pgid in pids else 0)
        if lower > watched.limit:
            return lower
        usage = sum(private_bytes(pid) or 0 for pid in pids)
        return usage if usage > watched.limit else None
