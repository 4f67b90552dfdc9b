"""When a schedule fires: the cron expression read in a time zone, exactly right across DST.

A pure module: no database and no clock of its own; every answer is relative to a moment
the caller passes in.

The candidates are the cron expression's matches read as local wall-clock times in the
schedule's zone, minute by minute in calendar order. Each becomes zero, one or two fire
times, each a :class:`FireTime` with the UTC ``instant`` it fires at (also the run's logical
time), the intended ``wall`` time and a ``dst`` marker:

- A wall time that exists once fires at that instant (``dst=""``).
- A wall time that does not exist, because the clocks jumped forward over it (a gap):
  ``skipped="shift"`` (the default) fires at the first valid instant after it, which is the
  instant of the transition (``dst="shifted"``); ``skipped="skip"`` does not fire.
- A wall time that happens twice, because the clocks fell back over it (a fold):
  ``repeated="first"`` (the default) fires at its first occurrence only (``dst="first"``),
  ``repeated="last"`` at its second only (``dst="second"``), ``repeated="both"`` at both.

The fire times are then put in the order of their instants, and candidates that land on the
same instant fire once: every 15 minutes across a one-hour gap, 02:00, 02:15, 02:30, 02:45
and 03:00 all fire once, at the transition. When a regular fire time is among them (03:00
here), it stands for them all, with its own wall time and ``dst=""``; otherwise the fire is
``shifted`` and carries the earliest wall time that was shifted. So instants strictly
increase along the sequence, and ``between`` never yields the same logical time twice.

Worked example, ``30 2 * * *`` in Europe/Berlin. On 2026-03-29 the clocks jump from 02:00
CET to 03:00 CEST (at 01:00Z), so 02:30 does not exist; on 2026-10-25 they fall back from
03:00 CEST to 02:00 CET (at 01:00Z), so 02:30 happens at 00:30Z and again at 01:30Z::

    skipped   03-28        03-29                            03-30
    shift     01:30Z ""    01:00Z "shifted" (03:00 CEST)    00:30Z ""
    skip      01:30Z ""    (no fire)                        00:30Z ""

    repeated  10-24        10-25                            10-26
    first     00:30Z ""    00:30Z "first"                   01:30Z ""
    last      00:30Z ""    01:30Z "second"                  01:30Z ""
    both      00:30Z ""    00:30Z "first", 01:30Z "second"  01:30Z ""

The shifted fire has ``wall`` 2026-03-29 02:30 and ``local`` 03:00+02:00; the second 02:30
of 10-25 has ``local`` 02:30+01:00 with ``fold=1``.

The same expression hourly (``0 * * * *``) fires 23 times on 2026-03-29 under either
``skipped`` policy (02:00 is shifted onto 03:00 CEST, which fires anyway) and 25 times on
2026-10-25 under ``both`` (24 otherwise).

Searching starts near the moment asked about, not at some epoch: :meth:`FireTimes.next_after`
reads the offsets the zone has in the 26 hours after the moment (UTC offsets lie between
-12:00 and +14:00, and every offset in tzdata lasts days, not minutes) to find the earliest
wall time that can still fire, and walks the cron's matches from there.
:meth:`FireTimes.previous_before` does the same backwards, looking back at most ``within``
(:data:`LOOKBACK` unless told).
"""

from __future__ import annotations

import heapq
import zoneinfo
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, get_args

from control_plane.scheduling.cron import CronSpec, parse_cron
from control_plane.validation.schedule import check_timezone
from legato.v1 import spec_pb2

__all__ = ["LOOKBACK", "DstMarker", "FireTime", "FireTimes", "Repeated", "Skipped"]

DstMarker = Literal["", "shifted", "first", "second"]
Skipped = Literal["shift", "skip"]
Repeated = Literal["first", "last", "both"]

# Longer than the longest wait between two fires of a valid cron expression: 29 February
# across a century year that is not a leap year (2096 to 2104) is 2922 days.
LOOKBACK = timedelta(days=3000)

