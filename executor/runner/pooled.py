"""Pooled workers (``isolation: pooled``): attempt processes that run many attempts.

A tiny step spends most of its cost on its process: the fork of the fork server, the
pages it copies as it runs, its exit. A pooled attempt runs in a *worker* instead, a
process forked like any attempt's (a waiting child, :mod:`.child`) that, after its first
attempt, waits on its control socket for the next one. What holds for each attempt all the
same: its own stdout, stderr and result pipes, its work directory and environment, the
timeout and the memory limit (watched on the worker), and nothing it started outlives it
(the worker is a subreaper and kills what is left below it before it reports the attempt
done). What does not: memory isolation. Globals, imported modules, caches and signal
handlers a step leaves in the worker are seen by the next step it runs, and a step that
crashes the worker (``os._exit``, a segfault) fails its attempt; the worker is replaced.

The worker's side is :func:`serve`. After each attempt it puts back what the attempt
changed where that is cheap (stdout and stderr, the working directory, the environment,
signal dispositions, the soft ``RLIMIT_DATA``) and reports ``{"code", "max_rss", "cpu",
"peak", "retire"}`` on its control socket; ``retire`` says why it should not be reused
(threads left running, processes that would not die, a MemoryError). ``cpu`` is the CPU
time the worker and the processes it reaped used during the attempt (rusage before and
after), ``peak`` how far the worker's resident memory rose above what it was as the
attempt began (its high-water mark, VmHWM, is reset through ``/proc/self/clear_refs``
first; None where the kernel does not allow that).

The fork server's side is :class:`Worker` and :func:`retire_reason`: it retires (kills) a
worker that the runner stopped (a timeout, a cancel, over memory: its state is suspect),
that asks for it, that ran :data:`MAX_ATTEMPTS` attempts, or whose private memory is over
the memory limit of the attempt it just ran (else over :data:`RECYCLE_BYTES`); and it
hands an attempt with a memory limit only to a worker under that limit (another is retired
and the attempt gets a fresh worker), so no attempt starts over its limit.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from executor.runner import child, limits, procfs, reaper
from executor.runner.protocol import encode

__all__ = ["MAX_ATTEMPTS", "RECYCLE_BYTES", "Worker", "holds_more", "retire_reason", "serve"]

MAX_ATTEMPTS = 1000
"""Attempts a worker runs before it is replaced (bounds what leaks accumulate)."""
RECYCLE_BYTES = 512 << 20
"""A worker holding more private memory than this after an attempt (one without a memory
limit of its own) is replaced."""
LEFTOVER_SECONDS = 2.0
"""How long a worker waits for the processes it killed after an attempt."""


@dataclass
class Worker:
    """A pooled worker, as the fork server keeps it."""

    pid: int
    control: socket.socket
    base_anon: int
    """What it shares with the fork server (anonymous memory), for the memory checks."""
    cgroup: Path | None
    request: int | None = None
    """The request id of the attempt it runs; None while it waits for one."""
    memory: int | None = None
    """The memory limit of that attempt."""
    attempts: int = 0
    stopped: bool = False
    """The runner signalled its attempt (timeout, cancel, memory): it is not reused."""


def retire_reason(worker: Worker, done: dict[str, Any]) -> str:
    """Why ``worker``, which just reported ``done``, must not run another attempt ("" if
    it may)."""
    if worker.stopped:
        return "its attempt was stopped"
    if done.get("retire"):
        return str(done["retire"])
    if worker.attempts >= MAX_ATTEMPTS:
        return f"it ran {worker.attempts} attempts"
    limit = worker.memory or RECYCLE_BYTES
    if holds_more(worker, limit):
        return f"it holds more than {limit} bytes of memory of its own"
    return ""


def holds_more(worker: Worker, limit: int) -> bool:
    """Whether ``worker`` holds more than ``limit`` bytes of memory of its own (counted as
    the watchdog counts it: private dirty pages and swap)."""
    upper = procfs.anon_bytes(worker.pid) or 0  # cheap bounds first: smaps only near the limit
    if upper <= limit:
        return False
    return upper - worker.base_anon > limit or (procfs.private_bytes(worker.pid) or 0) > limit


def serve(control: socket.socket, request: dict[str, Any], fds: list[int]) -> NoReturn:
    """Run ``request`` and every attempt sent on ``control`` after it; exit when the
    control socket closes."""
    environ = dict(os.environ)
    cwd = os.getcwd()
    soft, _hard = resource.getrlimit(resource.RLIMIT_DATA)
    devnull = os.open(os.devnull, os.O_RDWR)
    while True:
        retire = ""
        succeeded = False
        cpu, rss = _cpu_seconds(), _start_peak()
        try:
            document = child.run_attempt(
                request, fds, data_baseline=procfs.vm_data_bytes(), pooled=True
            )
            succeeded = document.get("status") == "succeeded"
            if document.get("failure_kind") == "memory":
                retire = "its step ran out of memory"
        except Exception as exc:  # the result could not be written (the runner is gone)
            retire = f"the attempt's result could not be written: {exc}"
        retire = _tidy(environ, cwd, soft, devnull) or retire
        usage = resource.getrusage(resource.RUSAGE_SELF)
        high = _status_bytes(b"VmHWM:") if rss is not None else None
        done = {
            "code": 0 if succeeded else 1,
            "max_rss": usage.ru_maxrss * 1024,
            "cpu": max(0.0, _cpu_seconds() - cpu),
            "peak": max(0, high - rss) if high is not None and rss is not None else None,
            "retire": retire,
        }
        request, fds = child.next_attempt(control, encode(done))


def _cpu_seconds() -> float:
    """User + system time of this process and of the processes it has reaped."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


def _status_bytes(field: bytes) -> int | None:
    """A size from /proc/self/status (``VmRSS:``, ``VmHWM:``), in bytes."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _start_peak() -> int | None:
    """Reset this process's resident high-water mark (VmHWM) to its current resident set
    and return that; None when the kernel refuses (the attempt's peak is then what the
    runner's watchdog sampled)."""
    try:
        with open("/proc/self/clear_refs", "wb") as refs:
            refs.write(b"5")
    except OSError:
        return None
    return _status_bytes(b"VmRSS:")


def _tidy(environ: dict[str, str], cwd: str, soft: int, devnull: int) -> str:
    """Put the worker back as an attempt finds it; why it cannot be reused, if so."""
    # The attempt's stdout and stderr end here (the runner reads them to their end).
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    stuck = _kill_leftovers()
    child.reset_signals()
    limits.restore(soft)
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    if stuck:
        return "processes its step started did not exit"
    if threading.active_count() > 1:
        return "its step left threads running"
    return ""


def _kill_leftovers() -> bool:
    """Kill and reap every process below this one; True if some would not go."""
    me = os.getpid()
    if not reaper.children_of(me):
        return False
    deadline = time.monotonic() + LEFTOVER_SECONDS
    while True:
        reaper.signal_below(me, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        if not reaper.children_of(me):
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.002)
