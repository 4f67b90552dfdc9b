"""The scheduler against a real control plane and database (SQLite and PostgreSQL), with an
injectable clock: nothing here waits for a fire time, the tests move time and tick."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import run_pb2

pytestmark = pytest.mark.timeout(120)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, text: str) -> datetime:
        self.now = datetime.fromisoformat(text)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 26, 12, 0, tzinfo=UTC))


@pytest.fixture
def plane(db_url: str, clock: FakeClock) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(db=db_url, clock=clock, scheduler_loop=False) as running:
        yield running


def apply(plane: LocalControlPlane, text: str) -> None:
    plane.client().apply_pipeline(load_spec_text(text).spec)


def pipeline(
    name: str,
    cron: str,
    *,
    timezone: str = "UTC",
    extra: str = "",
    steps: str = "  - name: work\n    transform: {code: 'result = {}'}\n",
) -> str:
    return (
        f"name: {name}\nschedule:\n  cron: '{cron}'\n  timezone: {timezone}\n{extra}steps:\n{steps}"
    )


# A step that fails at once without an agent: the control plane runs trigger steps, and
# this one names a pipeline that does not exist.
FAILING = "  - name: fail\n    trigger: {pipeline: no-such-pipeline}\n"


def runs_of(plane: LocalControlPlane, name: str) -> list[run_pb2.Run]:
    found = list(plane.client().list_runs(pipeline=name))
    return sorted(found, key=lambda r: r.trigger.logical_time.ToDatetime())


def logical(run: run_pb2.Run) -> str:
    return run.trigger.logical_time.ToDatetime(tzinfo=UTC).isoformat()


def wait_until(condition: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_fire_time_makes_exactly_one_run(plane: LocalControlPlane, clock: FakeClock) -> None:
    apply(plane, pipeline("report", "0 9 * * *", timezone="Europe/Berlin"))
    state = plane.client().get_pipeline("report").schedule
    assert state.next_fire_time.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 27, 8, 0, tzinfo=UTC)
    clock.set("2026-03-27T07:59:59.900+00:00")
    assert plane.tick() == []
    clock.set("2026-03-27T08:00:00.050+00:00")
    created = plane.tick()
    assert len(created) == 1
    assert plane.tick() == []  # the same fire time never fires twice
    (run,) = runs_of(plane, "report")
    assert run.trigger.kind == run_pb2.TRIGGER_KIND_SCHEDULE
    assert logical(run) == "2026-03-27T08:00:00+00:00"
    assert run.trigger.actor == "scheduler"
    state = plane.client().get_pipeline("report").schedule
    assert state.next_fire_time.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)


def test_a_wall_time_skipped_by_dst_fires_once_at_the_first_valid_instant(
    plane: LocalControlPlane, clock: FakeClock
) -> None:
    apply(plane, pipeline("nightly", "30 2 * * *", timezone="Europe/Berlin"))
    preview = plane.client().preview_schedule("nightly", count=3)
    times = [(f.time.ToDatetime(tzinfo=UTC).isoformat(), f.dst_note) for f in preview.fire_times]
    assert times[0] == ("2026-03-27T01:30:00+00:00", "")
    assert times[2][0] == "2026-03-29T01:00:00+00:00"
    assert "02:30 does not exist" in times[2][1] and "03:00 CEST" in times[2][1]
    for moment in ("2026-03-27T01:30:01", "2026-03-28T01:30:01", "2026-03-29T01:00:01"):
        clock.set(moment + "+00:00")
        assert len(plane.tick()) == 1
    assert [logical(r) for r in runs_of(plane, "nightly")] == [
        "2026-03-27T01:30:00+00:00",
        "2026-03-28T01:30:00+00:00",
        "2026-03-29T01:00:00+00:00",
    ]


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        ("none", []),
        ("latest", ["2026-03-27T05:00:00+00:00"]),
        ("all", [f"2026-03-27T0{h}:00:00+00:00" for h in (1, 2, 3, 4, 5)]),
    ],
)
def test_catchup_after_downtime(
    plane: LocalControlPlane, clock: FakeClock, catchup: str, expected: list[str]
) -> None:
    extra = f"  catchup: {catchup}\n  overlap: allow\n"
    clock.set("2026-03-27T00:30:00+00:00")
    apply(plane, pipeline("hourly", "0 * * * *", extra=extra))
    # Down from 00:30 to 05:30: 01:00 to 05:00 were missed.
    clock.set("2026-03-27T05:30:00+00:00")
    plane.tick()
    assert [logical(r) for r in runs_of(plane, "hourly")] == expected
    state = plane.client().get_pipeline("hourly").schedule
    assert state.next_fire_time.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 27, 6, tzinfo=UTC)


@pytest.mark.parametrize("catchup", ["none", "latest"])
def test_an_on_time_fire_time_supersedes_missed_ones(
    plane: LocalControlPlane, clock: FakeClock, catchup: str
) -> None:
    clock.set("2026-03-27T00:30:00+00:00")
    apply(plane, pipeline("hourly", "0 * * * *", extra=f"  catchup: {catchup}\n"))
    # Back 20 s after 05:00: that fire time is on time (within the grace); 01:00-04:00 missed.
    clock.set("2026-03-27T05:00:20+00:00")
    plane.tick()
    assert [logical(r) for r in runs_of(plane, "hourly")] == ["2026-03-27T05:00:00+00:00"]


def test_overlap_skip_records_the_skipped_fire_time(
    plane: LocalControlPlane, clock: FakeClock
) -> None:
    clock.set("2026-03-27T00:30:00+00:00")
    apply(plane, pipeline("busy", "0 * * * *", extra="  overlap: skip\n"))
    clock.set("2026-03-27T01:00:01+00:00")
    (first,) = plane.tick()  # no agent: it stays running
    clock.set("2026-03-27T02:00:01+00:00")
    (second,) = plane.tick()
    skipped = plane.client().get_run(second)
    assert skipped.status == run_pb2.RUN_STATUS_SKIPPED
    assert skipped.error == f"overlap policy skip: run {first} is still active"
    assert logical(skipped) == "2026-03-27T02:00:00+00:00"


def test_overlap_queue_waits_and_says_for_whom(plane: LocalControlPlane, clock: FakeClock) -> None:
    clock.set("2026-03-27T00:30:00+00:00")
    apply(plane, pipeline("queued", "0 * * * *"))
    clock.set("2026-03-27T01:00:01+00:00")
    (first,) = plane.tick()
    clock.set("2026-03-27T02:00:01+00:00")
    (second,) = plane.tick()
    waiting = plane.client().get_run(second)
    assert waiting.status == run_pb2.RUN_STATUS_QUEUED
    assert waiting.waiting_reason == f"waiting: overlap policy queue; run {first} is still active"
    plane.client().cancel_run(first)
    wait_until(
        lambda: plane.client().get_run(second).status == run_pb2.RUN_STATUS_RUNNING,
        "the queued run to start",
    )


def test_overlap_cancel_previous(plane: LocalControlPlane, clock: FakeClock) -> None:
    clock.set("2026-03-27T00:30:00+00:00")
    apply(plane, pipeline("latest-only", "0 * * * *", extra="  overlap: cancel_previous\n"))
    clock.set("2026-03-27T01:00:01+00:00")
    (first,) = plane.tick()
    clock.set("2026-03-27T02:00:01+00:00")
    (second,) = plane.tick()
    old = plane.client().get_run(first)
    assert old.status == run_pb2.RUN_STATUS_CANCELLED
    assert "overlap: cancel_previous" in old.error
    assert plane.client().get_run(second).status == run_pb2.RUN_STATUS_RUNNING


def test_overlap_allow_up_to_max_concurrent_runs(
    plane: LocalControlPlane, clock: FakeClock
) -> None:
    clock.set("2026-03-27T00:30:00+00:00")
    extra = "  overlap: allow\nlimits: {max_concurrent_runs: 2}\n"
    apply(plane, pipeline("parallel", "0 * * * *", extra=extra))
    created = []
    for hour in (1, 2, 3):
        clock.set(f"2026-03-27T0{hour}:00:01+00:00")
        created += plane.tick()
    statuses = [plane.client().get_run(r).status for r in created]
    assert statuses == [run_pb2.RUN_STATUS_RUNNING] * 2 + [run_pb2.RUN_STATUS_QUEUED]


def test_failed_runs_never_block_and_pause_the_schedule_after_n(
    plane: LocalControlPlane, clock: FakeClock
) -> None:
    clock.set("2026-03-27T00:30:00+00:00")
    extra = "  pause_after_failures: 2\n"
    apply(plane, pipeline("flaky", "0 * * * *", extra=extra, steps=FAILING))
    for hour in (1, 2):
        clock.set(f"2026-03-27T0{hour}:00:01+00:00")
        (run_id,) = plane.tick()
        wait_until(
            lambda run_id=run_id: (
                plane.client().get_run(run_id).status == run_pb2.RUN_STATUS_FAILED
            ),
            "the run to fail",
        )
    state = plane.client().get_pipeline("flaky").schedule
    assert state.paused and state.consecutive_failures == 2
    assert state.pause_reason.startswith("paused after 2 consecutive failed runs")
    assert run_id in state.pause_reason
    assert any(
        line.text.startswith("Schedule paused: ") for line in plane.client().get_run_logs(run_id)
    )
    preview = plane.client().preview_schedule("flaky")
    assert preview.waiting_reason.startswith("not firing: paused — paused after 2")
    clock.set("2026-03-27T03:00:01+00:00")
    assert plane.tick() == []  # paused: nothing fires
    resumed = plane.client().resume_schedule("flaky").schedule
    assert not resumed.paused and resumed.consecutive_failures == 0
    assert resumed.next_fire_time.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 27, 4, tzinfo=UTC)
    clock.set("2026-03-27T04:00:01+00:00")
    assert len(plane.tick()) == 1


def test_pause_by_hand_and_archive(plane: LocalControlPlane, clock: FakeClock) -> None:
    clock.set("2026-03-27T00:30:00+00:00")
    apply(plane, pipeline("manual", "0 * * * *"))
    paused = plane.client().pause_schedule("manual", reason="warehouse migration").schedule
    assert paused.paused and paused.pause_reason == "warehouse migration"
    clock.set("2026-03-27T01:00:01+00:00")
    assert plane.tick() == []
    plane.client().resume_schedule("manual")
    plane.client().archive_pipeline("manual")
    clock.set("2026-03-27T02:00:01+00:00")
    assert plane.tick() == []
    assert "archived" in plane.client().preview_schedule("manual").waiting_reason
    plane.client().restore_pipeline("manual")
    clock.set("2026-03-27T03:00:01+00:00")
    assert [logical(plane.client().get_run(r)) for r in plane.tick()] == [
        "2026-03-27T03:00:00+00:00"
    ]


def test_a_new_cron_takes_effect_at_its_next_fire_time(
    plane: LocalControlPlane, clock: FakeClock
) -> None:
    clock.set("2026-03-27T00:30:00+00:00")
    apply(plane, pipeline("changing", "0 * * * *"))
    apply(plane, pipeline("changing", "45 * * * *"))
    state = plane.client().get_pipeline("changing").schedule
    assert state.next_fire_time.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 27, 0, 45, tzinfo=UTC)
    clock.set("2026-03-27T00:45:01+00:00")
    assert len(plane.tick()) == 1


def test_a_restart_neither_loses_nor_doubles_a_fire_time(db_url: str, clock: FakeClock) -> None:
    clock.set("2026-03-27T08:59:50+00:00")
    with LocalControlPlane(db=db_url, clock=clock, scheduler_loop=False) as first:
        apply(first, pipeline("steady", "0 9 * * *"))
        assert first.tick() == []
    # Down across 09:00; back 20 s later: the fire time is on time and fires once.
    clock.set("2026-03-27T09:00:20+00:00")
    with LocalControlPlane(db=db_url, clock=clock, scheduler_loop=False) as second:
        assert len(second.tick()) == 1
    clock.set("2026-03-27T09:00:40+00:00")
    with LocalControlPlane(db=db_url, clock=clock, scheduler_loop=False) as third:
        assert third.tick() == []
        assert len(runs_of(third, "steady")) == 1


def test_the_loop_fires_on_time_by_itself(db_url: str) -> None:
    # A clock two seconds before 09:00 that then runs at real speed.
    offset = datetime(2026, 3, 27, 8, 59, 58, tzinfo=UTC) - datetime.now(UTC)
    with LocalControlPlane(db=db_url, clock=lambda: datetime.now(UTC) + offset) as plane:
        apply(plane, pipeline("by-itself", "0 9 * * *"))
        wait_until(lambda: len(runs_of(plane, "by-itself")) == 1, "the scheduled run", 10)
        (run,) = runs_of(plane, "by-itself")
        lag = run.create_time.ToDatetime(tzinfo=UTC) - datetime(2026, 3, 27, 9, tzinfo=UTC)
        assert timedelta(0) <= lag < timedelta(seconds=1)


def test_two_replicas_make_one_run_per_fire_time(postgres_url: str, clock: FakeClock) -> None:
    clock.set("2026-03-27T08:30:00+00:00")
    with (
        LocalControlPlane(db=postgres_url, clock=clock, scheduler_loop=False) as one,
        LocalControlPlane(db=postgres_url, clock=clock, scheduler_loop=False) as two,
    ):
        for i in range(20):
            apply(one, pipeline(f"shared-{i}", "0 9 * * *"))
        clock.set("2026-03-27T09:00:00.500+00:00")
        created: list[list[str]] = [[], []]
        threads = [
            threading.Thread(target=lambda i=i, p=p: created[i].extend(p.tick()))
            for i, p in enumerate((one, two))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(created[0]) + len(created[1]) == 20
        total = sum(len(runs_of(one, f"shared-{i}")) for i in range(20))
        assert total == 20


# Succeeds without an agent: the control plane runs trigger steps, and this one does not
# wait for the run it starts.
QUICK = "  - name: kick\n    trigger: {pipeline: sink, wait: false}\n"
SINK = "name: sink\nsteps:\n  - name: noop\n    transform: {code: 'result = {}'}\n"


def test_backfill_dry_run_and_only_missing(plane: LocalControlPlane, clock: FakeClock) -> None:
    clock.set("2026-03-28T12:00:00+00:00")
    apply(plane, SINK)
    apply(plane, pipeline("daily", "0 6 * * *", timezone="Europe/Berlin", steps=QUICK))
    client = plane.client()
    start, end = datetime(2026, 3, 20, tzinfo=UTC), datetime(2026, 3, 25, tzinfo=UTC)
    dry = client.create_backfill("daily", start, end, dry_run=True)
    assert not dry.HasField("backfill")
    assert [t.ToDatetime(tzinfo=UTC).isoformat() for t in dry.logical_times] == [
        f"2026-03-{d}T05:00:00+00:00" for d in (20, 21, 22, 23, 24)
    ]
    assert list(client.list_runs(pipeline="daily")) == []  # a dry run creates nothing
    first = client.create_backfill("daily", start, datetime(2026, 3, 23, tzinfo=UTC)).backfill
    assert first.runs_total == 3
    wait_until(
        lambda: client.get_backfill(first.id).status == run_pb2.BACKFILL_STATUS_SUCCEEDED,
        "the backfill to finish",
    )
    runs = list(client.list_runs(backfill_id=first.id))
    assert len(runs) == 3 and all(r.trigger.kind == run_pb2.TRIGGER_KIND_BACKFILL for r in runs)
    missing = client.create_backfill("daily", start, end, only_missing=True).backfill
    assert missing.runs_total == 2  # the 23rd and the 24th


def test_backfill_runs_queue_behind_live_runs_and_cancel_as_a_whole(
    plane: LocalControlPlane, clock: FakeClock
) -> None:
    clock.set("2026-03-27T00:30:00+00:00")
    apply(plane, pipeline("hourly", "0 * * * *"))  # its runs wait for an agent forever
    client = plane.client()
    start, end = datetime(2026, 3, 26, 0, tzinfo=UTC), datetime(2026, 3, 26, 3, tzinfo=UTC)
    backfill = client.create_backfill("hourly", start, end).backfill
    runs = sorted(client.list_runs(backfill_id=backfill.id), key=logical)
    assert [r.status for r in runs] == [
        run_pb2.RUN_STATUS_RUNNING,
        run_pb2.RUN_STATUS_QUEUED,
        run_pb2.RUN_STATUS_QUEUED,
    ]
    clock.set("2026-03-27T01:00:01+00:00")
    (live,) = plane.tick()
    assert client.get_run(live).status == run_pb2.RUN_STATUS_QUEUED
    client.cancel_run(runs[0].id)  # a slot frees: the live run goes first
    wait_until(lambda: client.get_run(live).status == run_pb2.RUN_STATUS_RUNNING, "the live run")
    assert client.get_run(runs[1].id).status == run_pb2.RUN_STATUS_QUEUED
    cancelled = client.cancel_backfill(backfill.id)
    assert cancelled.status == run_pb2.BACKFILL_STATUS_CANCELLED
    assert {client.get_run(r.id).status for r in runs} == {run_pb2.RUN_STATUS_CANCELLED}
    assert client.get_run(live).status == run_pb2.RUN_STATUS_RUNNING
