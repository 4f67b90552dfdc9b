"""What a step prints reaches on_log: every line, in order, bounded in size, never blocking
the step."""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, datetime

from executor.runner import Runner
from executor.runner.pipes import MAX_LINE, LineSplitter
from tests.executor.runner_support import Logs, MakeTask

NOW = datetime(2026, 6, 12, tzinfo=UTC)


def split(*chunks: bytes) -> list[str]:
    logs = Logs()
    splitter = LineSplitter("stdout", logs)
    for chunk in chunks:
        splitter.feed(chunk, NOW)
    splitter.close(NOW)
    return logs.of("stdout")


def test_lines_are_split_across_chunks() -> None:
    assert split(b"one\ntw", b"o\n", b"\nthree\r\n", b"four") == ["one", "two", "", "three", "four"]
    euro = "€".encode()
    assert split(b"price " + euro[:1], euro[1:] + b"\n") == ["price €"]


def test_long_lines_are_truncated_with_a_marker() -> None:
    long = b"x" * (MAX_LINE + 100)
    lines = split(long[:5000], long[5000:] + b"\nnext\n")
    assert (
        lines[0]
        == "x" * MAX_LINE + f" … [line truncated to {MAX_LINE} of its {MAX_LINE + 100} bytes]"
    )
    assert lines[1] == "next"
    assert split(long) == [lines[0]]  # a long last line without newline too


def test_a_failing_callback_does_not_stop_the_reading() -> None:
    seen: list[str] = []

    def sink(_stream: str, text: str, _time: datetime) -> None:
        seen.append(text)
        raise RuntimeError("consumer bug")

    splitter = LineSplitter("stdout", sink)
    splitter.feed(b"a\nb\nc\n", NOW)
    assert seen == ["a", "b", "c"]


async def test_output_lines_arrive_per_stream_in_order(runner: Runner, make_task: MakeTask) -> None:
    code = (
        "import sys\n"
        "print('out 1')\n"
        "print('err 1', file=sys.stderr)\n"
        "print('out 2')\n"
        "sys.stdout.write('no newline at the end')\n"
        "result = None\n"
    )
    logs = Logs()
    outcome = await runner.run(make_task(code), logs)
    assert outcome.status == "succeeded", outcome.error
    assert logs.of("stdout") == ["out 1", "out 2", "no newline at the end"]
    assert logs.of("stderr") == ["err 1"]
    assert all(t.tzinfo is UTC for _s, _t, t in logs.lines)
    assert all(outcome.started_at <= t <= outcome.ended_at for _s, _t, t in logs.lines)


async def test_output_from_processes_the_step_starts_is_captured(
    runner: Runner, make_task: MakeTask
) -> None:
    code = "import subprocess\nsubprocess.run(['sh', '-c', 'echo from sh; echo oops >&2'])\n"
    logs = Logs()
    await runner.run(make_task(code), logs)
    assert (logs.of("stdout"), logs.of("stderr")) == (["from sh"], ["oops"])


class Counter:
    """Checks the order of numbered lines without keeping them."""

    def __init__(self) -> None:
        self.count = 0
        self.out_of_order = 0

    def __call__(self, stream: str, text: str, _time: datetime) -> None:
        if stream == "stdout":
            if not text.startswith(f"{self.count:06d} "):
                self.out_of_order += 1
            self.count += 1


async def test_a_hundred_thousand_lines_all_arrive_in_bounded_memory(
    runner: Runner, make_task: MakeTask
) -> None:
    # 100,000 lines of 200 bytes: 20 MB of output, while the runner's memory stays flat.
    code = "pad = 'x' * 192\nfor i in range(100_000):\n    print(f'{i:06d} {pad}')\nresult = None\n"
    counter = Counter()
    tracemalloc.start()
    try:
        began = time.monotonic()
        outcome = await runner.run(make_task(code), counter)
        elapsed = time.monotonic() - began
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome.status == "succeeded", outcome.error
    assert (counter.count, counter.out_of_order) == (100_000, 0)
    assert peak < 4 * 2**20, f"the runner held {peak} bytes"
    assert elapsed < 8


async def test_a_slow_consumer_does_not_lose_or_reorder_lines(
    runner: Runner, make_task: MakeTask
) -> None:
    counter = Counter()

    def slow(stream: str, text: str, when: datetime) -> None:
        counter(stream, text, when)
        if counter.count % 1000 == 0:
            time.sleep(0.01)

    code = "for i in range(20_000):\n    print(f'{i:06d} line')\nresult = None\n"
    outcome = await runner.run(make_task(code), slow)
    assert outcome.status == "succeeded", outcome.error
    assert (counter.count, counter.out_of_order) == (20_000, 0)
