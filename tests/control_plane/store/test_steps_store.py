"""Steps as plain data (``store/steps``): a deferred write is visible to the transaction's
reads, written once with the lease that claims it, written at the commit when nothing
claims it, flushed before a set-based write, and dropped by a rollback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from google.protobuf import struct_pb2
from sqlalchemy import event

from control_plane.access.actors import Actor
from control_plane.execution.plans import PlanCache
from control_plane.execution.runs import TriggerSpec
from control_plane.pipelines.registry import Registry
from control_plane.store import steps
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from legato.v1 import spec_pb2
from tests.control_plane.execution_parts import runs_of


@pytest.fixture
async def run_id(db_url: str) -> AsyncIterator[tuple[Database, str]]:
    """A database with one run of two independent steps, both left ready (no agent)."""
    db = Database(db_url)
    await upgrade(db)
    noop = spec_pb2.TransformStep(code="pass")
    spec = spec_pb2.PipelineSpec(
        name="two",
        steps=[spec_pb2.Step(name="a", transform=noop), spec_pb2.Step(name="b", transform=noop)],
    )
    await Registry(db).apply(spec, "", Actor("alice"))
    runs, _ = runs_of(db, PlanCache(), lambda: datetime.now(UTC))
    view, _ = await runs.trigger(
        "two",
        version=0,
        params=struct_pb2.Struct(),
        trigger=TriggerSpec(kind="manual"),
        actor=Actor("alice"),
    )
    try:
        yield db, view.run.id
    finally:
        await db.dispose()


async def stored(db: Database, run_id: str) -> dict[str, str]:
    async with db.read() as session:
        return {name: s.status for name, s in (await steps.all_of(session, run_id)).items()}


def updates_of(db: Database) -> list[str]:
    sent: list[str] = []

    def count(_c: object, _cur: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            sent.append(statement)

    event.listen(db._write_engine.sync_engine, "before_cursor_execute", count)
    return sent


async def test_a_new_run_s_ready_steps_are_stored_ready(run_id: tuple[Database, str]) -> None:
    db, run = run_id
    assert await stored(db, run) == {"a": "ready", "b": "ready"}


async def test_a_deferred_step_is_read_as_deferred_and_claimed_in_one_update(
    run_id: tuple[Database, str],
) -> None:
    db, run = run_id
    sent = updates_of(db)
    async with db.write() as session:
        a = (await steps.named(session, run, {"a"}))["a"]
        steps.defer(session, a, status="pending", waiting_reason="later")
        again = await steps.named(session, run, {"a"})
        assert again["a"].status == "pending" and again["a"].waiting_reason == "later"
        await steps.write(session, a, waiting_reason="merged")  # into the deferred values
        assert sent == []
        await steps.claimed(session, a, status="leased", agent="edge")
        assert len(sent) == 1
    assert await stored(db, run) == {"a": "leased", "b": "ready"}
    async with db.read() as session:
        assert (await steps.named(session, run, {"a"}))["a"].waiting_reason == "merged"


async def test_an_unclaimed_deferred_step_is_written_at_the_commit(
    run_id: tuple[Database, str],
) -> None:
    db, run = run_id
    async with db.write() as session:
        both = await steps.all_of(session, run)
        steps.defer(session, both["a"], status="pending")
        steps.defer(session, both["b"], status="pending")
    assert await stored(db, run) == {"a": "pending", "b": "pending"}


async def test_a_set_based_write_sees_the_deferred_values_first(
    run_id: tuple[Database, str],
) -> None:
    db, run = run_id
    async with db.write() as session:
        a = (await steps.named(session, run, {"a"}))["a"]
        steps.defer(session, a, status="succeeded")
        stopped = await steps.cancel_unfinished(
            session, run, {"pending", "ready"}, status="cancelled", error="stop"
        )
        assert [s.name for s in stopped] == ["b"]
    assert await stored(db, run) == {"a": "succeeded", "b": "cancelled"}


async def test_a_rollback_drops_the_deferred_writes(run_id: tuple[Database, str]) -> None:
    db, run = run_id
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            a = (await steps.named(session, run, {"a"}))["a"]
            steps.defer(session, a, status="pending")
            raise RuntimeError("abandon")
    async with db.write() as session:
        pass  # a later transaction on the same connection writes nothing left over
    assert await stored(db, run) == {"a": "ready", "b": "ready"}
