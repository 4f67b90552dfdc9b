"""Finding and signalling every process an attempt started, whatever session or process
group it moved to.

A process that calls ``setsid`` leaves the attempt's process group, so signalling the
group misses it; a process whose parent exits is re-parented, so following parents from
the attempt loses it unless something adopts it below the attempt. Two child subreapers
(``PR_SET_CHILD_SUBREAPER``) keep the attempt's processes a tree that /proc can walk:

- **the attempt's process** (:mod:`.child`): while it runs, the step's orphans are
  re-parented to it, so everything the step started is below it, and :func:`signal_attempt`
  reaches all of it (SIGTERM, then SIGKILL after the grace);
- **the fork server** (:mod:`.zygote`): when an attempt's process exits, what is left below
  it is re-parented to the fork server, never above it. Every child of the fork server that
  it did not fork itself is therefore the leftover of an attempt that ended (a *stray*),
  and :func:`kill_strays` kills it with everything below it.

Signals go through a pidfd, after checking that the process still has a parent in the tree
(its parent when it was found, or a process of the tree that adopted it), so a pid reused
between the walk and the signal is never signalled. Processes are signalled deepest first,
so a parent is still there to adopt its children until they are signalled. When the fork
server dies, each attempt's process walks its own tree (:data:`.child.PARENT_DIED`). What
this cannot reach: the processes of an attempt whose own process is killed at the same
moment as the fork server (nothing is left to walk its tree), and a process a ptracer took
away; per-attempt cgroups (:mod:`.cgroups`) cover those where they exist.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import sys
from collections import deque
from collections.abc import Collection, Iterable

from executor.runner import procfs

__all__ = [
    "children_of",
    "kill_strays",
    "set_parent_death_signal",
    "set_subreaper",
    "signal_attempt",
    "signal_below",
]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


@functools.cache
def _libc() -> ctypes.CDLL:
    """Loaded once, in the fork server, before it forks: every attempt's process calls
    prctl twice as it prepares, and loading the library again each time costs it about
    half a millisecond (most of it copy-on-write faults)."""
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):
        _libc().prctl(option, value, 0, 0, 0)


def set_subreaper() -> None:
    """Make this process adopt the orphans of every process below it."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send ``signum`` to this process when its parent dies."""
    _prctl(_PR_SET_PDEATHSIG, signum)


def _by_parent(parents: dict[int, int]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        found.setdefault(ppid, []).append(pid)
    return found


def children_of(pid: int) -> list[int]:
    """The children of ``pid`` (a full scan of /proc where the kernel lists no children)."""
    found = procfs.children(pid)
    if found is None:
        found = _by_parent(procfs.parents()).get(pid, [])
    return found


def _tree(root: int) -> dict[int, int]:
    """Every process below ``root`` with the parent it was found under, parents first."""
    found: dict[int, int] = {}
    scan: dict[int, list[int]] | None = None
    queue = deque([root])
    while queue:
        pid = queue.popleft()
        kids = procfs.children(pid) if scan is None else scan.get(pid, [])
        if kids is None:  # no children files: one scan of /proc for the whole walk
            scan = _by_parent(procfs.parents())
            kids = scan.get(pid, [])
        for kid in kids:
            if kid != root and kid not in found:
                found[kid] = pid
                queue.append(kid)
    return found


def _send(pid: int, signum: int, parents: Collection[int]) -> bool:
    """Signal ``pid`` if it is alive and its parent is one of ``parents``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:  # no pidfds (Linux < 5.3): check, then signal by pid
        fd = -1
    try:
        info = procfs.stat(pid)
        if info is None or info.state in ("Z", "X") or info.ppid not in parents:
            return False
        if fd < 0:
            os.kill(pid, signum)
        else:
            signal.pidfd_send_signal(fd, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)


def signal_below(
    root: int, signum: int, *, skip_group: int | None = None, adopters: Iterable[int] = ()
) -> list[int]:
    """Send ``signum`` to every process below ``root``, deepest first, except the members of
    process group ``skip_group`` (the caller signals the group). ``adopters``: subreapers
    above ``root`` that may have adopted a process meanwhile. Returns the pids signalled."""
    tree = _tree(root)
    parents = {root, *tree, *adopters}
    signalled = []
    for pid in reversed(tree):
        if skip_group is not None:
            info = procfs.stat(pid)
            if info is not None and info.pgid == skip_group:
                continue
        if _send(pid, signum, parents):
            signalled.append(pid)
    return signalled


def signal_attempt(pid: int, signum: int) -> list[int]:
    """Signal everything of the attempt whose process is ``pid`` (the leader of its session
    and process group, a subreaper): what is below it, then its group. Returns the pids
    signalled outside the group."""
    signalled = signal_below(pid, signum, skip_group=pid, adopters=(os.getpid(),))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
    return signalled


def kill_strays(keep: Collection[int]) -> list[int]:
    """SIGKILL every child of this process that is not in ``keep``, and everything below
    it. Only this process reaps its children, so their pids cannot have been reused.
    Returns the pids killed."""
    me = os.getpid()
    killed: list[int] = []
    for pid in children_of(me):
        info = procfs.stat(pid)
        if pid in keep or info is None or info.state in ("Z", "X"):
            continue
        killed += signal_below(pid, signal.SIGKILL, adopters=(me,))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed
