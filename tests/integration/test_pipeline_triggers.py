"""``trigger`` steps end to end: the control plane starts the child run, waits for it when
asked, fails with it, and refuses cycles of pipelines that trigger each other."""

from __future__ import annotations

import pytest
from cluster import Cluster, status_name, steps_by_name

from legato.v1 import run_pb2

pytestmark = pytest.mark.timeout(120)


REPORT = """
name: report
params:
  day: {type: string}
  rows: {type: integer, default: 3}
steps:
  - name: build
    transform:
      code: |
        if params["rows"] < 0:
            raise ValueError("rows must not be negative")
        result = pd.DataFrame({"day": [params["day"]] * params["rows"]})
"""

PARENT = """
name: parent
params:
  rows: {type: integer, default: 3}
steps:
  - name: prepare
    transform: {code: "result = {'day': '2026-11-29'}"}
  - name: publish
    needs: [prepare]
    trigger:
      pipeline: report
      params: {day: steps.prepare.outputs.day, rows: params.rows}
      wait: {wait}
  - name: after
    needs: [publish]
    transform: {code: "result = {'child': inputs['publish']['run_id']}"}
"""


def test_a_waiting_trigger_step_ends_with_its_child_run(cluster: Cluster) -> None:
    cluster.start_agent("a1")
    cluster.apply(REPORT)
    cluster.apply(PARENT.replace("{wait}", "true"))
    run = cluster.run("parent")
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    publish = steps_by_name(run)["publish"]
    child = cluster.client.get_run(publish.child_run_id)
    assert child.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert child.pipeline == "report"
    assert child.params["day"] == "2026-11-29" and child.params["rows"] == 3
    assert publish.output.values["status"] == "succeeded"
    assert steps_by_name(run)["after"].output.values["child"] == child.id
    logs = cluster.logs(run.id)
    assert f"Step 2: publish started run {child.id} of report, waiting for it to end" in logs
    assert f"Step 2: publish (run {child.id} of report succeeded)" in logs


def test_a_trigger_step_fails_when_its_child_fails(cluster: Cluster) -> None:
    cluster.start_agent("a1")
    cluster.apply(REPORT)
    cluster.apply(PARENT.replace("{wait}", "true"))
    run = cluster.run("parent", rows=-1)
    assert run.status == run_pb2.RUN_STATUS_FAILED, run
    steps = steps_by_name(run)
    child = cluster.client.get_run(steps["publish"].child_run_id)
    assert child.status == run_pb2.RUN_STATUS_FAILED
    assert steps["publish"].error.startswith(f"run {child.id} of report failed: ")
    assert "rows must not be negative" in steps["publish"].error
    assert status_name(steps["after"].status) == "upstream_failed"


def test_without_wait_the_step_succeeds_once_the_child_started(cluster: Cluster) -> None:
    cluster.start_agent("a1")
    cluster.apply(REPORT)
    cluster.apply(PARENT.replace("{wait}", "false"))
    run = cluster.run("parent")
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    child_id = steps_by_name(run)["publish"].child_run_id
    assert cluster.wait_run(child_id).status == run_pb2.RUN_STATUS_SUCCEEDED
    trigger = cluster.client.get_run(child_id).trigger
    assert (trigger.parent_run_id, trigger.parent_step) == (run.id, "publish")


def test_bad_child_params_fail_the_step_with_the_reason(cluster: Cluster) -> None:
    cluster.start_agent("a1")
    cluster.apply(REPORT)
    cluster.apply(PARENT.replace("{wait}", "true").replace("rows: params.rows", "rows: \"'many'\""))
    run = cluster.run("parent")
    assert run.status == run_pb2.RUN_STATUS_FAILED, run
    error = steps_by_name(run)["publish"].error
    assert "rows" in error and "integer" in error, error


def test_pipelines_triggering_each_other_stop_at_the_cycle(cluster: Cluster) -> None:
    cluster.start_agent("a1")
    for name, other in (("ping", "pong"), ("pong", "ping")):
        cluster.apply(
            f"""
            name: {name}
            steps:
              - name: next
                trigger: {{pipeline: {other}, wait: true}}
            """
        )
    run = cluster.run("ping")
    assert run.status == run_pb2.RUN_STATUS_FAILED, run
    pong_run = cluster.client.get_run(steps_by_name(run)["next"].child_run_id)
    assert pong_run.status == run_pb2.RUN_STATUS_FAILED
    error = steps_by_name(pong_run)["next"].error
    assert error.startswith("trigger cycle: ping → pong → ping"), error
    assert not steps_by_name(pong_run)["next"].child_run_id


def test_cancelling_a_parent_cancels_the_child_it_waits_for(cluster: Cluster) -> None:
    cluster.start_agent("a1")
    cluster.apply(
        """
        name: slow
        steps:
          - name: sleep
            transform: {code: "import time; time.sleep(60)"}
        """
    )
    cluster.apply(
        """
        name: boss
        steps:
          - name: wait_for_slow
            trigger: {pipeline: slow, wait: true}
        """
    )
    started = cluster.client.trigger_run("boss").run
    cluster.wait_for(
        lambda: bool(
            steps_by_name(cluster.client.get_run(started.id))["wait_for_slow"].child_run_id
        ),
        "the child run to start",
    )
    child_id = steps_by_name(cluster.client.get_run(started.id))["wait_for_slow"].child_run_id
    cluster.client.cancel_run(started.id)
    child = cluster.wait_run(child_id, timeout=20)
    assert child.status == run_pb2.RUN_STATUS_CANCELLED
    assert child.error == f"its parent run {started.id} was cancelled"
