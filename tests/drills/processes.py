"""`legato server` and `legato agent` as real processes: a server on a fixed port (so it
can be killed and started again where its agents look for it), agents that can be killed
alone or with their process group, frozen and thawed; their JSON logs, and tokens made on
the database itself."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from legato import Client

from .ledger import Ledger

__all__ = [
    "LEASE",
    "AgentProcess",
    "ServerProcess",
    "alive",
    "free_port",
    "kill_leftover_steps",
    "make_tokens",
    "read_events",
    "wait_for",
]

LEGATO = str(Path(sys.executable).with_name("legato"))
STEPS = str(Path(__file__).with_name("steps"))
LEASE = 3.0
"""Lease of the drills' control planes, in seconds: heartbeats every quarter of it."""


def wait_for(
    condition: Callable[[], bool], what: str | Callable[[], str], timeout: float = 30
) -> None:
    """Poll ``condition`` every 50 ms; ``what`` (or what it returns) names it on a timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    said = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout:g}s waiting for {said}")


def free_port() -> int:
    """A port nothing listens on now, to be bound again and again by one server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def read_events(path: Path, offset: int = 0) -> list[dict[str, Any]]:
    """The JSON log lines of ``path`` from byte ``offset`` (other lines are skipped)."""
    if not path.exists():
        return []
    with path.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    events: list[dict[str, Any]] = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.append(event)
    return events


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path} is empty)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; only its parent has not reaped it yet.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        return state != "Z"
    return True


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class ServerProcess:
    """`legato server` on a fixed address: killed with kill9(), started again with start()
    on the same port and database; its JSON log (every life of it) is appended to ``log``."""

    def __init__(
        self,
        db: str,
        workdir: Path,
        name: str,
        admin_token: str,
        lease: float = LEASE,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.db = db
        self.extra = extra
        self.name = name
        self.lease = lease
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.admin_token = admin_token
        self.log = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._client: Client | None = None

    def start(self) -> ServerProcess:
        """Start the server; return once it serves."""
        self.launch()()
        return self

    def launch(self) -> Callable[[], None]:
        """Start the server; returns what waits until it serves."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    LEGATO,
                    "server",
                    "--listen",
                    self.address,
                    "--http-listen",
                    "off",
                    "--db",
                    self.db,
                    "--lease-timeout",
                    f"{self.lease:g}s",
                    "--shutdown-grace",
                    "1s",
                    "--log-format",
                    "json",
                    *self.extra,
                ],
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        return functools.partial(self._wait_started, self.process, offset)

    def _wait_started(self, process: subprocess.Popen[bytes], offset: int) -> None:
        wait_for(
            lambda: (
                process.poll() is not None
                or any(e.get("event") == "server_started" for e in read_events(self.log, offset))
            ),
            lambda: f"server {self.name} to start; its log:\n{_tail(self.log)}",
            60,
        )
        if process.poll() is not None:
            raise AssertionError(
                f"server {self.name} exited with {process.returncode}:\n{_tail(self.log)}"
            )

    def kill9(self) -> None:
        """SIGKILL: no shutdown, nothing released, connections cut."""
        self._drop_client()
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def client(self) -> Client:
        """An admin's client of this life of the server (a fresh channel after a restart)."""
        if self._client is None:
            self._client = Client(self.address, token=self.admin_token, timeout=15)
        return self._client

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def offset(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def events(self, name: str, offset: int = 0) -> list[dict[str, Any]]:
        return [e for e in read_events(self.log, offset) if e.get("event") == name]


class AgentProcess:
    """`legato agent` enrolled with its own token. Its steps' processes are its
    descendants: the agent forks a fork server, which forks one process (its own session)
    per attempt."""

    def __init__(
        self, name: str, server: str, token: str, workdir: Path, ledger: Ledger, slots: int
    ) -> None:
        self.name = name
        self.server = server
        self.token = token
        self.slots = slots
        self.workdir = workdir / name
        self.log = workdir / f"{name}.log"
        self.ledger = ledger
        self.process: subprocess.Popen[bytes] | None = None
        self.lives: list[subprocess.Popen[bytes]] = []

    def start(self) -> AgentProcess:
        """Start the agent; return once it is connected."""
        self.launch()()
        return self

    def launch(self) -> Callable[[], None]:
        """Start the agent; returns what waits until it is connected."""
        offset = self.offset()
        env = {
            **os.environ,
            "LEGATO_AGENT_TOKEN": self.token,
            "DRILL_AGENT": self.name,
            "DRILL_LEDGER": str(self.ledger.path),
            "PYTHONPATH": os.pathsep.join(filter(None, [STEPS, os.environ.get("PYTHONPATH")])),
        }
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    LEGATO,
                    "agent",
                    "--server",
                    self.server,
                    "--slots",
                    str(self.slots),
                    "--workdir",
                    str(self.workdir),
                    "--grace",
                    "1s",
                    "--log-format",
                    "json",
                ],
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
            )
        self.lives.append(self.process)
        return functools.partial(self.wait_connected, offset)

    def wait_connected(self, offset: int = 0, timeout: float = 60) -> None:
        process = self.process
        assert process is not None
        wait_for(
            lambda: (
                process.poll() is not None
                or any(e.get("event") == "connected" for e in read_events(self.log, offset))
            ),
            lambda: f"agent {self.name} to connect; its log:\n{_tail(self.log)}",
            timeout,
        )
        if process.poll() is not None:
            raise AssertionError(
                f"agent {self.name} exited with {process.returncode}:\n{_tail(self.log)}"
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def offset(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def events(self, name: str, offset: int = 0) -> list[dict[str, Any]]:
        return [e for e in read_events(self.log, offset) if e.get("event") == name]

    def descendants(self) -> list[int]:
        """The agent's fork server and the attempts' processes, parents first."""
        tree = _children()
        found: list[int] = []
        todo = [self.pid]
        while todo:
            kids = tree.get(todo.pop(0), [])
            found += kids
            todo += kids
        return found

    def kill9(self) -> None:
        """SIGKILL to the agent process alone, as the OOM killer would: its fork server
        learns of it through PR_SET_PDEATHSIG and stops the attempts' process groups."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def kill9_group(self) -> None:
        """SIGKILL to the agent's whole process group (agent and fork server at once, as
        `kill -9 -PGID` does); the attempts run in sessions of their own."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def sigstop(self) -> list[int]:
        """Freeze the agent and every process under it (a paused VM or container)."""
        frozen = [self.pid, *self.descendants()]
        for pid in frozen:
            _signal(pid, signal.SIGSTOP)
        return frozen

    def sigcont(self, frozen: list[int]) -> None:
        for pid in reversed(frozen):
            _signal(pid, signal.SIGCONT)

    def close(self) -> None:
        """Kill every life of the agent and what it left behind."""
        for process in self.lives:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGCONT)
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def kill_leftover_steps(ledger: Ledger) -> None:
    """SIGKILL the drill's step processes that outlived their agent (and only those: the
    pid must still carry this ledger in its environment)."""
    marker = f"DRILL_LEDGER={ledger.path}".encode()
    for pid in ledger.pids():
        with contextlib.suppress(OSError):
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)


def make_tokens(db: str, *, admin: str = "", agents: Sequence[str] = ()) -> dict[str, str]:
    """Secrets of an admin token named ``admin`` and enrolment tokens of ``agents`` (any
    connection), made on the database itself as `legato tokens create --db` makes them,
    so no server needs to run yet."""
    from legato.cli.server import offline_tokens

    async def make() -> dict[str, str]:
        made: dict[str, str] = {}
        async with offline_tokens(db) as (tokens, actor):
            if admin:
                made[admin] = (await tokens.create(admin, "admin", actor)).secret
            for agent in agents:
                created = await tokens.create_agent(agent, actor, connections=["*"])
                made[agent] = created.secret
        return made

    return asyncio.run(make())
