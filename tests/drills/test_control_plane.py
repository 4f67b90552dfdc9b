"""Drills on the control plane and its database: kill -9 with an outage shorter and longer
than the lease, two replicas with one killed mid-run, and a restart of the PostgreSQL
server under it.

The promise (docs/architecture, "Two planes"; docs/execution.md, "Leases and fencing"):
all state is in the database, so the control plane can be restarted at any moment; an
agent keeps its children through an outage, reconnects, names its leases and sends again
every report not yet acknowledged. No run is lost; a step that had finished is never run
again; a result kept by the agent through the outage is accepted, so that step completes
once."""

from __future__ import annotations

import time

import pytest

from legato.v1 import run_pb2

from .harness import (
    Drill,
    Steps,
    ThrowawayPostgres,
    assert_effects,
    attempts_of,
    step_succeeded,
    wait_for,
    wait_run,
)

pytestmark = pytest.mark.timeout(150)

FORK: Steps = {
    "first": {},
    "buffered": {"needs": ["first"], "hold": 1},
    "through": {"needs": ["first"], "hold": 1},
    "last": {"needs": ["buffered", "through"]},
}
"""Two steps held mid-flight when the fault comes: ``buffered`` is let go during it (its
result waits on the agent until it can be delivered), ``through`` after it."""
ONCE = "FAILURE_KIND_UNSPECIFIED"


def test_control_plane_down_shorter_than_lease_doubles_nothing(db_url: str, drill: Drill) -> None:
    """kill -9 of the control plane while its agent runs two steps, started again at
    once: back before the leases run out. The step that finished during the outage has
    its result (kept by the agent) accepted; the other goes on. No attempt is lost and
    every step runs once."""
    cp = drill.server(db_url, lease=20, start=False)
    agent = drill.agent("a1", cp, slots=2)
    drill.start(cp, agent)
    client = cp.client()
    drill.pipeline(cp, "fork", FORK)
    run_id = client.trigger_run("fork").run.id
    wait_for(lambda: len(drill.ledger.running()) == 2, "'buffered' and 'through' to start", 30)
    held = {m.step: m for m in drill.ledger.running()}
    assert step_succeeded(client, run_id, "first")

    offset = agent.offset()
    cp.kill9()
    down = time.monotonic()
    drill.ledger.open_gate(held["buffered"])
    wait_for(lambda: bool(drill.ledger.completed(run_id, "buffered")), "'buffered' to end", 10)
    cp.start()
    agent.wait_connected(offset)
    outage = time.monotonic() - down
    # The leases were last renewed at most a heartbeat (a quarter lease) before the kill.
    assert outage < cp.lease * 3 / 4, f"the outage took {outage:.1f}s, not less than the lease"
    drill.ledger.open_gate(held["through"])

    run = wait_run(cp.client(), run_id, timeout=30)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    for step in FORK:
        assert attempts_of(run, step) == [("a1", "succeeded", ONCE)], step
    assert_effects(drill.ledger, [run_id], list(FORK), started={(run_id, s): 1 for s in FORK})


