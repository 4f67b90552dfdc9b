"""What one step-to-step hop costs the store: a result from an agent, the attempt and step
settled, the next step decided and leased to the agent in the same transaction. Counted
in SQL statements sent to the database (on both backends), with an agent that has credit,
as the server wires the parts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from google.protobuf import struct_pb2
from sqlalchemy import event

from control_plane.access.actors import Actor
from control_plane.execution.dispatch import Dispatcher
from control_plane.execution.effects import Effects
from control_plane.execution.hub import AgentHub, AgentSession, Assignment
from control_plane.execution.plans import PlanCache
from control_plane.execution.runs import Runs, TriggerSpec
from control_plane.execution.signals import Signals
from control_plane.execution.transitions import AttemptOutcome, Transitions
from control_plane.execution.unit_of_work import UnitOfWork
from control_plane.pipelines.registry import Registry
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from legato.v1 import spec_pb2

# result -> next lease: the run locked, the attempt fenced and ended, the step ended, the
# next step's edges read, the next step leased (one UPDATE) with its attempt, the log.
HOP_STATEMENTS = 8


def chain(name: str, length: int) -> spec_pb2.PipelineSpec:
    noop = spec_pb2.TransformStep(code="pass")
    steps = [spec_pb2.Step(name="s0", transform=noop)]
    steps += [
        spec_pb2.Step(name=f"s{i}", needs=[f"s{i - 1}"], transform=noop) for i in range(1, length)
    ]
    return spec_pb2.PipelineSpec(name=name, steps=steps)


@contextmanager
def counted(db: Database) -> Iterator[list[str]]:
    """The statements sent to the database inside the block (both engines)."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement.split()[0].upper() + " " + " ".join(statement.split()[1:4]))

    engines = {db.engine.sync_engine, db._write_engine.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


def take_assignment(agent: AgentSession) -> Assignment:
    message = agent.outbox.get_nowait()
    assert message is not None and message.assignment is not None, message
    agent.balance += 1  # the agent grants the credit back as its slot frees
    agent.leases.discard(message.assignment.lease_id)
    return message.assignment


async def hops(db_url: str, length: int) -> list[list[str]]:
    """Run a chain of ``length`` steps by hand; the statements of each hop."""
    db = Database(db_url)
    await upgrade(db)
    try:
        clock = lambda: datetime.now(UTC)  # noqa: E731
        plans, signals, hub = PlanCache(), Signals("test"), AgentHub()
        agent = AgentSession(name="a", instance_id="i", labels={}, slots=1, balance=1)
        hub.attach(agent)
        dispatcher = Dispatcher(db, hub, plans, signals, lease_seconds=20, clock=clock)
        uow = UnitOfWork(db, dispatcher, signals, clock=clock)
        transitions = Transitions(plans, clock)
        runs = Runs(db, plans, transitions, uow, clock=clock)
        await Registry(db).apply(chain("hop", length), "", Actor("alice"))
        view, _ = await runs.trigger(
            "hop",
            version=0,
            params=struct_pb2.Struct(),
            trigger=TriggerSpec(kind="manual"),
            actor=Actor("alice"),
        )
        lease = take_assignment(agent).lease_id
        counts = []
        for index in range(length):

            async def finish(session: Any, effects: Effects, lease_id: str = lease) -> None:
                lease = await transitions.current_attempt(session, lease_id, agent="a")
                outcome = AttemptOutcome(status="succeeded", records_out=1)
                await transitions.finish_attempt(session, lease, outcome, effects)

            with counted(db) as sent:
                await uow.run(finish)
            counts.append(sent)
            if index < length - 1:
                lease = take_assignment(agent).lease_id
        final = await runs.get(view.run.id)
        assert final.run.status == "succeeded"
        assert [step.status for step in final.steps] == ["succeeded"] * length
        return counts
    finally:
        await db.dispose()


def _work(sent: list[str]) -> list[str]:
    return [s for s in sent if not s.startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))]


async def test_a_hop_is_a_handful_of_statements(db_url: str) -> None:
    counts = await hops(db_url, 4)
    middle = [_work(sent) for sent in counts[:-1]]  # the last hop ends the run
    for sent in middle:
        assert len(sent) <= HOP_STATEMENTS, "\n".join(sent)
        assert not any(s.startswith("SAVEPOINT") for s in sent)
