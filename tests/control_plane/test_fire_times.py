"""Fire times across DST: hand-written vectors from the tz rules, policies, bounds and search.

The transitions of 2026 used below (checked against zoneinfo when the vectors were written):

- America/New_York: 03-08 02:00 EST (-5) jumps to 03:00 EDT (-4) at 07:00Z; 11-01 02:00 EDT
  falls back to 01:00 EST at 06:00Z, so 01:00-01:59 happens twice (05:xxZ, then 06:xxZ).
- Europe/Berlin: 03-29 02:00 CET (+1) jumps to 03:00 CEST (+2) at 01:00Z; 10-25 03:00 CEST
  falls back to 02:00 CET at 01:00Z, so 02:00-02:59 happens twice (00:xxZ, then 01:xxZ).
- Australia/Lord_Howe: 04-05 02:00 (+11) falls back to 01:30 (+10:30) at 04-04 15:00Z, so
  01:30-01:59 happens twice (14:30Z-14:59Z, then 15:00Z-15:29Z); 10-04 02:00 (+10:30) jumps to
  02:30 (+11) at 10-03 15:30Z.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from control_plane.scheduling.cron import parse_cron
from control_plane.scheduling.fire_times import FireTime, FireTimes, Repeated, Skipped
from legato.v1 import spec_pb2

SKIPPED: tuple[Skipped, ...] = ("shift", "skip")
REPEATED: tuple[Repeated, ...] = ("first", "last", "both")
NEW_YORK, BERLIN, LORD_HOWE = "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"


def utc(text: str) -> datetime:
    """``2026-03-08 07:00`` read as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def naive(text: str) -> datetime:
    """``2026-03-08 02:30`` as a naive wall-clock time."""
    return datetime.fromisoformat(text)


def observed(
    times: FireTimes, start: str, end: str, limit: int | None = None
) -> list[tuple[str, str]]:
    return [
        (fire.instant.strftime("%Y-%m-%d %H:%M"), fire.dst)
        for fire in times.between(utc(start), utc(end), limit=limit)
    ]


@dataclass(frozen=True)
class Vector:
    """Fire times in ``(start, end]`` (UTC) under each policy pair in skipped x repeated."""

    name: str
    zone: str
    cron: str
    start: str
    end: str
    expected: list[tuple[str, str]]
    skipped: tuple[Skipped, ...] = SKIPPED
    repeated: tuple[Repeated, ...] = REPEATED


FIRST: tuple[Repeated, ...] = ("first",)
LAST: tuple[Repeated, ...] = ("last",)
BOTH: tuple[Repeated, ...] = ("both",)
SHIFT: tuple[Skipped, ...] = ("shift",)
SKIP: tuple[Skipped, ...] = ("skip",)

