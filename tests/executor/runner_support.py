"""Helpers for the runner's tests: a log collector and /proc look-ups."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from executor.runner import Task

MakeTask = Callable[..., Task]
USER_MODULES = Path(__file__).parent / "usermods"


@dataclass
class Logs:
    """Collects what a step printed, per stream."""

    lines: list[tuple[str, str, datetime]] = field(default_factory=list)

    def __call__(self, stream: str, text: str, time: datetime) -> None:
        self.lines.append((stream, text, time))

    def of(self, stream: str) -> list[str]:
        return [text for s, text, _ in self.lines if s == stream]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def children_of(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == pid:
                found.append(int(name))
    return found


async def wait_until(condition: Callable[[], object], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
