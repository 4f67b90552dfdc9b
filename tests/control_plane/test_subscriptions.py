"""Event subscriptions follow each pipeline's latest version, and the migration that adds
them subscribes the pipelines that existed before it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from control_plane.pipelines.registry import Actor, Registry
from control_plane.store.db import Database
from control_plane.store.migrate import downgrade, upgrade
from control_plane.store.models import EventSubscriptionRow, PipelineRow
from control_plane.triggers.subscriptions import EventSubscriptions, subscribers
from legato.v1 import spec_pb2

ALICE = Actor("alice")


def spec(name: str, *types: str) -> spec_pb2.PipelineSpec:
    return spec_pb2.PipelineSpec(
        name=name,
        triggers=[spec_pb2.Trigger(event=spec_pb2.EventTrigger(type=t)) for t in types],
        steps=[spec_pb2.Step(name="a", transform=spec_pb2.TransformStep(code="result = data"))],
    )


async def subscribed(db: Database, event_type: str) -> list[str]:
    async with db.read() as session:
        return [s.pipeline for s in await subscribers(session, event_type)]


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await upgrade(database)
    try:
        yield database
    finally:
        await database.dispose()


async def test_subscriptions_follow_the_latest_version(db: Database) -> None:
    registry = Registry(db)
    registry.watch(EventSubscriptions())
    await registry.apply(spec("a", "orders.created", "orders.created", "x"), "", ALICE)
    await registry.apply(spec("b", "orders.created"), "", ALICE)
    assert await subscribed(db, "orders.created") == ["a", "b"]
    assert await subscribed(db, "x") == ["a"]

    await registry.apply(spec("a", "x"), "", ALICE)
    assert await subscribed(db, "orders.created") == ["b"]
    await registry.set_archived("b", True, ALICE)
    assert await subscribed(db, "orders.created") == []
    await registry.set_archived("b", False, ALICE)
    assert await subscribed(db, "orders.created") == ["b"]
    await registry.rollback("a", 1, "", ALICE)
    assert await subscribed(db, "orders.created") == ["a", "b"]


async def test_the_migration_subscribes_existing_pipelines(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/legato.db")
    try:
        await upgrade(db)
        registry = Registry(db)
        await registry.apply(spec("live", "orders.created", "other"), "", ALICE)
        await registry.apply(spec("gone", "orders.created"), "", ALICE)
        await registry.set_archived("gone", True, ALICE)
        await registry.apply(spec("quiet"), "", ALICE)
        # Back to before the table (the rows stay), and forward again: the migration must
        # subscribe the pipelines that exist.
        await downgrade(db, "0004")
        await upgrade(db)
        async with db.read() as session:
            rows = await session.execute(
                select(PipelineRow.name, EventSubscriptionRow.type)
                .join(PipelineRow, PipelineRow.id == EventSubscriptionRow.pipeline_id)
                .order_by(EventSubscriptionRow.type)
            )
            assert rows.all() == [("live", "orders.created"), ("live", "other")]
    finally:
        await db.dispose()
