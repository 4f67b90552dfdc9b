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
child, and is a child subreaper, so processes orphaned by a step are reaped here too. When
a child exits it kills what is left of the child's process group before reaping it. It
exits when the runner closes the socket or dies (PR_SET_PDEATHSIG), killing the process
groups of the children it still has.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
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
from typing import Any

from executor.runner import child, procfs
from executor.runner.protocol import MAX_FDS, MAX_PACKET, decode, encode

__all__ = ["main"]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_SPARE_RETRY = 1.0


def _prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


@dataclass(frozen=True)
class _Spare:
    pid: int
    control: socket.socket
    base_anon: int


class Zygote:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.children: dict[int, int] = {}  # pid → request id
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
                self.start(data, int(message["id"]), fds)
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
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            raise
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            try:
                ours.close()
                child.standby(theirs, close=(self.sock.fileno(), self.wake_r, self.wake_w))
            finally:
                os._exit(70)
        theirs.close()
        self.spare = _Spare(pid, ours, base_anon)

    def start(self, request: bytes, request_id: int, fds: list[int]) -> None:
        """Hand an attempt to the spare child (forking one first if there is none)."""
        error = ""
        for _ in range(2):  # a spare that died meanwhile is replaced once
            try:
                if self.spare is None:
                    self.prepare_spare()
                spare = self.spare
                assert spare is not None
                self.spare = None
                try:
                    socket.send_fds(spare.control, [request], fds)
                finally:
                    spare.control.close()
            except OSError as exc:
                error = f"cannot start the attempt's process: {exc}"
                continue
            self.children[spare.pid] = request_id
            self.send(
                {
                    "event": "started",
                    "id": request_id,
                    "pid": spare.pid,
                    "base_anon": spare.base_anon,
                }
            )
            return
        self.send({"event": "error", "id": request_id, "error": error})

    def signal(self, pid: int, signum: int) -> None:
        if pid in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signum)

    def reap(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            pid = info.si_pid
            if self.spare is not None and self.spare.pid == pid:
                self.spare.control.close()
                self.spare = None
            request = self.children.pop(pid, None)
            if request is not None:
                # The exited child is a zombie until reaped, so its pid (the group id) is
                # still reserved: kill what the step left behind in its group.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
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
                    }
                )

    def shutdown(self) -> None:
        if self.spare is not None:  # it exits when its control socket closes
            self.spare.control.close()
            self.children[self.spare.pid] = 0
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass


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
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when we stop
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != args.parent:  # the runner died before PDEATHSIG was armed
        return 0
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    sock = socket.socket(fileno=args.fd)
    failed = _preload([m for m in args.preload.split(",") if m])
    gc.collect()
    gc.freeze()  # keep the preloaded objects out of the children's collections (fewer copies)
    zygote = Zygote(sock)
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
