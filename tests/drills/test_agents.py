"""Drills on agents: killed (before and after their first heartbeat, alone or with their
process group), frozen past their lease, cut off from the control plane, crash-looping.

The promise (docs/execution.md, "Leases and fencing"): execution is at-least-once,
completion exactly-once. A step that had finished before the fault never runs again; a
step caught mid-flight runs again (elsewhere, or on the agent once it is back) and
completes once; no run is lost."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from legato import Client
from legato.v1 import agent_pb2, run_pb2

from .harness import (
    Drill,
    Steps,
    alive,
    assert_effects,
    attempts_of,
    step_of,
    step_succeeded,
    wait_for,
    wait_run,
)

pytestmark = pytest.mark.timeout(120)

CHAIN: Steps = {
    "first": {},
    "middle": {"needs": ["first"], "hold": 1},
    "last": {"needs": ["middle"]},
}
"""Three steps; the first attempt of ``middle`` waits at its gate, so a fault finds it
mid-flight."""


def test_agent_killed_before_first_heartbeat_loses_no_run(db_url: str, drill: Drill) -> None:
    """kill -9 of the agent process alone, before it sent a heartbeat: its fork server
    stops the step (PR_SET_PDEATHSIG), the lease expires, and the step runs once more on
    another agent, completing once."""
    lease = 5.0  # heartbeats every 1.25 s: the kill comes well before the first one
    cp = drill.server(db_url, lease=lease)
    client = cp.client()
    drill.pipeline(cp, "one", {"only": {"hold": 1}})
    doomed = drill.agent("doomed", cp)
    survivor = drill.agent("survivor", cp)
    run_id = client.trigger_run("one").run.id
    doomed.launch()
    wait_for(lambda: bool(drill.ledger.started(run_id)), "the step to start on 'doomed'", 60)
    doomed.kill9()
    killed_at = time.time()
    (connected,) = doomed.events("connected")
    since_connect = killed_at - _epoch(connected["timestamp"])
    assert since_connect < lease / 4, (
        f"the drill killed the agent {since_connect:.2f}s after it connected, not before "
        f"its first heartbeat ({lease / 4:g}s)"
    )
    (first,) = drill.ledger.started(run_id)
    wait_for(lambda: not alive(first.pid), f"the killed agent's step (pid {first.pid}) to stop", 10)

    survivor.launch()
    run = wait_run(client, run_id, timeout=60)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    assert attempts_of(run, "only") == [
        ("doomed", "failed", "FAILURE_KIND_LOST"),
        ("survivor", "succeeded", "FAILURE_KIND_UNSPECIFIED"),
    ]
    assert_effects(drill.ledger, [run_id], ["only"], started={(run_id, "only"): 2})
    assert [m.agent for m in drill.ledger.completed(run_id)] == ["survivor"]


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("kill", ["agent", "group"])
def test_agent_killed_after_heartbeat_retries_its_step_once_elsewhere(
    db_url: str, drill: Drill, kill: str
) -> None:
    """kill -9 of an agent whose lease its heartbeats have renewed (it outlived its
    first lease): the steps it had finished are not run again, the one it was running
    runs once more elsewhere and completes once, and nothing of the killed agent goes on
    running — killed alone or with its whole process group."""
    cp = drill.server(db_url, start=False)
    first, second = drill.agent("a1", cp), drill.agent("a2", cp)
    drill.start(cp, first, second)
    client = cp.client()
    drill.pipeline(cp, "chain", CHAIN)
    run_id = client.trigger_run("chain").run.id
    wait_for(lambda: bool(drill.ledger.started(run_id, "middle")), "'middle' to start", 30)
    (held,) = drill.ledger.started(run_id, "middle")
    assert step_succeeded(client, run_id, "first")
    # Longer than a lease: only heartbeats can have kept it.
    time.sleep(cp.lease + 1)
    assert attempts_of(client.get_run(run_id), "middle") == [
        (held.agent, "running", "FAILURE_KIND_UNSPECIFIED")
    ]
    holder, other = (first, second) if held.agent == first.name else (second, first)
    if kill == "agent":
        holder.kill9()
    else:
        holder.kill9_group()

    run = wait_run(client, run_id, timeout=60)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    assert attempts_of(run, "middle") == [
        (holder.name, "failed", "FAILURE_KIND_LOST"),
        (other.name, "succeeded", "FAILURE_KIND_UNSPECIFIED"),
    ]
    # Let the killed agent's attempt go on, if anything of it still runs: its effect
    # would be a second one.
    drill.ledger.open_gate(held)
    wait_for(lambda: not alive(held.pid), f"attempt 1 of 'middle' (pid {held.pid}) to end", 5)
    assert_effects(
        drill.ledger,
        [run_id],
        list(CHAIN),
        started={(run_id, "first"): 1, (run_id, "middle"): 2, (run_id, "last"): 1},
    )


def test_agent_frozen_past_its_lease_is_fenced(db_url: str, drill: Drill) -> None:
    """SIGSTOP of an agent and its processes (a paused VM) for longer than its lease: the
    step runs again on another agent; when the frozen one thaws, its lease is gone, so it
    stops its step before that can finish, and its reports are refused and change
    nothing. The step completes once, with the live agent's result."""
    cp = drill.server(db_url, start=False)
    agents = [drill.agent("a1", cp), drill.agent("a2", cp)]
    drill.start(cp, *agents)
    client = cp.client()
    steps: Steps = {
        "first": {},
        "work": {"needs": ["first"], "ticks": 40},
        "last": {"needs": ["work"]},
    }
    drill.pipeline(cp, "frozen", steps)
    run_id = client.trigger_run("frozen").run.id
    wait_for(lambda: bool(drill.ledger.started(run_id, "work")), "'work' to start", 30)
    (stale,) = drill.ledger.started(run_id, "work")
    frozen, live = agents if stale.agent == agents[0].name else agents[::-1]
    offset = frozen.offset()
    processes = frozen.sigstop()
    assert stale.pid in processes
    try:
        wait_for(
            lambda: len(drill.ledger.started(run_id, "work")) == 2,
            "'work' to start again on the live agent",
            cp.lease + 10,
        )
    finally:
        frozen.sigcont(processes)
    # 4 s of work were left to the stale attempt: it is stopped before it can finish.
    wait_for(lambda: not alive(stale.pid), "the thawed agent to stop its stale attempt", 3)

    run = wait_run(client, run_id, timeout=30)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    assert attempts_of(run, "work") == [
        (frozen.name, "failed", "FAILURE_KIND_LOST"),
        (live.name, "succeeded", "FAILURE_KIND_UNSPECIFIED"),
    ]
    assert step_of(run, "work").output.values["agent"] == live.name
    assert_effects(drill.ledger, [run_id], list(steps), started={(run_id, "work"): 2})
    stale_lease = step_of(run, "work").attempts[0].lease_id
    wait_for(
        lambda: any(e.get("lease") == stale_lease for e in frozen.events("report_refused", offset)),
        "the thawed agent's report on its stale lease to be refused",
        10,
    )


