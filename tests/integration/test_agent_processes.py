"""How a real agent starts its steps' processes, end to end: each free slot has a child
waiting (forked before the step was assigned), and ``isolation: pooled`` steps share a
worker, which a timeout or a crash replaces without failing the steps after it."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster import Cluster, status_name, steps_by_name

from tests.executor.runner_support import children_of

pytestmark = pytest.mark.timeout(120)

PRINT_PID = (
    "import os\\nprint(os.environ['LEGATO_STEP'], os.getpid(), flush=True)\\nresult = None\\n"
)


def fork_server_of(agent: int) -> int:
    (server,) = [
        pid
        for pid in children_of(agent)
        if b"executor.runner.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    return server


def pids(cluster: Cluster, run_id: str) -> dict[str, int]:
    """Step name → the pid the step printed."""
    found: dict[str, int] = {}
    for line in cluster.logs(run_id):
        name, _, pid = line.partition(" ")
        if pid.isdigit():
            found[name] = int(pid)
    return found


def test_steps_start_in_children_that_were_waiting_before_they_were_assigned(
    cluster: Cluster,
) -> None:
    agent = cluster.start_agent("a1", slots=2)
    server = fork_server_of(agent.pid)
    cluster.wait_for(lambda: len(children_of(server)) == 2, "a child waiting per slot")
    waiting = set(children_of(server))
    cluster.apply(
        f"""
        name: pair
        steps:
          - name: left
            transform: {{code: "{PRINT_PID}"}}
          - name: right
            transform: {{code: "{PRINT_PID}"}}
        """
    )
    run = cluster.run("pair")
    assert [status_name(s.status) for s in run.steps] == ["succeeded", "succeeded"]
    assert set(pids(cluster, run.id).values()) == waiting


def test_pooled_steps_share_a_worker_that_a_timeout_or_a_crash_replaces(
    cluster: Cluster,
) -> None:
    cluster.start_agent("a1", slots=1)
    cluster.apply(
        f"""
        name: tiny
        steps:
          - name: first
            transform: {{code: "{PRINT_PID}"}}
            isolation: pooled
          - name: second
            needs: [first]
            transform: {{code: "{PRINT_PID}"}}
            isolation: pooled
          - name: slow
            needs: [second]
            transform: {{code: "{PRINT_PID}import time\\ntime.sleep(60)"}}
            isolation: pooled
            timeout: 1s
          - name: after-timeout
            needs: [slow]
            trigger_rule: all_done
            transform: {{code: "{PRINT_PID}"}}
            isolation: pooled
          - name: crash
            needs: [after-timeout]
            transform: {{code: "{PRINT_PID}os._exit(3)"}}
            isolation: pooled
          - name: after-crash
            needs: [crash]
            trigger_rule: all_done
            transform: {{code: "{PRINT_PID}result = {{'ok': True}}"}}
            isolation: pooled
        """
    )
    run = cluster.run("tiny", timeout=60)
    steps = steps_by_name(run)
    assert {name: status_name(step.status) for name, step in steps.items()} == {
        "first": "succeeded",
        "second": "succeeded",
        "slow": "timed_out",
        "after-timeout": "succeeded",
        "crash": "failed",
        "after-crash": "succeeded",
    }
    assert steps["slow"].attempts[-1].error == (
        "step 'slow' exceeded its timeout of 1s (timeout); stopped with SIGTERM"
    )
    assert steps["crash"].attempts[-1].error == (
        "step 'crash' exited with status 3 before it reported a result"
    )
    pid = pids(cluster, run.id)
    assert pid["first"] == pid["second"] == pid["slow"]
    assert pid["after-timeout"] == pid["crash"] != pid["slow"]
    assert pid["after-crash"] != pid["crash"]
