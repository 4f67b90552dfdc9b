"""What lineage costs the store (on both backends): nothing per step beyond a column of the
UPDATE that ends it, and at the end of a run two statements — the run's steps with
lineage read, the edges upserted — or none when the pipeline has no step that can record
any. Test runs record nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import struct_pb2
from sqlalchemy import func, select

from control_plane.access.actors import Actor
from control_plane.execution.dispatch import Dispatcher
from control_plane.execution.effects import Effects
from control_plane.execution.hub import AgentHub, AgentSession
from control_plane.execution.plans import PlanCache
from control_plane.execution.runs import Runs, TriggerSpec
from control_plane.execution.signals import Signals
from control_plane.execution.transitions import AttemptOutcome, Transitions
from control_plane.execution.unit_of_work import UnitOfWork
from control_plane.lineage.openlineage_client import OpenLineageTarget
from control_plane.lineage.recorder import LineageRecorder
from control_plane.pipelines.registry import Registry
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from control_plane.store.models import LineageEdgeRow
from legato.v1 import spec_pb2
from tests.control_plane.test_hop_statements import HOP_STATEMENTS, _work, counted, take_assignment


def _chain(declare: bool) -> spec_pb2.PipelineSpec:
    noop = spec_pb2.TransformStep(code="pass")
    outputs = ["lake.out"] if declare else []
    return spec_pb2.PipelineSpec(
        name="chain",
        steps=[
            spec_pb2.Step(name="s0", transform=noop, inputs=["lake.in"] if declare else []),
            spec_pb2.Step(name="s1", needs=["s0"], transform=noop),
            spec_pb2.Step(name="s2", needs=["s1"], transform=noop, outputs=outputs),
        ],
    )


async def _run(
    db_url: str, *, declare: bool, recorder: bool, openlineage: bool = False
) -> tuple[list[list[str]], int]:
    """A run of the chain by hand: the statements of each hop, and the edges recorded."""
    db = Database(db_url)
    await upgrade(db)
    try:
        clock = lambda: datetime.now(UTC)  # noqa: E731
        plans, signals, hub = PlanCache(), Signals("test"), AgentHub()
        agent = AgentSession(name="a", instance_id="i", labels={}, slots=1, balance=1)
        hub.attach(agent)
        dispatcher = Dispatcher(db, hub, plans, signals, lease_seconds=20, clock=clock)
        uow = UnitOfWork(db, dispatcher, signals, clock=clock)
        target = OpenLineageTarget(url="http://127.0.0.1:9") if openlineage else None
        hooks = [LineageRecorder(target).finished] if recorder else []
        transitions = Transitions(plans, clock, on_run_finished=hooks)
        runs = Runs(db, plans, transitions, uow, clock=clock)
        await Registry(db).apply(_chain(declare), "", Actor("alice"))
        await runs.trigger(
            "chain",
            version=0,
            params=struct_pb2.Struct(),
            trigger=TriggerSpec(kind="manual"),
            actor=Actor("alice"),
        )
        counts = []
        for _ in range(3):
            lease = take_assignment(agent).lease_id

            async def finish(session: Any, effects: Effects, lease_id: str = lease) -> None:
                current = await transitions.current_attempt(session, lease_id, agent="a")
                outcome = AttemptOutcome(status="succeeded")
                await transitions.finish_attempt(session, current, outcome, effects)

            with counted(db) as sent:
                await uow.run(finish)
            counts.append(_work(sent))
        async with db.read() as session:
            edges = (await session.execute(select(func.count()).select_from(LineageEdgeRow))).one()
        return counts, int(edges[0])
    finally:
        await db.dispose()


async def test_lineage_costs_two_statements_per_run_and_none_per_step(db_url: str) -> None:
    plain, _ = await _run(db_url, declare=False, recorder=False)
    # A pipeline with nothing to record: the run costs what it did without lineage.
    untouched, none = await _run(db_url, declare=False, recorder=True)
    assert [len(hop) for hop in untouched] == [len(hop) for hop in plain]
    assert none == 0
    # Declarations: the hops cost the same (the lineage is a column of the step's UPDATE),
    # the end of the run two statements more.
    declared, edges = await _run(db_url, declare=True, recorder=True)
    assert [len(hop) for hop in declared[:-1]] == [len(hop) for hop in plain[:-1]]
    assert all(len(hop) <= HOP_STATEMENTS for hop in declared[:-1])
    extra = len(declared[-1]) - len(plain[-1])
    assert extra == 2, "\n".join(declared[-1])
    assert any("lineage_edges" in statement for statement in declared[-1])
    assert edges == 2  # lake.in → chain, chain → lake.out


async def test_with_openlineage_the_end_of_a_run_adds_one_insert_of_its_events(
    db_url: str,
) -> None:
    plain, _ = await _run(db_url, declare=False, recorder=False)
    emitting, _ = await _run(db_url, declare=False, recorder=True, openlineage=True)
    assert [len(hop) for hop in emitting[:-1]] == [len(hop) for hop in plain[:-1]]
    # Every step read (one SELECT), no edge to upsert, the events in one multi-row INSERT.
    assert len(emitting[-1]) - len(plain[-1]) == 2, "\n".join(emitting[-1])
    inserts = [s for s in emitting[-1] if s.startswith("INSERT INTO notifications")]
    assert len(inserts) == 1 and not any("notifications" in s for s in plain[-1])
