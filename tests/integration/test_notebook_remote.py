"""``step.run(on=AGENT)`` from legato.notebook against a real control plane and a real
agent process (both stores): the agent holds the warehouse connection the notebook does
not, the result comes back as a DataFrame with the step's log lines, and the test run is
kept apart: not listed unless asked for, no notification, refused with the right error
for an unknown agent, one without the connection, a missing input, an unapplied pipeline."""

from __future__ import annotations

import asyncio
import sqlite3
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from cluster import Cluster

import legato.notebook
from legato.aio import AsyncClient
from legato.errors import FailedPrecondition, InvalidArgument
from legato.spec import load_spec_text
from legato.statuses import TriggerKind
from legato.v1 import run_pb2
from tests.http_receiver import Receiver

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def _spec(url: str) -> str:
    return textwrap.dedent(
        f"""
        name: shop
        params:
          min_amount: {{type: number, default: 10}}
        notifications:
          - on: [succeeded, failed]
            webhook: {{url: "{url}/hook"}}
            throttle: 0s
        steps:
          - name: extract
            query:
              connection: warehouse
              sql: select id, amount from orders where amount >= :min order by id
              parameters: {{min: params.min_amount}}
          - name: enrich
            needs: [extract]
            transform:
              code: |
                import sys
                print("enriching", len(data), "rows")
                print("a warning", file=sys.stderr)
                result = data.assign(double=data.amount * 2)
        """
    )


def _warehouse(path: Path) -> str:
    with sqlite3.connect(path) as db:
        db.execute("create table orders (id integer, amount real)")
        db.executemany("insert into orders values (?, ?)", [(1, 5.0), (2, 20.0), (3, 30.0)])
    return f"sqlite:///{path}"