VECTORS = [
    # America/New_York, spring forward: 02:00-02:59 on 03-08 does not exist.
    Vector(
        "new-york-daily-in-gap-shift",
        NEW_YORK,
        "30 2 * * *",
        "2026-03-07 00:00",
        "2026-03-10 00:00",
        [("2026-03-07 07:30", ""), ("2026-03-08 07:00", "shifted"), ("2026-03-09 06:30", "")],
        skipped=SHIFT,
    ),
    Vector(
        "new-york-daily-in-gap-skip",
        NEW_YORK,
        "30 2 * * *",
        "2026-03-07 00:00",
        "2026-03-10 00:00",
        [("2026-03-07 07:30", ""), ("2026-03-09 06:30", "")],
        skipped=SKIP,
    ),
    Vector(
        "new-york-hourly-spring",
        NEW_YORK,
        "0 * * * *",
        "2026-03-08 05:30",
        "2026-03-08 09:00",
        # 02:00 shifts onto 03:00 EDT (07:00Z), which fires anyway: once.
        [
            ("2026-03-08 06:00", ""),
            ("2026-03-08 07:00", ""),
            ("2026-03-08 08:00", ""),
            ("2026-03-08 09:00", ""),
        ],
    ),
    Vector(
        "new-york-quarter-hours-spring",
        NEW_YORK,
        "*/15 * * * *",
        "2026-03-08 06:30",
        "2026-03-08 07:30",
        [
            ("2026-03-08 06:45", ""),
            ("2026-03-08 07:00", ""),
            ("2026-03-08 07:15", ""),
            ("2026-03-08 07:30", ""),
        ],
    ),
    Vector(
        "new-york-quarter-hours-only-in-gap-shift",
        NEW_YORK,
        "*/15 2 * * *",
        "2026-03-08 00:00",
        "2026-03-09 12:00",
        # 02:00, 02:15, 02:30 and 02:45 on 03-08 all fire once, at 03:00 EDT.
        [
            ("2026-03-08 07:00", "shifted"),
            ("2026-03-09 06:00", ""),
            ("2026-03-09 06:15", ""),
            ("2026-03-09 06:30", ""),
            ("2026-03-09 06:45", ""),
        ],
        skipped=SHIFT,
    ),
    Vector(
        "new-york-quarter-hours-only-in-gap-skip",
        NEW_YORK,
        "*/15 2 * * *",
        "2026-03-08 00:00",
        "2026-03-09 12:00",
        [
            ("2026-03-09 06:00", ""),
            ("2026-03-09 06:15", ""),
            ("2026-03-09 06:30", ""),
            ("2026-03-09 06:45", ""),
        ],
        skipped=SKIP,
    ),
    # America/New_York, fall back: 01:00-01:59 on 11-01 happens twice.
    Vector(
        "new-york-daily-in-overlap-first",
        NEW_YORK,
        "30 1 * * *",
        "2026-10-31 00:00",
        "2026-11-03 00:00",
        [("2026-10-31 05:30", ""), ("2026-11-01 05:30", "first"), ("2026-11-02 06:30", "")],
        repeated=FIRST,
    ),
    Vector(
        "new-york-daily-in-overlap-last",
        NEW_YORK,
        "30 1 * * *",
        "2026-10-31 00:00",
        "2026-11-03 00:00",
        [("2026-10-31 05:30", ""), ("2026-11-01 06:30", "second"), ("2026-11-02 06:30", "")],
        repeated=LAST,
    ),
    Vector(
        "new-york-daily-in-overlap-both",
        NEW_YORK,
        "30 1 * * *",
        "2026-10-31 00:00",
        "2026-11-03 00:00",
        [
            ("2026-10-31 05:30", ""),
            ("2026-11-01 05:30", "first"),
            ("2026-11-01 06:30", "second"),
            ("2026-11-02 06:30", ""),
        ],
        repeated=BOTH,
    ),
    Vector(
        "new-york-hourly-fall-first",
        NEW_YORK,
        "0 * * * *",
        "2026-11-01 03:30",
        "2026-11-01 08:00",
        [
            ("2026-11-01 04:00", ""),
            ("2026-11-01 05:00", "first"),
            ("2026-11-01 07:00", ""),
            ("2026-11-01 08:00", ""),
        ],
        repeated=FIRST,
    ),
    Vector(
        "new-york-hourly-fall-last",
        NEW_YORK,
        "0 * * * *",
        "2026-11-01 03:30",
        "2026-11-01 08:00",
        [
            ("2026-11-01 04:00", ""),
            ("2026-11-01 06:00", "second"),
            ("2026-11-01 07:00", ""),
            ("2026-11-01 08:00", ""),
        ],
        repeated=LAST,
    ),
    Vector(
        "new-york-hourly-fall-both",
        NEW_YORK,
        "0 * * * *",
        "2026-11-01 03:30",
        "2026-11-01 08:00",
        [
            ("2026-11-01 04:00", ""),
            ("2026-11-01 05:00", "first"),
            ("2026-11-01 06:00", "second"),
            ("2026-11-01 07:00", ""),
            ("2026-11-01 08:00", ""),
        ],
        repeated=BOTH,
    ),
    Vector(
        "new-york-quarter-hours-fall-first",
        NEW_YORK,
        "*/15 * * * *",
        "2026-11-01 04:30",
        "2026-11-01 07:15",
        [
            ("2026-11-01 04:45", ""),
            ("2026-11-01 05:00", "first"),
            ("2026-11-01 05:15", "first"),
            ("2026-11-01 05:30", "first"),
            ("2026-11-01 05:45", "first"),
            ("2026-11-01 07:00", ""),
            ("2026-11-01 07:15", ""),
        ],
        repeated=FIRST,
    ),
    Vector(
        "new-york-quarter-hours-fall-last",
        NEW_YORK,
        "*/15 * * * *",
        "2026-11-01 04:30",
        "2026-11-01 07:15",
        [
            ("2026-11-01 04:45", ""),
            ("2026-11-01 06:00", "second"),
            ("2026-11-01 06:15", "second"),
            ("2026-11-01 06:30", "second"),
            ("2026-11-01 06:45", "second"),
            ("2026-11-01 07:00", ""),
            ("2026-11-01 07:15", ""),
        ],
        repeated=LAST,
    ),
    Vector(
        "new-york-quarter-hours-fall-both",
        NEW_YORK,
        "*/15 * * * *",
        "2026-11-01 04:30",
        "2026-11-01 07:15",
        [
            ("2026-11-01 04:45", ""),
            ("2026-11-01 05:00", "first"),
            ("2026-11-01 05:15", "first"),
            ("2026-11-01 05:30", "first"),
            ("2026-11-01 05:45", "first"),
            ("2026-11-01 06:00", "second"),
            ("2026-11-01 06:15", "second"),
            ("2026-11-01 06:30", "second"),
            ("2026-11-01 06:45", "second"),
            ("2026-11-01 07:00", ""),
            ("2026-11-01 07:15", ""),
        ],
        repeated=BOTH,
    ),
    # Europe/Berlin, spring forward: 02:00-02:59 on 03-29 does not exist.
    Vector(
        "berlin-daily-in-gap-shift",
        BERLIN,
        "30 2 * * *",
        "2026-03-28 00:00",
        "2026-03-31 00:00",
        [("2026-03-28 01:30", ""), ("2026-03-29 01:00", "shifted"), ("2026-03-30 00:30", "")],
        skipped=SHIFT,
    ),
    Vector(
        "berlin-daily-in-gap-skip",
        BERLIN,
        "30 2 * * *",
        "2026-03-28 00:00",
        "2026-03-31 00:00",
        [("2026-03-28 01:30", ""), ("2026-03-30 00:30", "")],
        skipped=SKIP,
    ),
    Vector(
        "berlin-hourly-spring",
        BERLIN,
        "0 * * * *",
        "2026-03-28 22:30",
        "2026-03-29 02:00",
        [
            ("2026-03-28 23:00", ""),
            ("2026-03-29 00:00", ""),
            ("2026-03-29 01:00", ""),
            ("2026-03-29 02:00", ""),
        ],
    ),
    Vector(
        "berlin-quarter-hours-spring",
        BERLIN,
        "*/15 * * * *",
        "2026-03-29 00:30",
        "2026-03-29 01:30",
        [
            ("2026-03-29 00:45", ""),
            ("2026-03-29 01:00", ""),
            ("2026-03-29 01:15", ""),
            ("2026-03-29 01:30", ""),
        ],
    ),
    # Europe/Berlin, fall back: 02:00-02:59 on 10-25 happens twice.
    Vector(
        "berlin-daily-in-overlap-first",
        BERLIN,
        "30 2 * * *",
        "2026-10-24 00:00",
        "2026-10-27 00:00",
        [("2026-10-24 00:30", ""), ("2026-10-25 00:30", "first"), ("2026-10-26 01:30", "")],
        repeated=FIRST,
    ),
    Vector(
        "berlin-daily-in-overlap-last",
        BERLIN,
        "30 2 * * *",
        "2026-10-24 00:00",
        "2026-10-27 00:00",
        [("2026-10-24 00:30", ""), ("2026-10-25 01:30", "second"), ("2026-10-26 01:30", "")],
        repeated=LAST,
    ),
    Vector(
        "berlin-daily-in-overlap-both",
        BERLIN,
        "30 2 * * *",
        "2026-10-24 00:00",
        "2026-10-27 00:00",
        [
            ("2026-10-24 00:30", ""),
            ("2026-10-25 00:30", "first"),
            ("2026-10-25 01:30", "second"),
            ("2026-10-26 01:30", ""),
        ],
        repeated=BOTH,
    ),
    Vector(
        "berlin-hourly-fall-first",
        BERLIN,
        "0 * * * *",
        "2026-10-24 22:30",
        "2026-10-25 02:00",
        [("2026-10-24 23:00", ""), ("2026-10-25 00:00", "first"), ("2026-10-25 02:00", "")],
        repeated=FIRST,
    ),
    Vector(
        "berlin-hourly-fall-last",
        BERLIN,
        "0 * * * *",
        "2026-10-24 22:30",
        "2026-10-25 02:00",
        [("2026-10-24 23:00", ""), ("2026-10-25 01:00", "second"), ("2026-10-25 02:00", "")],
        repeated=LAST,
    ),
    Vector(
        "berlin-hourly-fall-both",
        BERLIN,
        "0 * * * *",
        "2026-10-24 22:30",
        "2026-10-25 02:00",
        [
            ("2026-10-24 23:00", ""),
            ("2026-10-25 00:00", "first"),
            ("2026-10-25 01:00", "second"),
            ("2026-10-25 02:00", ""),
        ],
        repeated=BOTH,
    ),
    Vector(
        "berlin-quarter-hours-fall-first",
        BERLIN,
        "*/15 * * * *",
        "2026-10-24 23:30",
        "2026-10-25 02:15",
        [
            ("2026-10-24 23:45", ""),
            ("2026-10-25 00:00", "first"),
            ("2026-10-25 00:15", "first"),
            ("2026-10-25 00:30", "first"),
            ("2026-10-25 00:45", "first"),
            ("2026-10-25 02:00", ""),
            ("2026-10-25 02:15", ""),
        ],
        repeated=FIRST,
    ),
    Vector(
        "berlin-quarter-hours-fall-last",
        BERLIN,
        "*/15 * * * *",
        "2026-10-24 23:30",
        "2026-10-25 02:15",
        [
            ("2026-10-24 23:45", ""),
            ("2026-10-25 01:00", "second"),
            ("2026-10-25 01:15", "second"),
            ("2026-10-25 01:30", "second"),
            ("2026-10-25 01:45", "second"),
            ("2026-10-25 02:00", ""),
            ("2026-10-25 02:15", ""),
        ],
        repeated=LAST,
    ),
    Vector(
        "berlin-quarter-hours-fall-both",
        BERLIN,
        "*/15 * * * *",
        "2026-10-24 23:30",
        "2026-10-25 02:15",
        [
            ("2026-10-24 23:45", ""),
            ("2026-10-25 00:00", "first"),
            ("2026-10-25 00:15", "first"),
            ("2026-10-25 00:30", "first"),
            ("2026-10-25 00:45", "first"),
            ("2026-10-25 01:00", "second"),
            ("2026-10-25 01:15", "second"),
            ("2026-10-25 01:30", "second"),
            ("2026-10-25 01:45", "second"),
            ("2026-10-25 02:00", ""),
            ("2026-10-25 02:15", ""),
        ],
        repeated=BOTH,
    ),
    # Australia/Lord_Howe, fall back by half an hour: 01:30-01:59 on 04-05 happens twice.
    Vector(
        "lord-howe-daily-in-overlap-first",
        LORD_HOWE,
        "45 1 * * *",
        "2026-04-03 00:00",
        "2026-04-06 00:00",
        [("2026-04-03 14:45", ""), ("2026-04-04 14:45", "first"), ("2026-04-05 15:15", "")],
        repeated=FIRST,
    ),
    Vector(
        "lord-howe-daily-in-overlap-last",
        LORD_HOWE,
        "45 1 * * *",
        "2026-04-03 00:00",
        "2026-04-06 00:00",
        [("2026-04-03 14:45", ""), ("2026-04-04 15:15", "second"), ("2026-04-05 15:15", "")],
        repeated=LAST,
    ),
    Vector(
        "lord-howe-daily-in-overlap-both",
        LORD_HOWE,
        "45 1 * * *",
        "2026-04-03 00:00",
        "2026-04-06 00:00",
        [
            ("2026-04-03 14:45", ""),
            ("2026-04-04 14:45", "first"),
            ("2026-04-04 15:15", "second"),
            ("2026-04-05 15:15", ""),
        ],
        repeated=BOTH,
    ),
    Vector(
        "lord-howe-hourly-fall",
        LORD_HOWE,
        "0 * * * *",
        "2026-04-04 13:30",
        "2026-04-04 17:00",
        # 01:00 and 02:00 are outside the repeated half hour; 1.5 hours apart that night.
        [("2026-04-04 14:00", ""), ("2026-04-04 15:30", ""), ("2026-04-04 16:30", "")],
    ),
    Vector(
        "lord-howe-quarter-hours-fall-first",
        LORD_HOWE,
        "*/15 * * * *",
        "2026-04-04 14:00",
        "2026-04-04 15:45",
        [
            ("2026-04-04 14:15", ""),
            ("2026-04-04 14:30", "first"),
            ("2026-04-04 14:45", "first"),
            ("2026-04-04 15:30", ""),
            ("2026-04-04 15:45", ""),
        ],
        repeated=FIRST,
    ),
    Vector(
        "lord-howe-quarter-hours-fall-last",
        LORD_HOWE,
        "*/15 * * * *",
        "2026-04-04 14:00",
        "2026-04-04 15:45",
        [
            ("2026-04-04 14:15", ""),
            ("2026-04-04 15:00", "second"),
            ("2026-04-04 15:15", "second"),
            ("2026-04-04 15:30", ""),
            ("2026-04-04 15:45", ""),
        ],
        repeated=LAST,
    ),
    Vector(
        "lord-howe-quarter-hours-fall-both",
        LORD_HOWE,
        "*/15 * * * *",
        "2026-04-04 14:00",
        "2026-04-04 15:45",
        [
            ("2026-04-04 14:15", ""),
            ("2026-04-04 14:30", "first"),
            ("2026-04-04 14:45", "first"),
            ("2026-04-04 15:00", "second"),
            ("2026-04-04 15:15", "second"),
            ("2026-04-04 15:30", ""),
            ("2026-04-04 15:45", ""),
        ],
        repeated=BOTH,
    ),
    # Australia/Lord_Howe, spring forward by half an hour: 02:00-02:29 on 10-04 does not exist.
    Vector(
        "lord-howe-daily-in-gap-shift",
        LORD_HOWE,
        "15 2 * * *",
        "2026-10-02 00:00",
        "2026-10-05 00:00",
        [("2026-10-02 15:45", ""), ("2026-10-03 15:30", "shifted"), ("2026-10-04 15:15", "")],
        skipped=SHIFT,
    ),
    Vector(
        "lord-howe-daily-in-gap-skip",
        LORD_HOWE,
        "15 2 * * *",
        "2026-10-02 00:00",
        "2026-10-05 00:00",
        [("2026-10-02 15:45", ""), ("2026-10-04 15:15", "")],
        skipped=SKIP,
    ),
    Vector(
        "lord-howe-hourly-spring-shift",
        LORD_HOWE,
        "0 * * * *",
        "2026-10-03 13:30",
        "2026-10-03 17:00",
        # 02:00 fires at 02:30 (+11), which is no fire time of its own: half an hour after
        # 01:00 (+10:30) at 14:30Z and half an hour before 03:00 (+11) at 16:00Z.
        [
            ("2026-10-03 14:30", ""),
            ("2026-10-03 15:30", "shifted"),
            ("2026-10-03 16:00", ""),
            ("2026-10-03 17:00", ""),
        ],
        skipped=SHIFT,
    ),
    Vector(
        "lord-howe-hourly-spring-skip",
        LORD_HOWE,
        "0 * * * *",
        "2026-10-03 13:30",
        "2026-10-03 17:00",
        [("2026-10-03 14:30", ""), ("2026-10-03 16:00", ""), ("2026-10-03 17:00", "")],
        skipped=SKIP,
    ),
    Vector(
        "lord-howe-quarter-hours-spring",
        LORD_HOWE,
        "*/15 * * * *",
        "2026-10-03 15:00",
        "2026-10-03 16:00",
        # 02:00 and 02:15 shift onto 02:30 (+11), which fires anyway.
        [
            ("2026-10-03 15:15", ""),
            ("2026-10-03 15:30", ""),
            ("2026-10-03 15:45", ""),
            ("2026-10-03 16:00", ""),
        ],
    ),
]

