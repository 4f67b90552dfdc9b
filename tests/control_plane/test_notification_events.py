"""Which notifications an event sends and what the outbox row says (no database), the
Slack text, and the delivery backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from control_plane.access.actors import Actor
from control_plane.access.secrets import Secrets
from control_plane.notifications.channels import Settings, send, slack_text
from control_plane.notifications.delivery import MAX_BACKOFF, backoff
from control_plane.notifications.errors import DeliveryError, RetryableError
from control_plane.notifications.events import RunEvents, outbox_rows
from control_plane.pipelines.registry import Registry
from control_plane.store import notifications as outbox
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from control_plane.store.models import RunRow, ScheduleRow
from control_plane.store.notifications import Notification
from control_plane.store.pipelines import find_pipeline
from legato.spec import load_spec_text

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
SPEC = load_spec_text(
    """
name: nightly
notifications:
  - on: [failed, timed_out]
    webhook: {url: "https://hooks.example.com/legato", secret: hook-key}
  - on: [failed]
    slack: {webhook: slack-url, channel: "#data"}
  - on: [succeeded]
    email: {to: [data@example.com]}
steps:
  - {name: a, transform: {code: "result = 1"}}
"""
).spec


def run(status: str, error: str = "") -> RunRow:
    return RunRow(
        id="01run",
        pipeline="nightly",
        version=3,
        status=status,
        trigger_kind="schedule",
        params={"day": "2026-12-02"},
        logical_time=NOW - timedelta(hours=2),
        create_time=NOW - timedelta(minutes=5),
        start_time=NOW - timedelta(minutes=4),
        end_time=NOW,
        error=error,
    )


def storable(row: RunRow, pipeline_id: int) -> RunRow:
    """``row`` with the columns an insert needs."""
    row.pipeline_id, row.trigger, row.waiting_reason = pipeline_id, {}, ""
    row.trace_id = row.span_id = ""
    return row


def test_an_event_writes_one_row_per_matching_notification() -> None:
    rows = outbox_rows(run("failed", "step 'a' failed: boom"), SPEC, "failed", NOW)
    assert [(r["channel"], r["target"]) for r in rows] == [
        ("webhook", "webhook https://hooks.example.com/legato"),
        ("slack", "slack webhook 'slack-url' #data"),
    ]
    assert [r["idempotency_key"] for r in rows] == ["01run-failed-0", "01run-failed-1"]
    webhook = rows[0]
    assert webhook["settings"] == {"url": "https://hooks.example.com/legato", "secret": "hook-key"}
    facts = webhook["facts"]
    assert facts["status"] == "failed" and facts["error"] == "step 'a' failed: boom"
    assert facts["duration_seconds"] == 240.0 and facts["params"] == {"day": "2026-12-02"}
    assert facts["logical_time"] == "2026-12-03T00:00:00+00:00"
    assert webhook["status"] == "pending" and webhook["next_attempt_time"] == NOW


def test_an_event_no_notification_names_writes_nothing() -> None:
    assert outbox_rows(run("cancelled"), SPEC, "cancelled", NOW) == []
    assert [r["channel"] for r in outbox_rows(run("succeeded"), SPEC, "succeeded", NOW)] == [
        "email"
    ]


def notification(event: str, text: str = "", error: str = "") -> Notification:
    row = outbox_rows(run("failed", error), SPEC, "failed", NOW)[1]
    settings = {**row["settings"], "text": text} if text else row["settings"]
    return Notification(
        id=1,
        idempotency_key=row["idempotency_key"],
        run_id="01run",
        pipeline="nightly",
        event=event,
        channel="slack",
        target=row["target"],
        settings=settings,
        facts=row["facts"],
        status="sending",
        attempts=1,
        next_attempt_time=NOW,
        claim_expire_time=NOW,
        last_error="",
        create_time=NOW,
        deliver_time=None,
    )


def test_slack_says_what_happened_by_default_or_what_its_template_says() -> None:
    assert slack_text(notification("failed", error="step 'a' failed: boom")) == (
        "Pipeline nightly: run 01run failed: step 'a' failed: boom (`legato status 01run`)"
    )
    templated = notification("failed", text="{{ run.pipeline }} v{{ run.version }} {{ event }}")
    assert slack_text(templated) == "nightly v3 failed"


def test_retries_back_off_to_a_cap() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert backoff(20) == MAX_BACKOFF


async def test_the_outbox_rows_are_made_at_the_commit_from_the_run_as_it_is_then(
    db_url: str,
) -> None:
    """A run restamped before the commit is described as it is written; a run taken out of
    the transaction (the scheduler drops a run it built ahead) sends nothing."""
    db = Database(db_url)
    await upgrade(db)
    try:
        await Registry(db).apply(STARTED_SPEC, "", Actor("alice"))
        async with db.read() as session:
            pipeline = await find_pipeline(session, "nightly")
        assert pipeline is not None
        kept, dropped = storable(run("running"), pipeline.id), storable(run("running"), pipeline.id)
        dropped.id = "02run"
        later = NOW + timedelta(seconds=3)
        async with db.write() as session:
            await RunEvents().started(session, kept, STARTED_SPEC, NOW)
            await RunEvents().started(session, dropped, STARTED_SPEC, NOW)
            session.add(kept)
            kept.start_time = later  # the scheduler restamps it at the instant
        async with db.read() as session:
            rows = await outbox.listed(session)
        assert [(r.run_id, r.event) for r in rows] == [("01run", "started")]
        assert rows[0].facts["start_time"] == later.isoformat()
        assert rows[0].next_attempt_time == later
    finally:
        await db.dispose()


STARTED_SPEC = load_spec_text(
    """
