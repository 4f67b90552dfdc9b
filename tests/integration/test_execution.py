"""Runs end to end: a real control plane, agents as separate processes, both databases."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import grpc
import pytest
from cluster import Cluster, process_gone, status_name, steps_by_name

from legato import RpcError
from legato.v1 import agent_pb2, run_pb2, spec_pb2

pytestmark = pytest.mark.timeout(120)


CHAIN = """
name: chain
params:
  rows: {type: integer, default: 127}
steps:
  - name: extract
    transform:
      code: |
        amounts = [(-1) ** (i % 5 == 0) * (i + 1) for i in range(params["rows"])]
        result = pd.DataFrame({"amount": amounts})
        print("extracted", len(result))
  - name: transform
    needs: [extract]
    transform:
      code: result = data[data["amount"] > 0]
  - name: summary
    needs: [transform]
    function:
      function: legato_test_steps:where
"""


def test_chain_moves_tables_and_logs_record_counts(cluster: Cluster) -> None:
    cluster.start_agent("a1")
    cluster.apply(CHAIN)
    run = cluster.run("chain")
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    steps = steps_by_name(run)
    assert [status_name(s.status) for s in run.steps] == ["succeeded"] * 3
    assert steps["extract"].records_out == 127
    assert (steps["transform"].records_in, steps["transform"].records_out) == (127, 101)
    assert isinstance(steps["summary"].output.values["pid"], float)
    logs = cluster.logs(run.id)
    assert logs[0] == "Pipeline started (chain v1, trigger api)"
    assert "Step 1: extract (127 records)" in logs
    assert "Step 2: transform (127 → 101 after filtering)" in logs
    assert "extracted 127" in logs
    assert logs[-1] == "Pipeline completed successfully"


def test_fan_out_join_and_conditions(cluster: Cluster) -> None:
    cluster.start_agent("a1", slots=3)
    cluster.apply(
        """
        name: fan
        steps:
          - name: left
            transform: {code: "result = pd.DataFrame({'x': [1, 2, 3]})"}
          - name: right
            transform: {code: "result = pd.DataFrame({'x': [4, 5]})"}
          - name: join
            needs: [left, right]
            transform: {code: "result = pd.concat([inputs['left'], inputs['right']])"}
          - name: never
            needs: [join]
            when: steps.join.records > 100
            transform: {code: "result = {'ran': True}"}
          - name: after_never
            needs: [never]
            transform: {code: "result = {'ran': True}"}
          - name: cleanup
            needs: [never]
            trigger_rule: all_done
            transform: {code: "result = {'ran': True}"}
        """
    )
    run = cluster.run("fan")
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    steps = steps_by_name(run)
    assert (steps["join"].records_in, steps["join"].records_out) == (5, 5)
    assert status_name(steps["never"].status) == "skipped"
    assert status_name(steps["after_never"].status) == "skipped"
    assert status_name(steps["cleanup"].status) == "succeeded"
    assert any("when 'steps.join.records > 100' was false" in line for line in cluster.logs(run.id))


def test_failure_propagates_by_trigger_rule(cluster: Cluster) -> None:
    cluster.start_agent("a1")
    cluster.apply(
        """
        name: rules
        steps:
          - name: boom
            transform: {code: "raise ValueError('bad input')"}
          - name: next
            needs: [boom]
            transform: {code: "result = 1"}
          - name: always
            needs: [boom]
            trigger_rule: all_done
            transform: {code: "result = 1"}
        """
    )
    run = cluster.run("rules")
    assert run.status == run_pb2.RUN_STATUS_FAILED
    steps = steps_by_name(run)
    assert status_name(steps["boom"].status) == "failed"
    assert "ValueError: bad input" in steps["boom"].error
    assert status_name(steps["next"].status) == "upstream_failed"
    assert status_name(steps["always"].status) == "succeeded"
    assert "step 'boom' failed" in run.error


def test_retries_with_backoff_until_success(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("a1")
    marker = tmp_path / "flaky.count"
    cluster.apply(
        f"""
        name: flaky
        steps:
          - name: wobbly
            function:
              function: legato_test_steps:flaky
              args: {{marker: "{marker}", fail_times: 2}}
            retry: {{max_retries: 3, delay: 300ms, backoff: 2}}
        """
    )
    started = time.monotonic()
    run = cluster.run("flaky")
    elapsed = time.monotonic() - started
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    step = run.steps[0]
    assert step.attempt == 3
    assert [status_name(a.status) for a in step.attempts] == ["failed", "failed", "succeeded"]
    assert "flaky failure 1 of 2" in step.attempts[0].error
    assert elapsed >= 0.3 + 0.6
    logs = cluster.logs(run.id)
    assert any(
        "failed (attempt 1 of 4)" in line and "retry 1 of 3 in 300ms" in line for line in logs
    ), logs
    assert any(
        "failed (attempt 2 of 4)" in line and "retry 2 of 3 in 600ms" in line for line in logs
    ), logs


def test_timeout_kills_the_step(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("a1")
    marker = tmp_path / "pid"
    cluster.apply(
        f"""
        name: sleepy
        steps:
          - name: nap
            function:
              function: legato_test_steps:slow
              args: {{seconds: 30, marker: "{marker}"}}
            timeout: 1s
        """
    )
    run = cluster.run("sleepy")
    step = run.steps[0]
    assert run.status == run_pb2.RUN_STATUS_FAILED
    assert status_name(step.status) == "timed_out"
    assert "timeout of 1s" in step.error
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_memory_limit(cluster: Cluster) -> None:
    cluster.start_agent("a1")
    cluster.apply(
        """
        name: hungry
        steps:
          - name: eat
            transform: {code: "blob = bytearray(600 * 1024 * 1024)\\nresult = {'size': len(blob)}"}
            memory: 128Mi
        """
    )
    run = cluster.run("hungry")
    step = run.steps[0]
    assert run.status == run_pb2.RUN_STATUS_FAILED
    assert step.failure_kind == spec_pb2.FAILURE_KIND_MEMORY
    assert "memory limit of 128Mi" in step.error


def test_cancel_stops_running_steps(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("a1")
    marker = tmp_path / "pid"
    cluster.apply(
        f"""
        name: long
        steps:
          - name: nap
            function:
              function: legato_test_steps:slow
              args: {{seconds: 60, marker: "{marker}"}}
          - name: after
            needs: [nap]
            transform: {{code: "result = 1"}}
        """
    )
    run_id = cluster.client.trigger_run("long").run.id
    cluster.wait_for(marker.exists, "the step to start")
    cancelled = cluster.client.cancel_run(run_id, reason="changed my mind")
    assert cancelled.status == run_pb2.RUN_STATUS_CANCELLED
    assert [status_name(s.status) for s in cancelled.steps] == ["cancelled", "cancelled"]
    pid = int(marker.read_text())

    cluster.wait_for(process_gone(pid), "the step's process to be killed", timeout=10)
    assert "Pipeline cancelled: changed my mind" in cluster.logs(run_id)


def test_rerun_runs_only_what_failed(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("a1")
    flag = tmp_path / "fixed"
    cluster.apply(
        f"""
        name: fixme
        steps:
          - name: first
            transform: {{code: "result = pd.DataFrame({{'x': [1, 2, 3]}})"}}
          - name: second
            needs: [first]
            transform:
              code: |
                import os
                if not os.path.exists("{flag}"):
                    raise RuntimeError("not fixed yet")
                result = data
        """
    )
    failed = cluster.run("fixme")
    assert failed.status == run_pb2.RUN_STATUS_FAILED
    flag.write_text("yes")
    rerun = cluster.client.rerun_run(failed.id)
    done = cluster.wait_run(rerun.id)
    assert done.status == run_pb2.RUN_STATUS_SUCCEEDED
    steps = steps_by_name(done)
    assert steps["first"].attempt == 0  # reused, not run again
    assert "reused from run" in steps["first"].waiting_reason
    assert steps["second"].attempt == 1
    assert steps["second"].records_in == 3
    assert done.trigger.rerun_of == failed.id


def test_request_id_makes_trigger_idempotent(cluster: Cluster) -> None:
    cluster.apply(CHAIN)
    first = cluster.client.trigger_run("chain", request_id="deploy-7")
    again = cluster.client.trigger_run("chain", request_id="deploy-7")
    assert first.created and not again.created
    assert first.run.id == again.run.id
    assert len(list(cluster.client.list_runs(pipeline="chain"))) == 1


def test_params_are_checked(cluster: Cluster) -> None:
    cluster.apply(CHAIN)
    with pytest.raises(RpcError) as caught:
        cluster.client.trigger_run("chain", params={"rows": "many", "colour": 1})
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in caught.value.field_violations}
    assert fields == {"params.rows", "params.colour"}


def test_labels_route_steps(cluster: Cluster) -> None:
    cluster.start_agent("eu-1", labels={"region": "eu"})
    cluster.start_agent("us-1", labels={"region": "us"})
    cluster.apply(
        """
        name: routed
        steps:
          - name: in_us
            function: {function: "legato_test_steps:where"}
            agent_selector: {region: us}
          - name: in_eu
            function: {function: "legato_test_steps:where"}
            agent_selector: {region: eu}
        """
    )
    run = cluster.run("routed")
    steps = steps_by_name(run)
    assert (steps["in_us"].agent, steps["in_eu"].agent) == ("us-1", "eu-1")


def test_waiting_for_matching_agent_is_visible(cluster: Cluster) -> None:
    cluster.start_agent("eu-1", labels={"region": "eu"})
    cluster.apply(
        """
        name: nowhere
        steps:
          - name: on_mars
            transform: {code: "result = 1"}
            agent_selector: {region: mars}
        """
    )
    run_id = cluster.client.trigger_run("nowhere").run.id
    cluster.wait_for(
        lambda: "region=mars" in cluster.client.get_run(run_id).steps[0].waiting_reason,
        "the waiting reason",
    )
    cluster.start_agent("mars-1", labels={"region": "mars"})
    assert cluster.wait_run(run_id).status == run_pb2.RUN_STATUS_SUCCEEDED


def test_max_concurrent_runs_queues_visibly(cluster: Cluster) -> None:
    cluster.start_agent("a1", slots=4)
    cluster.apply(
        """
        name: single
        limits: {max_concurrent_runs: 1}
        steps:
          - name: nap
            function: {function: "legato_test_steps:slow", args: {seconds: 0.5}}
        """
    )
    ids = [cluster.client.trigger_run("single").run.id for _ in range(3)]
    queued = cluster.client.get_run(ids[1])
    assert queued.status == run_pb2.RUN_STATUS_QUEUED
    assert "max_concurrent_runs (1) reached" in queued.waiting_reason
    runs = [cluster.wait_run(run_id) for run_id in ids]
    assert all(r.status == run_pb2.RUN_STATUS_SUCCEEDED for r in runs)
    for earlier, later in itertools.pairwise(runs):
        assert later.start_time.ToDatetime() >= earlier.end_time.ToDatetime()


def test_killed_agent_step_runs_elsewhere(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("doomed")
    marker = tmp_path / "pid"
    cluster.apply(
        f"""
        name: survive
        steps:
          - name: nap
            function:
              function: legato_test_steps:slow
              args: {{seconds: 2, marker: "{marker}"}}
            retry: {{max_retries: 2}}
        """
    )
    run_id = cluster.client.trigger_run("survive").run.id
    cluster.wait_for(marker.exists, "the step to start")
    cluster.kill_agent("doomed")
    cluster.start_agent("rescuer")
    run = cluster.wait_run(run_id, timeout=40)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    attempts = run.steps[0].attempts
    assert [(a.agent, status_name(a.status)) for a in attempts] == [
        ("doomed", "failed"),
        ("rescuer", "succeeded"),
    ]
    assert "stopped renewing the lease" in attempts[0].error


def test_logs_of_a_chatty_step_arrive_in_order(cluster: Cluster) -> None:
    cluster.start_agent("a1")
    cluster.apply(
        """
        name: chatty
        steps:
          - name: talk
            transform: {code: "for i in range(30000):\\n    print(f'line {i}')\\nresult = 1"}
        """
    )
    run = cluster.run("chatty", timeout=90)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED
    lines = [
        line.text
        for line in cluster.client.get_run_logs(run.id, step="talk")
        if line.stream == run_pb2.LOG_STREAM_STDOUT
    ]
    assert len(lines) == 30_000
    assert lines[:2] == ["line 0", "line 1"] and lines[-1] == "line 29999"


def test_drain_finishes_running_steps_then_stops_the_agent(
    cluster: Cluster, tmp_path: Path
) -> None:
    process = cluster.start_agent("leaving")
    marker = tmp_path / "pid"
    cluster.apply(
        f"""
        name: drained
        steps:
          - name: nap
            function:
              function: legato_test_steps:slow
              args: {{seconds: 1, marker: "{marker}"}}
        """
    )
    run_id = cluster.client.trigger_run("drained").run.id
    cluster.wait_for(marker.exists, "the step to start")
    agent = cluster.client.drain_agent("leaving")
    assert agent.name == "leaving"
    assert process.wait(timeout=20) == 0
    assert cluster.wait_run(run_id).status == run_pb2.RUN_STATUS_SUCCEEDED
    # The control plane records the disconnection when it sees the stream end.
    cluster.wait_for(
        lambda: cluster.agent_state("leaving") == agent_pb2.AGENT_STATE_DISCONNECTED,
        "the drained agent to show as disconnected",
    )


def test_run_max_duration_times_the_run_out(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("a1")
    marker = tmp_path / "pid"
    cluster.apply(
        f"""
        name: bounded
        limits: {{max_duration: 2s}}
        steps:
          - name: nap
            function:
              function: legato_test_steps:slow
              args: {{seconds: 60, marker: "{marker}"}}
          - name: after
            needs: [nap]
            transform: {{code: "result = 1"}}
        """
    )
    run = cluster.run("bounded", timeout=30)
    assert run.status == run_pb2.RUN_STATUS_TIMED_OUT
    assert "limits.max_duration of 2s" in run.error
    assert [status_name(s.status) for s in run.steps] == ["timed_out", "timed_out"]
    pid = int(marker.read_text())

    cluster.wait_for(process_gone(pid), "the step's process to be stopped", timeout=15)
    assert any(line.startswith("Pipeline timed out after") for line in cluster.logs(run.id))
