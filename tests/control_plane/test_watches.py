"""Watches follow each pipeline's database triggers; each goes to one agent with the
connection, across two replicas on one database; changes from the holder start one run."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import duration_pb2, json_format, struct_pb2
from sqlalchemy import select
from structlog.testing import capture_logs

from control_plane.execution.hub import AgentHub, AgentSession, Outgoing
from control_plane.execution.plans import PlanCache
from control_plane.pipelines.registry import Actor, Registry
from control_plane.store.db import Database
from control_plane.store.migrate import downgrade, upgrade
from control_plane.store.models import RunRow, WatchRow
from control_plane.triggers.watch_assignment import WatchAssigner, WatchMessage
from control_plane.triggers.watches import Watches, WatchSync, database_triggers, watch_id
from legato.v1 import spec_pb2
from tests.control_plane.execution_parts import runs_of

ALICE = Actor("alice")
LEASE = 20.0


def spec(
    name: str, *triggers: spec_pb2.DatabaseTrigger, code: str = "result = data"
) -> spec_pb2.PipelineSpec:
    return spec_pb2.PipelineSpec(
        name=name,
        triggers=[spec_pb2.Trigger(database=t) for t in triggers],
        steps=[spec_pb2.Step(name="a", transform=spec_pb2.TransformStep(code=code))],
    )


def channel(name: str, connection: str = "shop") -> spec_pb2.DatabaseTrigger:
    return spec_pb2.DatabaseTrigger(connection=connection, channel=name)


def table(name: str, every: int = 60) -> spec_pb2.DatabaseTrigger:
    return spec_pb2.DatabaseTrigger(
        connection="shop",
        table=name,
        watermark="updated_at",
        every=duration_pb2.Duration(seconds=every),
    )


def agent(name: str, *connections: str, draining: bool = False) -> AgentSession:
    labels = {f"connection/{c}": "true" for c in connections}
    return AgentSession(
        name=name,
        instance_id=name,
        labels=labels,
        slots=1,
        connections=list(connections),
        draining=draining,
    )


def messages(session: AgentSession) -> list[tuple[str, str]]:
    """(kind, watch id) of the watch messages queued for ``session``, taken off it."""
    found = []
    while not session.outbox.empty():
        message: Outgoing | None = session.outbox.get_nowait()
        if isinstance(message, WatchMessage):
            found.append((message.kind, message.watch_id))
    return found


@dataclass
class Plane:
    """One control-plane replica's view: its hub of agents and its assigner."""

    hub: AgentHub
    assigner: WatchAssigner


@dataclass
class World:
    db: Database
    registry: Registry
    watches: Watches
    now: list[datetime]

    def replica(self, name: str) -> Plane:
        hub = AgentHub()
        assigner = WatchAssigner(
            self.db, hub, replica=name, lease_seconds=LEASE, clock=lambda: self.now[0]
        )
        return Plane(hub, assigner)

    async def rows(self) -> list[WatchRow]:
        async with self.db.read() as session:
            return list((await session.execute(select(WatchRow).order_by(WatchRow.id))).scalars())


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    db = Database(db_url)
    await upgrade(db)
    now = [datetime(2026, 12, 1, tzinfo=UTC)]

    def clock() -> datetime:
        return now[0]

    plans = PlanCache()
    runs, _ = runs_of(db, plans, clock)
    registry = Registry(db, clock=clock)
    registry.watch(WatchSync(lambda: None))
    watches = Watches(runs, clock=clock, on_agents_changed=lambda: None)
    try:
        yield World(db, registry, watches, now)
    finally:
        await db.dispose()


# -- the table ---------------------------------------------------------------------------


