"""A benchmark cluster: a control plane in-process and agents as separate processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from legato.testing import LocalControlPlane
from legato.v1 import agent_pb2, run_pb2
from observability.logsetup import configure_logging

LEGATO = str(Path(sys.executable).with_name("legato"))
ADMIN = os.environ.get("LEGATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ENDED = {
    run_pb2.RUN_STATUS_SUCCEEDED,
    run_pb2.RUN_STATUS_FAILED,
    run_pb2.RUN_STATUS_CANCELLED,
    run_pb2.RUN_STATUS_TIMED_OUT,
}


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh database URL on ``backend`` (sqlite or postgres), removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/legato.db"
        return
    name = f"legato_bench_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(ADMIN).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def cluster(backend: str, agents: int, slots: int) -> Iterator[LocalControlPlane]:
    configure_logging("console", "warning")
    with (
        database(backend) as url,
        LocalControlPlane(db=url) as plane,
        tempfile.TemporaryDirectory() as tmp,
    ):
        processes = []
        try:
            for index in range(agents):
                name = f"bench-{index}"
                processes.append(
                    subprocess.Popen(
                        [
                            LEGATO,
                            "agent",
                            "--server",
                            plane.address,
                            "--name",
                            name,
                            "--slots",
                            str(slots),
                            "--workdir",
                            f"{tmp}/{name}",
                            "--log-level",
                            "warning",
                        ],
                        start_new_session=True,
                        env={**os.environ, "LEGATO_AGENT_TOKEN": plane.agent_token(name)},
                    )
                )
            client = plane.client()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                connected = [
                    a for a in client.list_agents() if a.state == agent_pb2.AGENT_STATE_CONNECTED
                ]
                if len(connected) == agents:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("agents did not connect")
            plane.agent_pids = [p.pid for p in processes]  # type: ignore[attr-defined]
            yield plane
        finally:
            for process in processes:
                os.killpg(process.pid, signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


class CpuMeter:
    """CPU seconds used by this process (control plane + benchmark client) and by the agents
    (with their fork servers and step processes), between ``start`` and ``stop``. Agents'
    CPU is read from /proc while they run, so they need not have exited."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.own = 0.0
        self.agents = 0.0

    def _agents(self) -> float:
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self._tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime, stime, cutime, cstime (children already reaped: finished steps)
            total += sum(int(x) for x in fields[11:15]) / tick
        return total

    def _tree(self) -> list[int]:
        found, frontier = [], list(self.pids)
        while frontier:
            pid = frontier.pop()
            found.append(pid)
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            frontier.extend(int(c) for c in children)
        return found

    def start(self) -> None:
        times = os.times()
        self.own = -(times.user + times.system)
        self.agents = -self._agents()

    def stop(self) -> None:
        times = os.times()
        self.own += times.user + times.system
        self.agents += self._agents()


def wait_run(plane: LocalControlPlane, run_id: str, timeout: float = 120) -> run_pb2.Run:
    client = plane.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get_run(run_id)
        if run.status in ENDED:
            return run
        time.sleep(0.25)
    raise RuntimeError(f"run {run_id} did not end")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