CASES = [
    pytest.param(vector, skipped, repeated, id=f"{vector.name}-{skipped}-{repeated}")
    for vector in VECTORS
    for skipped in vector.skipped
    for repeated in vector.repeated
]


@pytest.mark.parametrize(("vector", "skipped", "repeated"), CASES)
def test_vectors(vector: Vector, skipped: Skipped, repeated: Repeated) -> None:
    times = FireTimes(vector.cron, vector.zone, skipped=skipped, repeated=repeated)
    assert observed(times, vector.start, vector.end) == vector.expected


@pytest.mark.parametrize(("vector", "skipped", "repeated"), CASES)
def test_vectors_one_at_a_time(vector: Vector, skipped: Skipped, repeated: Repeated) -> None:
    """next_after walks the same fires; previous_before finds each at and just after it."""
    times = FireTimes(vector.cron, vector.zone, skipped=skipped, repeated=repeated)
    moment = utc(vector.start)
    walked: list[FireTime] = []
    for _ in vector.expected:
        walked.append(times.next_after(moment))
        moment = walked[-1].instant
    assert [(f.instant.strftime("%Y-%m-%d %H:%M"), f.dst) for f in walked] == vector.expected
    for earlier, fire in itertools.pairwise(walked):
        assert times.previous_before(fire.instant) == fire
        assert times.previous_before(fire.instant - timedelta(seconds=1)) == earlier


