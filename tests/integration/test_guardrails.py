"""Guardrails and late runs with a real agent and a real HTTP receiver: a step's records
against its expectations (a warning fires ``volume_anomaly`` and the run succeeds; a
``fail`` fails the step with the figures), a step or run slower than its median fires
``slow``, and a run past its expected duration fires ``late`` once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import running_cluster, steps_by_name

from legato.v1 import run_pb2
from tests.http_receiver import Receiver

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def events(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(body) for _, _, body in receiver.received]


def delivered(receiver: Receiver, run_id: str, event: str, count: int) -> list[dict[str, Any]]:
    """The ``count`` deliveries of ``event`` for ``run_id``, once they are all in. Others
    may arrive between them: a run of a few milliseconds can be twice its median on a busy
    machine, and then it is rightly ``slow`` too."""
    deadline = time.monotonic() + 30
    while True:
        found = [b for b in events(receiver) if b["event"] == event and b["run"]["id"] == run_id]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, events(receiver)
            return found
        time.sleep(0.05)


def test_records_and_durations_against_their_expectations(
    db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    pipeline = f"""
        name: orders
        params:
          n: {{type: integer, default: 100}}
          pause: {{type: number, default: 0}}
        expect:
          duration: {{max_ratio: 2, baseline_runs: 3}}
        notifications:
          - on: [volume_anomaly, slow]
            webhook: {{url: "{receiver.url}/hook"}}
            throttle: 0s
        steps:
          - name: load
            transform:
              code: |
                import time
                time.sleep(params["pause"])
                result = pd.DataFrame({{"id": range(params["n"])}})
            expect:
              records: {{max_change: 0.5, baseline_runs: 3}}
              duration: {{max_ratio: 2, baseline_runs: 3}}
          - name: check
            needs: [load]
            transform: {{code: "result = data"}}
            expect:
              records: {{min: 50, action: fail}}
        """
    with running_cluster(db_url, tmp_path) as cluster:
        cluster.start_agent("a1")
        cluster.apply(pipeline)
        for _ in range(3):
            assert cluster.run("orders").status == run_pb2.RUN_STATUS_SUCCEEDED
        assert receiver.received == []  # within bounds, and no baseline before

        short = cluster.run("orders", n=30)
        assert short.status == run_pb2.RUN_STATUS_FAILED
        steps = steps_by_name(short)
        assert steps["load"].status == run_pb2.STEP_STATUS_SUCCEEDED
        check = steps["check"]
        assert check.status == run_pb2.STEP_STATUS_FAILED
        assert check.error == "step 'check' output 30 records, fewer than expect.records.min 50"
        logs = cluster.logs(short.id)
        warning = (
            "Guardrail (warning): step 'load' output 30 records, -70% against the median 100 "
            "of its last 3 successful runs (expect.records.max_change ±50%)"
        )
        assert warning in logs
        assert (
            "Guardrail (failed the step): step 'check' output 30 records, fewer than "
            "expect.records.min 50"
        ) in logs
        anomalies = sorted(
            delivered(receiver, short.id, "volume_anomaly", 2),
            key=lambda body: body["run"]["guardrail"]["step"],
        )
        assert [body["run"]["guardrail"]["step"] for body in anomalies] == ["check", "load"]
        load = anomalies[1]["run"]["guardrail"]
        assert (load["records"], load["median"], load["baseline_runs"]) == (30, 100, 3)
        assert load["change"] == pytest.approx(-0.7)
        assert anomalies[1]["idempotency_key"] == f"{short.id}-volume_anomaly-load-1-0"
        assert anomalies[0]["run"]["guardrail"]["min"] == 50

        slow = cluster.run("orders", pause=2.5)
        assert slow.status == run_pb2.RUN_STATUS_SUCCEEDED  # slow is a warning
        mine = delivered(receiver, slow.id, "slow", 2)
        assert sorted(body["idempotency_key"] for body in mine) == [
            f"{slow.id}-slow-load-1-0",
            f"{slow.id}-slow-run-0",
        ]
        for body in mine:
            figures = body["run"]["guardrail"]
            assert figures["kind"] == "duration" and figures["ratio"] > 2
            assert figures["seconds"] >= 2.5 and figures["baseline_runs"] == 3
        texts = "\n".join(cluster.logs(slow.id))
        assert "Guardrail (warning): step 'load' took " in texts
        assert "Guardrail (warning): the run took " in texts


def test_a_run_past_its_expected_duration_is_late_once(
    db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    pipeline = f"""
        name: stuck
        limits: {{expected_duration: 1s}}
        notifications:
          - on: [late]
            webhook: {{url: "{receiver.url}/hook"}}
        steps:
          - name: wait
            transform: {{code: "result = 1"}}
            agent_selector: {{zone: nowhere}}
        """
    with running_cluster(db_url, tmp_path) as cluster:
        cluster.apply(pipeline)
        run_id = cluster.client.trigger_run("stuck").run.id
        # The sweep runs every 15 s on each replica.
        ((_, headers, body),) = receiver.wait_for(1, within=40)
        late = json.loads(body)
        assert late["event"] == "late" and headers["Idempotency-Key"] == f"{run_id}-late-duration-0"
        assert late["run"]["late"]["kind"] == "running_long"
        assert late["run"]["late"]["reason"].startswith("still running 1s after it started at ")
        time.sleep(16)  # a second sweep finds it again and sends nothing
        assert len(receiver.received) == 1
        cluster.client.cancel_run(run_id)
