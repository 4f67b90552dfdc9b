"""Per-attempt cgroups, where a cgroup v2 memory controller is delegated to the agent
(systemd ``Delegate=yes``, or a container with a writable cgroup2 mount).

Detected once at start: the agent's own cgroup (``0::`` in /proc/self/cgroup, under the
cgroup2 mount) must offer the memory controller and be writable. cgroup v2 lets a cgroup
hand controllers to children only when it holds no processes itself, so, if memory is not
enabled for its children yet, the agent first moves itself into a leaf ``legato-agent``
(the fork server, started afterwards, goes there too) and enables it. Each attempt with a
memory limit then gets ``legato-<lease>`` with ``memory.max`` = the limit, no swap, and
``memory.oom.group`` = 1 (an OOM kills the whole attempt); the child joins it before it
runs the step. Anything failing on the way means no pool: the runner falls back to
RLIMIT_DATA and its watchdog (:mod:`.limits`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

__all__ = ["CgroupPool"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


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
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def detect(cls, *, proc: Path = Path("/proc/self")) -> CgroupPool | None:
        try:
            root = _own_cgroup(proc)
            if root is None or "memory" not in (root / "cgroup.controllers").read_text().split():
                return None
            if not os.access(root, os.W_OK):
                return None
            if "memory" not in (root / "cgroup.subtree_control").read_text().split():
                leaf = root / "legato-agent"
                leaf.mkdir(exist_ok=True)
                (leaf / "cgroup.procs").write_text(str(os.getpid()))
                (root / "cgroup.subtree_control").write_text("+memory")
            pool = cls(root)
            probe = pool.create(f"probe-{os.getpid()}", 1 << 30)
            pool.remove(probe)
            return pool
        except OSError:
            return None

    def create(self, name: str, memory_bytes: int) -> Path:
        path = self.root / f"legato-{_UNSAFE.sub('_', name)}"
        path.mkdir(exist_ok=True)
        (path / "memory.max").write_text(str(memory_bytes))
        for setting, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
            with contextlib.suppress(OSError):
                (path / setting).write_text(value)
        return path

    @staticmethod
    def oom_killed(path: Path) -> bool:
        try:
            events = (path / "memory.events").read_text().split()
        except OSError:
            return False
        counts = dict(zip(events[::2], events[1::2], strict=False))
        return int(counts.get("oom_kill", "0")) > 0 or int(counts.get("oom_group_kill", "0")) > 0

    @staticmethod
    def remove(path: Path) -> None:
        """Kill what is left in the cgroup and remove it."""
        try:
            (path / "cgroup.kill").write_text("1")
        except OSError:
            with contextlib.suppress(OSError):
                for pid in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)
        for _ in range(50):
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)
