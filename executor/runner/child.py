"""The attempt's process, forked by the fork server ahead of need.

A fresh fork first prepares itself (:func:`standby`): it becomes the leader of its own
session and process group and a child subreaper (the step's orphans are re-parented to it,
so everything the step starts stays below it, where :mod:`.reaper` finds it), arranges to
kill all of that and itself if the fork server dies (``PARENT_DIED``: when the agent and its
fork server are killed together, nothing else is left to do it), resets
what it inherited from the fork server (signals, numpy's random seed) and waits on its
control socket. That costs a few milliseconds (the fork's page-table copy most of all), paid
while no attempt is waiting. When an attempt arrives with its three pipes (:func:`main`),
it puts them on stdout and stderr (line-buffered, so output arrives as it is printed),
applies the memory limit, runs the step (:mod:`executor.runner.execute`), writes one JSON
result document to the result pipe and leaves with ``os._exit``: nothing of the fork
server's state is torn down twice. If the control socket closes instead (the fork server
stopped or died), it just exits. A pooled attempt (``"pooled": true``) makes it a pooled
worker instead (:mod:`.pooled`): it runs that attempt the same way (:func:`run_attempt`),
then waits for the next one on the same socket.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from executor.runner import execute, limits, reaper
from executor.runner.procfs import vm_data_bytes
from executor.runner.protocol import MAX_FDS, MAX_PACKET, decode

__all__ = [
    "NO_CGROUP",
    "PARENT_DIED",
    "READY",
    "main",
    "next_attempt",
    "reset_signals",
    "run_attempt",
    "standby",
]

READY = b"r"
"""What a fresh fork tells the fork server once it is prepared (and in its cgroup)."""
NO_CGROUP = b"c"
"""What it says instead when it could not join its cgroup: the fork server then stops
using cgroups, and this process exits."""

PARENT_DIED = signal.SIGRTMAX - 1
"""Sent by the kernel when the fork server dies (PR_SET_PDEATHSIG): a real-time signal, so no
step's own handlers (SIGTERM, SIGHUP, ...) replace ours. It is handled between two Python
bytecodes of the step's main thread (at once in a sleep or a wait, after a long call into
C code that holds the GIL)."""


def _reset_signals() -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def reset_signals() -> None:
    """The signal dispositions of a fresh attempt's process, the fork server's death
    included (a pooled worker puts them back after each attempt: a step may change them)."""
    _reset_signals()
    signal.signal(PARENT_DIED, _stop_everything)


def _stop_everything(_signum: int = 0, _frame: object = None) -> None:
    """The fork server is gone: kill everything below this process, then its group (itself
    included), since no one else may."""
    reaper.signal_attempt(os.getpid(), signal.SIGKILL)
    os._exit(1)


def _die_with(fork_server: int) -> None:
    signal.signal(PARENT_DIED, _stop_everything)
    reaper.set_parent_death_signal(PARENT_DIED)
    if os.getppid() != fork_server:  # it died before the signal was armed
        _stop_everything()


def _reseed() -> None:
    # `random` reseeds itself after a fork; numpy's global generator does not, and every
    # child would otherwise draw the same numbers.
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _line_buffered() -> None:
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def standby(
    control: socket.socket, *, close: Sequence[int], fork_server: int, cgroup: Path | None
) -> NoReturn:
    """Prepare this fresh fork of ``fork_server`` (joining ``cgroup``, the attempt's own),
    then wait for an attempt on ``control`` and run it (or, when the attempt is pooled,
    serve attempts as a pooled worker, :mod:`.pooled`)."""
    if cgroup is not None:
        try:
            (cgroup / "cgroup.procs").write_text("0")  # "0": the writing process
        except OSError as exc:
            print(f"legato: cannot join the cgroup {cgroup}: {exc}", file=sys.stderr)
            with contextlib.suppress(OSError):
                control.send(NO_CGROUP)
            os._exit(0)
    os.setsid()
    reaper.set_subreaper()
    _reset_signals()
    _die_with(fork_server)
    for fd in close:
        os.close(fd)
    _reseed()
    _line_buffered()
    baseline = vm_data_bytes()
    request, fds = next_attempt(control, READY)
    if request.get("pooled"):
        from executor.runner import pooled  # imported by the fork server: no import here

        pooled.serve(control, request, fds)
    control.close()
    main(request, fds, data_baseline=baseline)


def next_attempt(control: socket.socket, say: bytes) -> tuple[dict[str, Any], list[int]]:
    """Send ``say`` to the fork server, then wait for an attempt: its request and its three
    pipes. Exits when the control socket closes instead (the fork server stopped)."""
    try:
        control.send(say)
        data, fds, _flags, _addr = socket.recv_fds(control, MAX_PACKET, MAX_FDS)
    except OSError:
        os._exit(0)
    if not data or len(fds) != 3:
        os._exit(0)
    return decode(data), fds


def run_attempt(
    request: dict[str, Any], fds: Sequence[int], *, data_baseline: int, pooled: bool = False
) -> dict[str, Any]:
    """Run the attempt of ``request`` with its (stdout, stderr, result) pipes ``fds``: its
    output on stdout and stderr, its result document written to the result pipe (closed
    afterwards when ``pooled``: the process lives on). Returns the result document."""
    started = time.time()
    out_fd, err_fd, result_fd = fds
    document: dict[str, Any]
    try:
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.close(out_fd)
        os.close(err_fd)
        if request.get("cgroup"):  # the attempt's own (a memory limit): before the step runs
            Path(request["cgroup"], "cgroup.procs").write_text("0")
        limits.enter(
            memory_bytes=request.get("memory"), data_baseline=data_baseline, soft_only=pooled
        )
        document = execute.run_task(request["task"], started)
    except BaseException as exc:
        document = {
            "status": "failed",
            "failure_kind": "memory" if isinstance(exc, MemoryError) else "error",
            "error": f"the step's process failed before running it: {type(exc).__name__}: {exc}",
            "started_at": started,
            "ended_at": time.time(),
        }
    try:
        _write_all(result_fd, json.dumps(document, default=str).encode())
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        if pooled:
            os.close(result_fd)
    return document


def main(request: dict[str, Any], fds: Sequence[int], *, data_baseline: int) -> NoReturn:
    """Run the attempt of ``request`` with its (stdout, stderr, result) pipes ``fds``, and
    exit."""
    document = run_attempt(request, fds, data_baseline=data_baseline)
    os._exit(0 if document.get("status") == "succeeded" else 1)
