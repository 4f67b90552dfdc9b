"""The agent side alone: sustained no-op steps/s and the CPU an agent and its step
processes spend per step, with a fresh process per attempt (``isolation: process``) and with
pooled workers (``isolation: pooled``). Issue 11's targets: agent + step process <= 5 ms
per step forked, <= 1 ms pooled.

    .venv/bin/python bench/bench_agent.py [--agents 1] [--slots 8] [--steps 2000]
                                          [--isolation process,pooled]

The agents are real `legato agent` processes; what they dial is a stand-in for the control
plane, in this process, that implements only ``AgentService.Connect``: it sends a no-op
transform step for each credit, acknowledges every report and counts the results. So the
figures leave out the control plane's cost (W4 of bench_execution.py has it) and the
stand-in's own CPU is shown apart."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2
from harness import LEGATO, CpuMeter

from legato.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc, spec_pb2

pb = agent_service_pb2
WARM_UP = 200


class StandIn(agent_service_pb2_grpc.AgentServiceServicer):
    """Just enough of the control plane for agents to run no-op steps without end."""

    def __init__(self, isolation: str) -> None:
        self.step = spec_pb2.Step(
            name="noop", transform=spec_pb2.TransformStep(code="result = None")
        )
        if isolation != "process":  # left unset: also runs against agents from before issue 11
            self.step.isolation = spec_pb2.Isolation.Value(f"ISOLATION_{isolation.upper()}")
        self.leases = itertools.count()
        self.results = 0
        self.failed = 0
        self.connected = 0
        self.changed = asyncio.Event()

    def _assignment(self) -> pb.ConnectResponse:
        lease = f"lease-{next(self.leases):08d}"
        return pb.ConnectResponse(
            assignment=agent_pb2.TaskAssignment(
                lease_id=lease,
                run_id="run-bench",
                pipeline="bench",
                step_name="noop",
                attempt=1,
                step=self.step,
            )
        )

    async def Connect(  # noqa: N802 - the gRPC method's name
        self, request_iterator: AsyncIterator[pb.ConnectRequest], context: Any
    ) -> AsyncIterator[pb.ConnectResponse]:
        registered = False
        async for request in request_iterator:
            kind = request.WhichOneof("message")
            if kind == "register" and not registered:
                registered = True
                self.connected += 1
                self.changed.set()
                yield pb.ConnectResponse(
                    registered=pb.AgentRegistered(
                        agent_id=request.register.name,
                        lease_duration=duration_pb2.Duration(seconds=60),
                        heartbeat_interval=duration_pb2.Duration(seconds=15),
                    )
                )
            elif kind == "credit":
                for _ in range(request.credit.credits):
                    yield self._assignment()
            elif kind == "result":
                self.results += 1
                if request.result.outcome != agent_pb2.TASK_OUTCOME_SUCCEEDED:
                    self.failed += 1
                self.changed.set()
            if kind != "register":
                yield pb.ConnectResponse(ack=pb.ReportAck(through_seq=request.seq))

    async def until(self, count: int) -> None:
        while self.results < count:
            self.changed.clear()
            await self.changed.wait()


def own_cpu(pids: list[int]) -> float:
    """CPU seconds of these processes themselves (not their children)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def start_agents(
    address: str, agents: int, slots: int, workdir: str
) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [
                *(LEGATO, "agent", "--server", address, "--name", f"bench-{index}"),
                *("--slots", str(slots), "--workdir", f"{workdir}/bench-{index}"),
                *("--log-level", "warning"),
            ],
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("LEGATO_AGENT_")},
        )
        for index in range(agents)
    ]


async def measure(isolation: str, agents: int, slots: int, steps: int) -> None:
    # The generated base answers UNIMPLEMENTED for the RPCs the stand-in does not serve.
    stand_in = StandIn(isolation)  # type: ignore[abstract]
    server = grpc.aio.server()
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(stand_in, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    with tempfile.TemporaryDirectory() as tmp:
        processes = start_agents(f"127.0.0.1:{port}", agents, slots, tmp)
        try:
            async with asyncio.timeout(60):
                while stand_in.connected < agents:
                    stand_in.changed.clear()
                    await stand_in.changed.wait()
                await stand_in.until(WARM_UP)
            pids = [p.pid for p in processes]
            meter = CpuMeter(pids)
            meter.start()
            agents_only = -own_cpu(pids)
            began, done = time.perf_counter(), stand_in.results
            await stand_in.until(done + steps)
            elapsed = time.perf_counter() - began
            meter.stop()
            agents_only += own_cpu(pids)
            counted = stand_in.results - done
            print(
                f"  {isolation:8s} {counted} no-op steps on {agents} agent(s) x {slots} slots: "
                f"{counted / elapsed:.0f} steps/s; CPU per step: agent + step processes "
                f"{1000 * meter.agents / counted:.2f} ms (agent processes "
                f"{1000 * agents_only / counted:.2f} ms, fork servers and step processes "
                f"{1000 * (meter.agents - agents_only) / counted:.2f} ms; stand-in control "
                f"plane {1000 * meter.own / counted:.2f} ms); failed {stand_in.failed}"
            )
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)  # drains; its fork server stops with it
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
            await server.stop(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2000, help="measured, after a warm-up")
    parser.add_argument("--isolation", default="process,pooled")
    args = parser.parse_args()
    print(f"agent side alone ({Path(LEGATO).name} agent, stand-in control plane):")
    for isolation in args.isolation.split(","):
        asyncio.run(measure(isolation.strip(), args.agents, args.slots, args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