def test_a_step_runs_on_the_named_agent_as_a_test_run(
    cluster: Cluster,
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("LEGATO_CONNECTION_WAREHOUSE", raising=False)
    url = _warehouse(tmp_path / "warehouse.db")
    cluster.start_agent("near-warehouse", env={"LEGATO_CONNECTION_WAREHOUSE": url})
    text = _spec(receiver.url)
    cluster.apply(text)
    (tmp_path / "shop.yaml").write_text(text)
    client = cluster.client
    p = legato.notebook.load(tmp_path / "shop.yaml", client=client)

    # Here the notebook has no warehouse: the message says how to get one.
    with pytest.raises(legato.notebook.NotebookError, match="LEGATO_CONNECTION_WAREHOUSE"):
        p.step("extract").run()

    out = p.step("extract").run(on="near-warehouse", params={"min_amount": 10})
    assert out.status == "succeeded" and out.run_id
    assert out.data is not None
    assert out.data.to_dict("records") == [{"id": 2, "amount": 20.0}, {"id": 3, "amount": 30.0}]
    assert out.records_out == 2

    frame = pd.DataFrame({"id": [7, 8], "amount": [1.5, 2.5]})
    enriched = p.step("enrich").run(data=frame, on="near-warehouse")
    assert enriched.data is not None
    assert enriched.data["double"].tolist() == [3.0, 5.0]
    assert enriched.logs == ["enriching 2 rows", "a warning"]
    printed = capsys.readouterr()
    assert "[enrich] enriching 2 rows" in printed.out
    assert "[enrich] a warning" in printed.err

    # Recorded as test runs of the pipeline, on that agent, with only the step and its input.
    run = client.get_run(enriched.run_id)
    assert run.trigger.kind == run_pb2.TRIGGER_KIND_TEST
    assert run.version == 0
    steps = {s.name: s for s in run.steps}
    assert set(steps) == {"extract", "enrich"}
    assert steps["extract"].waiting_reason == "given by the test"
    assert steps["enrich"].agent == "near-warehouse"

    assert list(client.list_runs(pipeline="shop")) == []
    tests = {r.id for r in client.list_runs(pipeline="shop", include_tests=True)}
    assert tests == {out.run_id, enriched.run_id}
    by_trigger = {r.id for r in client.list_runs(triggers=[TriggerKind.TEST])}
    assert by_trigger == tests
    # The hidden version is no version users see.
    assert [v.number for v in client.list_pipeline_versions("shop")] == [1]
    assert client.get_pipeline("shop").latest_version == 1

    # No notification for a test run; a production run of the same pipeline sends one.
    assert list(client.list_notifications(run_id=out.run_id)) == []
    assert list(client.list_notifications(run_id=enriched.run_id)) == []
    production = cluster.run("shop")
    assert production.status == run_pb2.RUN_STATUS_SUCCEEDED
    receiver.wait_for(1)
    time.sleep(0.3)
    assert len(receiver.received) == 1
    assert len(list(client.list_notifications(run_id=production.id))) == 1


def test_test_step_refusals_name_the_problem(
    cluster: Cluster, tmp_path: Path, receiver: Receiver
) -> None:
    url = _warehouse(tmp_path / "warehouse.db")
    cluster.start_agent("near-warehouse", env={"LEGATO_CONNECTION_WAREHOUSE": url})
    cluster.start_agent("plain")
    text = _spec(receiver.url)
    spec = load_spec_text(text).spec
    client = cluster.client

    with pytest.raises(FailedPrecondition) as not_applied:
        client.test_step(spec, "extract", agent="near-warehouse")
    assert not_applied.value.reason == "PIPELINE_NOT_APPLIED"
    assert "legato apply" in not_applied.value.message

    cluster.apply(text)
    with pytest.raises(FailedPrecondition) as unknown:
        client.test_step(spec, "extract", agent="far-away")
    assert unknown.value.reason == "AGENT_NOT_CONNECTED"
    assert "connected agents: near-warehouse, plain" in unknown.value.message

    with pytest.raises(FailedPrecondition) as lacking:
        client.test_step(spec, "extract", agent="plain")
    assert lacking.value.reason == "AGENT_DOES_NOT_MATCH"
    assert "no connection 'warehouse'" in lacking.value.message

    with pytest.raises(InvalidArgument) as missing:
        client.test_step(spec, "enrich", agent="plain")
    assert missing.value.reason == "TEST_INPUT_MISSING"
    assert "'extract'" in missing.value.message

    with pytest.raises(InvalidArgument) as typo:
        client.test_step(spec, "enrch", agent="plain")
    assert "did you mean 'enrich'" in typo.value.message

    cluster.kill_agent("plain")
    cluster.wait_for(
        lambda: all(a.name != "plain" for a in client.list_agents()), "plain to disconnect"
    )
    with pytest.raises(FailedPrecondition) as gone:
        client.test_step(spec, "enrich", agent="plain", inputs={"extract": {"n": 1}})
    assert gone.value.reason == "AGENT_NOT_CONNECTED"
    assert "connected agents: near-warehouse" in gone.value.message


def test_a_retried_test_step_returns_the_same_run(
    cluster: Cluster, tmp_path: Path, receiver: Receiver
) -> None:
    cluster.start_agent("a1")
    text = _spec(receiver.url)
    cluster.apply(text)
    spec = load_spec_text(text).spec
    first = cluster.client.test_step(
        spec, "enrich", agent="a1", inputs={"extract": {"n": 1}}, request_id="nb-1"
    )
    again = cluster.client.test_step(
        spec, "enrich", agent="a1", inputs={"extract": {"n": 1}}, request_id="nb-1"
    )
    assert again.id == first.id

    async def through_asyncio() -> run_pb2.Run:
        async with AsyncClient(connection=cluster.client.connection) as client:
            return await client.test_step(
                spec, "enrich", agent="a1", inputs={"extract": {"n": 1}}, request_id="nb-1"
            )

    assert asyncio.run(through_asyncio()).id == first.id
    ended = cluster.wait_run(first.id)
    # `data` is None (the input has values, no table): the transform fails saying so.
    assert ended.status == run_pb2.RUN_STATUS_FAILED
    assert "NoneType" in {s.name: s for s in ended.steps}["enrich"].error
    assert len(list(cluster.client.list_runs(include_tests=True))) == 1
    # A test run is not rerun as a production run would be.
    with pytest.raises(FailedPrecondition) as rerun:
        cluster.client.rerun_run(first.id)
    assert rerun.value.reason == "TEST_RUN"
    # A table that is no Arrow IPC stream is refused, naming the field.
    with pytest.raises(InvalidArgument) as broken:
        cluster.client.test_step(spec, "enrich", agent="a1", inputs={"extract": b"not arrow"})
    assert broken.value.reason == "INVALID_TEST_INPUT"
    assert [v.field for v in broken.value.field_violations] == ["inputs[0].table"]


def test_test_runs_do_not_hold_the_pipelines_limits_or_wait_for_its_schedule(
    cluster: Cluster,
) -> None:
    cluster.start_agent("a1", slots=2)
    text = """
        name: nightly
        schedule: {cron: "0 2 * * *", timezone: UTC}
        limits: {max_concurrent_runs: 1}
        steps:
          - name: wait
            transform: {code: "import time; time.sleep(2); result = {'slept': True}"}
        """
    cluster.apply(text)
    client = cluster.client
    client.pause_schedule("nightly", reason="maintenance")
    spec = load_spec_text(textwrap.dedent(text)).spec
    test = client.test_step(spec, "wait", agent="a1")
    cluster.wait_for(
        lambda: client.get_run(test.id).status == run_pb2.RUN_STATUS_RUNNING, "the test to run"
    )
    # A production run starts at once: the test run holds none of max_concurrent_runs.
    started = client.trigger_run("nightly").run
    assert started.status == run_pb2.RUN_STATUS_RUNNING, started.waiting_reason
    assert cluster.wait_run(test.id).status == run_pb2.RUN_STATUS_SUCCEEDED
    assert cluster.wait_run(started.id).status == run_pb2.RUN_STATUS_SUCCEEDED
