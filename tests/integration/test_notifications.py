"""Notifications delivered to real HTTP receivers on loopback: a pipeline's webhook and
Slack notifications on its runs' events, signed, with one idempotency key per notification
kept across retries; a receiver that fails is tried again, one that refuses is not, and
every delivery is recorded in the outbox."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import LEGATO, running_cluster

from control_plane.store import notifications as outbox
from control_plane.store.db import Database
from control_plane.triggers.webhooks import SIGNATURE_HEADER, parse_signature, verify
from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import run_pb2
from legato.v1 import run_service_pb2 as pb
from tests.http_receiver import Receiver

pytestmark = pytest.mark.timeout(120)
HOOK_SECRET = "s3cret-signing-key"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def spec(url: str) -> str:
    """Every event sent (``throttle: 0s``): these tests count deliveries."""
    return textwrap.dedent(
        f"""
        name: nightly
        notifications:
          - on: [started, cancelled]
            webhook: {{url: "{url}/hook", secret: hook-key, headers: {{X-Team: data}}}}
            throttle: 0s
          - on: [cancelled]
            slack: {{webhook: slack-url, channel: "#data"}}
            throttle: 0s
          - on: [cancelled]
            slack: {{webhook: slack-url, text: "{{{{ run.pipeline }}}} {{{{ event }}}}"}}
            throttle: 0s
        steps:
          - name: extract
            transform: {{code: "result = 1"}}
            agent_selector: {{nobody: here}}
        """
    )


def plane_with(db_url: str, tmp_path: Path, receiver: Receiver) -> LocalControlPlane:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(f"hook-key: {HOOK_SECRET}\nslack-url: {receiver.url}/slack\n")
    return LocalControlPlane(db=db_url, secrets_file=str(secrets))


async def stored(db_url: str) -> list[outbox.Notification]:
    db = Database(db_url)
    try:
        async with db.read() as session:
            return await outbox.listed(session)
    finally:
        await db.dispose()


def test_a_run_s_events_reach_the_webhook_and_slack(
    db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    with plane_with(db_url, tmp_path, receiver) as plane:
        client = plane.client()
        client.apply_pipeline(load_spec_text(spec(receiver.url)).spec)
        run_id = client.trigger_run("nightly").run.id
        (path, headers, body), *_ = receiver.wait_for(1)
        assert path == "/hook"
        started = json.loads(body)
        assert started["event"] == "started" and started["run"]["id"] == run_id
        assert started["run"]["pipeline"] == "nightly"
        assert headers["Idempotency-Key"] == started["idempotency_key"]
        assert headers["Legato-Event"] == "started" and headers["Legato-Run"] == run_id
        assert headers["X-Team"] == "data"
        signature = parse_signature(headers[SIGNATURE_HEADER])
        assert (
            verify(signature, body, [("hook-key", HOOK_SECRET)], now=time.time())[0] == "hook-key"
        )

        client.cancel_run(run_id, reason="not today")
        received = receiver.wait_for(4)
        by_path: dict[str, list[dict[str, Any]]] = {}
        for path, _, body in received[1:]:
            by_path.setdefault(path, []).append(json.loads(body))
        (cancelled,) = by_path["/hook"]
        assert cancelled["event"] == "cancelled"
        assert cancelled["run"]["status"] == "cancelled"
        assert cancelled["run"]["error"] == "not today"
        templated, default = sorted(by_path["/slack"], key=lambda m: m["text"].startswith("P"))
        assert templated == {"text": "nightly cancelled"}  # the channel's template
        assert default["channel"] == "#data"
        assert default["text"] == (
            f"Pipeline nightly: run {run_id} was cancelled: not today (`legato status {run_id}`)"
        )

        delivered = pb.NOTIFICATION_STATUS_DELIVERED
        deadline = time.monotonic() + 10
        listed = list(client.list_notifications(run_id=run_id))
        while any(n.status != delivered for n in listed) and time.monotonic() < deadline:
            time.sleep(0.1)
            listed = list(client.list_notifications(run_id=run_id))
        assert sorted((n.event, n.channel, n.attempts) for n in listed) == [
            ("cancelled", "slack", 1),
            ("cancelled", "slack", 1),
            ("cancelled", "webhook", 1),
            ("started", "webhook", 1),
        ]
        assert {n.status for n in listed} == {delivered}
        shown = subprocess.run(
            [LEGATO, "notifications", run_id],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "LEGATO_SERVER": plane.address, "LEGATO_TOKEN": plane.token()},
        )
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0].split() == [
            "TIME",
            "RUN",
            "PIPELINE",
            "EVENT",
            "TARGET",
            "STATUS",
            "ATTEMPTS",
            "LAST",
            "ERROR",
        ]
        assert len(lines) == 5 and all("delivered" in line for line in lines[1:])
        assert f"webhook {receiver.url}/hook" in shown.stdout
        assert "slack webhook 'slack-url' #data" in shown.stdout


def test_a_failing_receiver_is_tried_again_with_the_same_key_and_a_refusal_is_final(
    db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.answers = [503]
    with plane_with(db_url, tmp_path, receiver) as plane:
        client = plane.client()
        client.apply_pipeline(load_spec_text(spec(receiver.url)).spec)
        client.trigger_run("nightly")
        first, second = receiver.wait_for(2, within=30)[:2]
        assert first[1]["Idempotency-Key"] == second[1]["Idempotency-Key"]
        rows = asyncio.run(stored(db_url))
        assert [(row.status, row.attempts) for row in rows] == [("delivered", 2)]

        receiver.answers = [400]
        run_id = client.trigger_run("nightly").run.id
        receiver.wait_for(3)
        deadline = time.monotonic() + 10
        mine: list[outbox.Notification] = []
        while time.monotonic() < deadline:
            mine = [row for row in asyncio.run(stored(db_url)) if row.run_id == run_id]
            if mine and mine[0].status != "sending":
                break
            time.sleep(0.1)
        (row,) = mine
        assert row.status == "failed" and row.attempts == 1
        assert row.last_error == f"webhook {receiver.url}/hook answered 400: ok"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_replicas_on_postgresql_send_each_notification_once(
    db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    with (
        plane_with(db_url, tmp_path, receiver) as one,
        plane_with(db_url, tmp_path, receiver) as two,
    ):
        client = one.client()
        client.apply_pipeline(load_spec_text(spec(receiver.url)).spec)
        runs = [client.trigger_run("nightly").run.id for _ in range(10)]
        for run_id in runs:
            two.client().cancel_run(run_id)
        # Per run: started and cancelled to the webhook, two Slack messages.
        received = receiver.wait_for(40, within=60)
        time.sleep(1.5)  # anything sent twice would have come by now
        keys = [headers["Idempotency-Key"] for path, headers, _ in received if path == "/hook"]
        assert len(keys) == len(set(keys)) == 20
        assert len([path for path, _, _ in receiver.received if path == "/slack"]) == 20


def test_a_retried_step_and_the_final_failure_are_told_apart(
    db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """``retrying`` for each retry of a step (with the step, its attempt and error), then
    ``failed`` once the last retry failed."""
    pipeline = textwrap.dedent(
        f"""
        name: flaky
        retry: {{max_retries: 1}}
        notifications:
          - on: [retrying, failed]
            webhook: {{url: "{receiver.url}/hook"}}
        steps:
          - name: load
            transform: {{code: "raise RuntimeError('warehouse is down')"}}
        """
    )
    with running_cluster(db_url, tmp_path) as cluster:
        cluster.start_agent("a1")
        cluster.apply(pipeline)
        run = cluster.run("flaky")
        assert run.status == run_pb2.RUN_STATUS_FAILED
        bodies = [json.loads(body) for _, _, body in receiver.wait_for(2)]
        assert [b["event"] for b in bodies] == ["retrying", "failed"]
        step = bodies[0]["run"]["step"]
        assert (step["name"], step["attempt"], step["attempts_total"]) == ("load", 1, 2)
        assert "warehouse is down" in step["error"] and step["failure_kind"] == "error"
        assert bodies[0]["idempotency_key"] == f"{run.id}-retrying-load-1-0"
        assert bodies[1]["run"]["status"] == "failed"
