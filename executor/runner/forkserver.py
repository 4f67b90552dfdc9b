"""The runner's side of the fork server (:mod:`.zygote`): starts it, asks it to fork,
relays its reports to the waiting attempts, and notices when it is gone."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from executor.runner import procfs, reaper
from executor.runner.cgroups import CgroupPool
from executor.runner.protocol import MAX_PACKET, decode, encode

__all__ = [
    "Child",
    "ExitStatus",
    "ForkServer",
    "ForkServerError",
    "ForkServerLostError",
    "Started",
    "kill_orphaned_attempt",
]

log = structlog.get_logger("legato.runner")

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0


class ForkServerError(Exception):
    """The fork server could not be started."""


class ForkServerLostError(Exception):
    """The fork server died; the children it had are no longer reaped or reported."""


@dataclass(frozen=True)
class ExitStatus:
    code: int | None
    signal: int | None
    max_rss: int
    strays: tuple[int, ...] = ()
    """Processes the attempt left behind, which the fork server killed as it exited."""
    kept: bool = False
    """The attempt ran in a pooled worker, which lives on (its processes are gone)."""
    retired: str = ""
    """Why that worker is replaced rather than reused ("" when it is reused)."""
    cpu: float | None = None
    """CPU seconds of the child and the descendants it waited for (of a pooled worker:
    during the attempt)."""
    peak: int | None = None
    """How far a pooled worker's resident memory rose during the attempt."""


@dataclass(frozen=True)
class Started:
    pid: int
    base_anon: int
    """What the child shares with the fork server (anonymous memory), for the watchdog."""
    cgroup: Path | None
    """The child's own cgroup, where it has one (the runner removes it afterwards)."""
    memory_cgroup: bool
    """Whether that cgroup limits the attempt's memory."""
    pooled: bool = False
    """Whether the child is a pooled worker (it outlives the attempt)."""


@dataclass
class Child:
    id: int
    started: asyncio.Future[Started] = field(init=False)
    exited: asyncio.Future[ExitStatus] = field(init=False)

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.started = loop.create_future()
        self.exited = loop.create_future()

    def fail(self, error: Exception) -> None:
        for future in (self.started, self.exited):
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a child that never started is not awaited twice


