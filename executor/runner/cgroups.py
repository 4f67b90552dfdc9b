"""Per-attempt cgroups, where a cgroup v2 is delegated to the agent (systemd ``Delegate=yes``,
or a container with a writable cgroup2 mount).

Detected once at start (by the runner): the agent's own cgroup (``0::`` in
/proc/self/cgroup, under the cgroup2 mount) must be writable. Each attempt may then run in a
cgroup of its own, ``legato-<agent pid>-<fork server pid>-<n>``: everything the step starts
is in it, whatever session or process group it moves to, and the attempt's end kills the
cgroup as a whole (``cgroup.kill``; on kernels before 5.14, every pid in ``cgroup.procs``
until none is left) before the runner removes it.

Moving a process into a cgroup is not free: unless the cgroup2 mount has ``favordynmods``
(Linux 6.0+), the kernel takes a system-wide lock and waits for an RCU grace period — about
10 ms during which no process on the machine can fork, exit or start a thread (measured:
every attempt's end delayed by that much). So every attempt gets its own cgroup only where
moves are cheap (``favordynmods``) or when asked (``per_attempt=True``); the spare child
then moves itself into it while it prepares, before any attempt waits. Elsewhere only an
attempt with a memory limit gets one (its process joins it before the step runs: the limit
is worth the 10 ms), and the subreapers contain the others (:mod:`.reaper`).

Memory limits need the memory controller too. cgroup v2 lets a cgroup hand controllers to
children only when it holds no processes itself, so, if memory is not enabled for its
children yet, the agent first moves itself into a leaf ``legato-agent`` (the fork server,
started afterwards, goes there too) and enables it. An attempt with a memory limit then
gets ``memory.max`` = the limit, no swap, and ``memory.oom.group`` = 1 (an OOM kills the
whole attempt). Without the controller, cgroups still hold the attempts, and memory falls
back to RLIMIT_DATA and the watchdog (:mod:`.limits`).

An agent or fork server that is killed leaves its cgroups behind, with whatever still runs
in them: the runner removes those of a fork server it lost, and an agent that starts kills
and removes every ``legato-<pid>-<pid>-<n>`` next to its own whose agent or fork server is
gone. Anything failing on the way means no cgroups: the subreapers alone contain the
attempts (:mod:`.reaper`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

from executor.runner import procfs

__all__ = ["CgroupPool"]

_ATTEMPT = re.compile(r"legato-([0-9]+)-([0-9]+)-[0-9]+")


def cheap_moves(proc: Path = Path("/proc/self")) -> bool:
    """Whether the cgroup2 mount moves processes without a system-wide RCU wait
    (``favordynmods`` among its options)."""
    try:
        lines = (proc / "mountinfo").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        _before, _, after = line.partition(" - ")
        fields = after.split(" ")
        if fields[0] == "cgroup2" and len(fields) >= 3:
            return "favordynmods" in fields[2].split(",")
    return False


def _own_cgroup(proc: Path) -> Path | None:
    """The agent's cgroup v2 directory."""
    mount = None
    for line in (proc / "mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        if after.split(" ", 1)[0] == "cgroup2":
            mount = before.split()[4]
            break
    if mount is None:
        return None
    for line in (proc / "cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return Path(mount) / line[3:].lstrip("/")
    return None


class CgroupPool:
    """The cgroups of one fork server's children, below ``root``."""

    def __init__(
        self, root: Path, *, memory: bool, agent: int, fork_server: int, per_attempt: bool = True
    ) -> None:
        self.root = root
        self.memory = memory
        """Whether attempts' cgroups can limit memory (the controller is enabled)."""
        self.per_attempt = per_attempt
        """Whether every attempt gets a cgroup (else only those with a memory limit)."""
        self._prefix = f"legato-{agent}-{fork_server}-"
        self._count = 0

    @classmethod
    def detect(
        cls, *, proc: Path = Path("/proc/self"), per_attempt: bool | None = None
    ) -> CgroupPool | None:
        """The pool of this agent's cgroup (for this process as the fork server; the runner
        makes the fork server's own), once what dead agents left in it is removed.
        ``per_attempt``: a cgroup for every attempt (None: where moves are cheap)."""
        try:
            root = _own_cgroup(proc)
            if root is None or not os.access(root, os.W_OK):
                return None
            memory = "memory" in (root / "cgroup.controllers").read_text().split()
            if memory and "memory" not in (root / "cgroup.subtree_control").read_text().split():
                try:
                    leaf = root / "legato-agent"
                    leaf.mkdir(exist_ok=True)
                    (leaf / "cgroup.procs").write_text(str(os.getpid()))
                    (root / "cgroup.subtree_control").write_text("+memory")
                except OSError:  # other processes share the agent's cgroup
                    memory = False
            every = cheap_moves(proc) if per_attempt is None else per_attempt
            pool = cls(
                root, memory=memory, agent=os.getpid(), fork_server=os.getpid(), per_attempt=every
            )
            pool.remove_stale()
            probe = pool.create()
            if memory:
                pool.limit(probe, 1 << 30)
            pool.remove(probe)
            return pool
        except OSError:
            return None

    def create(self) -> Path:
        """A new, empty cgroup for one child."""
        while True:
            self._count += 1
            path = self.root / f"{self._prefix}{self._count}"
            try:
                path.mkdir()
                return path
            except FileExistsError:  # another pool of this process (a probe) has it
                continue

    @staticmethod
    def add(path: Path, pid: int) -> None:
        """Move process ``pid`` (which has no children yet) into ``path``."""
        (path / "cgroup.procs").write_text(str(pid))

    @staticmethod
    def limit(path: Path, memory_bytes: int) -> None:
        (path / "memory.max").write_text(str(memory_bytes))
        for setting, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
            with contextlib.suppress(OSError):
                (path / setting).write_text(value)

    def remove_stale(self, *, fork_server: int | None = None) -> list[Path]:
        """Kill and remove the cgroups of agents or fork servers that are gone (and of
        ``fork_server``, one this agent lost)."""
        removed: list[Path] = []
        try:
            paths = list(self.root.iterdir())
        except OSError:
            return removed
        for path in paths:
            match = _ATTEMPT.fullmatch(path.name)
            if match is None or not path.is_dir():
                continue
            agent, server = int(match[1]), int(match[2])
            if server == fork_server or not (procfs.alive(agent) and procfs.alive(server)):
                self.remove(path)
                removed.append(path)
        return removed

    @staticmethod
    def memory_peak(path: Path) -> int | None:
        """The most memory ever charged to the cgroup (``memory.peak``, Linux 5.19+; None
        without the memory controller or on older kernels)."""
        try:
            return int((path / "memory.peak").read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def oom_killed(path: Path) -> bool:
        try:
            events = (path / "memory.events").read_text().split()
        except OSError:
            return False
        counts = dict(zip(events[::2], events[1::2], strict=False))
        return int(counts.get("oom_kill", "0")) > 0 or int(counts.get("oom_group_kill", "0")) > 0

    @staticmethod
    def kill(path: Path) -> None:
        """SIGKILL every process in the cgroup."""
        try:
            (path / "cgroup.kill").write_text("1")
            return
        except FileNotFoundError:
            if not path.exists():
                return
        except OSError:
            pass
        for _ in range(100):  # no cgroup.kill: until no process is left (or forks faster)
            try:
                pids = (path / "cgroup.procs").read_text().split()
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.001)

    @staticmethod
    def remove(path: Path) -> None:
        """Kill what is left in the cgroup and remove it."""
        CgroupPool.kill(path)
        for _ in range(50):
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)