def test_shifted_fire_keeps_its_wall_time_and_fires_at_the_transition() -> None:
    fire = FireTimes("30 2 * * *", BERLIN).next_after(utc("2026-03-29 00:00"))
    assert fire.dst == "shifted"
    assert fire.wall == naive("2026-03-29 02:30")
    assert fire.instant == utc("2026-03-29 01:00")
    assert fire.local.isoformat() == "2026-03-29T03:00:00+02:00"


def test_shifted_wall_times_that_share_an_instant_fire_once_with_the_first() -> None:
    fire = FireTimes("15,45 2 * * *", LORD_HOWE).next_after(utc("2026-10-03 12:00"))
    assert (fire.wall, fire.dst, fire.instant) == (
        naive("2026-10-04 02:15"),
        "shifted",
        utc("2026-10-03 15:30"),
    )
    assert FireTimes("15,45 2 * * *", LORD_HOWE).next_after(fire.instant).instant == utc(
        "2026-10-03 15:45"
    )


def test_a_regular_fire_absorbs_the_wall_times_shifted_onto_it() -> None:
    fire = FireTimes("*/15 * * * *", BERLIN).next_after(utc("2026-03-29 00:45"))
    assert (fire.wall, fire.dst, fire.instant) == (
        naive("2026-03-29 03:00"),
        "",
        utc("2026-03-29 01:00"),
    )