name: nightly
notifications:
  - on: [started]
    webhook: {url: "https://hooks.example.com/legato"}
steps:
  - {name: a, transform: {code: "result = 1"}}
"""
).spec


async def test_a_run_that_paused_its_schedule_says_so(db_url: str) -> None:
    """After the schedule's hook paused the schedule in the same transaction (same
    moment), the notifications' hook writes ``schedule_paused`` with the reason."""
    spec = load_spec_text(
        """
name: nightly
schedule: {cron: "0 2 * * *", pause_after_failures: 1}
notifications:
  - on: [schedule_paused]
    webhook: {url: "https://hooks.example.com/legato"}
steps:
  - {name: a, transform: {code: "result = 1"}}
"""
    ).spec
    db = Database(db_url)
    await upgrade(db)
    try:
        await Registry(db).apply(spec, "", Actor("alice"))
        async with db.read() as session:
            pipeline = await find_pipeline(session, "nightly")
        assert pipeline is not None
        failed = storable(run("failed", "step 'a' failed: boom"), pipeline.id)
        async with db.write() as session:
            session.add(failed)
            session.add(  # as the schedule's hook left it, a moment earlier
                ScheduleRow(
                    pipeline_id=pipeline.id,
                    version=1,
                    paused=True,
                    pause_time=NOW,
                    pause_reason="paused after 1 consecutive failed runs",
                    consecutive_failures=1,
                    update_time=NOW,
                )
            )
            await session.flush()
            await RunEvents().finished(session, failed, spec, NOW)
        async with db.read() as session:
            (row,) = await outbox.listed(session)
        assert (row.event, row.idempotency_key) == ("schedule_paused", "01run-schedule_paused-0")
        assert row.facts["schedule"]["reason"] == "paused after 1 consecutive failed runs"
    finally:
        await db.dispose()


async def test_a_url_no_request_can_reach_fails_at_once_and_is_not_retried() -> None:
    hook = notification("failed")
    hook.channel = "webhook"
    hook.settings = {"url": "http://[not-a-host/hook"}
    async with aiohttp.ClientSession() as http:
        with pytest.raises(DeliveryError) as caught:
            await send(hook, http, Settings(Secrets({})))
    assert not isinstance(caught.value, RetryableError)
    assert str(caught.value) == "webhook http://[not-a-host/hook: not a valid URL"
