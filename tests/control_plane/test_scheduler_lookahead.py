"""Fire instants prepared ahead (``control_plane/scheduling/lookahead.py``): a tick less
than the lead before a fire instant builds its runs, the tick at the instant commits them.
The clock here is the tests': nothing waits for a fire time."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from control_plane.scheduling.lookahead import Lookahead
from control_plane.store.db import Database
from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import run_pb2

pytestmark = pytest.mark.timeout(120)

INSTANT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
WORK = "  - name: work\n    transform: {code: 'result = {}'}\n"


class SteppingClock:
    """A clock that stands still, or moves ``step`` on at every reading: work done at the
    instant then shows in the times it stamps."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.step = timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            now = self.now
            self.now += self.step
            return now

    def set(self, now: datetime) -> None:
        with self._lock:
            self.now = now


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock(INSTANT - timedelta(hours=1))


@pytest.fixture
def plane(db_url: str, clock: SteppingClock) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(db=db_url, clock=clock, scheduler_loop=False) as running:
        yield running


def apply(plane: LocalControlPlane, name: str, *, extra: str = "", steps: str = WORK) -> None:
    text = f"name: {name}\nschedule:\n  cron: '0 * * * *'\n{extra}steps:\n{steps}"
    plane.client().apply_pipeline(load_spec_text(text).spec)


def runs_of(plane: LocalControlPlane, name: str) -> list[run_pb2.Run]:
    return list(plane.client().list_runs(pipeline=name))


def at(moment: datetime, clock: SteppingClock, plane: LocalControlPlane) -> list[str]:
    clock.set(moment)
    return plane.tick()


def test_a_batch_built_ahead_is_created_at_the_instant(
    plane: LocalControlPlane, clock: SteppingClock
) -> None:
    names = [f"hourly-{i}" for i in range(40)]
    for name in names:
        apply(plane, name, extra="  overlap: allow\n")
    # From here every reading of the clock costs a millisecond: building 40 runs at the
    # instant would stamp the last one well over 40 ms late.
    clock.step = timedelta(milliseconds=1)
    assert at(INSTANT - timedelta(seconds=1), clock, plane) == []  # built, not committed
    assert all(runs_of(plane, name) == [] for name in names)
    created = at(INSTANT + timedelta(milliseconds=2), clock, plane)
    assert len(created) == 40
    for name in names:
        (run,) = runs_of(plane, name)
        logical = run.trigger.logical_time.ToDatetime(tzinfo=UTC)
        assert logical == INSTANT
        lag = run.create_time.ToDatetime(tzinfo=UTC) - logical
        assert timedelta(0) < lag < timedelta(milliseconds=15), lag
        assert run.start_time == run.create_time  # created and started at the instant
        assert run.status == run_pb2.RUN_STATUS_RUNNING
        (started,) = plane.client().get_run_logs(run.id)
        assert started.time == run.create_time
    assert plane.tick() == []  # the instant fired once


def orphan_log_lines(db_url: str) -> int:
    """Log lines of runs that do not exist (a dropped prepared run's, were any written)."""

    async def count() -> int:
        db = Database(db_url)
        try:
            async with db.read() as session:
                found = await session.execute(
                    text("SELECT count(*) FROM log_lines WHERE run_id NOT IN (SELECT id FROM runs)")
                )
                return int(found.scalar_one())
        finally:
            await db.dispose()

    return asyncio.run(count())


def test_a_change_between_prepare_and_fire_is_what_fires(
    db_url: str, plane: LocalControlPlane, clock: SteppingClock
) -> None:
    for name in ("changed", "paused", "archived", "kept"):
        apply(plane, name)
    assert at(INSTANT - timedelta(seconds=1), clock, plane) == []
    apply(plane, "changed", steps="  - name: renamed\n    transform: {code: 'result = {}'}\n")
    plane.client().pause_schedule("paused", reason="maintenance")
    plane.client().archive_pipeline("archived")
    created = at(INSTANT + timedelta(milliseconds=5), clock, plane)
    assert len(created) == 2
    (changed,) = runs_of(plane, "changed")
    assert changed.version == 2  # the new version, not the plan built ahead
    assert [step.name for step in plane.client().get_run(changed.id).steps] == ["renamed"]
    assert runs_of(plane, "paused") == []
    assert runs_of(plane, "archived") == []
    (kept,) = runs_of(plane, "kept")
    assert kept.version == 1
    assert orphan_log_lines(db_url) == 0  # the dropped runs left nothing behind


