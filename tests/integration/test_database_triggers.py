"""Database triggers end to end: a real control plane, real `legato agent` processes that
hold connection ``shop`` to a real PostgreSQL database, NOTIFY and inserted rows starting
runs, and a watch moving to another agent when its holder is killed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from cluster import Cluster, running_cluster
from google.protobuf import json_format
from psycopg import sql
from sqlalchemy.engine import make_url

from legato.testing import LocalControlPlane
from legato.v1 import run_pb2

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(f"sqlite:///{tmp_path}/legato.db", tmp_path) as running:
        yield running


def shop_env(url: str) -> dict[str, str]:
    return {"LEGATO_CONNECTION_SHOP": url}


def notify(url: str, channel: str, *payloads: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for payload in payloads:
            conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def execute(url: str, statement: str, *args: Any) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement, args or None)


def runs_of(cluster: Cluster, pipeline: str) -> list[run_pb2.Run]:
    return list(cluster.client.list_runs(pipeline=pipeline))


def event_of(run: run_pb2.Run) -> dict[str, Any]:
    event: dict[str, Any] = json_format.MessageToDict(run.params)["event"]
    return event


def holder(cluster: Cluster, pipeline: str) -> str | None:
    """The agent the control plane's ``watches`` table names for the pipeline's trigger."""
    url = make_url(cluster.plane.config.db)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT agent, replica FROM watches WHERE pipeline = :p"), {"p": pipeline}
            ).all()
    finally:
        engine.dispose()
    assert len(rows) == 1, rows
    agent, replica = rows[0]
    return str(agent) if agent and replica else None


def watched_on(cluster: Cluster, agent: str) -> bool:
    """Whether ``agent`` ever started a watch, from its JSON log."""
    return '"watch_started"' in (cluster.workdir / f"{agent}.log").read_text()


def by_time(runs: list[run_pb2.Run]) -> list[run_pb2.Run]:
    return sorted(runs, key=lambda r: (r.create_time.seconds, r.create_time.nanos))


def wait_runs(cluster: Cluster, pipeline: str, count: int, timeout: float = 20) -> list[Any]:
    cluster.wait_for(
        lambda: len(runs_of(cluster, pipeline)) >= count, f"{count} runs of {pipeline}", timeout
    )
    return runs_of(cluster, pipeline)


def notify_until_run(cluster: Cluster, url: str, channel: str, pipeline: str, have: int) -> Any:
    """NOTIFY until a new run starts (the watcher may still be opening its LISTEN)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        notify(url, channel, f"probe-{uuid.uuid4().hex[:6]}")
        time.sleep(0.5)
        runs = runs_of(cluster, pipeline)
        if len(runs) > have:
            return runs
    raise AssertionError(f"no run of {pipeline} after NOTIFY {channel}; logs in {cluster.workdir}")


def test_notify_starts_a_run_with_the_notifications(
    cluster: Cluster, warehouse_postgres_url: str
) -> None:
    url = warehouse_postgres_url
    # A channel name that must be quoted: mixed case and a dash.
    channel = f"Orders-{uuid.uuid4().hex[:6]}"
    cluster.start_agent("near", env=shop_env(url))
    cluster.start_agent("far")  # no connection: never gets the watch
    cluster.apply(
        f"""
        name: on-notify
        triggers:
          - database: {{connection: shop, channel: "{channel}"}}
        steps:
          - {{name: a, transform: {{code: "result = data"}}}}
        """
    )
    notify_until_run(cluster, url, channel, "on-notify", 0)
    time.sleep(0.5)  # a probe sent just before may still be on its way
    before = by_time(runs_of(cluster, "on-notify"))
    first = before[0]
    assert first.trigger.kind == run_pb2.TRIGGER_KIND_EVENT
    event = event_of(first)
    assert event["type"] == "database"
    assert event["source"] == "agent near"
    assert event["watch_id"] and event["watermark"]
    assert event["payload"]["channel"] == channel
    assert event["payload"]["notifications"][0]["payload"].startswith("probe-")

    # Notifications sent together arrive as one batch, in one run.
    notify(url, channel, "order 1", "order 2", "order 3")
    wait_runs(cluster, "on-notify", len(before) + 1)
    time.sleep(0.5)
    runs = by_time(runs_of(cluster, "on-notify"))
    assert len(runs) == len(before) + 1
    latest = event_of(runs[-1])
    notes = latest["payload"]["notifications"]
    assert [n["payload"] for n in notes] == ["order 1", "order 2", "order 3"]
    assert all(n["pid"] > 0 for n in notes)
    assert latest["watermark"] > event_of(before[-1])["watermark"]
    assert holder(cluster, "on-notify") == "near"
    assert watched_on(cluster, "near")
    assert not watched_on(cluster, "far")
    assert cluster.wait_run(first.id).status == run_pb2.RUN_STATUS_SUCCEEDED


