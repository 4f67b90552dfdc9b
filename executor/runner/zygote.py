"""The fork server ("zygote"): ``python -m executor.runner.zygote --fd N --parent PID``.

Started once by the runner, it imports the heavy modules (pandas, pyarrow, the step kinds)
and then forks one child per attempt, so an attempt does not pay an interpreter start and
those imports. It forks ahead of need: one spare child, forked whenever the fork server is
idle and has none, has done its preparation (:func:`executor.runner.child.standby`) and waits
on a socket of its own; an attempt is handed to it with its pipes, and a new spare is forked
once no other request is waiting. A fork of this process costs ~3 ms (copying the page
tables of the preloaded libraries): that way no attempt waits for it. The fork server never
runs user code itself: the forked child does that.

It is single-threaded (one ``poll`` loop over the socket and a signal wake-up pipe; thread
pools of numerical libraries are sized to one by the runner's environment), reaps every
child, and is a child subreaper, so nothing a step starts is re-parented above it. The
runner's signals for an attempt reach everything below the attempt's process, whatever its
session or group (:func:`.reaper.signal_attempt`). When a child exits it kills what is left
of the child's process group and cgroup, and every process re-parented to it that it did
not fork (:func:`.reaper.kill_strays`), before reaping the child; the runner waits for
those to be gone. It exits when the runner closes the socket or dies (PR_SET_PDEATHSIG),
killing every process below it first.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor.runner import child, procfs, reaper
from executor.runner.cgroups import CgroupPool
from executor.runner.protocol import MAX_FDS, MAX_PACKET, decode, encode

__all__ = ["main"]

_SPARE_RETRY = 1.0
_SHUTDOWN_SECONDS = 5.0


@dataclass(frozen=True)
class _Spare:
    pid: int
    control: socket.socket
    base_anon: int
    cgroup: Path | None


class Zygote:
    def __init__(self, sock: socket.socket, cgroups: CgroupPool | None = None) -> None:
        self.sock = sock
        self.pool = cgroups
        """Where each child gets a cgroup of its own (None: no cgroups, or they failed)."""
        self.children: dict[int, int] = {}  # pid → request id
        self.cgroups: dict[int, Path] = {}  # pid → the attempt's cgroup, where it has one
        self.spare: _Spare | None = None
        self.spare_after = 0.0  # monotonic time before which no spare is forked (after a failure)
        self.stopping = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        signal.signal(signal.SIGTERM, self._stop)
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        while not self.stopping:
            # With no spare, look for work without waiting; when there is none, fork one.
            events = poller.poll(self._poll_timeout())
            if not events and self.spare is None:
                try:
                    self.prepare_spare()
                except OSError as exc:  # out of processes or memory: try again later
                    print(f"legato fork server: cannot fork: {exc}", file=sys.stderr)
                    self.spare_after = time.monotonic() + _SPARE_RETRY
            for fd, _events in events:
                if fd == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                    self.reap()
                else:
                    self.receive()
        self.shutdown()

    def _poll_timeout(self) -> int | None:
        """Milliseconds to wait for work: none while a spare is wanted, else forever."""
        if self.spare is not None:
            return None
        return max(0, round((self.spare_after - time.monotonic()) * 1000))

    def _stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.sock.send(encode(message))
        except OSError:  # the runner is gone
            self.stopping = True

    def receive(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(
                self.sock, MAX_PACKET, MAX_FDS, socket.MSG_CMSG_CLOEXEC
            )
        except OSError:
            self.stopping = True
            return
        if not data:
            self.stopping = True
            return
        try:
            message = decode(data)
        except ValueError:
            message = {}
        if message.get("op") == "fork" and len(fds) == 3:
            try:
                self.start(message, fds)
            finally:
                for fd in fds:
                    os.close(fd)
            return
        for fd in fds:
            os.close(fd)
        if message.get("op") == "signal":
            self.signal(int(message["pid"]), int(message["signal"]))
        elif message.get("op") == "fork":
            self.send({"event": "error", "id": message.get("id"), "error": "expected 3 pipes"})

    def prepare_spare(self) -> None:
        """Fork a child that prepares itself and waits for an attempt."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        base_anon = procfs.anon_bytes(os.getpid()) or 0
        me = os.getpid()
        cgroup = self._new_cgroup()
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            if cgroup is not None:
                CgroupPool.remove(cgroup)
            raise
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            try:
                ours.close()
                close = (self.sock.fileno(), self.wake_r, self.wake_w)
                child.standby(theirs, close=close, fork_server=me, cgroup=cgroup)
            finally:
                os._exit(70)
        theirs.close()
        self.spare = _Spare(pid, ours, base_anon, cgroup)

    def _new_cgroup(self) -> Path | None:
        """A new, empty cgroup for the next spare, which moves itself into it (moving a
        process takes the kernel ~10 ms — an RCU grace period — which the spare pays
        while it prepares, not this loop while an attempt's exit waits to be reported);
        on failure none, from now on."""
        if self.pool is None or not self.pool.per_attempt:
            return None
        try:
            return self.pool.create()
        except OSError as exc:
            self._no_cgroups(str(exc))
            return None

    def _no_cgroups(self, why: str) -> None:
        print(f"legato fork server: no cgroups for attempts: {why}", file=sys.stderr)
        self.pool = None

    def _limit(self, cgroup: Path | None, memory: int | None) -> bool:
        """Whether ``cgroup`` now limits the attempt's memory to ``memory`` bytes."""
        if cgroup is None or not memory or self.pool is None or not self.pool.memory:
            return False
        try:
            CgroupPool.limit(cgroup, memory)
        except OSError:  # the child's RLIMIT_DATA and the watchdog limit it instead
            return False
        return True

    def start(self, request: dict[str, Any], fds: list[int]) -> None:
        """Hand an attempt to the spare child, forking one first if there is none."""
        request_id = int(request["id"])
        memory = request.get("memory")
        error = ""
        for _ in range(2):  # a spare that died meanwhile is replaced once
            spare = None
            cgroup: Path | None = None
            try:
                if self.spare is None:
                    self.prepare_spare()
                spare = self.spare
                assert spare is not None
                self.spare = None
                # Prepared (in its cgroup, if any)? Waits only if the attempt came first.
                ready = spare.control.recv(1)
                if ready != child.READY:
                    if ready == child.NO_CGROUP and self.pool is not None:
                        self._no_cgroups(f"process {spare.pid} could not join its cgroup")
                    raise OSError(f"the spare process {spare.pid} is gone")
                cgroup, join = spare.cgroup, None
                if cgroup is None and memory and self.pool is not None and self.pool.memory:
                    # Only this attempt pays for a move (~10 ms): its limit is worth it.
                    cgroup = join = self.pool.create()
                limited = self._limit(cgroup, memory)
                try:
                    forwarded = encode(
                        {
                            **request,
                            "memory": None if limited else memory,
                            "cgroup": str(join) if join is not None else None,
                        }
                    )
                    socket.send_fds(spare.control, [forwarded], fds)
                finally:
                    spare.control.close()
            except OSError as exc:
                error = f"cannot start the attempt's process: {exc}"
                for leftover in {spare.cgroup if spare else None, cgroup}:
                    if leftover is not None:
                        CgroupPool.remove(leftover)
                continue
            self.children[spare.pid] = request_id
            if cgroup is not None:
                self.cgroups[spare.pid] = cgroup
            self.send(
                {
                    "event": "started",
                    "id": request_id,
                    "pid": spare.pid,
                    "base_anon": spare.base_anon,
                    "cgroup": str(cgroup) if cgroup is not None else None,
                    "memory_cgroup": limited,
                }
            )
            return
        self.send({"event": "error", "id": request_id, "error": error})

    def signal(self, pid: int, signum: int) -> None:
        """Signal everything of the attempt whose process is ``pid`` (while it is ours)."""
        if pid in self.children:
            reaper.signal_attempt(pid, signum)
            cgroup = self.cgroups.get(pid)
            if cgroup is not None and signum == signal.SIGKILL:
                CgroupPool.kill(cgroup)

    def _keep(self) -> set[int]:
        """The children this process forked: the spare and the attempts' processes."""
        return {*self.children, *([self.spare.pid] if self.spare is not None else [])}

    def reap(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                break
            pid = info.si_pid
            if self.spare is not None and self.spare.pid == pid:
                self.spare.control.close()
                if self.spare.cgroup is not None:  # empty now that the spare has exited
                    CgroupPool.remove(self.spare.cgroup)
                self.spare = None
            request = self.children.pop(pid, None)
            strays: list[int] = []
            if request is not None:
                # The exited child is a zombie until reaped, so its pid (the group id) is
                # still reserved: kill what the step left behind in its group, in its
                # cgroup, and what was below it (now re-parented here).
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                cgroup = self.cgroups.pop(pid, None)
                if cgroup is not None:
                    CgroupPool.kill(cgroup)
                strays = reaper.kill_strays(self._keep())
            _pid, status, usage = os.wait4(pid, 0)
            if request is not None:
                self.send(
                    {
                        "event": "exited",
                        "id": request,
                        "pid": pid,
                        "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                        "max_rss": usage.ru_maxrss * 1024,
                        "strays": strays,
                    }
                )
        # Processes re-parented here since (a stray's children, forked as it was killed).
        reaper.kill_strays(self._keep())

    def shutdown(self) -> None:
        """Kill every process below this one, reap them, remove the attempts' cgroups."""
        if self.spare is not None:  # it exits when its control socket closes
            self.spare.control.close()
            self.children[self.spare.pid] = 0
            if self.spare.cgroup is not None:
                self.cgroups[self.spare.pid] = self.spare.cgroup
        for pid in self.children:
            reaper.signal_attempt(pid, signal.SIGKILL)
        for cgroup in self.cgroups.values():
            CgroupPool.kill(cgroup)
        self.children.clear()
        deadline = time.monotonic() + _SHUTDOWN_SECONDS
        while time.monotonic() < deadline:
            reaper.kill_strays(keep=())
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            except ChildProcessError:  # none left
                break
            time.sleep(0.005)
        for cgroup in self.cgroups.values():
            CgroupPool.remove(cgroup)
        self.cgroups.clear()


def _preload(modules: Sequence[str]) -> dict[str, str]:
    failed: dict[str, str] = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m executor.runner.zygote")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the runner")
    parser.add_argument("--parent", type=int, required=True, help="the runner's pid")
    parser.add_argument("--preload", default="", help="modules to import, comma-separated")
    parser.add_argument("--cgroups", default="", help="make children's cgroups below this one")
    parser.add_argument(
        "--cgroup-memory", action="store_true", help="the memory controller is enabled there"
    )
    parser.add_argument(
        "--cgroup-per-attempt", action="store_true", help="every attempt gets a cgroup"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when we stop
    reaper.set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != args.parent:  # the runner died before PDEATHSIG was armed
        return 0
    reaper.set_subreaper()
    sock = socket.socket(fileno=args.fd)
    failed = _preload([m for m in args.preload.split(",") if m])
    gc.collect()
    gc.freeze()  # keep the preloaded objects out of the children's collections (fewer copies)
    pool = None
    if args.cgroups:
        pool = CgroupPool(
            Path(args.cgroups),
            memory=args.cgroup_memory,
            agent=args.parent,
            fork_server=os.getpid(),
            per_attempt=args.cgroup_per_attempt,
        )
    zygote = Zygote(sock, pool)
    zygote.send(
        {
            "event": "ready",
            "pid": os.getpid(),
            "threads": procfs.thread_count(os.getpid()),
            "failed": failed,
        }
    )
    zygote.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