def test_second_occurrence_carries_fold_and_the_later_offset() -> None:
    first, second = FireTimes("45 1 * * *", LORD_HOWE, repeated="both").between(
        utc("2026-04-04 14:00"), utc("2026-04-04 16:00")
    )
    assert first.wall == second.wall == naive("2026-04-05 01:45")
    assert (first.local.fold, first.local.utcoffset()) == (0, timedelta(hours=11))
    assert (second.local.fold, second.local.utcoffset()) == (1, timedelta(hours=10, minutes=30))


@pytest.mark.parametrize("zone", [NEW_YORK, BERLIN, LORD_HOWE])
@pytest.mark.parametrize("repeated", REPEATED)
@pytest.mark.parametrize("skipped", SKIPPED)
def test_fires_are_consistent_around_transitions(
    zone: str, skipped: Skipped, repeated: Repeated
) -> None:
    """Instants strictly increase; local is the instant in the zone; wall is what it shows."""
    times = FireTimes("*/15 * * * *", zone, skipped=skipped, repeated=repeated)
    for start in ("2026-03-07", "2026-04-03", "2026-10-02", "2026-10-24", "2026-10-31"):
        fires = list(times.between(utc(start), utc(start) + timedelta(days=3)))
        assert all(a.instant < b.instant for a, b in itertools.pairwise(fires))
        for fire in fires:
            assert fire.instant.tzinfo is UTC
            assert fire.wall.tzinfo is None
            assert fire.local.tzinfo == ZoneInfo(zone)
            assert fire.local.astimezone(UTC) == fire.instant
            if fire.dst != "shifted":
                assert fire.local.replace(tzinfo=None) == fire.wall
                assert fire.local.fold == (fire.dst == "second")


