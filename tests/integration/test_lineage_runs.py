"""Lineage end to end, on real agent processes against a real user database (SQLite and
PostgreSQL, each with the control plane on the same kind of store): a query → transform
(declared outputs) → export pipeline that triggers a second pipeline, then GetLineage and
`legato lineage` upstream and downstream across the two; OpenLineage events received by
a real HTTP receiver on loopback and validated against the OpenLineage JSON schema,
delivered again after the receiver failed, and none for test runs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cluster import LEGATO, Cluster, running_cluster, steps_by_name
from test_web_api import Browser, bearer

from control_plane.errors import FailedPrecondition
from legato import AsyncClient, Client
from legato.errors import RpcError
from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import lineage_pb2, run_pb2, run_service_pb2
from tests.http_receiver import Receiver
from tests.openlineage_validation import validate_event

pytestmark = pytest.mark.timeout(180)

STORES = pytest.mark.parametrize(
    ("db_url", "warehouse_url"), [("sqlite", "sqlite"), ("postgres", "postgres")], indirect=True
)

ETL = """
name: orders-etl
description: Orders into the mart
steps:
  - name: extract
    query:
      connection: warehouse
      sql: |
        WITH recent AS (SELECT id, amount FROM orders WHERE amount > 0)
        SELECT r.id, r.amount, c.name FROM recent r JOIN customers c ON c.id = r.id
  - name: clean
    needs: [extract]
    transform:
      code: result = data
    inputs: [lake.raw/fx_rates]
    outputs: [lake.clean/orders]
  - name: load
    needs: [clean]
    export:
      table: {connection: warehouse, table: mart_orders}
  - name: kick
    needs: [load]
    trigger: {pipeline: orders-report, wait: true}
"""
REPORT = """
name: orders-report
steps:
  - name: count
    query: {connection: warehouse, sql: SELECT count(*) AS n FROM mart_orders}
  - name: post
    needs: [count]
    export:
      webhook: {url: "WEBHOOK"}
