"""The SDK as a user drives it, end to end: a pipeline written in Python (the example
module) applied from its file, run on a real agent process, waited for, its outputs read
as whole DataFrames through DownloadArtifact, its logs read per step — with the sync and
the async client, on both stores."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from cluster import Cluster, running_cluster

import legato
from legato import AsyncClient, Client, RunStatus, StepStatus
from legato.codefiles import load_pipeline_file
from legato.connection import Connection
from legato.statuses import LogStream, TriggerKind

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE = EXAMPLES / "legato_examples" / "orders_as_code.py"


@pytest.fixture
def cluster(db_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """A control plane, the example module's pipelines applied from their file, and an
    agent that imports the module from examples/."""
    with running_cluster(db_url, tmp_path) as running:
        for loaded in load_pipeline_file(EXAMPLE):
            running.client.apply(loaded)
        running.start_agent("a1", env={"PYTHONPATH": str(EXAMPLES)})
        yield running


def _expected_totals(rows: int, seed: int = 7) -> pd.DataFrame:
    """What the example's totals step computes, computed here from its own functions."""
    from legato_examples import orders_as_code as example

    orders = pd.DataFrame(example.extract({"rows": rows, "seed": seed}))
    kept = orders[orders["amount"] > 0]
    grouped = kept.groupby("region", as_index=False).agg(
        amount=("amount", "sum"), orders=("order_id", "count")
    )
    return grouped.round(2).sort_values("region").reset_index(drop=True)


def test_run_wait_output_and_logs_of_a_python_pipeline(cluster: Cluster) -> None:
    client = cluster.client
    run = client.run("orders-as-code", params={"rows": 1500})
    assert run.created
    finished = run.wait(timeout=60)

    assert finished.status == RunStatus.SUCCEEDED
    assert finished.status == "succeeded"
    assert finished.status.proto == finished.proto.status
    assert finished.trigger == TriggerKind.API
    assert finished.params == {"rows": 1500, "seed": 7}
    assert list(finished.steps) == ["extract", "clean", "totals", "report"]
    assert {s.status for s in finished.steps.values()} == {StepStatus.SUCCEEDED}
    assert finished.steps["extract"].records_out == 1500
    assert finished.steps["extract"].kind == "function"
    assert finished.steps["extract"].agent == "a1"
    assert finished.duration is not None and finished.end_time is not None

    # The whole table, not the preview: more rows than the server's 1,000-row preview.
    clean = run.output("clean")
    assert clean.rows == finished.steps["clean"].records_out
    assert clean.rows is not None and clean.rows > 1000
    assert len(clean.preview) == 20
    frame = clean.to_pandas()
    assert len(frame) == clean.rows
    assert list(frame.columns) == ["order_id", "region", "amount"]
    assert (frame["amount"] > 0).all()
    assert frame.iloc[:20].to_dict("records") == clean.preview
    assert list(clean.preview[0]) == list(clean.columns) == ["order_id", "region", "amount"]

    totals = run.output("totals").to_pandas().reset_index(drop=True)
    pd.testing.assert_frame_equal(totals, _expected_totals(1500), check_dtype=False)
    assert run.output("totals").to_arrow().num_rows == len(totals)

    report = run.output("report")
    assert not report.has_table
    assert report.values == {"regions": 3, "amount": pytest.approx(totals["amount"].sum())}
    with pytest.raises(ValueError, match=r"step 'report' of run \w+ returned no table"):
        report.to_pandas()

    lines = list(run.logs())
    assert any(line.step == "" and line.stream == LogStream.SYSTEM for line in lines)
    generated = [line for line in lines if line.text == "generated 1500 orders"]
    assert [(g.step, g.attempt, g.stream) for g in generated] == [("extract", 1, LogStream.STDOUT)]
    assert generated[0].time is not None and generated[0].time.tzinfo is not None
    only_clean = list(run.logs("clean"))
    assert only_clean and {line.step for line in only_clean} == {"clean"}
    assert any(line.text.startswith("kept ") for line in only_clean)
    followed = list(run.logs(follow=True))  # the run has ended: every line, then the end
    assert [line.seq for line in followed] == [line.seq for line in lines]

    again = client.run_handle(run.id).get()
    assert again.status == RunStatus.SUCCEEDED and again.id == finished.id