# A local calendar year of "0 * * * *" has 8760 wall times. In New York and Berlin one of them
# does not exist (shifted onto the next hour, which fires anyway, or skipped: one fire less
# either way) and one happens twice (fires twice only under "both"). In Lord Howe the gap and
# the repeat are half an hour: 02:00 is in the gap (shifted to 02:30, or skipped) and no whole
# hour is repeated.
@pytest.mark.parametrize(
    ("zone", "skipped", "repeated", "count"),
    [
        *(
            (zone, s, r, 8760 if r == "both" else 8759)
            for zone in (NEW_YORK, BERLIN)
            for s in SKIPPED
            for r in REPEATED
        ),
        *((LORD_HOWE, s, r, 8760 if s == "shift" else 8759) for s in SKIPPED for r in REPEATED),
    ],
)
def test_a_year_of_hourly_fires(
    zone: str, skipped: Skipped, repeated: Repeated, count: int
) -> None:
    tz = ZoneInfo(zone)
    times = FireTimes("0 * * * *", zone, skipped=skipped, repeated=repeated)
    start = datetime(2025, 12, 31, 23, 59, tzinfo=tz)
    end = datetime(2026, 12, 31, 23, 59, tzinfo=tz)
    assert sum(1 for _ in times.between(start, end)) == count


def test_utc_is_the_default_zone() -> None:
    for times in (FireTimes("0 9 * * *"), FireTimes("0 9 * * *", "")):
        fire = times.next_after(utc("2026-03-29 08:59"))
        assert times.timezone == "UTC"
        assert (fire.instant, fire.wall, fire.dst) == (
            utc("2026-03-29 09:00"),
            naive("2026-03-29 09:00"),
            "",
        )


def test_of_reads_the_schedule() -> None:
    schedule = spec_pb2.Schedule(
        cron="30 2 * * *",
        timezone=BERLIN,
        dst=spec_pb2.DstPolicy(
            skipped=spec_pb2.DST_SKIPPED_POLICY_SKIP, repeated=spec_pb2.DST_REPEATED_POLICY_BOTH
        ),
    )
    times = FireTimes.of(schedule)
    assert (times.spec.expression, times.timezone, times.skipped, times.repeated) == (
        "30 2 * * *",
        BERLIN,
        "skip",
        "both",
    )
    assert observed(times, "2026-03-28 12:00", "2026-03-30 12:00") == [("2026-03-30 00:30", "")]
    assert observed(times, "2026-10-24 12:00", "2026-10-25 12:00") == [
        ("2026-10-25 00:30", "first"),
        ("2026-10-25 01:30", "second"),
    ]


@pytest.mark.parametrize(
    ("skipped", "repeated", "expected"),
    [
        (
            spec_pb2.DST_SKIPPED_POLICY_UNSPECIFIED,
            spec_pb2.DST_REPEATED_POLICY_UNSPECIFIED,
            ("shift", "first"),
        ),
        (spec_pb2.DST_SKIPPED_POLICY_SHIFT, spec_pb2.DST_REPEATED_POLICY_FIRST, ("shift", "first")),
        (spec_pb2.DST_SKIPPED_POLICY_SKIP, spec_pb2.DST_REPEATED_POLICY_LAST, ("skip", "last")),
    ],
)
def test_of_maps_the_policies(
    skipped: spec_pb2.DstSkippedPolicy.ValueType,
    repeated: spec_pb2.DstRepeatedPolicy.ValueType,
    expected: tuple[str, str],
) -> None:
    schedule = spec_pb2.Schedule(
        cron="@daily", dst=spec_pb2.DstPolicy(skipped=skipped, repeated=repeated)
    )
    times = FireTimes.of(schedule)
    assert (times.skipped, times.repeated) == expected
    assert times.timezone == "UTC"


def test_of_refuses_an_unknown_policy_number() -> None:
    schedule = spec_pb2.Schedule(cron="@daily")
    schedule.dst.skipped = 7  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"schedule\.dst\.skipped has unknown value 7"):
        FireTimes.of(schedule)