def test_control_plane_down_longer_than_lease_doubles_nothing(db_url: str, drill: Drill) -> None:
    """kill -9 of the control plane for longer than the lease; its agent gets through
    to it again a moment (1.5 s) after it is back. The step that finished during the
    outage has its result, kept by the agent, accepted: it never runs again. The step
    still running may run again (were the agent to stop it once cut off for a lease) but
    completes once."""
    cp = drill.server(db_url, lease=6, start=False)
    network = drill.proxy(cp)
    agent = drill.agent("a1", cp, slots=2, address=network.address)
    drill.start(cp, agent)
    client = cp.client()
    drill.pipeline(cp, "fork", FORK)
    run_id = client.trigger_run("fork").run.id
    wait_for(lambda: len(drill.ledger.running()) == 2, "'buffered' and 'through' to start", 30)
    held = {m.step: m for m in drill.ledger.running()}
    assert step_succeeded(client, run_id, "first")

    offset = agent.offset()
    network.refuse()  # the agent finds nothing listening, as if it dialled the server
    cp.kill9()
    down = time.monotonic()
    network.cut()
    drill.ledger.open_gate(held["buffered"])
    wait_for(lambda: bool(drill.ledger.completed(run_id, "buffered")), "'buffered' to end", 10)
    time.sleep(max(0.0, down + cp.lease + 1 - time.monotonic()))
    cp.start()
    time.sleep(1.5)
    network.listen()
    agent.wait_connected(offset)
    # The agent either kept 'through' running (the port refused: nothing could have
    # taken its lease) or stopped it after a lease; either way it may go on now.
    drill.ledger.open_gate(held["through"])

    run = wait_run(cp.client(), run_id, timeout=60)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    assert_effects(
        drill.ledger,
        [run_id],
        list(FORK),
        started={(run_id, "first"): 1, (run_id, "buffered"): 1, (run_id, "last"): 1},
    )


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_replica_killed_mid_run_loses_no_run_and_doubles_nothing(db_url: str, drill: Drill) -> None:
    """Two control planes on one PostgreSQL database and two agents, each dialling both
    replicas (its own first: an address list, as the docs of a replicated control plane
    say); two runs started through each replica. kill -9 of one replica while its agent
    runs a step of each of its runs: the agent fails over to the other replica and names
    its leases there, which keeps them; the surviving replica finishes every run, and
    every step runs once, on the agent that started it."""
    one = drill.server(db_url, "replica-one", start=False)
    two = drill.server(db_url, "replica-two", start=False)
    agent_one = drill.agent("agent-one", one, slots=2, address=f"ipv4:{one.address},{two.address}")
    agent_two = drill.agent("agent-two", two, slots=2, address=f"ipv4:{two.address},{one.address}")
    drill.start(one, two, agent_one, agent_two)
    steps: Steps = {
        "first": {},
        "held": {"needs": ["first"], "hold": 1},
        "last": {"needs": ["held"]},
    }
    drill.pipeline(one, "relay", steps)
    runs = [one.client().trigger_run("relay").run.id for _ in range(2)]
    runs += [two.client().trigger_run("relay").run.id for _ in range(2)]
    wait_for(lambda: len(drill.ledger.started(step="held")) == 4, "every 'held' to start", 30)
    held = {m.run: m for m in drill.ledger.started(step="held")}
    assert any(m.agent == "agent-one" for m in held.values()), (
        f"no step was running on agent-one when its replica was killed: {held}"
    )
    for run in runs:
        assert step_succeeded(two.client(), run, "first")

    offset = agent_one.offset()
    one.kill9()
    agent_one.wait_connected(offset)
    for mark in held.values():
        drill.ledger.open_gate(mark)
    ended = [wait_run(two.client(), run, timeout=60) for run in runs]

    assert [run.status for run in ended] == [run_pb2.RUN_STATUS_SUCCEEDED] * 4, ended
    for ran in ended:
        assert attempts_of(ran, "held") == [(held[ran.id].agent, "succeeded", ONCE)], ran.id
    started = {(run, step): 1 for run in runs for step in steps}
    assert_effects(drill.ledger, runs, list(steps), started=started)


def test_postgres_restart_mid_run_loses_no_run_and_doubles_nothing(
    throwaway_postgres: ThrowawayPostgres, drill: Drill
) -> None:
    """The control plane's PostgreSQL server (one of the test's own) is restarted — every
    session terminated — while an agent runs two steps, one of which finishes while the
    database is down. Back within the lease: the result is applied once it can be, no
    attempt is lost, every step runs once."""
    pg = throwaway_postgres
    cp = drill.server(pg.url, lease=6, start=False)
    agent = drill.agent("a1", cp, slots=2)
    drill.start(cp, agent)
    client = cp.client()
    drill.pipeline(cp, "fork", FORK)
    run_id = client.trigger_run("fork").run.id
    wait_for(lambda: len(drill.ledger.running()) == 2, "'buffered' and 'through' to start", 30)
    held = {m.step: m for m in drill.ledger.running()}
    assert step_succeeded(client, run_id, "first")

    pg.stop("fast")
    drill.ledger.open_gate(held["buffered"])
    wait_for(lambda: bool(drill.ledger.completed(run_id, "buffered")), "'buffered' to end", 10)
    time.sleep(1)  # the database stays down a while after the result went out
    pg.start()
    drill.ledger.open_gate(held["through"])

    run = wait_run(client, run_id, timeout=60)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    for step in FORK:
        assert attempts_of(run, step) == [("a1", "succeeded", ONCE)], step
    assert_effects(drill.ledger, [run_id], list(FORK), started={(run_id, s): 1 for s in FORK})