class ForkServer:
    def __init__(
        self,
        *,
        python: str,
        preload: Sequence[str],
        env: Mapping[str, str],
        on_lost: Callable[[], None] | None = None,
        cgroups: CgroupPool | None = None,
        slots: int = 1,
    ) -> None:
        self._python = python
        self._slots = slots
        self._preload = list(preload)
        self._env = dict(env)
        self._cgroups = cgroups
        self._on_lost = on_lost
        self._ids = itertools.count(1)
        self._children: dict[int, Child] = {}
        self._sock: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._alive = False
        self.pid: int | None = None
        self.threads: int | None = None

    @property
    def alive(self) -> bool:
        return self._alive

    async def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cgroups: list[str] = []
        if self._cgroups is not None:
            cgroups = ["--cgroups", str(self._cgroups.root)]
            cgroups += ["--cgroup-memory"] if self._cgroups.memory else []
            cgroups += ["--cgroup-per-attempt"] if self._cgroups.per_attempt else []
        try:
            self._process = await asyncio.create_subprocess_exec(
                *(self._python, "-m", "executor.runner.zygote"),
                *("--fd", str(theirs.fileno()), "--parent", str(os.getpid())),
                *("--preload", ",".join(self._preload)),
                *("--slots", str(self._slots)),
                *cgroups,
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                env=self._env,
            )
        except OSError as exc:
            ours.close()
            raise ForkServerError(
                f"cannot start the fork server with {self._python}: {exc}"
            ) from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(ours, MAX_PACKET), READY_TIMEOUT)
        except (TimeoutError, OSError) as exc:
            await self.stop()
            raise ForkServerError(f"the fork server did not start: {exc!r}") from exc
        if not data:
            code = await self._process.wait()
            await self.stop()
            raise ForkServerError(
                f"the fork server exited with status {code} before it was ready "
                "(its error is on the agent's stderr)"
            )
        ready = decode(data)
        self.pid = int(ready["pid"])
        self.threads = int(ready.get("threads", 0))
        for module, error in dict(ready.get("failed", {})).items():
            log.warning("preload_failed", module=module, error=error)
        if self.threads > 1:
            log.warning("fork_server_threads", threads=self.threads)
        self._alive = True
        self._reader = loop.create_task(self._read(), name="fork-server-reader")

    async def _read(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(self._sock, MAX_PACKET)
                if not data:
                    break
                self._dispatch(decode(data))
        except (OSError, ValueError) as exc:
            log.warning("fork_server_read_failed", error=repr(exc))
        self._lost()

    def _dispatch(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        child = self._children.get(int(message.get("id") or 0))
        if child is None:
            return
        if event == "started" and not child.started.done():
            cgroup = message.get("cgroup")
            child.started.set_result(
                Started(
                    int(message["pid"]),
                    int(message.get("base_anon", 0)),
                    Path(cgroup) if cgroup else None,
                    bool(message.get("memory_cgroup")),
                    bool(message.get("pooled")),
                )
            )
        elif event == "exited":
            del self._children[child.id]
            if not child.exited.done():
                child.exited.set_result(
                    ExitStatus(
                        message.get("code"),
                        message.get("signal"),
                        message["max_rss"],
                        tuple(int(pid) for pid in message.get("strays", ())),
                        bool(message.get("kept")),
                        str(message.get("retired") or ""),
                        _seconds(message.get("cpu")),
                        _bytes(message.get("peak")),
                    )
                )
        elif event == "error":
            del self._children[child.id]
            child.fail(ForkServerError(str(message.get("error"))))

    def _lost(self) -> None:
        if not self._alive:
            return
        self._alive = False
        children, self._children = self._children, {}
        for child in children.values():
            child.fail(ForkServerLostError("the fork server died"))
        if self._on_lost is not None:
            self._on_lost()

    async def fork(self, request: dict[str, Any], fds: Sequence[int]) -> Child:
        """Ask for a child; the pipes in ``fds`` are duplicated into it (close yours)."""
        if not self._alive or self._sock is None:
            raise ForkServerLostError("the fork server is not running")
        child = Child(next(self._ids))
        self._children[child.id] = child
        try:
            await self._send({**request, "op": "fork", "id": child.id}, fds)
        except OSError as exc:
            del self._children[child.id]
            raise ForkServerLostError(f"cannot reach the fork server: {exc}") from exc
        return child

    async def _send(self, message: dict[str, Any], fds: Sequence[int]) -> None:
        assert self._sock is not None
        data = encode(message)
        loop = asyncio.get_running_loop()
        while True:
            try:
                socket.send_fds(self._sock, [data], list(fds))
                return
            except BlockingIOError:
                writable = loop.create_future()
                loop.add_writer(self._sock, writable.set_result, None)
                try:
                    await writable
                finally:
                    loop.remove_writer(self._sock)

    def signal(self, pid: int, signum: int, child: int | None = None) -> None:
        """Signal everything of the attempt of child ``pid`` (its process group and every
        process below it). Through the fork server while it runs (it knows whether the
        child was reaped, so the pid cannot have been reused, and whether a pooled worker
        still runs the attempt of request ``child``); directly otherwise."""
        if self._alive and self._sock is not None:
            message = {"op": "signal", "pid": pid, "signal": int(signum), "id": child}
            try:
                self._sock.send(encode(message))
                return
            except OSError:
                pass
        kill_orphaned_attempt(pid, signum)

    async def stop(self) -> None:
        """Close the socket (the fork server kills its children and exits) and reap it."""
        self._alive = False
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        children, self._children = self._children, {}
        for child in children.values():
            child.fail(ForkServerLostError("the fork server was stopped"))
        if self._process is not None:
            try:
                await asyncio.wait_for(self._process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._process.send_signal(signal.SIGKILL)
                await self._process.wait()
            self._process = None


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _bytes(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def kill_orphaned_attempt(pid: int, signum: int = signal.SIGKILL) -> None:
    """Signal the attempt of child ``pid`` of a fork server that is gone. No one reaps it
    now, so its pid is trusted only while it still leads its own session."""
    info = procfs.stat(pid)
    if info is not None and info.sid == pid:
        reaper.signal_attempt(pid, signum)