def test_next_after_is_strictly_after() -> None:
    times = FireTimes("0 9 * * *", BERLIN)
    at_fire = utc("2026-06-01 07:00")
    assert times.next_after(at_fire).instant == utc("2026-06-02 07:00")
    assert times.next_after(at_fire - timedelta(microseconds=1)).instant == at_fire


def test_moments_may_be_in_any_zone() -> None:
    times = FireTimes("0 9 * * *", BERLIN)
    in_tokyo = datetime(2026, 6, 1, 15, 59, tzinfo=ZoneInfo("Asia/Tokyo"))  # 06:59Z
    assert times.next_after(in_tokyo).instant == utc("2026-06-01 07:00")
    assert times.previous_before(in_tokyo) == times.next_after(utc("2026-05-31 06:00"))


def test_naive_moments_are_refused() -> None:
    times = FireTimes("@daily")
    with pytest.raises(ValueError, match="moment must be a timezone-aware datetime"):
        times.next_after(naive("2026-06-01 00:00"))
    with pytest.raises(ValueError, match="end must be a timezone-aware datetime"):
        times.between(utc("2026-06-01 00:00"), naive("2026-06-02 00:00"))
    with pytest.raises(ValueError, match="moment must be a timezone-aware datetime"):
        times.previous_before(naive("2026-06-01 00:00"))


def test_between_excludes_start_and_includes_end() -> None:
    times = FireTimes("0 */6 * * *")
    assert observed(times, "2026-06-01 00:00", "2026-06-01 12:00") == [
        ("2026-06-01 06:00", ""),
        ("2026-06-01 12:00", ""),
    ]


def test_between_stops_at_the_limit() -> None:
    times = FireTimes("*/15 * * * *", BERLIN, repeated="both")
    assert observed(times, "2026-10-24 23:50", "2026-10-26 00:00", limit=3) == [
        ("2026-10-25 00:00", "first"),
        ("2026-10-25 00:15", "first"),
        ("2026-10-25 00:30", "first"),
    ]
    assert observed(times, "2026-10-24 23:50", "2026-10-26 00:00", limit=0) == []
    with pytest.raises(ValueError, match="limit must be 0 or more"):
        times.between(utc("2026-10-24 00:00"), utc("2026-10-25 00:00"), limit=-1)


def test_between_an_empty_or_reversed_range_is_empty() -> None:
    times = FireTimes("@hourly")
    assert observed(times, "2026-06-01 00:00", "2026-06-01 00:00") == []
    assert observed(times, "2026-06-01 05:00", "2026-06-01 01:00") == []
    assert observed(times, "2026-06-01 00:00", "2026-06-01 00:59") == []


def test_previous_before_includes_the_moment_itself() -> None:
    times = FireTimes("30 2 * * *", BERLIN)
    assert times.previous_before(utc("2026-03-29 01:00")) == times.next_after(
        utc("2026-03-29 00:00")
    )
    latest = times.previous_before(utc("2026-03-29 00:59"))
    assert latest is not None
    assert (latest.instant, latest.dst) == (utc("2026-03-28 01:30"), "")


def test_previous_before_in_the_repeated_hour() -> None:
    times = FireTimes("*/15 * * * *", BERLIN, repeated="both")
    latest = times.previous_before(utc("2026-10-25 01:20"))
    assert latest is not None
    assert (latest.instant, latest.wall, latest.dst) == (
        utc("2026-10-25 01:15"),
        naive("2026-10-25 02:15"),
        "second",
    )
    first_only = FireTimes("*/15 * * * *", BERLIN).previous_before(utc("2026-10-25 01:50"))
    assert first_only is not None
    assert (first_only.instant, first_only.dst) == (utc("2026-10-25 00:45"), "first")


def test_previous_before_looks_back_within_a_window() -> None:
    times = FireTimes("@yearly", BERLIN)
    new_year = utc("2025-12-31 23:00")
    latest = times.previous_before(utc("2026-05-01 00:00"))
    assert latest is not None
    assert latest.instant == new_year
    assert times.previous_before(utc("2026-05-01 00:00"), within=timedelta(days=30)) is None
    month = timedelta(days=30)
    assert times.previous_before(new_year + month, within=month) == latest
    assert times.previous_before(new_year + month + timedelta(seconds=1), within=month) is None
    with pytest.raises(ValueError, match="within must not be negative"):
        times.previous_before(new_year, within=timedelta(days=-1))


