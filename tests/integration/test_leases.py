"""Lease fencing driven by hand over the real AgentService stream, and two control-plane
replicas sharing one PostgreSQL database."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cluster import Cluster, status_name

from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc, run_pb2

pb = agent_service_pb2
pytestmark = pytest.mark.timeout(120)

ONE_STEP = """
name: one
steps:
  - name: only
    transform: {code: "result = 1"}
    retry: {max_retries: 1}
"""


class HandAgent:
    """An agent whose every message the test writes itself."""

    def __init__(self, address: str, name: str, token: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub: Any = agent_service_pb2_grpc.AgentServiceStub(self.channel)
        self.name = name
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.outbox: asyncio.Queue[pb.ConnectRequest] = asyncio.Queue()
        self.seq = 0
        self.call: Any = None

    async def _requests(self) -> AsyncIterator[pb.ConnectRequest]:
        while True:
            yield await self.outbox.get()

    async def connect(self, credits: int) -> pb.AgentRegistered:
        self.call = self.stub.Connect(self._requests(), metadata=self.metadata)
        await self.send(
            register=pb.AgentRegistration(name=self.name, slots=1, instance_id=self.name)
        )
        registered: pb.ConnectResponse = await self.call.read()
        await self.send(credit=pb.CreditGrant(credits=credits))
        return registered.registered

    async def send(self, **message: Any) -> int:
        self.seq += 1
        await self.outbox.put(pb.ConnectRequest(seq=self.seq, **message))
        return self.seq

    async def next(self, kind: str, within: float = 20) -> Any:
        async with asyncio.timeout(within):
            while True:
                message = await self.call.read()
                if message.WhichOneof("message") == kind:
                    return getattr(message, kind)

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()


def succeeded(lease_id: str) -> pb.TaskResult:
    return pb.TaskResult(lease_id=lease_id, outcome=agent_pb2.TASK_OUTCOME_SUCCEEDED)


async def test_a_stale_result_is_refused_and_changes_nothing(db_url: str) -> None:
    with LocalControlPlane(db=db_url, lease_timeout=1.0) as plane:
        client = plane.client()
        client.apply_pipeline(load_spec_text(textwrap.dedent(ONE_STEP)).spec)
        run_id = (await asyncio.to_thread(client.trigger_run, "one")).run.id

        first = HandAgent(plane.address, "slow-agent", plane.agent_token("slow-agent"))
        await first.connect(credits=1)
        stale = await first.next("assignment")
        # No heartbeat: the lease expires, the attempt is lost and retried elsewhere.
        second = HandAgent(plane.address, "fast-agent", plane.agent_token("fast-agent"))
        await second.connect(credits=1)
        fresh = await second.next("assignment", within=30)
        assert fresh.attempt == 2 and fresh.lease_id != stale.lease_id

        seq = await first.send(result=succeeded(stale.lease_id))
        ack = await first.next("ack")
        while ack.through_seq < seq:
            ack = await first.next("ack")
        rejection = next(r for r in ack.rejections if r.seq == seq)
        assert rejection.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert rejection.lease_id == stale.lease_id
        run = await asyncio.to_thread(client.get_run, run_id)
        assert run.status == run_pb2.RUN_STATUS_RUNNING
        assert [status_name(a.status) for a in run.steps[0].attempts] == ["failed", "leased"]

        await second.send(started=pb.TaskStarted(lease_id=fresh.lease_id))
        await second.send(result=succeeded(fresh.lease_id))
        deadline = time.monotonic() + 10
        while run.status != run_pb2.RUN_STATUS_SUCCEEDED and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            run = await asyncio.to_thread(client.get_run, run_id)
        attempts = run.steps[0].attempts
        assert [(a.agent, status_name(a.status)) for a in attempts] == [
            ("slow-agent", "failed"),
            ("fast-agent", "succeeded"),
        ]
        await first.close()
        await second.close()


async def test_a_reconnecting_agent_keeps_its_lease(db_url: str) -> None:
    """An agent that reconnects and names its running lease keeps it; its result counts."""
    with LocalControlPlane(db=db_url, lease_timeout=5.0) as plane:
        client = plane.client()
        client.apply_pipeline(load_spec_text(textwrap.dedent(ONE_STEP)).spec)
        run_id = (await asyncio.to_thread(client.trigger_run, "one")).run.id
        agent = HandAgent(plane.address, "flaky-network", plane.agent_token("flaky-network"))
        await agent.connect(credits=1)
        task = await agent.next("assignment")
        await agent.close()
        again = HandAgent(plane.address, "flaky-network", plane.agent_token("flaky-network"))
        again.call = again.stub.Connect(again._requests(), metadata=again.metadata)
        await again.send(
            register=pb.AgentRegistration(
                name="flaky-network", slots=1, instance_id="x", running_lease_ids=[task.lease_id]
            )
        )
        registered = (await again.call.read()).registered
        assert list(registered.stale_lease_ids) == []
        await again.send(result=succeeded(task.lease_id))
        deadline = time.monotonic() + 10
        run = await asyncio.to_thread(client.get_run, run_id)
        while run.status != run_pb2.RUN_STATUS_SUCCEEDED and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            run = await asyncio.to_thread(client.get_run, run_id)
        assert run.status == run_pb2.RUN_STATUS_SUCCEEDED
        assert len(run.steps[0].attempts) == 1
        await again.close()


FAN = """
name: wide
steps:
"""


def test_two_replicas_never_hand_out_one_attempt_twice(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("several control planes share a database only on PostgreSQL")
    spec = FAN + "".join(
        f"  - name: s{i}\n    transform: {{code: 'result = None'}}\n" for i in range(10)
    )
    with (
        LocalControlPlane(db=db_url) as one,
        LocalControlPlane(db=db_url) as two,
    ):
        first = Cluster(one, tmp_path / "one")
        second = Cluster(two, tmp_path / "two")
        (tmp_path / "one").mkdir()
        (tmp_path / "two").mkdir()
        try:
            first.start_agent("agent-one", slots=4)
            second.start_agent("agent-two", slots=4)
            first.apply(spec)
            ids = [one.client().trigger_run("wide").run.id for _ in range(10)]
            ids += [two.client().trigger_run("wide").run.id for _ in range(10)]
            runs = [first.wait_run(run_id, timeout=60) for run_id in ids]
        finally:
            first.stop()
            second.stop()
    assert all(run.status == run_pb2.RUN_STATUS_SUCCEEDED for run in runs)
    agents = set()
    for run in runs:
        for step in run.steps:
            assert len(step.attempts) == 1, (run.id, step.name, step.attempts)
            agents.add(step.attempts[0].agent)
    assert agents == {"agent-one", "agent-two"}


async def test_reports_sent_together_are_applied_together(db_url: str) -> None:
    """started, logs and result sent at once (the stream applies a lease's reports that
    arrive together in one transaction) land as if sent one by one; sent again for the
    finished lease, each of them is refused."""
    with LocalControlPlane(db=db_url, lease_timeout=5.0) as plane:
        client = plane.client()
        client.apply_pipeline(load_spec_text(textwrap.dedent(ONE_STEP)).spec)
        run_id = (await asyncio.to_thread(client.trigger_run, "one")).run.id
        agent = HandAgent(plane.address, "batcher", plane.agent_token("batcher"))
        await agent.connect(credits=1)
        task = await agent.next("assignment")

        def reports() -> list[dict[str, Any]]:
            line = agent_pb2.TaskLogLine(text="hello", stream=run_pb2.LOG_STREAM_STDOUT)
            return [
                {"started": pb.TaskStarted(lease_id=task.lease_id)},
                {"logs": pb.TaskLogs(lease_id=task.lease_id, lines=[line])},
                {"result": succeeded(task.lease_id)},
            ]

        async def send_all() -> tuple[list[int], list[Any]]:
            sent = [await agent.send(**report) for report in reports()]
            rejections: list[Any] = []
            ack = await agent.next("ack")
            rejections += ack.rejections
            while ack.through_seq < sent[-1]:
                ack = await agent.next("ack")
                rejections += ack.rejections
            return sent, rejections

        _, rejections = await send_all()
        assert rejections == []
        run = await asyncio.to_thread(client.get_run, run_id)
        assert run.status == run_pb2.RUN_STATUS_SUCCEEDED
        (attempt,) = run.steps[0].attempts
        assert status_name(attempt.status) == "succeeded" and attempt.HasField("start_time")
        lines = await asyncio.to_thread(lambda: list(client.get_run_logs(run_id, step="only")))
        assert "hello" in [line.text for line in lines]

        sent, rejections = await send_all()
        assert sorted(r.seq for r in rejections) == sent
        assert {r.code for r in rejections} == {grpc.StatusCode.FAILED_PRECONDITION.value[0]}
        await agent.close()