_SKIPPED: dict[int, Skipped] = {
    spec_pb2.DST_SKIPPED_POLICY_UNSPECIFIED: "shift",
    spec_pb2.DST_SKIPPED_POLICY_SHIFT: "shift",
    spec_pb2.DST_SKIPPED_POLICY_SKIP: "skip",
}
_REPEATED: dict[int, Repeated] = {
    spec_pb2.DST_REPEATED_POLICY_UNSPECIFIED: "first",
    spec_pb2.DST_REPEATED_POLICY_FIRST: "first",
    spec_pb2.DST_REPEATED_POLICY_LAST: "last",
    spec_pb2.DST_REPEATED_POLICY_BOTH: "both",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_MICROSECOND = timedelta(microseconds=1)
_DAY = timedelta(days=1)
# Hours on either side of a moment whose offsets decide where a search starts: a wall time
# and its instant differ by at most 14 hours one way and 12 the other.
_REACH_HOURS = 26
_REACH = timedelta(hours=_REACH_HOURS)
# Wall times whose instants Python's datetime can hold in every zone.
_FIRST_WALL = datetime.combine(date.min, time.min) + _DAY
_LAST_WALL = datetime.combine(date.max, time.max) - _DAY


@dataclass(frozen=True)
class FireTime:
    """One fire of a schedule.

    ``instant`` is when it fires, in UTC; it is also the run's logical time. ``wall`` is the
    local wall-clock time the cron expression asked for (naive), ``local`` the instant in the
    schedule's zone (aware, with ``fold=1`` on the second pass of a repeated hour). ``dst``
    says how daylight saving bent it: ``""`` not at all, ``"shifted"`` the wall time did not
    exist and it fires at the first instant after the gap, ``"first"``/``"second"`` the wall
    time happened twice and this is its first/second occurrence.
    """

    instant: datetime
    wall: datetime
    local: datetime
    dst: DstMarker


@dataclass(frozen=True)
class _Candidate:
    """A wall time of the cron and the instants it can mean in the zone.

    ``earliest`` and ``latest`` are the first and last instants at which the zone's clocks
    show it (for a wall time in a gap, both are the transition, when they first pass it).
    """

    wall: datetime
    kind: Literal["once", "twice", "gap"]
    earliest: datetime
    latest: datetime


# Heap entries: the instant in microseconds (negated when walking backwards), 1 for a shifted
# fire and 0 otherwise, the wall time, then the fire. These keys are unique (one wall time
# never gives the same instant twice), so fires are never compared.
_Entry = tuple[int, int, datetime, FireTime]


class FireTimes:
    """The fire times of a cron expression in a time zone, with the DST policies applied.

    ``timezone`` is an IANA name (``""`` means UTC); an unknown one raises ``ValueError``.
    See the module docstring for the exact semantics.
    """

    def __init__(
        self,
        cron: str | CronSpec,
        timezone: str = "UTC",
        *,
        skipped: Skipped = "shift",
        repeated: Repeated = "first",
    ) -> None:
        if skipped not in get_args(Skipped):
            raise ValueError(f"skipped must be 'shift' or 'skip', not {skipped!r}")
        if repeated not in get_args(Repeated):
            raise ValueError(f"repeated must be 'first', 'last' or 'both', not {repeated!r}")
        self.spec = cron if isinstance(cron, CronSpec) else parse_cron(cron)
        self.timezone = timezone or "UTC"
        self.zone = _zone(self.timezone)
        self.skipped: Skipped = skipped
        self.repeated: Repeated = repeated
        self._hours = sorted(self.spec.hours)
        self._minutes = sorted(self.spec.minutes)
        self._first_time = time(self._hours[0], self._minutes[0])

    @classmethod
    def of(cls, schedule: spec_pb2.Schedule) -> FireTimes:
        """The fire times of a pipeline's schedule (UNSPECIFIED policies are SHIFT and FIRST)."""
        skipped = _SKIPPED.get(schedule.dst.skipped)
        repeated = _REPEATED.get(schedule.dst.repeated)
        if skipped is None:
            raise ValueError(f"schedule.dst.skipped has unknown value {schedule.dst.skipped}")
        if repeated is None:
            raise ValueError(f"schedule.dst.repeated has unknown value {schedule.dst.repeated}")
        return cls(schedule.cron, schedule.timezone, skipped=skipped, repeated=repeated)

    def __repr__(self) -> str:
        return (
            f"FireTimes({self.spec.source!r}, {self.timezone!r}, "
            f"skipped={self.skipped!r}, repeated={self.repeated!r})"
        )

    def next_after(self, moment: datetime) -> FireTime:
        """The first fire time whose instant is strictly after ``moment`` (aware, any zone)."""
        for fire in self._forward(moment):
            return fire
        raise ValueError(f"{self!r} does not fire after {moment.isoformat()}")

    def between(
        self, start: datetime, end: datetime, *, limit: int | None = None
    ) -> Iterator[FireTime]:
        """The fire times with instants in ``(start, end]``, in order, at most ``limit``.

        ``start`` and ``end`` are aware, in any zone; the fire times are computed lazily.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit}")
        _check_aware("start", start)
        _check_aware("end", end)
        return self._until(self._forward(start), end, limit)

    def previous_before(self, moment: datetime, *, within: timedelta = LOOKBACK) -> FireTime | None:
        """The last fire time whose instant is at or before ``moment`` (aware, any zone).

        ``None`` when no fire time falls in ``[moment - within, moment]``.
        """
        if within < timedelta(0):
            raise ValueError(f"within must not be negative, got {within}")
        moment = _check_aware("moment", moment).astimezone(UTC)
        for fire in self._backward(moment, within):
            return fire if moment - fire.instant <= within else None
        return None

    @staticmethod
    def _until(fires: Iterator[FireTime], end: datetime, limit: int | None) -> Iterator[FireTime]:
        for count, fire in enumerate(fires):
            if fire.instant > end or count == limit:
                return
            yield fire

    def _forward(self, moment: datetime) -> Iterator[FireTime]:
        """Every fire time after ``moment``, in order."""
        moment = _check_aware("moment", moment).astimezone(UTC)
        start = (moment + min(self._offsets(moment, 1))).replace(tzinfo=None)
        heap: list[_Entry] = []
        for candidate in map(self._candidate, self._walls_up(start)):
            for fire in self._fires(candidate):
                if fire.instant > moment:
                    heapq.heappush(heap, (_micros(fire.instant), _rank(fire), fire.wall, fire))
            # Later wall times fire at or after candidate.earliest.
            yield from _pop(heap, _micros(candidate.earliest))
        yield from _pop(heap, None)

    def _backward(self, moment: datetime, within: timedelta) -> Iterator[FireTime]:
        """The fire times at or before ``moment`` (UTC), latest first, back to about ``within``."""
        end = (moment + max(self._offsets(moment, -1))).replace(tzinfo=None)
        stop = _back_by(_back_by(end, within), _REACH)
        heap: list[_Entry] = []
        for candidate in map(self._candidate, self._walls_down(end, stop)):
            for fire in self._fires(candidate):
                if fire.instant <= moment:
                    heapq.heappush(heap, (-_micros(fire.instant), _rank(fire), fire.wall, fire))
            # Earlier wall times fire at or before candidate.latest.
            yield from _pop(heap, -_micros(candidate.latest))
        yield from _pop(heap, None)

    def _offsets(self, moment: datetime, direction: int) -> Iterator[timedelta]:
        """The zone's UTC offsets at each hour from ``moment`` over the reach, one way."""
        for hours in range(_REACH_HOURS + 1):
            yield _offset((moment + timedelta(hours=direction * hours)).astimezone(self.zone))

    def _candidate(self, wall: datetime) -> _Candidate:
        earlier = wall.replace(tzinfo=self.zone).astimezone(UTC)
        later = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if earlier == later:
            return _Candidate(wall, "once", earlier, earlier)
        if earlier < later:
            return _Candidate(wall, "twice", earlier, later)
        # In a gap fold=0 reads the wall time with the offset from before the jump, which
        # lands after it, and fold=1 with the offset from after, which lands before it.
        transition = self._transition(wall, later, earlier)
        return _Candidate(wall, "gap", transition, transition)

    def _transition(self, wall: datetime, before: datetime, after: datetime) -> datetime:
        """The first instant (to the second) whose wall time is past ``wall``, in a gap."""
        low, high = (before - _EPOCH) // _SECOND, (after - _EPOCH) // _SECOND
        while high - low > 1:
            middle = (low + high) // 2
            if self._wall_of(_EPOCH + middle * _SECOND) > wall:
                high = middle
            else:
                low = middle
        return _EPOCH + high * _SECOND

    def _wall_of(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone).replace(tzinfo=None)

    def _fires(self, candidate: _Candidate) -> list[FireTime]:
        if candidate.kind == "once":
            return [self._fire(candidate.earliest, candidate.wall, "")]
        if candidate.kind == "gap":
            if self.skipped == "skip":
                return []
            return [self._fire(candidate.earliest, candidate.wall, "shifted")]
        fires: list[FireTime] = []
        if self.repeated in ("first", "both"):
            fires.append(self._fire(candidate.earliest, candidate.wall, "first"))
        if self.repeated in ("last", "both"):
            fires.append(self._fire(candidate.latest, candidate.wall, "second"))
        return fires

    def _fire(self, instant: datetime, wall: datetime, dst: DstMarker) -> FireTime:
        return FireTime(instant, wall, instant.astimezone(self.zone), dst)

    def _walls_up(self, start: datetime) -> Iterator[datetime]:
        """The cron's wall times at or after ``start`` (naive), in order, up to _LAST_WALL."""
        day, first = start.date(), start.time().replace(second=0, microsecond=0)
        while True:
            if self._day_matches(day):
                for moment in self._times_up(first):
                    yield datetime.combine(day, moment)
            first = time.min
            try:
                day = self._next_day(day)
            except OverflowError:
                return
            if day > _LAST_WALL.date():
                return

    def _walls_down(self, end: datetime, stop: datetime) -> Iterator[datetime]:
        """The cron's wall times in ``[stop, end]`` (naive), latest first."""
        day, last = end.date(), end.time()
        while day >= stop.date():
            if self._day_matches(day):
                for moment in self._times_down(last):
                    wall = datetime.combine(day, moment)
                    if wall < stop:
                        return
                    yield wall
            last = time.max
            try:
                day = self._previous_day(day)
            except OverflowError:
                return

    def _times_up(self, first: time) -> Iterator[time]:
        """The cron's times of day at or after ``first`` (a whole minute), in order."""
        for hour in self._hours[bisect_left(self._hours, first.hour) :]:
            low = first.minute if hour == first.hour else 0
            for minute in self._minutes[bisect_left(self._minutes, low) :]:
                yield time(hour, minute)

    def _times_down(self, last: time) -> Iterator[time]:
        """The cron's times of day at or before ``last``, latest first."""
        for hour in reversed(self._hours[: bisect_right(self._hours, last.hour)]):
            high = last.minute if hour == last.hour else 59
            for minute in reversed(self._minutes[: bisect_right(self._minutes, high)]):
                yield time(hour, minute)

    def _day_matches(self, day: date) -> bool:
        return self.spec.matches(datetime.combine(day, self._first_time))

    def _next_day(self, day: date) -> date:
        """The day after ``day``, skipping months the cron never fires in."""
        day += _DAY
        while day.month not in self.spec.months:
            day = (day.replace(day=1) + 32 * _DAY).replace(day=1)
        return day

    def _previous_day(self, day: date) -> date:
        """The day before ``day``, skipping months the cron never fires in."""
        day -= _DAY
        while day.month not in self.spec.months:
            day = day.replace(day=1) - _DAY
        return day


def _pop(heap: list[_Entry], below: int | None) -> Iterator[FireTime]:
    """Yield the fires whose key is below ``below`` (all when None), once per instant.

    Of the fires at one instant the first in key order stands: a regular one before a
    shifted one, then the earliest wall time.
    """
    last: datetime | None = None
    while heap and (below is None or heap[0][0] < below):
        fire = heapq.heappop(heap)[3]
        if fire.instant != last:
            yield fire
        last = fire.instant


def _back_by(wall: datetime, delta: timedelta) -> datetime:
    """``wall - delta``, or the first wall time searched when that is earlier."""
    return wall - delta if wall - _FIRST_WALL > delta else _FIRST_WALL


def _micros(instant: datetime) -> int:
    return (instant - _EPOCH) // _MICROSECOND


def _rank(fire: FireTime) -> int:
    return 1 if fire.dst == "shifted" else 0


def _offset(local: datetime) -> timedelta:
    offset = local.utcoffset()
    assert offset is not None  # local times here carry a ZoneInfo
    return offset


def _check_aware(name: str, moment: datetime) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(
            f"{name} must be a timezone-aware datetime, got {moment.isoformat()} without one"
        )
    return moment


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        violation = next(check_timezone("timezone", name), None)
        message = violation.description if violation else f"'{name}' is not a time zone"
        raise ValueError(f"unknown time zone: {message}") from exc