"""


def _seed(url: str) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER)"))
        conn.execute(sa.text("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)"))
        conn.execute(sa.text("INSERT INTO orders VALUES (1, 5), (2, 0), (3, 7)"))
        conn.execute(sa.text("INSERT INTO customers VALUES (1, 'a'), (2, 'b'), (3, 'c')"))
    engine.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def lineage_cluster(
    db_url: str, warehouse_url: str, tmp_path: Path, receiver: Receiver
) -> Iterator[Cluster]:
    with running_cluster(
        db_url, tmp_path, openlineage_url=receiver.url, openlineage_namespace="legato-test"
    ) as running:
        _seed(warehouse_url)
        running.start_agent("a1", env={"LEGATO_CONNECTION_WAREHOUSE": warehouse_url})
        yield running


def _table(warehouse_url: str, name: str) -> str:
    """A table's dataset name: PostgreSQL's unqualified tables are in ``public``."""
    return f"public.{name}" if warehouse_url.startswith("postgres") else name


def _apply_both(cluster: Cluster, receiver: Receiver) -> None:
    cluster.apply(REPORT.replace("WEBHOOK", f"{receiver.url}/hook?token=s3cret"))
    cluster.apply(ETL)


def _events(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(body) for path, _, body in receiver.received if path == "/api/v1/lineage"]


def _ids(response: Any) -> dict[str, int]:
    return {node.id: node.distance for node in response.nodes}


def _delivered(client: Client, run_id: str) -> bool:
    """Every notification of the run is NOTIFICATION_STATUS_DELIVERED."""
    states = {n.status for n in client.list_notifications(run_id=run_id)}
    return states == {run_service_pb2.NOTIFICATION_STATUS_DELIVERED}


@STORES
def test_runs_record_lineage_across_pipelines(
    lineage_cluster: Cluster, warehouse_url: str, receiver: Receiver
) -> None:
    cluster = lineage_cluster
    _apply_both(cluster, receiver)
    run = cluster.run("orders-etl", timeout=60)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    orders, customers = _table(warehouse_url, "orders"), _table(warehouse_url, "customers")
    mart = _table(warehouse_url, "mart_orders")

    steps = steps_by_name(run)
    extract = steps["extract"].lineage
    assert [(d.namespace, d.name) for d in extract.inputs] == [
        ("warehouse", customers),
        ("warehouse", orders),
    ]  # the CTE is not a table
    assert not extract.outputs and not extract.problem
    assert {c.column: [(s.name, s.column) for s in c.sources] for c in extract.columns} == {
        "id": [(orders, "id")],
        "amount": [(orders, "amount")],
        "name": [(customers, "name")],
    }
    clean = steps["clean"].lineage
    assert [(d.namespace, d.name, d.kind) for d in clean.outputs] == [
        ("lake", "clean/orders", lineage_pb2.DATASET_KIND_DECLARED)
    ]
    assert [(d.namespace, d.name) for d in steps["load"].lineage.outputs] == [("warehouse", mart)]

    client = cluster.client
    # Downstream of the orders table: the ETL reads it, writes the mart and the lake,
    # triggers the report, which reads the mart and posts to the webhook.
    down = client.lineage(dataset=f"warehouse.{orders}", direction="downstream")
    ids = _ids(down)
    assert ids[f"dataset:warehouse.{orders}"] == 0
    assert ids["pipeline:orders-etl"] == 1
    assert ids[f"dataset:warehouse.{mart}"] == 2
    assert ids["dataset:lake.clean/orders"] == 2
    assert ids["pipeline:orders-report"] == 2  # triggered by the ETL
    webhook = f"dataset:webhook.{receiver.url}/hook"
    assert ids[webhook] == 3  # without its query string (a token)
    assert not any("s3cret" in node for node in ids)
    assert down.nodes[0].id == f"dataset:warehouse.{orders}"
    kinds = {(e.source, e.target): (e.kind, e.pipeline, e.step) for e in down.edges}
    assert kinds[("pipeline:orders-etl", "pipeline:orders-report")] == (
        lineage_pb2.LINEAGE_EDGE_KIND_TRIGGER,
        "orders-etl",
        "kick",
    )
    assert kinds[(f"dataset:warehouse.{orders}", "pipeline:orders-etl")][0] == (
        lineage_pb2.LINEAGE_EDGE_KIND_READ
    )
    # Upstream of the report: the mart, written by the ETL, which read the tables.
    up = client.lineage(pipeline="orders-report", direction="upstream")
    ids = _ids(up)
    assert ids[f"dataset:warehouse.{mart}"] == -1
    assert ids["pipeline:orders-etl"] == -1  # it triggers the report
    assert ids[f"dataset:warehouse.{orders}"] == -2
    assert ids["dataset:lake.raw/fx_rates"] == -2
    assert all(distance <= 0 for distance in ids.values())
    # Depth 1 stops at the first hop and says there is more.
    near = client.lineage(pipeline="orders-report", direction="upstream", depth=1)
    assert near.truncated and max(-d for d in _ids(near).values()) == 1

    # A second run adds no edge: it moves their last-seen time.
    again = cluster.run("orders-etl", timeout=60)
    assert again.status == run_pb2.RUN_STATUS_SUCCEEDED
    edges = client.lineage(pipeline="orders-etl").edges
    trigger = next(e for e in edges if e.kind == lineage_pb2.LINEAGE_EDGE_KIND_TRIGGER)
    assert trigger.last_run_id == again.id
    assert trigger.first_seen_time.ToNanoseconds() < trigger.last_seen_time.ToNanoseconds()
    assert len(edges) == len({(e.source, e.target, e.kind, e.step) for e in edges})

    # The CLI draws the same graph as a tree, and prints the response with -o json.
    env = {
        **os.environ,
        "LEGATO_SERVER": cluster.plane.address,
        "LEGATO_TOKEN": cluster.plane.token("viewer"),
        "TZ": "UTC",
    }
    tree = subprocess.run(
        [LEGATO, "lineage", f"warehouse.{orders}", "--downstream"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert tree.splitlines()[0] == f"dataset warehouse.{orders}"
    assert "└── pipeline orders-etl — read by step 'extract'" in tree
    assert f"dataset warehouse.{mart} — written by step 'load'" in tree
    assert "pipeline orders-report — triggered by step 'kick'" in tree
    assert "upstream" not in tree
    printed = subprocess.run(
        [LEGATO, "lineage", "--pipeline", "orders-report", "--upstream", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert {node["id"] for node in json.loads(printed)["nodes"]} == set(ids)

    # Errors name what is wrong.
    with pytest.raises(RpcError) as unknown:
        client.lineage(dataset=f"warehouse.{orders}x")
    assert unknown.value.reason == "DATASET_NOT_FOUND"
    assert f"did you mean 'warehouse.{orders}'" in unknown.value.message
    with pytest.raises(RpcError) as malformed:
        client.lineage(dataset="orders")
    assert malformed.value.reason == "INVALID_DATASET"
    assert "write it as namespace.name" in malformed.value.message
    assert [v.field for v in malformed.value.field_violations] == ["dataset"]
    with pytest.raises(RpcError) as no_pipeline:
        client.lineage(pipeline="orders-reprt")
    assert no_pipeline.value.reason == "PIPELINE_NOT_FOUND"
    assert "did you mean 'orders-report'" in no_pipeline.value.message

    # OpenLineage: per pipeline run a START and an end; per step a START and a COMPLETE,
    # each valid against the OpenLineage schema.
    cluster.wait_for(lambda: len(_events(receiver)) >= 2 * (2 + 4 + 2 + 2), "the events")
    events = _events(receiver)
    for event in events:
        validate_event(event)
    first = [e for e in events if e["job"]["name"] == "orders-etl"]
    assert {e["eventType"] for e in first} == {"START", "COMPLETE"}
    assert all(e["job"]["namespace"] == "legato-test" for e in events)
    extract_events = [
        e
        for e in events
        if e["job"]["name"] == "orders-etl.extract" and e["eventType"] == "COMPLETE"
    ]
    assert extract_events
    complete = extract_events[0]
    assert {(d["namespace"], d["name"]) for d in complete["inputs"]} == {
        ("warehouse", orders),
        ("warehouse", customers),
    }
    assert complete["job"]["facets"]["sourceCode"]["language"] == "SQL"
    parent = complete["run"]["facets"]["parent"]
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("legato-test", "orders-etl")
    etl_runs = {e["run"]["runId"] for e in first}
    assert parent["run"]["runId"] in etl_runs
    load = next(
        e for e in events if e["job"]["name"] == "orders-etl.load" and e["eventType"] == "COMPLETE"
    )
    assert [(d["namespace"], d["name"]) for d in load["outputs"]] == [("warehouse", mart)]
    # The listing of the run's notifications shows their delivery (marked delivered once
    # the receiver has answered: wait for that commit, not for the request).
    cluster.wait_for(lambda: _delivered(client, run.id), "every event marked delivered")
    assert {n.channel for n in client.list_notifications(run_id=run.id)} == {"openlineage"}


@STORES
def test_a_failed_delivery_is_sent_again_and_test_runs_emit_nothing(
    db_url: str, warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEGATO_SECRET_OL__KEY", "k3y-from-a-secret")
    with (
        Receiver(answers=[503]) as receiver,
        running_cluster(
            db_url,
            tmp_path,
            openlineage_url=receiver.url,
            openlineage_endpoint="custom/path",
            openlineage_api_key_secret="ol-key",
        ) as cluster,
    ):
        cluster.start_agent("a1")
        cluster.apply(
            """
            name: tiny
            steps:
              - name: make
                transform: {code: "result = pd.DataFrame({'n': [1, 2]})"}
                outputs: [lake.tiny]
            """
        )
        run = cluster.run("tiny")
        assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
        # START, then the end: the first send got a 503, so one is sent again (after the
        # outbox's 5 s backoff) with the same runId and eventTime.
        receiver.wait_for(5, within=40)
        bodies = [json.loads(body) for _, _, body in receiver.received]
        first, *rest = bodies
        assert first in rest, "the event that failed was sent again, unchanged"
        for body in bodies:
            validate_event(body)
        assert {path for path, _, _ in receiver.received} == {"/custom/path"}
        assert {h["Authorization"] for _, h, _ in receiver.received} == {"Bearer k3y-from-a-secret"}
        # All delivered in the end (marked so after the receiver answered).
        cluster.wait_for(lambda: _delivered(cluster.client, run.id), "every event delivered")

        # A test run (RunService.TestStep) records no edge and emits no event.
        before = len(receiver.received)
        edges_before = len(cluster.client.lineage(dataset="lake.tiny").edges)
        spec = load_spec_text(
            """
            name: tiny
            steps:
              - name: make
                transform: {code: "result = pd.DataFrame({'n': [1, 2]})"}
                outputs: [lake.other]
            """.replace("\n            ", "\n")
        ).spec
        test = cluster.client.test_step(spec, "make", agent="a1")
        finished = cluster.wait_run(test.id)
        assert finished.trigger.kind == run_pb2.TRIGGER_KIND_TEST
        time.sleep(1.5)  # a delivery pass every 0.5 s would have sent it
        assert len(receiver.received) == before
        assert len(cluster.client.lineage(dataset="lake.tiny").edges) == edges_before
        with pytest.raises(RpcError) as missing:
            cluster.client.lineage(dataset="lake.other")
        assert missing.value.reason == "DATASET_NOT_FOUND"


def test_get_lineage_over_connect_has_the_same_rules(plane: LocalControlPlane) -> None:
    web = Browser(plane.http_address)
    viewer = plane.token("viewer")
    anonymous = web.call("LineageService/GetLineage", {"pipeline": "p"})
    assert anonymous.status == 401 and anonymous.reason == "CREDENTIAL_MISSING"
    missing = web.call("LineageService/GetLineage", {"pipeline": "p"}, bearer(viewer))
    assert (missing.status, missing.reason) == (404, "PIPELINE_NOT_FOUND")
    malformed = web.call("LineageService/GetLineage", {"dataset": "orders"}, bearer(viewer))
    assert (malformed.status, malformed.reason) == (400, "INVALID_DATASET")
    details = {d["type"] for d in malformed.json()["details"]}  # type: ignore[attr-defined]
    assert "google.rpc.BadRequest" in details
    plane.client().apply(load_spec_text(SOLO).spec)
    alone = web.call("LineageService/GetLineage", {"pipeline": "solo"}, bearer(viewer))
    assert alone.status == 200, alone.body
    assert alone.json()["nodes"] == [
        {"id": "pipeline:solo", "kind": "LINEAGE_NODE_KIND_PIPELINE", "pipeline": "solo"}
    ]

    async def asynchronously() -> list[str]:
        async with AsyncClient(connection=plane.client(role="viewer").connection) as client:
            response = await client.lineage(pipeline="solo", direction="downstream")
            return [node.id for node in response.nodes]

    assert asyncio.run(asynchronously()) == ["pipeline:solo"]


SOLO = """
name: solo
steps:
  - {name: a, transform: {code: result = None}}
"""


def test_a_missing_api_key_secret_stops_start_up(tmp_path: Path) -> None:
    plane = LocalControlPlane(
        db=f"sqlite:///{tmp_path}/legato.db",
        openlineage_url="http://127.0.0.1:9",
        openlineage_api_key_secret="ol-key",
    )
    with pytest.raises(
        FailedPrecondition, match="give it in --secrets or as LEGATO_SECRET_OL__KEY"
    ):
        plane.start()
    plane.stop()
