"""The agent's work directory: one agent at a time, and no attempt's files left behind.

Each attempt gets ``<workdir>/<lease id>/`` (its task document ``task.json``, readable by
the agent's user only since it may hold connection values, its inputs, output and files),
which the agent removes when the attempt ends. An agent killed with SIGKILL, or a host that
lost power, removes nothing, so an agent that starts removes every attempt directory an
earlier one left.

That is safe only if no live agent uses the directory, so an agent holds an exclusive lock
on ``<workdir>/.lock`` (``flock``) for as long as it runs, released by the kernel however
the agent exits, and refuses to start while another agent holds it: two agents never share
a work directory. Attempt directories are told apart by their names, lease ids (the control
plane's ULIDs: 26 lower-case Crockford base32 characters), so a work directory that holds
anything else keeps it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from executor.config import ConfigError
from executor.runner.runner import ARTIFACTS_DIR, TASK_FILE

__all__ = [
    "LOCK_FILE",
    "WorkdirClaim",
    "WorkdirInUseError",
    "claim_workdir",
    "remove_attempt",
    "remove_tree",
]

log = structlog.get_logger("legato.agent")

LOCK_FILE = ".lock"
_LEASE_ID = re.compile(r"[0-9a-hjkmnp-tv-z]{26}")


class WorkdirInUseError(ConfigError):
    """Another agent holds the work directory."""


class WorkdirClaim:
    """This agent's hold on its work directory, until :meth:`release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the lock's only descriptor unlocks it
            self._fd = None


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it (``pid N on host H``)."""
    with contextlib.suppress(OSError):
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if text:
            return f" ({text})"
    return ""


def claim_workdir(path: Path) -> WorkdirClaim:
    """Create and lock ``path`` for this agent, then remove the attempt directories an
    earlier agent left in it. WorkdirInUseError when another agent holds it."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise WorkdirInUseError(
            f"the work directory {path} is in use by another agent{holder}; give each agent "
            "a work directory of its own (--workdir or LEGATO_AGENT_WORKDIR)"
        ) from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
    removed = [entry for entry in path.iterdir() if _LEASE_ID.fullmatch(entry.name)]
    for entry in removed:
        remove_tree(entry)
    if removed:
        log.info("workdir_cleaned", workdir=str(path), attempts=len(removed))
    return WorkdirClaim(path, fd)


def _retry(function: Callable[..., Any], name: str, _error: object) -> None:
    """rmtree's error handler: make what a step made read-only (or unreadable) the owner's
    again and try once more; what still fails is left for the next start."""
    with contextlib.suppress(OSError):
        parent = os.path.dirname(name)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IRWXU)
        if os.path.isdir(name) and not os.path.islink(name):
            os.chmod(name, os.stat(name).st_mode | stat.S_IRWXU)
            shutil.rmtree(name, ignore_errors=True)
        else:
            function(name)


def remove_attempt(path: Path) -> None:
    """Remove an attempt's directory as its attempt ends. Most hold only what the runner
    made (``task.json`` and an empty ``artifacts/``): three system calls instead of
    rmtree's walk, which was a tenth of a no-op step's cost in the agent; else rmtree."""
    try:
        os.unlink(path / TASK_FILE)
        os.rmdir(path / ARTIFACTS_DIR)
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def remove_tree(path: Path) -> None:
    """Remove an attempt's directory, whatever the step did to its permissions."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_retry)
    else:
        shutil.rmtree(path, onerror=_retry)
    if path.exists():
        log.warning("workdir_not_removed", path=str(path))