def test_a_failed_run_says_which_step_failed(cluster: Cluster) -> None:
    # No order has a positive amount when there are none: totals' guardrail fails it.
    run = cluster.client.run("orders-as-code", params={"rows": 0})
    finished = run.wait(timeout=60)
    assert finished.status == RunStatus.FAILED
    assert finished.steps["totals"].status == StepStatus.FAILED
    assert finished.steps["report"].status == StepStatus.UPSTREAM_FAILED
    with pytest.raises(legato.RunFailed) as caught:
        run.wait(timeout=10, check=True)
    assert caught.value.run.id == run.id
    message = str(caught.value)
    assert f"run {run.id} of pipeline 'orders-as-code' failed" in message
    assert "totals:" in message


def test_waiting_too_long_says_what_the_run_waits_for(cluster: Cluster) -> None:
    cluster.apply(
        """
        name: needs-gpu
        steps:
          - name: train
            agent_selector: {gpu: "true"}
            transform: {code: "result = None"}
        """
    )
    run = cluster.client.run("needs-gpu")
    with pytest.raises(legato.RunWaitTimeout) as caught:
        run.wait(timeout=1.5)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.run.status in (RunStatus.QUEUED, RunStatus.RUNNING)
    message = str(caught.value)
    assert message.startswith(f"run {run.id} of pipeline 'needs-gpu' is still ")
    assert "after 1.5s (step 'train' waiting" in message
    assert "gpu=true" in message
    cancelled = run.cancel("no GPU here")
    assert cancelled.status in (RunStatus.CANCELLED, RunStatus.RUNNING)
    assert run.wait(timeout=30).status == RunStatus.CANCELLED


def test_to_pandas_without_pandas_names_the_extra(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = cluster.client.run("orders-as-code", params={"rows": 10})
    assert run.wait(timeout=60).succeeded
    output = run.output("totals")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what `import pyarrow` sees without it
    with pytest.raises(legato.MissingDependency) as caught:
        output.to_pandas()
    assert isinstance(caught.value, ImportError)
    assert str(caught.value) == (
        "to_pandas() needs pyarrow, which is not installed; install it with "
        "pip install 'legato[pandas]' (or pip install pyarrow)"
    )
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(legato.MissingDependency, match=r"needs pandas and pyarrow, which are"):
        output.to_pandas()


async def test_the_async_client_runs_and_reads_the_same(cluster: Cluster) -> None:
    connection = Connection(server=cluster.plane.address, token=cluster.plane.token("operator"))
    async with AsyncClient(connection=connection) as client:
        run = await client.run("orders-as-code", params={"rows": 300, "seed": 11})
        finished = await run.wait(timeout=60)
        assert finished.status == RunStatus.SUCCEEDED
        output = await run.output("totals")
        totals = (await output.to_pandas()).reset_index(drop=True)
        pd.testing.assert_frame_equal(totals, _expected_totals(300, seed=11), check_dtype=False)
        lines = [line async for line in run.logs("extract")]
        assert any(line.text == "generated 300 orders" for line in lines)
        followed = [line async for line in run.logs(follow=True)]
        assert len(followed) >= len(lines)
        names = [p.name async for p in client.list_pipelines()]
        assert names == ["orders-as-code", "orders-weekly"]

    # The sync client sees the same run the same way.
    with Client(connection=connection) as sync:
        assert sync.run_handle(run.id).get() == finished


def test_the_weekly_pipeline_triggers_the_other(cluster: Cluster) -> None:
    run = cluster.client.run("orders-weekly")
    finished = run.wait(timeout=90)
    assert finished.status == RunStatus.SUCCEEDED, finished
    child = cluster.client.run_handle(finished.steps["orders"].child_run_id).get()
    assert child.pipeline == "orders-as-code"
    assert child.trigger == TriggerKind.PIPELINE
    assert child.params["rows"] == 1000
