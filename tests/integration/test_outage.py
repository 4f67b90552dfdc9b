"""A control plane that stops for longer than the lease, and an agent cut off from a
running one: the first must double nothing, the second must stop its steps."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cluster import LEGATO, Cluster, process_gone, steps_by_name

from legato import Client
from legato.errors import RpcError
from legato.testing import LocalControlPlane
from legato.v1 import agent_pb2, run_pb2

pytestmark = pytest.mark.timeout(120)

LEASE = 2.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def ledger_counts(ledger: Path) -> Counter[tuple[str, str]]:
    """(event, step) → how many times, from the lines `legato_test_steps.effect` wrote."""
    counts: Counter[tuple[str, str]] = Counter()
    if ledger.exists():
        for line in ledger.read_text().splitlines():
            event, _run, step, _attempt = line.split()
            counts[event, step] += 1
    return counts


def test_a_control_plane_down_longer_than_the_lease_runs_nothing_twice(
    db_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    address = f"127.0.0.1:{free_port()}"
    first = LocalControlPlane(db=db_url, listen=address, lease_timeout=LEASE).start()
    cluster = Cluster(first, tmp_path)
    try:
        cluster.start_agent("steady", slots=3)
        cluster.apply(
            f"""
            name: outage
            steps:
              - name: finishes_during
                function:
                  function: legato_test_steps:effect
                  args: {{ledger: "{ledger}", seconds: 1.5}}
              - name: outlives
                function:
                  function: legato_test_steps:effect
                  args: {{ledger: "{ledger}", seconds: 7}}
              - name: after
                needs: [finishes_during, outlives]
                function:
                  function: legato_test_steps:effect
                  args: {{ledger: "{ledger}"}}
            """
        )
        run_id = cluster.client.trigger_run("outage").run.id
        cluster.wait_for(
            lambda: (
                ledger_counts(ledger)["start", "outlives"] == 1
                and ledger_counts(ledger)["start", "finishes_during"] == 1
            ),
            "both steps to start",
        )
        first.stop()
        time.sleep(2 * LEASE)  # down for twice the lease: every lease has run out
        assert ledger_counts(ledger)["done", "finishes_during"] == 1  # ended during it

        second = LocalControlPlane(db=db_url, listen=address, lease_timeout=LEASE).start()
        cluster.plane = second
        try:
            back = time.monotonic()
            cluster.wait_for(
                lambda: cluster.agent_state("steady") == agent_pb2.AGENT_STATE_CONNECTED,
                "the agent to reconnect",
            )
            # Within the agent's backoff (half a lease, jittered) and the start-up grace.
            assert time.monotonic() - back < 1.5 * LEASE
            run = cluster.wait_run(run_id, timeout=60)
        finally:
            cluster.stop()
            second.stop()
    finally:
        cluster.stop()
        with contextlib.suppress(Exception):
            first.stop()
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    for step in steps_by_name(run).values():
        assert len(step.attempts) == 1, (step.name, step.attempts)
    counts = ledger_counts(ledger)
    for name in ("finishes_during", "outlives", "after"):
        assert (counts["start", name], counts["done", name]) == (1, 1), (name, counts)


class Blackhole:
    """A TCP proxy to ``target`` that can be cut: existing connections are dropped and
    new ones are accepted but never answered, as in a network partition (not a refusal:
    the agent must not take it for a stopped control plane)."""

    def __init__(self, target: str) -> None:
        self._host, port = target.rsplit(":", 1)
        self._port = int(port)
        self._cut = False
        self._writers: list[asyncio.StreamWriter] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.address = ""

    def __enter__(self) -> Blackhole:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        async def close() -> None:
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(close(), self._loop)
        self._thread.join(10)

    def cut(self) -> None:
        def cut() -> None:
            self._cut = True
            for writer in self._writers:
                writer.transport.abort()

        self._loop.call_soon_threadsafe(cut)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        self._loop.run_forever()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        if self._cut:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)  # accepted, never answered
            return
        up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        self._writers.append(up_writer)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@contextlib.contextmanager
def proxied(plane: LocalControlPlane) -> Iterator[Blackhole]:
    with Blackhole(plane.address) as hole:
        yield hole


def test_an_agent_cut_off_longer_than_its_lease_stops_its_steps(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    with (
        LocalControlPlane(db=f"sqlite:///{tmp_path}/legato.db", lease_timeout=LEASE) as plane,
        proxied(plane) as hole,
    ):
        cluster = Cluster(plane, tmp_path)
        real = plane.address
        try:
            plane.address = hole.address  # the agent dials through the proxy
            cluster.start_agent("island", wait=False)
            plane.address = real
            cluster.wait_for(
                lambda: cluster.agent_state("island") == agent_pb2.AGENT_STATE_CONNECTED,
                "the agent to connect",
            )
            cluster.apply(
                f"""
                name: stranded
                steps:
                  - name: nap
                    function:
                      function: legato_test_steps:slow
                      args: {{seconds: 60, marker: "{marker}"}}
                """
            )
            run_id = cluster.client.trigger_run("stranded").run.id
            cluster.wait_for(marker.exists, "the step to start")
            pid = int(marker.read_text())
            hole.cut()  # the control plane runs on, but cannot hear the agent

            started = time.monotonic()
            cluster.wait_for(process_gone(pid), "the stranded step to be stopped", timeout=30)
            assert time.monotonic() - started >= LEASE - 0.5  # not before the lease ran out

            # The agent stops the step on its own clock; the control plane records the loss on
            # its reaper's, so either may come first.
            def lost() -> bool:
                step = steps_by_name(cluster.client.get_run(run_id))["nap"]
                return bool(step.attempts) and bool(step.attempts[0].error)

            cluster.wait_for(lost, "the control plane to record the lost attempt", timeout=30)
            step = steps_by_name(cluster.client.get_run(run_id))["nap"]
            assert "stopped renewing the lease" in step.attempts[0].error
        finally:
            cluster.stop()


def test_agents_of_a_killed_control_plane_are_not_listed_as_connected(
    db_url: str, tmp_path: Path
) -> None:
    """A crash leaves the agent rows saying ``connected``; whoever reads them next must
    judge by when the agent was last heard, not by the flag."""
    made = subprocess.run(
        [LEGATO, "tokens", "create", "outage-admin", "--role", "admin", "--db", db_url, "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    admin = made.stdout.strip()
    address = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [
            LEGATO,
            "server",
            "--listen",
            address,
            "--http-listen",
            "off",
            "--db",
            db_url,
            "--lease-timeout",
            f"{LEASE:g}s",
            "--log-format",
            "json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("ab"),
    )
    agent: subprocess.Popen[bytes] | None = None
    try:
        with Client(address, token=admin) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    secret = client.create_agent_token("doomed").secret
                    break
                except RpcError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            agent = subprocess.Popen(
                [
                    LEGATO,
                    "agent",
                    "--server",
                    address,
                    "--workdir",
                    str(tmp_path / "w"),
                    "--log-format",
                    "json",
                ],
                env={**os.environ, "LEGATO_AGENT_TOKEN": secret},
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / "agent.log").open("ab"),
            )

            def state() -> int:
                rows = list(client.list_agents(show_disconnected=True))
                return rows[0].state if rows else agent_pb2.AGENT_STATE_UNSPECIFIED

            wait_until(lambda: state() == agent_pb2.AGENT_STATE_CONNECTED, "the agent to connect")
        server.kill()  # kill -9: nothing gets to say the agent went away
        agent.kill()
        server.wait(10)
        agent.wait(10)
    finally:
        for process in (server, agent):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)

    with LocalControlPlane(db=db_url, lease_timeout=LEASE) as plane:
        client = plane.client()
        (row,) = list(client.list_agents(show_disconnected=True))
        heard = row.last_seen_time.ToDatetime(tzinfo=UTC)
        wait_until(
            lambda: (
                next(iter(client.list_agents(show_disconnected=True))).state
                == agent_pb2.AGENT_STATE_DISCONNECTED
            ),
            "the dead agent to be listed as disconnected",
            timeout=3 * LEASE,
        )
        assert datetime.now(UTC) - heard >= timedelta(seconds=LEASE)
        assert [a.name for a in client.list_agents()] == []
