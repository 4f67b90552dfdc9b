"""What /proc says about processes: memory, threads, parents, children, process-group
members, liveness."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "GroupScanner",
    "Stat",
    "alive",
    "anon_bytes",
    "children",
    "cpu_seconds",
    "parents",
    "private_bytes",
    "stat",
    "thread_count",
    "vm_data_bytes",
]

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 1 << 16)
    except OSError:
        return None
    finally:
        os.close(fd)


def anon_bytes(pid: int) -> int | None:
    """Anonymous resident memory (RssAnon), from statm: cheap (a few µs)."""
    data = _read(f"/proc/{pid}/statm")
    if not data:
        return None
    fields = data.split()
    return (int(fields[1]) - int(fields[2])) * _PAGE


def private_bytes(pid: int) -> int | None:
    """Memory only this process holds and has written (Private_Dirty + Swap), from
    smaps_rollup: exact but ~1 ms for a process with pandas loaded."""
    data = _read(f"/proc/{pid}/smaps_rollup")
    if not data:
        return None
    total = 0
    for line in data.splitlines():
        if line.startswith((b"Private_Dirty:", b"Swap:")):
            total += int(line.split()[1]) * 1024
    return total


def vm_data_bytes() -> int:
    """This process's data segment size (VmData), what RLIMIT_DATA limits."""
    data = _read("/proc/self/status") or b""
    for line in data.splitlines():
        if line.startswith(b"VmData:"):
            return int(line.split()[1]) * 1024
    return 0


def thread_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


class Stat(NamedTuple):
    state: str
    ppid: int
    pgid: int
    sid: int


def stat(pid: int) -> Stat | None:
    """State, parent, process group and session of ``pid``."""
    data = _read(f"/proc/{pid}/stat")
    if not data:
        return None
    fields = data[data.rfind(b")") + 2 :].split()  # the command name may hold spaces
    return Stat(fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]))


def cpu_seconds(pid: int) -> float | None:
    """The user + system CPU time ``pid`` has used so far (its own, not its children's),
    from its stat file."""
    data = _read(f"/proc/{pid}/stat")
    if not data:
        return None
    fields = data[data.rfind(b")") + 2 :].split()  # utime and stime: fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / _TICKS


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    found = stat(pid)
    return found is not None and found.state not in ("Z", "X")


def children(pid: int) -> list[int] | None:
    """The children of ``pid`` (none once it is gone), from the ``children`` file of each of
    its threads; None where the kernel has no such files (CONFIG_PROC_CHILDREN)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in threads:
        data = _read(f"/proc/{pid}/task/{tid}/children")
        if data is None:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended meanwhile
            return None
        found.extend(int(child) for child in data.split())
    return found


def parents() -> dict[int, int]:
    """Every process's parent, from a scan of /proc (where ``children`` files are missing)."""
    found: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = stat(int(name))
            if info is not None:
                found[int(name)] = info.ppid
    return found


class GroupScanner:
    """Finds the members of process groups by scanning /proc. Only processes it has not
    seen before are read, so a scan costs a directory listing plus the new processes."""

    def __init__(self) -> None:
        self._others: set[int] = set()

    def members(self, groups: Iterable[int]) -> dict[int, list[int]]:
        wanted = set(groups)
        found: dict[int, list[int]] = {g: [] for g in wanted}
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
        self._others.intersection_update(pids)
        for pid in pids:
            if pid in self._others and pid not in wanted:
                continue
            info = stat(pid)
            if info is None or info.state in ("Z", "X"):
                continue
            if info.pgid in wanted:
                found[info.pgid].append(pid)
            else:
                self._others.add(pid)
        return found
