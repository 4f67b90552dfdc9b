"""Flow control over the real AgentService stream on both stores: an agent is never sent
more tasks than it has slots, whatever credits it grants; a grant beyond its slots is
logged as a protocol violation; and the sequences a real agent sends (a credit that
overtakes the result it follows, a reconnect with running leases) keep every slot."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from cluster import Cluster
from structlog.testing import capture_logs

from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc, run_pb2

pb = agent_service_pb2
pytestmark = pytest.mark.timeout(120)

ONE_STEP = """
name: {name}
steps:
  - name: only
    transform: {{code: "result = 1"}}
"""


class HandAgent:
    """An agent whose every message the test writes itself."""

    def __init__(self, plane: LocalControlPlane, name: str) -> None:
        self.channel = grpc.aio.insecure_channel(plane.address)
        self.stub: Any = agent_service_pb2_grpc.AgentServiceStub(self.channel)
        self.name = name
        self.metadata = (("authorization", f"Bearer {plane.agent_token(name)}"),)
        self.outbox: asyncio.Queue[pb.ConnectRequest] = asyncio.Queue()
        self.seq = 0
        self.call: Any = None
        self.inbox: asyncio.Queue[pb.ConnectResponse] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None

    async def _requests(self) -> AsyncIterator[pb.ConnectRequest]:
        while True:
            yield await self.outbox.get()

    async def connect(self, *, slots: int, running: tuple[str, ...] = ()) -> pb.AgentRegistered:
        self.call = self.stub.Connect(self._requests(), metadata=self.metadata)
        registration = pb.AgentRegistration(
            name=self.name, slots=slots, instance_id=self.name, running_lease_ids=running
        )
        await self.send(register=registration)
        registered: pb.ConnectResponse = await self.call.read()
        self.reader = asyncio.create_task(self._read())
        return registered.registered

    async def _read(self) -> None:
        # One reader for the stream's life: cancelling a pending read cancels the call.
        while (message := await self.call.read()) is not grpc.aio.EOF:
            await self.inbox.put(message)

    async def send(self, **message: Any) -> int:
        self.seq += 1
        await self.outbox.put(pb.ConnectRequest(seq=self.seq, **message))
        return self.seq

    async def grant(self, credits: int) -> None:
        await self.send(credit=pb.CreditGrant(credits=credits))

    async def finish(self, lease_id: str) -> None:
        await self.send(started=pb.TaskStarted(lease_id=lease_id))
        result = pb.TaskResult(lease_id=lease_id, outcome=agent_pb2.TASK_OUTCOME_SUCCEEDED)
        await self.send(result=result)

    async def assignments(self, within: float) -> list[agent_pb2.TaskAssignment]:
        """Every assignment that arrives in the next ``within`` seconds."""
        found = []
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(self.inbox.get(), left)
            except TimeoutError:
                break
            if message.WhichOneof("message") == "assignment":
                found.append(message.assignment)
        return found

    async def next_assignment(self, within: float) -> agent_pb2.TaskAssignment:
        async with asyncio.timeout(within):
            while True:
                message = await self.inbox.get()
                if message.WhichOneof("message") == "assignment":
                    return message.assignment

    async def close(self) -> None:
        self.call.cancel()
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        await self.channel.close()


async def trigger(plane: LocalControlPlane, pipelines: list[str]) -> list[str]:
    client = plane.client()
    for name in pipelines:
        spec = load_spec_text(textwrap.dedent(ONE_STEP.format(name=name))).spec
        await asyncio.to_thread(client.apply_pipeline, spec)
    return [(await asyncio.to_thread(client.trigger_run, p)).run.id for p in pipelines]


async def attempts_of(plane: LocalControlPlane, run_ids: list[str]) -> int:
    client = plane.client()
    runs = [await asyncio.to_thread(client.get_run, run_id) for run_id in run_ids]
    return sum(len(step.attempts) for run in runs for step in run.steps)


def violations(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "agent_protocol_violation"]


async def test_credits_beyond_the_slots_are_refused_and_logged(plane: LocalControlPlane) -> None:
    run_ids = await trigger(plane, [f"p{i}" for i in range(9)])
    agent = HandAgent(plane, "greedy")
    with capture_logs() as logs:
        await agent.connect(slots=1)
        await agent.grant(2**32 - 1)
        first = await agent.assignments(within=2.5)  # the dispatcher polls every second
        for _ in range(3):  # more credits while the only slot is held: still nothing
            await agent.grant(1)
        later = await agent.assignments(within=2.5)
    assert len(first) == 1 and later == []
    assert await attempts_of(plane, run_ids) == 1
    (warning,) = violations(logs)  # once per stream, however often it happens
    assert warning["log_level"] == "warning"
    assert (warning["agent"], warning["granted"], warning["slots"]) == ("greedy", 2**32 - 1, 1)
    assert warning["credits"] == 0 and warning["refused"] == 2**32 - 2
    await agent.close()


async def test_a_credit_that_overtakes_its_result_keeps_the_slot(plane: LocalControlPlane) -> None:
    """The real agent sends its +1 credit ahead of queued reports, so the credit arrives
    before the result that frees the slot: the task is sent as soon as the result is in."""
    run_ids = await trigger(plane, [f"p{i}" for i in range(4)])
    agent = HandAgent(plane, "honest")
    with capture_logs() as logs:
        await agent.connect(slots=1)
        await agent.grant(1)
        task = await agent.next_assignment(within=10)
        delays = []
        for _ in range(3):
            await agent.grant(1)
            assert await agent.assignments(within=0.3) == []  # the slot is still held
            await agent.finish(task.lease_id)
            sent = time.monotonic()
            task = await agent.next_assignment(within=10)
            delays.append(time.monotonic() - sent)
    # Sent when the result frees the slot, not when the dispatcher next polls (1 s).
    assert max(delays) < 0.8, delays
    assert violations(logs) == []
    assert await attempts_of(plane, run_ids) == 4
    await agent.close()


async def test_a_reconnecting_agent_keeps_its_free_slots(db_url: str) -> None:
    with LocalControlPlane(db=db_url, lease_timeout=5.0) as plane:
        run_ids = await trigger(plane, [f"p{i}" for i in range(3)])
        agent = HandAgent(plane, "flaky")
        await agent.connect(slots=2)
        await agent.grant(1)
        running = await agent.next_assignment(within=10)
        await agent.close()
        again = HandAgent(plane, "flaky")
        with capture_logs() as logs:
            registered = await again.connect(slots=2, running=(running.lease_id,))
            assert list(registered.stale_lease_ids) == []
            await again.grant(1)  # slots - running, as the real agent grants
            second = await again.assignments(within=2.5)
            await again.grant(1)  # one more than it has free: nothing is sent
            more = await again.assignments(within=2.5)
        assert len(second) == 1 and more == []
        assert violations(logs) == []  # within its slots: not a violation, just held back
        assert await attempts_of(plane, run_ids) == 2
        await again.close()


def test_real_agents_are_never_held_back(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("worker", slots=2)
    with capture_logs() as logs:
        for name in ("a", "b", "c"):
            cluster.apply(ONE_STEP.format(name=name))
        ids = [cluster.client.trigger_run(name).run.id for name in ("a", "b", "c") * 3]
        runs = [cluster.wait_run(run_id, timeout=60) for run_id in ids]
    assert [run.status for run in runs] == [run_pb2.RUN_STATUS_SUCCEEDED] * len(ids)
    assert violations(logs) == []


@pytest.mark.parametrize("slots", [0, 1025, 2**32 - 1])
async def test_slots_out_of_bounds_are_refused(plane: LocalControlPlane, slots: int) -> None:
    agent = HandAgent(plane, "boastful")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agent.connect(slots=slots)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"offers {slots} slots; it needs between 1 and 1024" in (caught.value.details() or "")
    await agent.close()