def test_previous_before_the_first_fire_is_none() -> None:
    assert FireTimes("0 0 * 6 *").previous_before(datetime(1, 3, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("macro", "start", "expected"),
    [
        ("@hourly", "2026-03-08 05:30", ["2026-03-08 06:00", "2026-03-08 07:00"]),
        # Midnight EST, then midnight EDT.
        (
            "@daily",
            "2026-03-07 00:00",
            ["2026-03-07 05:00", "2026-03-08 05:00", "2026-03-09 04:00"],
        ),
        ("@midnight", "2026-03-07 00:00", ["2026-03-07 05:00", "2026-03-08 05:00"]),
        # Sundays.
        ("@weekly", "2026-03-01 06:00", ["2026-03-08 05:00", "2026-03-15 04:00"]),
        ("@monthly", "2026-02-15 00:00", ["2026-03-01 05:00", "2026-04-01 04:00"]),
        ("@yearly", "2026-02-15 00:00", ["2027-01-01 05:00", "2028-01-01 05:00"]),
        ("@annually", "2026-02-15 00:00", ["2027-01-01 05:00"]),
    ],
)
def test_macros(macro: str, start: str, expected: list[str]) -> None:
    times = FireTimes(macro, NEW_YORK)
    fires = times.between(utc(start), utc("2030-01-01 00:00"), limit=len(expected))
    assert [fire.instant.strftime("%Y-%m-%d %H:%M") for fire in fires] == expected


def test_day_of_week_names() -> None:
    # Friday 27 March to Tuesday 31 March 2026, over Berlin's spring forward.
    times = FireTimes("0 9 * * MON-FRI", BERLIN)
    assert observed(times, "2026-03-27 00:00", "2026-04-01 00:00") == [
        ("2026-03-27 08:00", ""),
        ("2026-03-30 07:00", ""),
        ("2026-03-31 07:00", ""),
    ]
    weekend = FireTimes("0 9 * * sat,SUN", BERLIN)
    assert observed(weekend, "2026-03-27 00:00", "2026-04-01 00:00") == [
        ("2026-03-28 08:00", ""),
        ("2026-03-29 07:00", ""),
    ]


def test_the_31st_fires_only_in_months_that_have_one() -> None:
    times = FireTimes("0 12 31 * *")
    assert [f.instant.month for f in times.between(utc("2026-01-01"), utc("2027-01-01"))] == [
        1,
        3,
        5,
        7,
        8,
        10,
        12,
    ]


def test_29_february_waits_for_a_leap_year() -> None:
    times = FireTimes("0 0 29 2 *", BERLIN)
    assert times.next_after(utc("2026-03-01 00:00")).instant == utc("2028-02-28 23:00")
    latest = times.previous_before(utc("2026-03-01 00:00"))
    assert latest is not None
    assert latest.instant == utc("2024-02-28 23:00")
    # 2100 is not a leap year: eight years from 2096 to 2104.
    assert times.next_after(utc("2096-03-01 00:00")).instant == utc("2104-02-28 23:00")
    latest = times.previous_before(utc("2104-02-01 00:00"))
    assert latest is not None
    assert latest.instant == utc("2096-02-28 23:00")


def test_a_parsed_cron_spec_is_accepted() -> None:
    spec = parse_cron("0 9 * * *")
    times = FireTimes(spec, BERLIN)
    assert times.spec is spec
    assert times.next_after(utc("2026-06-01 00:00")).instant == utc("2026-06-01 07:00")


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ("Europe/Berln", "did you mean 'Europe/Berlin'"),
        ("europe/berlin", "did you mean 'Europe/Berlin'"),
        ("Mars/Olympus", "use a name like Europe/Berlin or UTC"),
        ("America", "'America' is not an IANA time zone"),
        ("../etc/passwd", "is not an IANA time zone"),
    ],
)
def test_unknown_time_zones_are_refused(zone: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        FireTimes("@daily", zone)
    assert str(raised.value).startswith("unknown time zone:")


def test_unknown_policies_are_refused() -> None:
    sometimes: str = "sometimes"
    with pytest.raises(ValueError, match="skipped must be 'shift' or 'skip'"):
        FireTimes("@daily", skipped=sometimes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="repeated must be 'first', 'last' or 'both'"):
        FireTimes("@daily", repeated=sometimes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cron",
    [
        "*/15 * * * *",
        "0 9 * * MON-FRI",
        "30 2 * * *",
        "0 0 1,15 * *",
        "0 0 1 * MON",  # day of month OR day of week, as croniter reads it
        "5 4 29 2 *",
        "@monthly",
        "0 */6 * * SUN",
        "17 8-18/2 * JAN-MAR,OCT *",
    ],
)
@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])  # zones without DST
def test_the_same_fire_times_as_croniter_where_there_is_no_dst(cron: str, zone: str) -> None:
    """Away from daylight saving changes, the fire times are croniter's for the same
    (normalized) expression, read in the zone."""
    from croniter import croniter

    spec = parse_cron(cron)
    start = datetime(2023, 12, 30, 22, 7, tzinfo=ZoneInfo(zone))
    reference = croniter(spec.expression, start)
    expected = [reference.get_next(datetime) for _ in range(60)]
    horizon = start + timedelta(days=366 * 260)  # 60 leap days take 240 years
    found = list(itertools.islice(FireTimes(cron, zone).between(start, horizon), 60))
    assert [f.instant for f in found] == [e.astimezone(UTC) for e in expected]