@pytest.mark.parametrize(
    ("overlap", "status"),
    [("queue", run_pb2.RUN_STATUS_QUEUED), ("skip", run_pb2.RUN_STATUS_SKIPPED)],
)
def test_a_run_started_between_prepare_and_fire_decides_the_overlap(
    plane: LocalControlPlane, clock: SteppingClock, overlap: str, status: int
) -> None:
    apply(plane, "busy", extra=f"  overlap: {overlap}\n")
    assert at(INSTANT - timedelta(seconds=1), clock, plane) == []  # built as a start
    manual = plane.client().trigger_run("busy").run.id  # no agent: it stays running
    (fired,) = at(INSTANT + timedelta(milliseconds=5), clock, plane)
    run = plane.client().get_run(fired)
    assert run.status == status
    assert manual in (run.waiting_reason if overlap == "queue" else run.error)


def test_on_postgres_a_change_just_before_the_instant_waits_for_the_batch(
    db_url: str, plane: LocalControlPlane, clock: SteppingClock
) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("on SQLite the batch locks at the instant, not before it")
    apply(plane, "steady")
    assert at(INSTANT - timedelta(seconds=1), clock, plane) == []
    time.sleep(1.5)  # past the moment the batch takes its locks (LOCK_AHEAD before)
    with ThreadPoolExecutor(1) as pool:
        pause = pool.submit(plane.client().pause_schedule, "steady", reason="late change")
        time.sleep(0.5)
        assert not pause.done()  # it waits for the batch's pipeline lock
        (fired,) = at(INSTANT + timedelta(milliseconds=5), clock, plane)
        assert pause.result(timeout=30).schedule.paused  # then it is made, after the fire
    (run,) = runs_of(plane, "steady")
    assert run.id == fired


def test_a_clock_far_past_the_instant_catches_up_instead(
    plane: LocalControlPlane, clock: SteppingClock
) -> None:
    apply(plane, "hourly", extra="  catchup: latest\n  overlap: allow\n")
    assert at(INSTANT - timedelta(seconds=1), clock, plane) == []
    # Down from just before 09:00 to 11:30: 09:00, 10:00 and 11:00 were missed.
    at(INSTANT + timedelta(hours=2, minutes=30), clock, plane)
    (run,) = runs_of(plane, "hourly")
    assert run.trigger.logical_time.ToDatetime(tzinfo=UTC) == INSTANT + timedelta(hours=2)


def test_a_batch_that_cannot_reach_the_database_at_the_instant_writes_nothing(
    plane: LocalControlPlane, clock: SteppingClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(plane, "steady")
    assert at(INSTANT - timedelta(seconds=1), clock, plane) == []

    async def unreachable(*args: object) -> None:
        raise ConnectionRefusedError("the database is restarting")

    monkeypatch.setattr(Lookahead, "_check", unreachable)
    with pytest.raises(ConnectionRefusedError):
        at(INSTANT + timedelta(milliseconds=5), clock, plane)
    monkeypatch.undo()
    assert runs_of(plane, "steady") == []
    # Back a second later (the loop retries after a second): the fire time is still due.
    (run_id,) = at(INSTANT + timedelta(seconds=1), clock, plane)
    (run,) = runs_of(plane, "steady")
    assert run.id == run_id
    assert run.trigger.logical_time.ToDatetime(tzinfo=UTC) == INSTANT


def test_a_stop_with_a_batch_built_loses_no_fire_time(db_url: str, clock: SteppingClock) -> None:
    with LocalControlPlane(db=db_url, clock=clock, scheduler_loop=False) as first:
        apply(first, "steady")
        assert at(INSTANT - timedelta(seconds=1), clock, first) == []
    with LocalControlPlane(db=db_url, clock=clock, scheduler_loop=False) as second:
        assert len(at(INSTANT + timedelta(seconds=1), clock, second)) == 1
        assert at(INSTANT + timedelta(seconds=2), clock, second) == []
        assert len(runs_of(second, "steady")) == 1


def test_two_replicas_with_batches_built_make_one_run_per_fire_time(
    db_url: str, clock: SteppingClock
) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("replicas share a PostgreSQL database")
    with (
        LocalControlPlane(db=db_url, clock=clock, scheduler_loop=False) as one,
        LocalControlPlane(db=db_url, clock=clock, scheduler_loop=False) as two,
    ):
        names = [f"shared-{i}" for i in range(20)]
        for name in names:
            apply(one, name)
        clock.set(INSTANT - timedelta(seconds=1))
        assert one.tick() == [] and two.tick() == []  # both built the batch
        clock.set(INSTANT + timedelta(milliseconds=5))
        with ThreadPoolExecutor(2) as pool:  # both at once: they queue on the locks
            created = list(pool.map(lambda replica: replica.tick(), (one, two)))
        assert len(created[0]) + len(created[1]) == 20
        assert [len(runs_of(one, name)) for name in names] == [1] * 20
