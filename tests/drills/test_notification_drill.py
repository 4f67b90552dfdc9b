"""Drill: the control plane is killed (kill -9) while it sends a notification. The promise
(docs/notifications.md, "Delivery"): the notification was written with the change that
caused it, so it is not lost; its claim runs out, and the control plane started again
sends it, with the same idempotency key."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from legato.spec import load_spec_text
from legato.v1 import run_service_pb2 as pb
from tests.http_receiver import Receiver

from .harness import Drill, wait_for

pytestmark = pytest.mark.timeout(150)


def test_a_notification_cut_off_by_a_kill_is_sent_after_the_restart(
    db_url: str, drill: Drill, tmp_path: Path
) -> None:
    with Receiver(hold_first=True) as receiver:
        secrets = tmp_path / "secrets.yaml"
        secrets.write_text("hook-key: drill-signing-key\n")
        cp = drill.server(db_url, extra=("--secrets", str(secrets)))
        client = cp.client()
        client.apply_pipeline(
            load_spec_text(
                textwrap.dedent(
                    f"""
                    name: watched
                    notifications:
                      - on: [started]
                        webhook: {{url: "{receiver.url}/hook", secret: hook-key}}
                    steps:
                      - name: a
                        transform: {{code: "result = 1"}}
                        agent_selector: {{nobody: here}}
                    """
                )
            ).spec
        )
        run_id = client.trigger_run("watched").run.id
        receiver.wait_for(1)  # the send is in flight, and never answered
        cp.kill9()
        killed = time.monotonic()
        cp.start()
        (_, first, _), (_, again, _) = receiver.wait_for(2, within=60)[:2]
        assert again["Idempotency-Key"] == first["Idempotency-Key"]
        assert again["Legato-Run"] == run_id
        assert time.monotonic() - killed < 40

        def delivered() -> bool:
            (row,) = cp.client().list_notifications(run_id=run_id)
            return row.status == pb.NOTIFICATION_STATUS_DELIVERED and row.attempts == 2

        wait_for(delivered, "the notification to be recorded as delivered", 20)