async def test_watches_follow_the_latest_version(world: World) -> None:
    await world.registry.apply(spec("orders", channel("orders"), channel("orders")), "", ALICE)
    (row,) = await world.rows()
    assert (row.pipeline, row.connection, row.trigger) == (
        "orders",
        "shop",
        {"connection": "shop", "channel": "orders"},
    )
    assert row.agent is None and row.watermark == ""
    first = row.id

    # Another step, same trigger: the same watch, its watermark and holder kept.
    async with world.db.write() as session:
        stored = await session.get(WatchRow, first)
        assert stored is not None
        stored.watermark, stored.agent = "w1", "a1"
    await world.registry.apply(spec("orders", channel("orders"), code="result = 1"), "", ALICE)
    (row,) = await world.rows()
    assert (row.id, row.watermark, row.agent) == (first, "w1", "a1")

    # A changed trigger replaces the watch; a new one is added.
    await world.registry.apply(spec("orders", channel("other"), table("orders")), "", ALICE)
    rows = await world.rows()
    assert first not in {r.id for r in rows}
    assert sorted(str(r.trigger.get("channel") or r.trigger["table"]) for r in rows) == [
        "orders",
        "other",
    ]
    assert {r.trigger.get("every") for r in rows} == {None, "60s"}

    await world.registry.set_archived("orders", True, ALICE)
    assert await world.rows() == []
    await world.registry.set_archived("orders", False, ALICE)
    assert len(await world.rows()) == 2


