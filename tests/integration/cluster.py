"""A test cluster: a real control plane in-process plus executor agents as separate
`legato agent` processes, and helpers to apply specs and wait for runs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from legato import Client
from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import agent_pb2, run_pb2

LEGATO = str(Path(sys.executable).with_name("legato"))
HELPERS = str(Path(__file__).with_name("steps"))
ENDED = {
    run_pb2.RUN_STATUS_SUCCEEDED,
    run_pb2.RUN_STATUS_FAILED,
    run_pb2.RUN_STATUS_CANCELLED,
    run_pb2.RUN_STATUS_TIMED_OUT,
    run_pb2.RUN_STATUS_SKIPPED,
}


@dataclass
class Cluster:
    plane: LocalControlPlane
    workdir: Path
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def client(self) -> Client:
        return self.plane.client()

    def start_agent(
        self,
        name: str,
        *,
        slots: int = 2,
        labels: dict[str, str] | None = None,
        wait: bool = True,
        connections: Path | None = None,
        env: dict[str, str] | None = None,
        token: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `legato agent` NAME, enrolled with a token that gives it ``labels`` and
        any connection (or with ``token``)."""
        args = [
            LEGATO,
            "agent",
            "--server",
            self.plane.address,
            "--name",
            name,
            "--slots",
            str(slots),
            "--workdir",
            str(self.workdir / name),
            "--grace",
            "1s",
            "--log-format",
            "json",
        ]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        if connections is not None:
            args += ["--connections", str(connections)]
        secret = token if token is not None else self.plane.agent_token(name, labels=labels)
        environ = {
            **os.environ,
            "LEGATO_AGENT_TOKEN": secret,
            **(env or {}),
            "PYTHONPATH": os.pathsep.join(
                [HELPERS, (env or {}).get("PYTHONPATH", ""), os.environ.get("PYTHONPATH", "")]
            ),
        }
        log = (self.workdir / f"{name}.log").open("ab")
        launched = datetime.now(UTC)
        process = subprocess.Popen(
            args, stdout=log, stderr=log, env=environ, start_new_session=True
        )
        self.agents[name] = process
        if wait:
            # This process's connection, not the row of an agent of the same name that was
            # just killed (the server may not have seen its stream end yet).
            self.wait_for(
                lambda: self.agent_state(name, since=launched) == agent_pb2.AGENT_STATE_CONNECTED,
                f"agent {name} to connect",
            )
        return process

    def agent_state(self, name: str, *, since: datetime | None = None) -> int:
        """The agent's state; with ``since``, UNSPECIFIED until it connected after then."""
        for agent in self.client.list_agents(show_disconnected=True):
            if agent.name == name:
                if since is not None and agent.connect_time.ToDatetime(tzinfo=UTC) < since:
                    return agent_pb2.AGENT_STATE_UNSPECIFIED
                return agent.state
        return agent_pb2.AGENT_STATE_UNSPECIFIED

    def kill_agent(self, name: str) -> None:
        process = self.agents.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.agents.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.agents.clear()

    def apply(self, yaml_text: str) -> str:
        spec = load_spec_text(textwrap.dedent(yaml_text)).spec
        self.client.apply_pipeline(spec)
        return spec.name

    def run(self, pipeline: str, timeout: float = 30, **params: object) -> run_pb2.Run:
        """Start a run and wait for it to end."""
        started = self.client.trigger_run(pipeline, params=params or None)
        return self.wait_run(started.run.id, timeout)

    def wait_run(self, run_id: str, timeout: float = 30) -> run_pb2.Run:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.client.get_run(run_id)
            if run.status in ENDED:
                return run
            time.sleep(0.05)
        raise AssertionError(
            f"run {run_id} did not end in {timeout}s: {self.client.get_run(run_id)}"
        )

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; agent logs in {self.workdir}")

    def logs(self, run_id: str) -> list[str]:
        return [line.text for line in self.client.get_run_logs(run_id)]


def steps_by_name(run: run_pb2.Run) -> dict[str, run_pb2.StepRun]:
    return {step.name: step for step in run.steps}


def status_name(value: int) -> str:
    return run_pb2.StepStatus.Name(value).removeprefix("STEP_STATUS_").lower()  # type: ignore[arg-type]


def process_gone(pid: int) -> Callable[[], bool]:
    """A condition for ``wait_for``: the process ``pid`` no longer exists."""

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    return gone


@contextlib.contextmanager
def running_cluster(db: str, workdir: Path, **settings: Any) -> Iterator[Cluster]:
    """A control plane on ``db`` (leases of 3 s unless ``settings`` say otherwise) and a
    Cluster around it; its agents are killed and the plane stopped at the end."""
    with LocalControlPlane(db=db, **{"lease_timeout": 3.0, **settings}) as plane:
        running = Cluster(plane, workdir)
        try:
            yield running
        finally:
            running.stop()
