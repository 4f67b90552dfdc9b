"""What a drill is made of: its processes (all killed at its end), its ledger, the pipelines
of its ``work`` steps, and what it reads back from the control plane. Drills import from
here; the pieces live in ``processes``, ``ledger``, ``network`` and ``postgres``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from legato import Client
from legato.spec import load_spec_text
from legato.v1 import run_pb2, spec_pb2

from .ledger import Ledger, Mark, assert_effects
from .network import Proxy
from .postgres import ThrowawayPostgres, postgres_bin
from .processes import (
    LEASE,
    AgentProcess,
    ServerProcess,
    alive,
    kill_leftover_steps,
    make_tokens,
    wait_for,
)

__all__ = [
    "ENDED",
    "LEASE",
    "AgentProcess",
    "Drill",
    "Ledger",
    "Mark",
    "Proxy",
    "ServerProcess",
    "Steps",
    "ThrowawayPostgres",
    "alive",
    "assert_effects",
    "attempts_of",
    "drill",
    "postgres_bin",
    "step_of",
    "step_succeeded",
    "wait_for",
    "wait_run",
]

Steps = dict[str, dict[str, Any]]
"""A drill pipeline: step name → {needs, ticks, hold} (see ``Drill.pipeline``)."""
ENDED = {
    run_pb2.RUN_STATUS_SUCCEEDED,
    run_pb2.RUN_STATUS_FAILED,
    run_pb2.RUN_STATUS_CANCELLED,
    run_pb2.RUN_STATUS_TIMED_OUT,
    run_pb2.RUN_STATUS_SKIPPED,
}


@dataclass
class Drill:
    """The processes of one drill (all killed at its end) and its ledger."""

    workdir: Path
    ledger: Ledger
    servers: list[ServerProcess] = field(default_factory=list)
    agents: list[AgentProcess] = field(default_factory=list)
    proxies: list[Proxy] = field(default_factory=list)
    _tokens: dict[str, str] = field(default_factory=dict)

    def server(
        self,
        db: str,
        name: str = "cp",
        *,
        lease: float = LEASE,
        start: bool = True,
        extra: tuple[str, ...] = (),
    ) -> ServerProcess:
        """A `legato server` on ``db`` (started unless ``start`` is false; ``extra``: more
        of its flags); the database's admin token is made on first use."""
        if db not in self._tokens:
            self._tokens[db] = make_tokens(db, admin="drill-admin")["drill-admin"]
        server = ServerProcess(db, self.workdir, name, self._tokens[db], lease, extra)
        self.servers.append(server)
        return server.start() if start else server

    def agent(
        self, name: str, server: ServerProcess, *, slots: int = 1, address: str = ""
    ) -> AgentProcess:
        """An agent (not started) enrolled with a token for ``name``, made on the
        server's database, dialling ``address`` (default: the server's)."""
        token = make_tokens(server.db, agents=[name])[name]
        agent = AgentProcess(
            name, address or server.address, token, self.workdir, self.ledger, slots
        )
        self.agents.append(agent)
        return agent

    def start(self, *processes: ServerProcess | AgentProcess) -> None:
        """Start servers and agents at once; return when the servers serve and the
        agents are connected."""
        servers = [p for p in processes if isinstance(p, ServerProcess)]
        agents = [p for p in processes if isinstance(p, AgentProcess)]
        ordered: list[ServerProcess | AgentProcess] = [*servers, *agents]
        waits = [p.launch() for p in ordered]
        for wait in waits:
            wait()

    def pipeline(self, server: ServerProcess, name: str, steps: Steps) -> None:
        """Apply a pipeline of ``work`` steps: name → {needs, ticks, hold}; every step may
        be retried 3 times, 0.1 s after a failure."""
        spec: dict[str, Any] = {
            "name": name,
            "retry": {"max_retries": 3, "delay": "100ms"},
            "steps": [
                {
                    "name": step,
                    **({"needs": options["needs"]} if options.get("needs") else {}),
                    "function": {
                        "function": "legato_drill_steps:work",
                        "args": {
                            "ledger": str(self.ledger.path),
                            "ticks": options.get("ticks", 0),
                            "hold": options.get("hold", 0),
                        },
                    },
                }
                for step, options in steps.items()
            ],
        }
        server.client().apply_pipeline(load_spec_text(json.dumps(spec)).spec)

    def proxy(self, server: ServerProcess) -> Proxy:
        proxy = Proxy(server.port)
        self.proxies.append(proxy)
        return proxy

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()
        for agent in self.agents:
            agent.close()
        kill_leftover_steps(self.ledger)
        for server in self.servers:
            server.kill9()


@contextlib.contextmanager
def drill(workdir: Path) -> Iterator[Drill]:
    running = Drill(workdir, Ledger(workdir))
    try:
        yield running
    finally:
        running.close()


def wait_run(client: Client, run_id: str, timeout: float = 60) -> run_pb2.Run:
    """Wait for ``run_id`` to end; returns it."""
    ended: list[run_pb2.Run] = []

    def done() -> bool:
        run = client.get_run(run_id)
        if run.status in ENDED:
            ended.append(run)
            return True
        return False

    wait_for(done, lambda: f"run {run_id} to end: {client.get_run(run_id)}", timeout)
    return ended[0]


def status_name(value: int) -> str:
    return run_pb2.StepStatus.Name(value).removeprefix("STEP_STATUS_").lower()  # type: ignore[arg-type]


def attempts_of(run: run_pb2.Run, step: str) -> list[tuple[str, str, str]]:
    """(agent, status, failure kind) of each attempt of ``step``."""
    return [
        (a.agent, status_name(a.status), spec_pb2.FailureKind.Name(a.failure_kind))
        for a in step_of(run, step).attempts
    ]


def step_of(run: run_pb2.Run, step: str) -> run_pb2.StepRun:
    (found,) = [s for s in run.steps if s.name == step]
    return found


def step_succeeded(client: Client, run_id: str, step: str) -> bool:
    return step_of(client.get_run(run_id), step).status == run_pb2.STEP_STATUS_SUCCEEDED
