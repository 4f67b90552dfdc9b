"""The control plane's metrics (``control_plane/metrics``): the counters and histograms
the execution feeds, the gauges read from a real store and the agent hub at scrape time,
a scrape that survives a database that is down, and ``GET /metrics``'s access check with
real tokens."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import struct_pb2
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, select, update

from control_plane.access.actors import Actor
from control_plane.access.authenticator import Authenticator
from control_plane.access.tokens import Tokens
from control_plane.api.http_metrics import MetricsEndpoint
from control_plane.execution.effects import Effects
from control_plane.execution.hub import AgentHub, AgentSession
from control_plane.execution.observer import ExecutionObserver, observe, observe_attempt
from control_plane.execution.plans import PlanCache
from control_plane.execution.runs import TriggerSpec
from control_plane.execution.settling import AttemptOutcome
from control_plane.metrics.instruments import ServerMetrics
from control_plane.metrics.scraped import Scrape
from control_plane.pipelines.registry import Registry
from control_plane.store.attempts import AttemptState
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from control_plane.store.models import NotificationRow, RunRow, StepRunRow
from legato.v1 import spec_pb2
from tests.control_plane.execution_parts import runs_of

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2] / "control_plane"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(page: bytes | str) -> Samples:
    text = page.decode() if isinstance(page, bytes) else page
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


# -- what the execution counts ---------------------------------------------------------


def test_counters_and_histograms_count_what_they_are_told() -> None:
    metrics = ServerMetrics()
    observer: ExecutionObserver = metrics  # the execution sees it as its observer
    observer.run_finished("succeeded")
    observer.run_finished("succeeded")
    observer.run_finished("failed")
    observer.step_finished("upstream_failed")
    observer.attempt_ended("transform", "succeeded", 0.3)
    observer.attempt_ended("transform", "succeeded", 42.0)
    observer.attempt_ended("query", "timeout", 61.0)
    observer.step_leased(0.02)
    observer.leases_expired(3)
    metrics.schedule_fired(1.5)
    metrics.schedule_fired(-0.2)  # a fire committed a moment early counts as on time
    metrics.notification_sent("slack", "retried")
    metrics.notification_sent("slack", "delivered")

    get = metrics.registry.get_sample_value
    assert get("legato_runs_finished_total", {"status": "succeeded"}) == 2
    assert get("legato_runs_finished_total", {"status": "failed"}) == 1
    assert get("legato_steps_finished_total", {"status": "upstream_failed"}) == 1
    succeeded = {"kind": "transform", "outcome": "succeeded"}
    assert get("legato_step_duration_seconds_count", succeeded) == 2
    assert get("legato_step_duration_seconds_sum", succeeded) == pytest.approx(42.3)
    assert get("legato_step_duration_seconds_bucket", {**succeeded, "le": "0.5"}) == 1
    assert get("legato_step_duration_seconds_bucket", {**succeeded, "le": "60.0"}) == 2
    assert get("legato_step_duration_seconds_count", {"kind": "query", "outcome": "timeout"}) == 1
    assert get("legato_step_queue_wait_seconds_bucket", {"le": "0.025"}) == 1
    assert get("legato_lease_expirations_total") == 3
    assert get("legato_schedule_fire_lag_seconds_count") == 2
    assert get("legato_schedule_fire_lag_seconds_sum") == pytest.approx(1.5)
    assert get("legato_schedule_fire_lag_seconds_bucket", {"le": "0.01"}) == 1
    sends = "legato_notification_deliveries_total"
    assert get(sends, {"channel": "slack", "outcome": "retried"}) == 1
    assert get(sends, {"channel": "slack", "outcome": "delivered"}) == 1


def test_every_series_an_alert_names_exists_at_zero_from_the_start() -> None:
    samples = parse(generate_latest(ServerMetrics().registry))
    for status in ("succeeded", "failed", "cancelled", "timed_out"):
        assert value(samples, "legato_runs_finished_total", status=status) == 0
    for channel in ("webhook", "slack", "email", "pagerduty"):
        for outcome in ("delivered", "retried", "failed"):
            total = "legato_notification_deliveries_total"
            assert value(samples, total, channel=channel, outcome=outcome) == 0
    assert value(samples, "legato_lease_expirations_total") == 0
    assert value(samples, "legato_build_info", version=_version()) == 1


def test_two_control_planes_in_one_process_count_apart() -> None:
    one, two = ServerMetrics(), ServerMetrics()
    one.run_finished("failed")
    assert one.registry.get_sample_value("legato_runs_finished_total", {"status": "failed"}) == 1
    assert two.registry.get_sample_value("legato_runs_finished_total", {"status": "failed"}) == 0


def test_an_attempt_is_counted_only_once_its_transaction_commits() -> None:
    metrics = ServerMetrics()
    start = NOW - timedelta(seconds=90)
    attempt = AttemptState(
        id=1,
        step_run_id=1,
        run_id="r",
        number=1,
        lease_id="l",
        agent="a1",
        status="running",
        lease_expire_time=NOW,
        create_time=start - timedelta(seconds=5),
        start_time=start,
        end_time=None,
        records_in=None,
        records_out=None,
        error="",
        failure_kind="",
    )
    effects = Effects()
    failed = AttemptOutcome(status="failed", failure_kind="memory", end_time=NOW)
    observe_attempt(effects, metrics, "function", attempt, failed, NOW)
    observe(effects, metrics.step_finished, "failed")
    labels = {"kind": "function", "outcome": "memory"}
    get = metrics.registry.get_sample_value
    assert get("legato_step_duration_seconds_count", labels) is None  # not committed yet
    for record in effects.observed:  # what Effects.apply does after the commit
        record()
    assert get("legato_step_duration_seconds_count", labels) == 1
    assert get("legato_step_duration_seconds_sum", labels) == 90  # from its start, not lease
    assert get("legato_steps_finished_total", {"status": "failed"}) == 1

    never_started = replace(attempt, start_time=None)
    lost = AttemptOutcome(status="failed", failure_kind="lost")
    effects = Effects()
    observe_attempt(effects, metrics, "query", never_started, lost, NOW)
    effects.observed[0]()
    assert get("legato_step_duration_seconds_sum", {"kind": "query", "outcome": "lost"}) == 95


def test_no_domain_package_imports_the_metrics() -> None:
    """The execution, scheduling and notifications report through observers and hooks;
    only the wiring (app) and the HTTP listener (api) know control_plane.metrics."""
    wrong = []
    for package in ("execution", "scheduling", "notifications", "store", "triggers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                modules = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else []
                )
                wrong += [
                    f"{path.relative_to(ROOT.parent)} imports {module}"
                    for module in modules
                    if module.startswith("control_plane.metrics")
                ]
    assert not wrong, wrong


# -- what is read at scrape time -------------------------------------------------------


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Database]:
    """Three runs of a pipeline of six independent steps, moved to a known mix of states:
    run 1 running (a: ready, b: a ready trigger step, c: pending with its retry delay
    over, d: pending with it still to come, e: leased, f: running), run 2 queued (its
    steps pending), run 3 succeeded; notifications pending, sending, delivered, failed."""
    db = Database(db_url)
    await upgrade(db)
    noop = spec_pb2.TransformStep(code="pass")
    names = "abcdef"
    spec = spec_pb2.PipelineSpec(
        name="mix", steps=[spec_pb2.Step(name=n, transform=noop) for n in names]
    )
    await Registry(db).apply(spec, "", Actor("alice"))
    runs, _ = runs_of(db, PlanCache(), lambda: NOW)
    ids = []
    for _ in range(3):
        view, _ = await runs.trigger(
            "mix",
            version=0,
            params=struct_pb2.Struct(),
            trigger=TriggerSpec(kind="manual"),
            actor=Actor("alice"),
        )
        ids.append(view.run.id)
    first, queued, done = ids
    steps = StepRunRow
    async with db.write() as session:

        async def step(run: str, name: str, **values: object) -> None:
            await session.execute(
                update(steps).where(steps.run_id == run, steps.name == name).values(**values)
            )

        await step(first, "b", kind="trigger")
        await step(first, "c", status="pending", not_before=NOW - timedelta(seconds=1))
        await step(first, "d", status="pending", not_before=NOW + timedelta(minutes=5))
        await step(first, "e", status="leased")
        await step(first, "f", status="running")
        await session.execute(update(RunRow).where(RunRow.id == queued).values(status="queued"))
        await session.execute(
            update(steps).where(steps.run_id == queued).values(status="pending", not_before=None)
        )
        await session.execute(update(RunRow).where(RunRow.id == done).values(status="succeeded"))
        await session.execute(update(steps).where(steps.run_id == done).values(status="succeeded"))
        for number, status in enumerate(["pending", "pending", "sending", "delivered", "failed"]):
            await session.execute(
                insert(NotificationRow).values(
                    idempotency_key=f"key-{number}",
                    run_id=first,
                    pipeline="mix",
                    event="run_failed",
                    channel="webhook",
                    target="webhook https://example.invalid/",
                    settings={},
                    facts={},
                    status=status,
                    next_attempt_time=NOW,
                    create_time=NOW,
                )
            )
    async with db.read() as session:
        stored = (await session.execute(select(steps.status).where(steps.run_id == first))).all()
    assert len(stored) == len(names)
    try:
        yield db
    finally:
        await db.dispose()


def _session(name: str, slots: int, *, leases: int = 0, draining: bool = False) -> AgentSession:
    session = AgentSession(name=name, instance_id=f"{name}-1", labels={}, slots=slots)
    for number in range(leases):
        session.leases.add(f"{name}-lease-{number}")
    session.draining = draining
    return session


async def test_a_scrape_reads_the_work_in_flight_from_the_store(store: Database) -> None:
    scrape = Scrape(ServerMetrics(), store, AgentHub(), clock=lambda: NOW)
    page, content_type = await scrape.page()
    assert content_type.startswith("text/plain")
    samples = parse(page)
    assert value(samples, "legato_database_up") == 1
    assert value(samples, "legato_runs", status="queued") == 1
    assert value(samples, "legato_runs", status="running") == 1
    # Run 2's six, and c and d of run 1; the succeeded run's steps are not in flight.
    assert value(samples, "legato_steps", status="pending") == 8
    assert value(samples, "legato_steps", status="ready") == 2
    assert value(samples, "legato_steps", status="leased") == 1
    assert value(samples, "legato_steps", status="running") == 1
    # a (ready) and c (its retry is due): not the trigger step, not d, not run 2's.
    assert value(samples, "legato_steps_waiting_for_agent") == 2
    assert value(samples, "legato_notifications", status="pending") == 2
    assert value(samples, "legato_notifications", status="sending") == 1
    assert not any(
        name == "legato_runs" and ("status", "succeeded") in labels for name, labels in samples
    )


async def test_a_scrape_shows_the_agents_connected_and_their_free_slots(store: Database) -> None:
    hub = AgentHub()
    hub.attach(_session("eu-1", 4, leases=1))
    hub.attach(_session("eu-2", 2, leases=2))
    hub.attach(_session("old", 3, draining=True))
    reserved = _session("us-1", 2)
    reserved.reserved = 1  # a task claimed for it and not sent yet holds a slot too
    hub.attach(reserved)
    samples = parse((await Scrape(ServerMetrics(), store, hub, clock=lambda: NOW).page())[0])
    assert value(samples, "legato_agents_connected") == 4
    assert value(samples, "legato_agents_draining") == 1
    slots = "legato_connected_agent_slots"
    free = "legato_connected_agent_free_slots"
    assert {a: value(samples, slots, agent=a) for a in ("eu-1", "eu-2", "old", "us-1")} == {
        "eu-1": 4,
        "eu-2": 2,
        "old": 3,
        "us-1": 2,
    }
    assert {a: value(samples, free, agent=a) for a in ("eu-1", "eu-2", "old", "us-1")} == {
        "eu-1": 3,
        "eu-2": 0,
        "old": 0,
        "us-1": 1,
    }
    hub.detach(reserved)
    samples = parse((await Scrape(ServerMetrics(), store, hub, clock=lambda: NOW).page())[0])
    assert value(samples, "legato_agents_connected") == 3
    assert value(samples, free, agent="us-1") is None


async def test_a_scrape_reads_the_store_again_each_time(store: Database) -> None:
    scrape = Scrape(ServerMetrics(), store, AgentHub(), clock=lambda: NOW)
    assert value(parse((await scrape.page())[0]), "legato_runs", status="queued") == 1
    async with store.write() as session:
        await session.execute(
            update(RunRow).where(RunRow.status == "queued").values(status="running")
        )
    samples = parse((await scrape.page())[0])
    assert value(samples, "legato_runs", status="queued") == 0
    assert value(samples, "legato_runs", status="running") == 2


async def test_a_scrape_asking_for_openmetrics_gets_it(store: Database) -> None:
    scrape = Scrape(ServerMetrics(), store, AgentHub(), clock=lambda: NOW)
    page, content_type = await scrape.page("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert page.rstrip().endswith(b"# EOF")


async def test_with_the_database_down_the_page_says_so_and_keeps_the_rest() -> None:
    metrics = ServerMetrics()
    metrics.run_finished("succeeded")
    hub = AgentHub()
    hub.attach(_session("eu-1", 2))
    down = Database("postgresql://nobody@127.0.0.1:1/legato")  # nothing listens on port 1
    try:
        page, _ = await Scrape(metrics, down, hub, clock=lambda: NOW).page()
    finally:
        await down.dispose()
    samples = parse(page)
    assert value(samples, "legato_database_up") == 0
    assert "legato_runs" not in names(samples)
    assert "legato_steps_waiting_for_agent" not in names(samples)
    assert value(samples, "legato_runs_finished_total", status="succeeded") == 1
    assert value(samples, "legato_agents_connected") == 1


# -- GET /metrics ----------------------------------------------------------------------


@pytest.fixture
async def tokens(tmp_path: Path) -> AsyncIterator[tuple[Database, Tokens]]:
    db = Database(f"sqlite:///{tmp_path}/legato.db")
    await upgrade(db)
    try:
        yield db, Tokens(db, clock=_now)
    finally:
        await db.dispose()


async def _client(endpoint: MetricsEndpoint) -> TestClient[web.Request, web.Application]:
    app = web.Application()
    app.router.add_get("/metrics", endpoint.get)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_the_page_needs_a_live_api_token(tokens: tuple[Database, Tokens]) -> None:
    db, store = tokens
    viewer = await store.create("prometheus", "viewer", Actor("alice"))
    revoked = await store.create("old-scraper", "admin", Actor("alice"))
    await store.revoke("old-scraper", Actor("alice"))
    agent = await store.create_agent("eu-1", Actor("alice"))
    authenticator = Authenticator(store, clock=_now, ttl=0)
    endpoint = MetricsEndpoint(Scrape(ServerMetrics(), db, AgentHub(), clock=_now), authenticator)
    client = await _client(endpoint)
    try:

        async def get(authorization: str | None) -> tuple[int, str, aiohttp.ClientResponse]:
            headers = {"Authorization": authorization} if authorization is not None else {}
            response = await client.get("/metrics", headers=headers)
            return response.status, await response.text(), response

        status, text, response = await get(None)
        assert status == 401
        assert "Authorization: Bearer <token>" in text
        assert "legato tokens create prometheus --role viewer" in text
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="legato"'
        assert "legato_" not in text
        status, text, _ = await get(f"Basic {viewer.secret}")
        assert (status, text.startswith("the Authorization header must be `Bearer <token>`")) == (
            401,
            True,
        )
        status, text, _ = await get("Bearer lgt_notatoken_0000")
        assert status == 401
        status, text, _ = await get(f"Bearer {revoked.secret}")
        assert status == 401 and "was revoked" in text
        status, text, _ = await get(f"Bearer {agent.secret}")
        assert status == 403 and "enrolment token" in text
        status, text, response = await get(f"Bearer {viewer.secret}")
        assert status == 200, text
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        assert value(parse(text), "legato_database_up") == 1
        status, _, _ = await get(f"bearer  {viewer.secret} ")  # the scheme is case-blind
        assert status == 200
    finally:
        await client.close()


async def test_without_authentication_the_page_is_served_to_anyone(
    tokens: tuple[Database, Tokens],
) -> None:
    db, _ = tokens
    client = await _client(
        MetricsEndpoint(Scrape(ServerMetrics(), db, AgentHub(), clock=_now), None)
    )
    try:
        response = await client.get("/metrics")
        assert response.status == 200
        assert "legato_runs_finished_total" in await response.text()
    finally:
        await client.close()


def _now() -> datetime:
    return datetime.now(UTC)


def _version() -> str:
    from legato import __version__

    return __version__