def test_polled_table_fires_once_per_batch_of_new_rows(
    cluster: Cluster, warehouse_postgres_url: str
) -> None:
    url = warehouse_postgres_url
    table = f"orders_{uuid.uuid4().hex[:6]}"
    execute(
        url,
        sql.SQL(
            "CREATE TABLE {} (id serial PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now())"
        )
        .format(sql.Identifier(table))
        .as_string(),
    )
    insert = sql.SQL("INSERT INTO {} DEFAULT VALUES").format(sql.Identifier(table)).as_string()
    execute(url, insert)  # existing rows do not fire
    cluster.start_agent("near", env=shop_env(url))
    cluster.apply(
        f"""
        name: on-rows
        triggers:
          - database: {{connection: shop, table: {table}, watermark: updated_at, every: 1s}}
        steps:
          - {{name: a, transform: {{code: "result = data"}}}}
        """
    )
    cluster.wait_for(lambda: holder(cluster, "on-rows") == "near", "the agent to get the watch")
    time.sleep(1.5)  # the watcher has read the current maximum
    assert runs_of(cluster, "on-rows") == []
    execute(url, f"{insert}; {insert}; {insert}")
    (run,) = wait_runs(cluster, "on-rows", 1)
    payload = event_of(run)["payload"]
    assert payload["table"] == table
    assert payload["rows"] == 3
    assert payload["from"] < payload["to"]
    assert "T" in payload["to"]  # ISO 8601
    assert event_of(run)["watermark"] == payload["to"]
    time.sleep(2.5)  # two more polls, no new rows: no new run
    assert len(runs_of(cluster, "on-rows")) == 1


def test_a_watch_moves_to_another_agent_when_its_holder_dies(
    cluster: Cluster, warehouse_postgres_url: str
) -> None:
    url = warehouse_postgres_url
    channel = f"moves_{uuid.uuid4().hex[:6]}"
    cluster.start_agent("first", env=shop_env(url))
    cluster.apply(
        f"""
        name: failover
        triggers:
          - database: {{connection: shop, channel: {channel}}}
        steps:
          - {{name: a, transform: {{code: "result = data"}}}}
        """
    )
    runs = notify_until_run(cluster, url, channel, "failover", 0)
    assert event_of(runs[0])["source"] == "agent first"
    cluster.start_agent("second", env=shop_env(url))
    cluster.kill_agent("first")
    runs = notify_until_run(cluster, url, channel, "failover", len(runs))
    assert event_of(by_time(runs)[-1])["source"] == "agent second"
    assert holder(cluster, "failover") == "second"


def test_notify_on_a_postgres_store(
    tmp_path: Path, postgres_url: str, warehouse_postgres_url: str
) -> None:
    from tests.conftest import _truncate

    _truncate(postgres_url)
    url = warehouse_postgres_url
    channel = f"pg_{uuid.uuid4().hex[:6]}"
    with LocalControlPlane(db=postgres_url, lease_timeout=3.0) as plane:
        cluster = Cluster(plane, tmp_path)
        try:
            cluster.start_agent("near", env=shop_env(url))
            cluster.apply(
                f"""
                name: pg-notify
                triggers:
                  - database: {{connection: shop, channel: {channel}}}
                steps:
                  - {{name: a, transform: {{code: "result = data"}}}}
                """
            )
            runs = notify_until_run(cluster, url, channel, "pg-notify", 0)
            assert event_of(runs[0])["payload"]["channel"] == channel
            assert holder(cluster, "pg-notify") == "near"
            assert cluster.wait_run(runs[0].id).status == run_pb2.RUN_STATUS_SUCCEEDED
        finally:
            cluster.stop()
