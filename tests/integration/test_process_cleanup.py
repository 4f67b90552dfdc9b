"""What dies with a step, end to end: a step leaves a process that left its session and
process group (``setsid``) and ignores SIGTERM, and the agent drains, is stopped with two
SIGTERMs, or is killed with SIGKILL (alone, as the OOM killer would, or with its fork
server, as ``kill -9 -PGID`` would). Nothing of the step survives any of them; the
attempt's work directory (with its 0600 task.json) goes with the attempt, or, when the
agent was killed, when the next agent starts on it; and a second agent on a work directory
in use is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster import LEGATO, Cluster, status_name

from executor.workdirs import LOCK_FILE
from legato.v1 import run_pb2
from tests.executor.escapees import escapee_alive, kill_escapee, step_code
from tests.executor.runner_support import alive

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pidfile(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "escapee.pid"
    yield path
    kill_escapee(path)


def leaving(cluster: Cluster, pidfile: Path, then: str) -> str:
    """Apply pipeline ``leaving``: one step that starts an escapee (orphaned while the step
    runs), prints its own pid, then runs ``then``. Returns the pipeline's name."""
    code = step_code(pidfile, orphan=True, then=f"print('step', os.getpid(), flush=True)\n{then}")
    return cluster.apply(
        f"""
        name: leaving
        steps:
          - name: nap
            transform:
              code: {json.dumps(code)}
        """
    )


def step_pid(cluster: Cluster, run_id: str) -> int:
    cluster.wait_for(
        lambda: any(line.startswith("step ") for line in cluster.logs(run_id)),
        "the step to print its pid",
    )
    return next(int(line.split()[1]) for line in cluster.logs(run_id) if line.startswith("step "))


def nothing_of(pidfile: Path, step: int) -> Callable[[], bool]:
    return lambda: not escapee_alive(pidfile) and not alive(step)


def attempt_dirs(workdir: Path) -> list[Path]:
    return [path for path in workdir.iterdir() if path.name != LOCK_FILE]


@pytest.mark.parametrize("kill", ["agent", "group"])
def test_an_agent_killed_with_sigkill_takes_its_steps_processes_and_the_next_removes_its_files(
    cluster: Cluster, pidfile: Path, kill: str
) -> None:
    # "agent": the agent alone (the OOM killer); "group": with its fork server (kill -9 -PGID).
    agent = cluster.start_agent("a1")
    leaving(cluster, pidfile, "time.sleep(1000)")
    run_id = cluster.client.trigger_run("leaving").run.id
    cluster.wait_for(pidfile.exists, "the escapee to start")
    step = step_pid(cluster, run_id)
    workdir = cluster.workdir / "a1"
    (attempt,) = attempt_dirs(workdir)
    lease_id = cluster.client.get_run(run_id).steps[0].attempts[0].lease_id
    assert attempt.name == lease_id
    if kill == "group":
        os.killpg(agent.pid, signal.SIGKILL)
    else:
        os.kill(agent.pid, signal.SIGKILL)
    agent.wait(timeout=10)
    del cluster.agents["a1"]
    cluster.wait_for(nothing_of(pidfile, step), "the step's processes to die with the agent", 10)
    # Nothing removed them: the killed agent's attempt files are still there.
    assert (attempt / "task.json").stat().st_mode & 0o777 == 0o600
    cluster.start_agent("a1")  # on the same work directory
    assert not attempt.exists()
    run = cluster.wait_run(run_id)
    assert [status_name(a.status) for a in run.steps[0].attempts] == ["failed"]


def test_an_agent_stopped_with_two_sigterms_kills_its_steps_processes_and_removes_their_files(
    cluster: Cluster, pidfile: Path
) -> None:
    agent = cluster.start_agent("a1")
    leaving(cluster, pidfile, "time.sleep(1000)")
    run_id = cluster.client.trigger_run("leaving").run.id
    cluster.wait_for(pidfile.exists, "the escapee to start")
    step = step_pid(cluster, run_id)
    log = cluster.workdir / "a1.log"
    agent.send_signal(signal.SIGTERM)  # drains: the step would run on
    cluster.wait_for(lambda: '"draining"' in log.read_text(), "the agent to drain")
    agent.send_signal(signal.SIGTERM)  # stops the step at once
    assert agent.wait(timeout=30) == 0
    del cluster.agents["a1"]
    assert nothing_of(pidfile, step)(), "the step's processes outlived the stopped agent"
    assert attempt_dirs(cluster.workdir / "a1") == []


def test_a_drained_agent_kills_what_its_finished_step_left(cluster: Cluster, pidfile: Path) -> None:
    agent = cluster.start_agent("a1")
    leaving(cluster, pidfile, "time.sleep(1)")
    run_id = cluster.client.trigger_run("leaving").run.id
    cluster.wait_for(pidfile.exists, "the escapee to start")
    step = step_pid(cluster, run_id)
    cluster.client.drain_agent("a1")
    assert agent.wait(timeout=30) == 0
    del cluster.agents["a1"]
    assert cluster.wait_run(run_id).status == run_pb2.RUN_STATUS_SUCCEEDED
    assert nothing_of(pidfile, step)(), "the finished step's orphan outlived it"
    assert attempt_dirs(cluster.workdir / "a1") == []


def test_a_second_agent_on_a_work_directory_in_use_is_refused(cluster: Cluster) -> None:
    first = cluster.start_agent("a1")
    workdir = cluster.workdir / "a1"
    second = subprocess.run(
        [LEGATO, "agent", "--server", cluster.plane.address, "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LEGATO_AGENT_TOKEN": cluster.plane.agent_token("a2")},
    )
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip().splitlines()[-1] == (
        f"legato agent: the work directory {workdir} is in use by another agent "
        f"(pid {first.pid} on host {os.uname().nodename}); give each agent a work "
        "directory of its own (--workdir or LEGATO_AGENT_WORKDIR)"
    )
    assert first.poll() is None
