"""The PagerDuty channel against a receiver on loopback standing in for the Events API v2:
a failed run opens an incident (trigger) and the pipeline's next success closes it
(resolve), with one dedup_key per pipeline; the routing key is a server secret."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from cluster import running_cluster

from legato.v1 import run_pb2
from tests.http_receiver import Receiver

pytestmark = pytest.mark.timeout(120)


def spec(code: str) -> str:
    return textwrap.dedent(
        f"""
        name: nightly
        notifications:
          - on: [failed, succeeded]
            pagerduty: {{routing_key: pd-key, severity: critical}}
        steps:
          - name: load
            transform: {{code: "{code}"}}
        """
    )


def test_a_failure_opens_an_incident_and_the_next_success_resolves_it(
    db_url: str, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("pd-key: R0UT1NGKEY\n")
    with (
        Receiver() as pagerduty,
        running_cluster(
            db_url,
            tmp_path,
            secrets_file=str(secrets),
            pagerduty_url=f"{pagerduty.url}/v2/enqueue",
        ) as cluster,
    ):
        cluster.start_agent("a1")
        cluster.apply(spec("raise RuntimeError('warehouse is down')"))
        failed = cluster.run("nightly")
        assert failed.status == run_pb2.RUN_STATUS_FAILED
        (path, _, body), *_ = pagerduty.wait_for(1)
        trigger = json.loads(body)
        assert path == "/v2/enqueue"
        assert trigger["routing_key"] == "R0UT1NGKEY"
        assert trigger["event_action"] == "trigger"
        assert trigger["dedup_key"] == "legato/nightly"
        assert trigger["payload"]["severity"] == "critical"
        assert trigger["payload"]["summary"].startswith(
            f"Legato: Pipeline nightly: run {failed.id} failed: step 'load' failed"
        )
        assert "warehouse is down" in trigger["payload"]["summary"]
        assert trigger["payload"]["custom_details"]["id"] == failed.id

        cluster.apply(spec("result = 1"))
        succeeded = cluster.run("nightly")
        assert succeeded.status == run_pb2.RUN_STATUS_SUCCEEDED
        resolve = json.loads(pagerduty.wait_for(2)[1][2])
        assert resolve == {
            "dedup_key": "legato/nightly",
            "event_action": "resolve",
            "routing_key": "R0UT1NGKEY",
        }
