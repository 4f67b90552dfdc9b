"""``legato notify test`` against real receivers on loopback: every notification of a
pipeline (or of a spec not applied yet) gets one test message now — the webhook signed as
real deliveries are, Slack's answer reported as it came, email refused without an SMTP
relay, PagerDuty's incident opened and closed under a key of its own — and nothing is
written to the outbox, no run is made, and the test is in the activity log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cluster import LEGATO

from control_plane.store import notifications as outbox
from control_plane.store.db import Database
from control_plane.triggers.webhooks import SIGNATURE_HEADER, parse_signature, verify
from legato.errors import RpcError
from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import access_pb2, spec_pb2
from tests.http_receiver import Receiver

pytestmark = pytest.mark.timeout(120)
HOOK_SECRET = "s3cret-signing-key"
TEST_ERROR = "This is a test notification from `legato notify test`"


def spec_text(name: str, hook: str, pagerduty: bool = True) -> str:
    text = f"""
        name: {name}
        notifications:
          - on: [failed]
            webhook: {{url: "{hook}/hook", secret: hook-key, headers: {{X-Team: data}}}}
          - on: [failed]
            slack: {{webhook: slack-url, channel: "#alerts"}}
          - on: [failed, timed_out]
            email: {{to: [ops@example.com]}}
        """
    if pagerduty:
        text += """
          - on: [failed]
            pagerduty: {routing_key: pd-key}
        """
    text += """
        steps:
          - name: extract
            transform: {code: "result = 1"}
        """
    return textwrap.dedent(text).replace("\n\n", "\n")


def spec(name: str, hook: str, pagerduty: bool = True) -> spec_pb2.PipelineSpec:
    return load_spec_text(spec_text(name, hook, pagerduty)).spec


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def slack() -> Iterator[Receiver]:
    with Receiver(texts={404: "no_service"}) as running:
        yield running


@pytest.fixture
def pagerduty() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def plane(
    db_url: str, tmp_path: Path, slack: Receiver, pagerduty: Receiver
) -> Iterator[LocalControlPlane]:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(
        f"hook-key: {HOOK_SECRET}\nslack-url: {slack.url}/slack\npd-key: R0UT1NGKEY\n"
    )
    with LocalControlPlane(
        db=db_url, secrets_file=str(secrets), pagerduty_url=f"{pagerduty.url}/v2/enqueue"
    ) as running:
        yield running


async def _outbox(db_url: str) -> list[outbox.Notification]:
    db = Database(db_url)
    try:
        async with db.read() as session:
            return await outbox.listed(session)
    finally:
        await db.dispose()


def legato(
    plane: LocalControlPlane, *args: str, role: str = "operator"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEGATO, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LEGATO_SERVER": plane.address, "LEGATO_TOKEN": plane.token(role)},
    )


def test_each_channel_is_tried_now_and_nothing_is_stored_or_run(
    db_url: str,
    plane: LocalControlPlane,
    hook: Receiver,
    slack: Receiver,
    pagerduty: Receiver,
) -> None:
    slack.answers = [404]
    admin = plane.client()
    admin.apply_pipeline(spec("nightly", hook.url))
    found = plane.client(role="operator").test_notifications(pipeline="nightly")

    assert found.pipeline == "nightly"
    results = [(r.position, r.channel, r.target, r.ok) for r in found.results]
    assert results == [
        (0, "webhook", f"webhook {hook.url}/hook", True),
        (1, "slack", "slack webhook 'slack-url' #alerts", False),
        (2, "email", "email ops@example.com", False),
        (3, "pagerduty", "pagerduty routing key 'pd-key'", True),
    ]
    webhook, slack_result, email, paged = found.results
    assert webhook.detail == "200 OK"
    assert slack_result.detail == "404 no_service"
    assert email.detail == "the server has no SMTP settings (--smtp-host); nothing was sent"

    # The webhook got a real delivery's headers and signature, about a made-up run.
    ((path, headers, body),) = hook.received
    assert path == "/hook"
    assert headers["Legato-Event"] == "test" and headers["Legato-Run"] == "test"
    assert headers["X-Team"] == "data" and headers["Content-Type"] == "application/json"
    signature = parse_signature(headers[SIGNATURE_HEADER])
    assert verify(signature, body, [("hook-key", HOOK_SECRET)], now=time.time())[0] == "hook-key"
    sent = json.loads(body)
    assert sent["event"] == "test"
    assert headers["Idempotency-Key"] == sent["idempotency_key"]
    assert sent["idempotency_key"].startswith("test-")
    run = sent["run"]
    assert (run["id"], run["pipeline"], run["version"], run["status"]) == (
        "test",
        "nightly",
        1,
        "test",
    )
    assert run["test"] is True and TEST_ERROR in run["error"]

    ((_, _, said),) = slack.received
    message = json.loads(said)
    assert message["channel"] == "#alerts"
    assert message["text"].startswith(f"Pipeline nightly: run test is a test: {TEST_ERROR}")

    # PagerDuty: an incident of the test's own, opened and closed at once.
    trigger, resolve = (json.loads(body) for _, _, body in pagerduty.wait_for(2))
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["routing_key"] == resolve["routing_key"] == "R0UT1NGKEY"
    key = trigger["dedup_key"]
    assert key.startswith("legato/nightly/test/") and resolve["dedup_key"] == key
    assert key in paged.detail and "triggered and resolved" in paged.detail

    # Nothing in the outbox, no run; the activity log has the test.
    assert asyncio.run(_outbox(db_url)) == []
    assert list(admin.list_notifications()) == []
    assert list(admin.list_runs()) == []
    (entry,) = list(admin.list_audit_events(action="TestNotifications"))
    assert entry.pipeline == "nightly" and entry.actor == "tester-operator"
    assert entry.resource == "pipelines/nightly"

    # Only some of them, by position.
    again = admin.test_notifications(pipeline="nightly", positions=[3, 0])
    assert [(r.position, r.ok) for r in again.results] == [(0, True), (3, True)]
    assert len(hook.received) == 2 and len(slack.received) == 1
    with pytest.raises(RpcError) as caught:
        admin.test_notifications(pipeline="nightly", positions=[1, 7])
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "nightly has 4 notifications, at positions 0 to 3" in caught.value.message
    assert [v.field for v in caught.value.field_violations] == ["positions[1]"]
    assert len(slack.received) == 1  # an invalid request sends nothing


def test_the_cli_prints_a_line_per_channel_and_fails_when_one_failed(
    plane: LocalControlPlane, hook: Receiver, slack: Receiver
) -> None:
    slack.answers = [404]
    plane.client().apply_pipeline(spec("nightly", hook.url, pagerduty=False))

    shown = legato(plane, "notify", "test", "--pipeline", "nightly")
    assert shown.returncode == 1, shown.stderr
    assert shown.stdout.splitlines() == [
        f"✓ webhook {hook.url}/hook: 200 OK",
        "✗ slack webhook 'slack-url' #alerts: 404 no_service",
        "✗ email ops@example.com: the server has no SMTP settings (--smtp-host); nothing was sent",
    ]
    assert shown.stderr == ""

    only = legato(plane, "notify", "test", "--pipeline", "nightly", "--position", "0", "-o", "json")
    assert only.returncode == 0, only.stderr
    assert json.loads(only.stdout) == {
        "pipeline": "nightly",
        "results": [
            {  # proto3 JSON leaves out position 0, as every default value
                "channel": "webhook",
                "target": f"webhook {hook.url}/hook",
                "ok": True,
                "detail": "200 OK",
            }
        ],
    }

    missing = legato(plane, "notify", "test", "--pipeline", "nope")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("legato notify: pipeline 'nope' does not exist")
    assert "Traceback" not in missing.stderr

    plane.client().apply_pipeline(
        load_spec_text("name: quiet\nsteps:\n  - {name: a, transform: {code: 'result = 1'}}\n").spec
    )
    quiet = legato(plane, "notify", "test", "--pipeline", "quiet")
    assert quiet.returncode == 1
    assert quiet.stderr.startswith("legato notify: quiet has no notifications")


def test_a_spec_file_is_tested_before_it_is_applied(
    plane: LocalControlPlane, hook: Receiver, slack: Receiver, tmp_path: Path
) -> None:
    draft = tmp_path / "draft.yaml"
    draft.write_text(spec_text("draft", hook.url, pagerduty=False))
    shown = legato(plane, "notify", "test", "-f", str(draft), "--position", "0", "--position", "1")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        f"✓ webhook {hook.url}/hook: 200 OK",
        "✓ slack webhook 'slack-url' #alerts: 200 OK",
    ]
    sent = json.loads(hook.received[0][2])
    assert sent["run"]["pipeline"] == "draft" and sent["run"]["version"] == 0
    with pytest.raises(RpcError) as caught:
        plane.client().get_pipeline("draft")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND  # tested, not applied
    (entry,) = list(plane.client().list_audit_events(action="TestNotifications"))
    assert entry.pipeline == "draft"

    # An invalid spec is validated first, like `legato validate`, and nothing is sent.
    broken = tmp_path / "broken.yaml"
    broken.write_text(draft.read_text().replace(f'"{hook.url}/hook"', '"not a url"'))
    refused = legato(plane, "notify", "test", "-f", str(broken))
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(f"{broken}:5: notifications[0].webhook.url:")
    with pytest.raises(RpcError) as invalid:
        plane.client().test_notifications(spec=load_spec_text(broken.read_text()).spec)
    assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert invalid.value.reason == "INVALID_PIPELINE_SPEC"
    assert [v.field for v in invalid.value.field_violations] == ["notifications[0].webhook.url"]
    assert len(hook.received) == 1


def test_a_viewer_may_not_send_tests(plane: LocalControlPlane, hook: Receiver) -> None:
    plane.client().apply_pipeline(spec("nightly", hook.url, pagerduty=False))
    with pytest.raises(RpcError) as caught:
        plane.client(role="viewer").test_notifications(pipeline="nightly")
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "TestNotifications needs the operator role" in caught.value.message
    assert hook.received == []
    (entry,) = list(plane.client().list_audit_events(action="TestNotifications"))
    assert entry.outcome == access_pb2.AUDIT_OUTCOME_DENIED
    assert entry.resource == "pipelines/nightly" and entry.actor == "tester-viewer"


def test_a_receiver_that_never_answers_does_not_hold_up_the_others(
    db_url: str, tmp_path: Path, hook: Receiver
) -> None:
    with Receiver(hold_first=True) as silent, LocalControlPlane(db=db_url) as plane:
        plane.client().apply_pipeline(
            load_spec_text(
                textwrap.dedent(
                    f"""
                    name: nightly
                    notifications:
                      - {{on: [failed], webhook: {{url: "{silent.url}/hook"}}}}
                      - {{on: [failed], webhook: {{url: "{hook.url}/hook"}}}}
                    steps:
                      - {{name: a, transform: {{code: "result = 1"}}}}
                    """
                )
            ).spec
        )
        began = time.monotonic()
        found = plane.client().test_notifications(pipeline="nightly")
        took = time.monotonic() - began
    assert [(r.ok, r.detail) for r in found.results] == [
        (False, "no answer within 5 s"),
        (True, "200 OK"),
    ]
    assert 4.5 < took < 15
