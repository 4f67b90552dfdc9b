"""W5: the scheduler under load, with the real clock.

- **Fire lag**: N pipelines (default 1,000) scheduled every minute, watched for M minutes
  (default 2): for each scheduled run, lag = its creation time - its logical time. Prints
  p50, p99 and max per minute and overall. The runs' steps wait for agents (there are
  none): the lag is the scheduler's, not the execution's. ``overlap: allow`` so every
  minute fires the same way. Beside it, per minute: when the last of its runs became
  visible to another connection (polled every 5 ms: the commit), and the process's CPU
  per run for the fire (the 10 s around the instant less the 10 s before it).
- **Idle CPU**: 10,000 pipelines whose schedules are not due for months; the control
  plane's CPU over 30 s of idling (the process's own CPU time, which here is the control
  plane's: the benchmark itself sleeps).

Usage: ``.venv/bin/python bench/bench_scheduler.py [--backend sqlite|postgres|both]
[--pipelines 1000] [--minutes 2] [--idle 10000]``
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import asyncpg
from harness import database

from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from observability.logsetup import configure_logging


def spec_text(name: str, cron: str) -> str:
    return (
        f"name: {name}\nschedule:\n  cron: '{cron}'\n  overlap: allow\n"
        "steps:\n  - name: work\n    transform: {code: 'result = {}'}\n"
    )


def apply_many(plane: LocalControlPlane, names: list[str], cron: str) -> float:
    started = time.monotonic()

    def apply(chunk: list[str]) -> None:
        client = plane.client()
        for name in chunk:
            client.apply_pipeline(load_spec_text(spec_text(name, cron)).spec)

    chunks = [names[i::4] for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(apply, chunks))
    return time.monotonic() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class FireWatch:
    """Beside the runs' own creation times, per fire instant: when the last of its runs
    became visible to another connection (the batch's commit), and the process's CPU
    for the fire (the 10 s around the instant less the 10 s before)."""

    def __init__(self, url: str, expected: int) -> None:
        self._url = url
        self._expected = expected
        self.visible: dict[datetime, float] = {}
        self.cpu: dict[datetime, float] = {}

    def watch(self, instants: list[datetime]) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(instants,), daemon=True)
        thread.start()
        return thread

    def _run(self, instants: list[datetime]) -> None:
        count = self._counter()
        for instant in instants:
            _sleep_until(instant - timedelta(seconds=15))
            before = time.process_time()
            _sleep_until(instant - timedelta(seconds=5))
            around = time.process_time()
            _sleep_until(instant - timedelta(seconds=0.5))
            base = count()
            deadline = instant + timedelta(seconds=5)
            while datetime.now(UTC) < deadline:
                if count() >= base + self._expected:
                    moment = datetime.now(UTC)
                    self.visible[instant] = (moment - instant).total_seconds() * 1000
                    break
                time.sleep(0.005)
            _sleep_until(deadline)
            self.cpu[instant] = (time.process_time() - around) - (around - before)

    def _counter(self) -> Callable[[], int]:
        query = "SELECT count(*) FROM runs WHERE trigger_kind = 'schedule'"
        if self._url.startswith("sqlite"):
            connection = sqlite3.connect(self._url.removeprefix("sqlite:///"))
            return lambda: int(connection.execute(query).fetchone()[0])
        loop = asyncio.new_event_loop()
        connection = loop.run_until_complete(asyncpg.connect(self._url))
        return lambda: int(loop.run_until_complete(connection.fetchval(query)))


def _sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def fire_lag(backend: str, pipelines: int, minutes: int) -> None:
    with database(backend) as url, LocalControlPlane(db=url) as plane:
        names = [f"every-minute-{i:04d}" for i in range(pipelines)]
        took = apply_many(plane, names, "* * * * *")
        print(f"  applied {pipelines} pipelines in {took:.1f} s")
        # The first instant watched leaves 20 s for the CPU baseline before it.
        first = (datetime.now(UTC) + timedelta(seconds=80)).replace(second=0, microsecond=0)
        instants = [first + timedelta(minutes=m) for m in range(minutes)]
        watch = FireWatch(url, pipelines)
        watch.watch(instants).join()
        lags: dict[datetime, list[float]] = {}
        for run in plane.client().list_runs(page_size=1000):
            logical = run.trigger.logical_time.ToDatetime(tzinfo=UTC)
            if logical < first:
                continue  # fired while the pipelines were still being applied
            created = run.create_time.ToDatetime(tzinfo=UTC)
            lags.setdefault(logical, []).append((created - logical).total_seconds() * 1000)
        everything: list[float] = []
        for logical in sorted(lags):
            values = lags[logical]
            everything += values
            visible = watch.visible.get(logical)
            cpu = watch.cpu.get(logical)
            shown = f"+{visible:.0f} ms" if visible is not None else "not within 5 s"
            per_run = f"{1000 * cpu / len(values):.2f} ms" if cpu is not None else "-"
            print(
                f"  {logical:%H:%M}: {len(values)} runs, lag p50 {percentile(values, 0.5):.0f} ms,"
                f" p99 {percentile(values, 0.99):.0f} ms, max {max(values):.0f} ms;"
                f" all visible {shown}; CPU per run {per_run}"
            )
        if everything:
            print(
                f"  W5 fire lag over {len(everything)} runs: p50 "
                f"{statistics.median(everything):.0f} ms, p99 {percentile(everything, 0.99):.0f}"
                f" ms (target p99 <= 100 ms)"
            )


def idle_cpu(backend: str, pipelines: int, seconds: float = 30.0) -> None:
    with database(backend) as url, LocalControlPlane(db=url) as plane:
        names = [f"yearly-{i:05d}" for i in range(pipelines)]
        took = apply_many(plane, names, "0 0 1 1 *")
        print(f"  applied {pipelines} pipelines in {took:.1f} s")
        time.sleep(3)  # let the apply traffic settle
        threads_before = threading.active_count()
        cpu = time.process_time()
        wall = time.monotonic()
        time.sleep(seconds)
        used = time.process_time() - cpu
        elapsed = time.monotonic() - wall
        print(
            f"  W5 idle CPU with {pipelines} schedules not due: {used:.2f} s in {elapsed:.0f} s "
            f"({100 * used / elapsed:.1f}% of one core; {threads_before} threads)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=2)
    parser.add_argument("--idle", type=int, default=10_000)
    args = parser.parse_args()
    configure_logging("console", "warning")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        print(f"{backend}:")
        if args.pipelines:
            fire_lag(backend, args.pipelines, args.minutes)
        if args.idle:
            idle_cpu(backend, args.idle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
