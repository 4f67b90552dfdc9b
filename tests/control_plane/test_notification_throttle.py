"""Throttling, recoveries and the server's default notifications, on a real store: which
rows an event writes and which of them are sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from control_plane.access.actors import Actor
from control_plane.errors import FailedPrecondition
from control_plane.notifications.defaults import load_defaults
from control_plane.notifications.events import RunEvents
from control_plane.pipelines.registry import Registry
from control_plane.store import notifications as outbox
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from control_plane.store.models import RunRow
from control_plane.store.pipelines import find_pipeline
from legato.spec import load_spec_text
from legato.v1 import spec_pb2

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


def spec_of(notifications: str, *, extra: str = "") -> spec_pb2.PipelineSpec:
    return load_spec_text(
        f"name: nightly\n{extra}notifications:\n{notifications}"
        "steps:\n  - {name: a, transform: {code: 'result = 1'}}\n"
    ).spec


FAILURES = spec_of("  - on: [failed]\n    webhook: {url: 'https://hooks.example.com/a'}\n")


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await upgrade(database)
    await Registry(database).apply(FAILURES, "", Actor("alice"))
    try:
        yield database
    finally:
        await database.dispose()


def run_row(
    pipeline_id: int, number: int, status: str, at: datetime, trigger_kind: str = "schedule"
) -> RunRow:
    """Run ``number`` of nightly, ended as ``status`` at ``at``."""
    return RunRow(
        id=f"{number:02d}run",
        pipeline_id=pipeline_id,
        pipeline="nightly",
        version=1,
        status=status,
        trigger_kind=trigger_kind,
        trigger={},
        params={},
        waiting_reason="",
        trace_id="",
        span_id="",
        create_time=at - timedelta(seconds=30),
        start_time=at - timedelta(seconds=20),
        end_time=at,
        error="boom" if status == "failed" else "",
    )


async def nightly_id(db: Database) -> int:
    async with db.read() as session:
        pipeline = await find_pipeline(session, "nightly")
    assert pipeline is not None
    return pipeline.id


async def finish(
    db: Database,
    spec: spec_pb2.PipelineSpec,
    number: int,
    status: str,
    at: datetime,
    events: RunEvents | None = None,
) -> None:
    """Run ``number`` of nightly ends as ``status`` at ``at`` (its hook writes)."""
    row = run_row(await nightly_id(db), number, status, at)
    async with db.write() as session:
        session.add(row)
        await (events or RunEvents()).finished(session, row, spec, at)


async def sent(db: Database) -> list[outbox.Notification]:
    async with db.read() as session:
        return await outbox.listed(session)


async def test_a_repeated_failure_within_the_window_is_suppressed_and_counted_on_the_next_one(
    db: Database,
) -> None:
    for number, minutes in enumerate([0, 2, 4, 11], start=1):
        await finish(db, FAILURES, number, "failed", NOW + timedelta(minutes=minutes))
    rows = sorted(await sent(db), key=lambda row: row.run_id)
    assert [(row.run_id, row.status) for row in rows] == [
        ("01run", "pending"),
        ("02run", "suppressed"),
        ("03run", "suppressed"),
        ("04run", "pending"),
    ]
    assert "suppressed" not in rows[0].facts
    assert rows[3].facts["suppressed"] == {
        "count": 2,
        "event": "failed",
        "since": (NOW + timedelta(minutes=2)).isoformat(),
    }


async def test_a_channel_that_hears_both_outcomes_always_tells_the_latest(db: Database) -> None:
    """Flapping between failure and success: every message is a change of state, so none
    is suppressed (a channel's last message is never stale); repeats of one are."""
    both = spec_of(
        "  - on: [failed, succeeded]\n    webhook: {url: 'https://hooks.example.com/a'}\n"
    )
    outcomes = ["failed", "succeeded", "failed", "failed", "succeeded"]
    for number, status in enumerate(outcomes, start=1):
        await finish(db, both, number, status, NOW + timedelta(minutes=number))
    rows = sorted(await sent(db), key=lambda row: row.run_id)
    assert [(row.event, row.status) for row in rows] == [
        ("failed", "pending"),
        ("succeeded", "pending"),
        ("failed", "pending"),
        ("failed", "suppressed"),
        ("succeeded", "pending"),
    ]
    assert rows[4].facts["suppressed"]["count"] == 1


async def test_throttle_0s_sends_every_one_and_channels_are_throttled_apart(db: Database) -> None:
    spec = spec_of(
        "  - on: [failed]\n    webhook: {url: 'https://hooks.example.com/a'}\n    throttle: 0s\n"
        "  - on: [failed]\n    webhook: {url: 'https://hooks.example.com/b'}\n"
        "  - on: [failed]\n    webhook: {url: 'https://hooks.example.com/c'}\n    throttle: 1h\n"
    )
    for number, minutes in enumerate([0, 30, 61], start=1):
        await finish(db, spec, number, "failed", NOW + timedelta(minutes=minutes))
    rows = await sent(db)
    by_target: dict[str, list[str]] = {}
    for row in sorted(rows, key=lambda row: row.run_id):
        by_target.setdefault(row.target.rsplit("/", 1)[1], []).append(row.status)
    assert by_target == {
        "a": ["pending", "pending", "pending"],
        "b": ["pending", "pending", "pending"],  # 10 minutes by default
        "c": ["pending", "suppressed", "pending"],
    }


async def test_rows_written_earlier_in_the_same_transaction_count(db: Database) -> None:
    pipeline_id = await nightly_id(db)
    async with db.write() as session:
        for number in (1, 2):
            row = run_row(pipeline_id, number, "failed", NOW, trigger_kind="api")
            session.add(row)
            await RunEvents().finished(session, row, FAILURES, NOW)
    assert sorted(row.status for row in await sent(db)) == ["pending", "suppressed"]


async def test_a_success_after_a_failure_is_a_recovery(db: Database) -> None:
    spec = spec_of("  - on: [recovered]\n    webhook: {url: 'https://hooks.example.com/a'}\n")
    await finish(db, spec, 1, "succeeded", NOW)
    await finish(db, spec, 2, "failed", NOW + timedelta(minutes=1))
    await finish(db, spec, 3, "cancelled", NOW + timedelta(minutes=2))
    await finish(db, spec, 4, "succeeded", NOW + timedelta(minutes=3))
    await finish(db, spec, 5, "succeeded", NOW + timedelta(minutes=4))
    rows = await sent(db)
    assert [(row.run_id, row.event, row.idempotency_key) for row in rows] == [
        ("04run", "recovered", "04run-recovered-0")
    ]
    assert rows[0].facts["previous"] == "failed"


async def test_the_server_s_defaults_go_to_every_pipeline_that_does_not_opt_out(
    db: Database, tmp_path: Path
) -> None:
    file = tmp_path / "defaults.yaml"
    file.write_text(
        "notifications:\n  - on: [failed]\n    webhook: {url: 'https://oncall.example.com/hook'}\n"
    )
    events = RunEvents(load_defaults(str(file)))
    await finish(db, FAILURES, 1, "failed", NOW, events)
    opted_out = spec_of(
        "  - on: [failed]\n    webhook: {url: 'https://hooks.example.com/a'}\n",
        extra="default_notifications: false\n",
    )
    await finish(db, opted_out, 2, "failed", NOW + timedelta(hours=1), events)
    rows = sorted(await sent(db), key=lambda row: row.idempotency_key)
    assert [(row.idempotency_key, row.target) for row in rows] == [
        ("01run-failed-0", "webhook https://hooks.example.com/a"),
        ("01run-failed-d0", "webhook https://oncall.example.com/hook"),
        ("02run-failed-0", "webhook https://hooks.example.com/a"),
    ]


def test_a_bad_defaults_file_names_the_file_the_line_and_the_field(tmp_path: Path) -> None:
    file = tmp_path / "defaults.yaml"
    file.write_text(
        "notifications:\n"
        "  - on: [failed]\n"
        "    webhook: {url: 'ftp://oncall.example.com'}\n"
        "  - on: [failed]\n"
        "    throttle: 30d\n"
        "    slack: {webhook: oncall}\n"
    )
    with pytest.raises(FailedPrecondition) as caught:
        load_defaults(str(file))
    text = str(caught.value)
    assert text.startswith(f"--notifications {file} has 2 problem(s):")
    assert f"{file}:3: notifications[0].webhook.url:" in text
    assert f"{file}:5: notifications[1].throttle:" in text

    file.write_text("name: x\nnotifications: []\n")
    with pytest.raises(FailedPrecondition, match="only a notifications: list is read"):
        load_defaults(str(file))
    with pytest.raises(FailedPrecondition, match="cannot read it"):
        load_defaults(str(tmp_path / "missing.yaml"))
