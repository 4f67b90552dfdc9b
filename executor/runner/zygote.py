"""The fork server ("zygote"): ``python -m executor.runner.zygote --fd N --parent PID``.

Started once by the runner, it imports the heavy modules (pandas, pyarrow, the step kinds)
and then forks one child per attempt, so an attempt does not pay an interpreter start and
those imports. It forks ahead of need: one spare child per free slot (``--slots``: the
runner's attempts at once, less those running; at least one, at most :data:`MAX_SPARES`),
forked whenever the fork server is idle and has fewer, has done its preparation
(:func:`executor.runner.child.standby`) and waits on a socket of its own; an attempt is
handed to a spare with its pipes, and a
replacement is forked once no other request is waiting. A fork of this process costs a few
milliseconds of CPU (copying the page tables of the preloaded libraries): that way no
attempt waits for it, not even when every slot's attempt arrives at once. A pooled attempt
(:mod:`.pooled`) goes to an idle pooled worker, or to a spare that becomes one. The fork
server never runs user code itself: the forked child does that.

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

from executor.runner import child, pooled, procfs, reaper
from executor.runner.cgroups import CgroupPool
from executor.runner.protocol import MAX_FDS, MAX_PACKET, decode, encode

__all__ = ["main"]

_SPARE_RETRY = 1.0
MAX_SPARES = 16
"""Children kept waiting at most (each holds a few MB of its own): an agent with more free
slots than this forks for the attempts beyond them when they arrive."""
_SHUTDOWN_SECONDS = 5.0


@dataclass(frozen=True)
class _Spare:
    pid: int
    control: socket.socket
    base_anon: int
    cgroup: Path | None


class Zygote:
    def __init__(
        self, sock: socket.socket, cgroups: CgroupPool | None = None, *, slots: int = 1
    ) -> None:
        self.sock = sock
        self.pool = cgroups
        """Where each child gets a cgroup of its own (None: no cgroups, or they failed)."""
        self.slots = max(1, slots)
        """How many attempts the runner runs at once: one spare waits per free slot."""
        self.children: dict[int, int] = {}  # pid → request id
        self.cgroups: dict[int, Path] = {}  # pid → the attempt's cgroup, where it has one
        self.spares: list[_Spare] = []
        self.workers: dict[int, pooled.Worker] = {}  # pid → pooled worker
        self.worker_fds: dict[int, int] = {}  # a worker's control socket → its pid
        self.spare_after = 0.0  # monotonic time before which no spare is forked (after a failure)
        self.stopping = False
        self.poller = select.poll()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        signal.signal(signal.SIGTERM, self._stop)
        self.poller.register(self.sock.fileno(), select.POLLIN)
        self.poller.register(self.wake_r, select.POLLIN)
        while not self.stopping:
            # While spares are wanted, look for work without waiting; when there is none,
            # fork one (so a request never waits for more than the fork under way).
            events = self.poller.poll(self._poll_timeout())
            if not events and self._spares_wanted() > 0:
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
                elif fd in self.worker_fds:
                    self.worker_done(self.worker_fds[fd])
                else:
                    self.receive()
        self.shutdown()

    def _spares_wanted(self) -> int:
        """Spares to fork: one per free slot (a slot is taken by a running attempt, or by
        a pooled worker, which serves the next pooled attempt), at least one and at most
        :data:`MAX_SPARES`."""
        busy = len(self.children) + len(self.workers)
        return max(1, min(MAX_SPARES, self.slots - busy)) - len(self.spares)

    def _poll_timeout(self) -> int | None:
        """Milliseconds to wait for work: none while a spare is wanted, else forever."""
        if self._spares_wanted() <= 0:
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
            self.signal(int(message["pid"]), int(message["signal"]), message.get("id"))
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
                close = (self.sock.fileno(), self.wake_r, self.wake_w, *self.worker_fds)
                child.standby(theirs, close=close, fork_server=me, cgroup=cgroup)
            finally:
                os._exit(70)
        theirs.close()
        self.spares.append(_Spare(pid, ours, base_anon, cgroup))

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

    def _take_spare(self) -> _Spare:
        """A prepared spare (waiting for one that is still preparing, or forking one now
        only when none is left: then this attempt pays for the fork)."""
        if not self.spares:
            self.prepare_spare()
        spare = self.spares.pop(0)
        ready = spare.control.recv(1)
        if ready != child.READY:
            spare.control.close()
            if ready == child.NO_CGROUP and self.pool is not None:
                self._no_cgroups(f"process {spare.pid} could not join its cgroup")
            if spare.cgroup is not None:
                CgroupPool.remove(spare.cgroup)
            raise OSError(f"the spare process {spare.pid} is gone")
        return spare

    def start(self, request: dict[str, Any], fds: list[int]) -> None:
        """Hand an attempt to a waiting child (a pooled attempt to an idle pooled worker
        first), forking one first if there is none."""
        if request.get("pooled") and self.start_pooled(request, fds):
            return
        request_id = int(request["id"])
        memory = request.get("memory")
        pooled_request = bool(request.get("pooled"))
        error = ""
        for _ in range(2):  # a spare that died meanwhile is replaced once
            cgroup: Path | None = None
            try:
                spare = self._take_spare()
            except OSError as exc:
                error = f"cannot start the attempt's process: {exc}"
                continue
            try:
                cgroup, join = spare.cgroup, None
                if (
                    not pooled_request
                    and cgroup is None
                    and memory
                    and self.pool is not None
                    and self.pool.memory
                ):
                    # Only this attempt pays for a move (~10 ms): its limit is worth it.
                    cgroup = join = self.pool.create()
                # A pooled worker's cgroup outlives the attempt: the watchdog limits it.
                limited = not pooled_request and self._limit(cgroup, memory)
                forwarded = encode(
                    {
                        **request,
                        "memory": None if limited else memory,
                        "cgroup": str(join) if join is not None else None,
                    }
                )
                socket.send_fds(spare.control, [forwarded], fds)
            except OSError as exc:
                spare.control.close()
                error = f"cannot start the attempt's process: {exc}"
                for leftover in {spare.cgroup, cgroup}:
                    if leftover is not None:
                        CgroupPool.remove(leftover)
                continue
            if pooled_request:
                self._adopt_worker(spare, request_id, memory)
            else:
                spare.control.close()
                self.children[spare.pid] = request_id
                if cgroup is not None:
                    self.cgroups[spare.pid] = cgroup
            self._started(request_id, spare.pid, spare.base_anon, cgroup, limited)
            return
        self.send({"event": "error", "id": request_id, "error": error})

    def _started(
        self, request_id: int, pid: int, base_anon: int, cgroup: Path | None, limited: bool
    ) -> None:
        pooled_worker = pid in self.workers
        self.send(
            {
                "event": "started",
                "id": request_id,
                "pid": pid,
                "base_anon": base_anon,
                # A pooled worker's cgroup is the fork server's to remove, not the runner's.
                "cgroup": str(cgroup) if cgroup is not None and not pooled_worker else None,
                "memory_cgroup": limited,
                "pooled": pooled_worker,
            }
        )

    def _adopt_worker(self, spare: _Spare, request_id: int, memory: int | None) -> None:
        """The spare that was handed a pooled attempt is a pooled worker from now on."""
        worker = pooled.Worker(spare.pid, spare.control, spare.base_anon, spare.cgroup)
        worker.request, worker.memory = request_id, memory
        self.workers[worker.pid] = worker
        self.worker_fds[worker.control.fileno()] = worker.pid
        self.poller.register(worker.control.fileno(), select.POLLIN)

    def start_pooled(self, request: dict[str, Any], fds: list[int]) -> bool:
        """Hand a pooled attempt to an idle pooled worker; False when there is none."""
        memory = request.get("memory")
        for worker in list(self.workers.values()):
            if worker.request is not None or worker.stopped:
                continue
            if memory and pooled.holds_more(worker, memory):  # it would start over its limit
                self._retire(worker, f"it holds more than the next attempt's {memory} bytes")
                continue
            try:
                socket.send_fds(worker.control, [encode({**request, "cgroup": None})], fds)
            except OSError:  # it is exiting; its reaping removes it
                self._retire(worker, "")
                continue
            worker.request, worker.memory = int(request["id"]), memory
            self._started(worker.request, worker.pid, worker.base_anon, None, False)
            return True
        return False

    def worker_done(self, pid: int) -> None:
        """A pooled worker reported its attempt done (or closed its socket: it exited)."""
        worker = self.workers[pid]
        try:
            data = worker.control.recv(MAX_PACKET)
            done = decode(data) if data else None
        except (OSError, ValueError):
            done = None
        if done is None:  # exited: reap() reports its attempt
            self._forget_socket(worker)
            return
        request, worker.request = worker.request, None
        worker.attempts += 1
        reason = pooled.retire_reason(worker, done)
        if request is not None:
            self.send(
                {
                    "event": "exited",
                    "id": request,
                    "pid": pid,
                    "code": int(done.get("code", 1)),
                    "signal": None,
                    "max_rss": int(done.get("max_rss", 0)),
                    "cpu": done.get("cpu"),
                    "peak": done.get("peak"),
                    "strays": [],
                    "kept": True,
                    "retired": reason,
                }
            )
        if reason:
            self._retire(worker, reason)

    def _forget_socket(self, worker: pooled.Worker) -> None:
        fd = worker.control.fileno()
        if fd >= 0 and self.worker_fds.pop(fd, None) is not None:
            self.poller.unregister(fd)
        worker.control.close()

    def _retire(self, worker: pooled.Worker, reason: str) -> None:
        """Kill a pooled worker (reaped like any child); it takes no attempt from now on."""
        worker.stopped = True
        self._forget_socket(worker)
        reaper.signal_attempt(worker.pid, signal.SIGKILL)
        if worker.cgroup is not None:
            CgroupPool.kill(worker.cgroup)

    def signal(self, pid: int, signum: int, request: int | None = None) -> None:
        """Signal everything of the attempt whose process is ``pid`` (while it is ours;
        a pooled worker only while it runs the attempt of ``request``, when given)."""
        worker = self.workers.get(pid)
        if worker is not None and worker.request is not None and request in (None, worker.request):
            worker.stopped = True  # what the stopped step left in it is not trusted
            cgroup = worker.cgroup
        elif pid in self.children:
            cgroup = self.cgroups.get(pid)
        else:
            return
        reaper.signal_attempt(pid, signum)
        if cgroup is not None and signum == signal.SIGKILL:
            CgroupPool.kill(cgroup)

    def _keep(self) -> set[int]:
        """The children this process forked: spares, attempts' processes, pooled workers."""
        return {*self.children, *self.workers, *(spare.pid for spare in self.spares)}

    def reap(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                break
            pid = info.si_pid
            for spare in [s for s in self.spares if s.pid == pid]:
                self.spares.remove(spare)
                spare.control.close()
                if spare.cgroup is not None:  # empty now that the spare has exited
                    CgroupPool.remove(spare.cgroup)
            request = self.children.pop(pid, None)
            worker = self.workers.pop(pid, None)
            cgroup = self.cgroups.pop(pid, None)
            if worker is not None:
                self._forget_socket(worker)
                request, cgroup = worker.request, worker.cgroup
            strays: list[int] = []
            if request is not None or worker is not None:
                # The exited child is a zombie until reaped, so its pid (the group id) is
                # still reserved: kill what the step left behind in its group, in its
                # cgroup, and what was below it (now re-parented here).
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                if cgroup is not None:
                    CgroupPool.kill(cgroup)
                strays = reaper.kill_strays(self._keep())
            _pid, status, usage = os.wait4(pid, 0)
            if worker is not None and cgroup is not None:  # the runner removes the others
                CgroupPool.remove(cgroup)
            if request is not None:
                self.send(
                    {
                        "event": "exited",
                        "id": request,
                        "pid": pid,
                        "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                        "max_rss": usage.ru_maxrss * 1024,
                        # The child's and its waited-for descendants' (wait4's rusage).
                        "cpu": usage.ru_utime + usage.ru_stime,
                        "strays": strays,
                    }
                )
        # Processes re-parented here since (a stray's children, forked as it was killed).
        reaper.kill_strays(self._keep())

    def shutdown(self) -> None:
        """Kill every process below this one, reap them, remove the attempts' cgroups."""
        for spare in self.spares:  # each exits when its control socket closes
            spare.control.close()
            self.children[spare.pid] = 0
            if spare.cgroup is not None:
                self.cgroups[spare.pid] = spare.cgroup
        self.spares.clear()
        for worker in self.workers.values():
            worker.control.close()
            self.children[worker.pid] = 0
            if worker.cgroup is not None:
                self.cgroups[worker.pid] = worker.cgroup
        self.workers.clear()
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
    parser.add_argument("--slots", type=int, default=1, help="one spare waits per free slot")
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
    zygote = Zygote(sock, pool, slots=args.slots)
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
