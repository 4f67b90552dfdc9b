"""A benchmark cluster: the control plane and the agents as separate processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
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

from legato.client import Client
from legato.errors import RpcError
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


class BenchPlane:
    """`legato server` as its own process (so its CPU is measured apart from the benchmark
    client's), with an admin's client and the agents' enrolment tokens."""

    def __init__(self, db: str, workdir: Path, agents: list[str]) -> None:
        self.db = db
        self.log = workdir / "server.log"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        self._tokens = asyncio.run(_tokens(db, agents))
        self._clients: list[Client] = []
        self.agent_pids: list[int] = []
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    *(LEGATO, "server", "--listen", self.address, "--http-listen", "off"),
                    *("--db", db, "--log-level", "warning", "--shutdown-grace", "1s"),
                ],
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self.server_pid = self.process.pid

    def client(self) -> Client:
        client = Client(self.address, token=self._tokens[""], timeout=60)
        self._clients.append(client)
        return client

    def agent_token(self, name: str) -> str:
        return self._tokens[name]

    def wait_serving(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()[-2000:]}")
            try:
                list(self.client().list_agents())
                return
            except RpcError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


async def _tokens(db: str, agents: list[str]) -> dict[str, str]:
    """An admin token (key "") and one enrolment token per agent, made on the database."""
    from legato.cli.server import offline_tokens

    made: dict[str, str] = {}
    async with offline_tokens(db) as (tokens, actor):
        made[""] = (await tokens.create("bench-admin", "admin", actor)).secret
        for agent in agents:
            made[agent] = (await tokens.create_agent(agent, actor, connections=["*"])).secret
    return made


@contextmanager
def cluster(backend: str, agents: int, slots: int) -> Iterator[BenchPlane]:
    configure_logging("console", "warning")
    names = [f"bench-{index}" for index in range(agents)]
    with database(backend) as url, tempfile.TemporaryDirectory() as tmp:
        plane = BenchPlane(url, Path(tmp), names)
        processes = []
        try:
            plane.wait_serving()
            for name in names:
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
            plane.agent_pids = [p.pid for p in processes]
            yield plane
        finally:
            for process in processes:
                os.killpg(process.pid, signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
            plane.stop()


class CpuMeter:
    """CPU seconds, between ``start`` and ``stop``, of the control plane (the server
    process), of the agents (with their fork servers and step processes) and of this
    benchmark's own process (its client). Read from /proc while they run, so they need not
    have exited; children already reaped (finished steps) count through cutime/cstime."""

    def __init__(self, agents: list[int], server: int | None = None) -> None:
        self.pids = agents  # the agents'
        self.server_pid = server
        self.server = 0.0
        self.agents = 0.0
        self.own = 0.0

    @staticmethod
    def _tree(pids: list[int]) -> list[int]:
        found, frontier = [], list(pids)
        while frontier:
            pid = frontier.pop()
            found.append(pid)
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            frontier.extend(int(c) for c in children)
        return found

    @classmethod
    def _cpu(cls, pids: list[int]) -> float:
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in cls._tree(pids):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime, stime, cutime, cstime (children already reaped: finished steps)
            total += sum(int(x) for x in fields[11:15]) / tick
        return total

    def _read(self) -> tuple[float, float, float]:
        times = os.times()
        server = self._cpu([self.server_pid]) if self.server_pid else 0.0
        return server, self._cpu(self.pids), times.user + times.system

    def start(self) -> None:
        self._started = self._read()

    def stop(self) -> None:
        server, agents, own = self._read()
        self.server = server - self._started[0]
        self.agents = agents - self._started[1]
        self.own = own - self._started[2]


def wait_run(plane: BenchPlane, run_id: str, timeout: float = 120) -> run_pb2.Run:
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