FORK: Steps = {
    "first": {},
    "buffered": {"needs": ["first"], "hold": 1},
    "through": {"needs": ["first"], "hold": 1},
    "last": {"needs": ["buffered", "through"]},
}
"""Two steps held mid-flight when the fault comes: ``buffered`` is let go during it (its
result waits on the agent until it can be delivered), ``through`` after it."""


def agent_state(client: Client, name: str) -> int:
    states = [a.state for a in client.list_agents(show_disconnected=True) if a.name == name]
    return states[0] if states else agent_pb2.AGENT_STATE_UNSPECIFIED


def test_dropped_agent_stream_keeps_its_leases_and_doubles_nothing(
    db_url: str, drill: Drill
) -> None:
    """The agent's connection is reset (a broken network) while it runs two steps, and
    for a while no new connection gets through; one step finishes meanwhile. The agent
    reconnects within its lease, names the leases it still holds and sends again the
    result it could not deliver: both steps keep their only attempt, none runs twice."""
    cp = drill.server(db_url, lease=10, start=False)
    proxy = drill.proxy(cp)
    agent = drill.agent("a1", cp, slots=2, address=proxy.address)
    drill.start(cp, agent)
    client = cp.client()
    drill.pipeline(cp, "fork", FORK)
    run_id = client.trigger_run("fork").run.id
    wait_for(lambda: len(drill.ledger.running()) == 2, "'buffered' and 'through' to start", 30)
    held = {m.step: m for m in drill.ledger.running()}

    offset = agent.offset()
    proxy.dropping = True
    assert proxy.cut() == 1
    drill.ledger.open_gate(held["buffered"])
    wait_for(lambda: bool(drill.ledger.completed(run_id, "buffered")), "'buffered' to finish", 10)
    wait_for(lambda: bool(agent.events("stream_failed", offset)), "the agent to see the cut", 10)
    wait_for(
        lambda: agent_state(client, "a1") == agent_pb2.AGENT_STATE_DISCONNECTED,
        "the control plane to see the stream end",
        10,
    )
    proxy.dropping = False
    agent.wait_connected(offset)
    drill.ledger.open_gate(held["through"])

    run = wait_run(client, run_id, timeout=30)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    for step in FORK:
        assert attempts_of(run, step) == [("a1", "succeeded", "FAILURE_KIND_UNSPECIFIED")]
    assert_effects(drill.ledger, [run_id], list(FORK), started={(run_id, s): 1 for s in FORK})


def test_agent_crash_loop_costs_one_attempt_per_crash_and_completes_once(
    db_url: str, drill: Drill
) -> None:
    """An agent killed (-9) each time it has started the step and restarted at once
    (systemd's Restart=always), twice: each crash costs the attempt it ran (lost, once
    its lease expires), the restarted agent runs the next one, the step completes once
    and the step finished before the loop never runs again."""
    cp = drill.server(db_url, start=False)
    looper = drill.agent("looper", cp)
    drill.start(cp, looper)
    client = cp.client()
    steps: Steps = {
        "first": {},
        "middle": {"needs": ["first"], "hold": 2},
        "last": {"needs": ["middle"]},
    }
    drill.pipeline(cp, "loop", steps)
    run_id = client.trigger_run("loop").run.id
    for crash in (1, 2):

        def started(crash: int = crash) -> bool:
            return len(drill.ledger.started(run_id, "middle")) == crash

        wait_for(started, f"attempt {crash} of 'middle' to start", 30)
        looper.kill9()
        looper.launch()

    run = wait_run(client, run_id, timeout=60)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    assert attempts_of(run, "middle") == [
        ("looper", "failed", "FAILURE_KIND_LOST"),
        ("looper", "failed", "FAILURE_KIND_LOST"),
        ("looper", "succeeded", "FAILURE_KIND_UNSPECIFIED"),
    ]
    assert_effects(
        drill.ledger,
        [run_id],
        list(steps),
        started={(run_id, "first"): 1, (run_id, "middle"): 3, (run_id, "last"): 1},
    )
    for crashed in drill.ledger.started(run_id, "middle")[:2]:
        assert not alive(crashed.pid), f"attempt {crashed.attempt} outlived its agent"