async def test_the_migration_adds_watches_for_existing_pipelines(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/legato.db")
    try:
        await upgrade(db)
        registry = Registry(db)
        await registry.apply(spec("live", channel("c"), table("t", every=5)), "", ALICE)
        await registry.apply(spec("gone", channel("c")), "", ALICE)
        await registry.set_archived("gone", True, ALICE)
        await downgrade(db, "0005")  # before the table (the pipelines stay), and forward
        await upgrade(db)
        async with db.read() as session:
            rows = list((await session.execute(select(WatchRow))).scalars())
        live = await registry.get("live")
        expected = {watch_id(1, t) for t in database_triggers(live.spec)}
        assert {r.id for r in rows} == expected
        assert {r.pipeline for r in rows} == {"live"}
        migration = importlib.import_module("control_plane.store.migrations.versions.0006_watches")
        data = json_format.MessageToDict(table("t"), preserving_proto_field_name=True)
        assert migration.watch_id(7, data) == watch_id(7, data)
    finally:
        await db.dispose()


# -- assignment --------------------------------------------------------------------------


async def test_one_agent_with_the_connection_gets_the_watch(world: World) -> None:
    await world.registry.apply(spec("orders", channel("orders")), "", ALICE)
    (row,) = await world.rows()
    plane = world.replica("r1")
    other, near = agent("other", "crm"), agent("near", "shop")
    plane.hub.attach(other)
    with capture_logs() as logs:
        await plane.assigner.reconcile()
        await plane.assigner.reconcile()
    unassigned = [e for e in logs if e["event"] == "watch_unassigned"]
    assert len(unassigned) == 1  # logged once, not on every pass
    assert (
        "no agent connected to this control plane has connection 'shop'"
        in (unassigned[0]["message"])
    )
    assert "LEGATO_CONNECTION_SHOP" in unassigned[0]["message"]
    assert messages(other) == []

    plane.hub.attach(near)
    await plane.assigner.reconcile()
    assert messages(near) == [("watch", row.id)]
    (row,) = await world.rows()
    assert (row.agent, row.replica) == ("near", "r1")
    await plane.assigner.reconcile()  # nothing changed: nothing sent again
    assert messages(near) == []


async def test_the_watch_carries_the_trigger_and_the_stored_watermark(world: World) -> None:
    await world.registry.apply(spec("orders", table("orders", every=5)), "", ALICE)
    async with world.db.write() as session:
        (row,) = (await session.execute(select(WatchRow))).scalars()
        row.watermark = "2026-11-30T10:00:00+00:00"
    plane = world.replica("r1")
    near = agent("near", "shop")
    plane.hub.attach(near)
    await plane.assigner.reconcile()
    message = near.outbox.get_nowait()
    assert isinstance(message, WatchMessage)
    assert message.pipeline == "orders"
    assert message.watermark == "2026-11-30T10:00:00+00:00"
    trigger = json_format.ParseDict(message.trigger, spec_pb2.DatabaseTrigger())
    assert trigger == table("orders", every=5)


async def test_a_disconnected_holder_is_replaced_and_a_removed_trigger_cancelled(
    world: World,
) -> None:
    await world.registry.apply(spec("orders", channel("orders")), "", ALICE)
    (row,) = await world.rows()
    plane = world.replica("r1")
    a, b, draining = agent("a", "shop"), agent("b", "shop"), agent("c", "shop", draining=True)
    for session in (a, b, draining):
        plane.hub.attach(session)
    await plane.assigner.reconcile()
    assert messages(a) == [("watch", row.id)]  # fewest watches, then by name

    plane.hub.detach(a)
    await plane.assigner.reconcile()
    assert messages(b) == [("watch", row.id)]
    assert messages(draining) == []
    assert (await world.rows())[0].agent == "b"

    await world.registry.apply(spec("orders", channel("renamed")), "", ALICE)
    await plane.assigner.reconcile()
    (new,) = await world.rows()
    assert messages(b) == [("unwatch", row.id), ("watch", new.id)]

    await world.registry.set_archived("orders", True, ALICE)
    await plane.assigner.reconcile()
    assert messages(b) == [("unwatch", new.id)]


async def test_a_reconnecting_agent_gets_its_watch_back(world: World) -> None:
    await world.registry.apply(spec("orders", channel("orders")), "", ALICE)
    (row,) = await world.rows()
    plane = world.replica("r1")
    first, other = agent("a", "shop"), agent("z", "shop")
    plane.hub.attach(first)
    plane.hub.attach(other)
    await plane.assigner.reconcile()
    assert messages(first) == [("watch", row.id)]
    again = agent("a", "shop")  # the same agent on a new stream
    plane.hub.attach(again)
    await plane.assigner.reconcile()
    assert messages(again) == [("watch", row.id)]
    assert messages(other) == []


async def test_two_replicas_never_hand_one_watch_to_two_agents(world: World) -> None:
    await world.registry.apply(spec("orders", channel("orders"), channel("refunds")), "", ALICE)
    one, two = world.replica("r1"), world.replica("r2")
    a, b = agent("a", "shop"), agent("b", "shop")
    one.hub.attach(a)
    two.hub.attach(b)
    await asyncio.gather(one.assigner.reconcile(), two.assigner.reconcile())
    await asyncio.gather(one.assigner.reconcile(), two.assigner.reconcile())
    sent = messages(a) + messages(b)
    rows = await world.rows()
    assert sorted(sent) == sorted(("watch", r.id) for r in rows)  # each once, in all
    for row in rows:
        assert (row.agent, row.replica) in {("a", "r1"), ("b", "r2")}

    # While r1 keeps refreshing its claims, they hold however long it takes.
    for _ in range(4):
        world.now[0] += timedelta(seconds=LEASE / 2)
        await one.assigner.reconcile()
        await two.assigner.reconcile()
    assert messages(a) == [] and messages(b) == []

    # r1 stops refreshing (it died): once its claims are older than the lease, r2 takes
    # them over; if r1 comes back, it cancels them on its agent.
    held_by_one = [r.id for r in rows if r.replica == "r1"]
    world.now[0] += timedelta(seconds=LEASE / 2)
    await two.assigner.reconcile()
    assert messages(b) == []
    world.now[0] += timedelta(seconds=LEASE)
    await two.assigner.reconcile()
    assert sorted(messages(b)) == sorted(("watch", w) for w in held_by_one)
    assert {(r.agent, r.replica) for r in await world.rows()} == {("b", "r2")}
    await one.assigner.reconcile()
    assert sorted(messages(a)) == sorted(("unwatch", w) for w in held_by_one)


async def test_a_disconnect_releases_the_watch_for_other_replicas(world: World) -> None:
    await world.registry.apply(spec("orders", channel("orders")), "", ALICE)
    (row,) = await world.rows()
    one, two = world.replica("r1"), world.replica("r2")
    a, b = agent("a", "shop"), agent("b", "shop")
    one.hub.attach(a)
    await one.assigner.reconcile()
    two.hub.attach(b)
    await two.assigner.reconcile()
    assert messages(b) == []  # r1's claim is fresh
    one.hub.detach(a)
    await one.assigner.reconcile()
    (released,) = await world.rows()
    assert (released.agent, released.replica) == ("a", None)  # last holder kept
    await two.assigner.reconcile()
    assert messages(b) == [("watch", row.id)]


# -- changes -----------------------------------------------------------------------------


def payload(**values: Any) -> struct_pb2.Struct:
    body = struct_pb2.Struct()
    body.update(values)
    return body


async def test_a_change_from_the_holder_starts_one_run(world: World) -> None:
    await world.registry.apply(spec("orders", channel("orders")), "", ALICE)
    (row,) = await world.rows()
    plane = world.replica("r1")
    plane.hub.attach(agent("near", "shop"))
    await plane.assigner.reconcile()
    body = payload(channel="orders", notifications=[{"payload": "7", "pid": 42}])

    run_id = await world.watches.change("near", row.id, body, "w1")
    assert run_id is not None
    async with world.db.read() as session:
        run = await session.get(RunRow, run_id)
        stored = await session.get(WatchRow, row.id)
    assert run is not None and stored is not None
    assert run.trigger_kind == "event"
    event = run.params["event"]
    assert event["type"] == "database"
    assert event["payload"] == {
        "channel": "orders",
        "notifications": [{"payload": "7", "pid": 42}],
    }
    assert (event["watch_id"], event["watermark"], event["source"]) == (
        row.id,
        "w1",
        "agent near",
    )
    assert run.trigger["watch_id"] == row.id
    assert stored.watermark == "w1"

    # Sent again after a reconnect: nothing new.
    assert await world.watches.change("near", row.id, body, "w1") is None
    # From an agent that does not hold the watch: ignored, logged.
    with capture_logs() as logs:
        assert await world.watches.change("far", row.id, body, "w2") is None
    assert [e["event"] for e in logs] == ["watch_change_ignored"]
    assert await world.watches.change("near", "no-such-watch", body, "w3") is None
    async with world.db.read() as session:
        runs = list((await session.execute(select(RunRow))).scalars())
        stored = await session.get(WatchRow, row.id)
    assert [r.id for r in runs] == [run_id]
    assert stored is not None and stored.watermark == "w1"

    assert await world.watches.change("near", row.id, body, "w2") is not None


async def test_an_agent_that_reconnects_elsewhere_takes_its_watch_along(world: World) -> None:
    await world.registry.apply(spec("orders", channel("orders")), "", ALICE)
    (row,) = await world.rows()
    one, two = world.replica("r1"), world.replica("r2")
    old = agent("a", "shop")
    old.connect_time = world.now[0]
    one.hub.attach(old)
    await one.assigner.reconcile()
    assert messages(old) == [("watch", row.id)]
    # r1 has not noticed the stream broke; the agent is already connected to r2.
    world.now[0] += timedelta(seconds=1)
    new, other = agent("a", "shop"), agent("b", "shop")
    new.connect_time = world.now[0]
    two.hub.attach(other)
    two.hub.attach(new)
    await two.assigner.reconcile()
    assert messages(new) == [("watch", row.id)]
    assert messages(other) == []
    await one.assigner.reconcile()
    assert messages(old) == [("unwatch", row.id)]
    (moved,) = await world.rows()
    assert (moved.agent, moved.replica) == ("a", "r2")


async def test_a_stopping_replica_releases_its_claims(world: World) -> None:
    await world.registry.apply(spec("orders", channel("orders")), "", ALICE)
    (row,) = await world.rows()
    one, two = world.replica("r1"), world.replica("r2")
    a, b = agent("a", "shop"), agent("b", "shop")
    one.hub.attach(a)
    await one.assigner.reconcile()
    two.hub.attach(b)
    await one.assigner.release()
    await two.assigner.reconcile()  # at once, not after the lease
    assert messages(b) == [("watch", row.id)]
