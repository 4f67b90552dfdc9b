"""A transition reads the step that changed and its edges, not the whole run: finishing a
step of a 200-step chain loads the same few step rows as in a 3-step chain, and the run
still ends with the right outcome when its last step finishes."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import struct_pb2
from sqlalchemy import event, select

from control_plane.access.actors import Actor
from control_plane.execution.effects import Effects
from control_plane.execution.ids import new_lease_id
from control_plane.execution.plans import PlanCache
from control_plane.execution.runs import TriggerSpec
from control_plane.execution.transitions import AttemptOutcome, Transitions
from control_plane.pipelines.registry import Registry
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from control_plane.store.models import AttemptRow, RunRow, StepRunRow
from legato.v1 import spec_pb2
from tests.control_plane.execution_parts import runs_of

NOOP = spec_pb2.TransformStep(code="pass")


def chain(name: str, length: int) -> spec_pb2.PipelineSpec:
    steps = [spec_pb2.Step(name="s0000", transform=NOOP)]
    for i in range(1, length):
        steps.append(spec_pb2.Step(name=f"s{i:04d}", needs=[f"s{i - 1:04d}"], transform=NOOP))
    return spec_pb2.PipelineSpec(name=name, steps=steps)


async def lease_ready_step(db: Database, run_id: str) -> str:
    """Do what the dispatcher does for the run's ready step; returns the lease id."""
    lease_id = new_lease_id()
    async with db.write() as session:
        step = (
            await session.execute(
                select(StepRunRow).where(StepRunRow.run_id == run_id, StepRunRow.status == "ready")
            )
        ).scalar_one()
        step.status, step.attempt, step.agent = "leased", 1, "a"
        now = datetime.now(UTC)
        session.add(
            AttemptRow(
                step_run_id=step.id,
                run_id=run_id,
                number=1,
                lease_id=lease_id,
                agent="a",
                status="running",
                lease_expire_time=now,
                create_time=now,
            )
        )
    return lease_id


async def finish(db: Database, transitions: Transitions, lease_id: str) -> int:
    """Report the lease's attempt succeeded; returns how many step rows that loaded."""
    loaded = [0]

    def count(*_: object) -> None:
        loaded[0] += 1

    event.listen(StepRunRow, "load", count)
    event.listen(StepRunRow, "refresh", count)
    try:
        async with db.write() as session:
            lease = await transitions.current_attempt(session, lease_id, agent="a")
            outcome = AttemptOutcome(status="succeeded", records_out=1)
            await transitions.finish_attempt(session, lease, outcome, Effects())
    finally:
        event.remove(StepRunRow, "load", count)
        event.remove(StepRunRow, "refresh", count)
    return loaded[0]


async def loaded_per_transition(db_url: str, length: int) -> list[int]:
    db = Database(db_url)
    await upgrade(db)
    try:
        plans = PlanCache()
        runs, transitions = runs_of(db, plans, lambda: datetime.now(UTC))
        name = f"chain{length}"
        await Registry(db).apply(chain(name, length), "", Actor("alice"))
        view, _ = await runs.trigger(
            name,
            version=0,
            params=struct_pb2.Struct(),
            trigger=TriggerSpec(kind="manual"),
            actor=Actor("alice"),
        )
        loaded = []
        for _ in range(length):
            lease_id = await lease_ready_step(db, view.run.id)
            loaded.append(await finish(db, transitions, lease_id))
        async with db.read() as session:
            run = await session.get(RunRow, view.run.id)
            assert run is not None
            assert run.status == "succeeded"
        return loaded
    finally:
        await db.dispose()


async def test_a_transition_costs_the_same_in_a_long_run(db_url: str) -> None:
    short = await loaded_per_transition(db_url, 3)
    long = await loaded_per_transition(db_url, 200)
    assert max(long) == max(short) <= 2, (short, long[:10])
