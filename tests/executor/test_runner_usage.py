"""What attempts used, measured on real children: peak memory of the whole process tree
(a grandchild's included) and CPU time, in both isolations."""

from __future__ import annotations

import time

from executor.runner import Runner
from tests.executor.runner_support import Logs, MakeTask

MiB = 1 << 20

# Holds 200 MiB of written pages for half a second (several watchdog samples).
HOLD = "import time\nblock = bytearray(200 << 20)\ntime.sleep(0.5)\ndel block\nresult = None\n"

# A grandchild holds 200 MiB while the step itself holds nearly nothing.
GRANDCHILD = (
    "import subprocess, sys\n"
    "code = 'import time; block = bytearray(200 << 20); time.sleep(0.6)'\n"
    "subprocess.run([sys.executable, '-c', code], check=True)\n"
    "result = None\n"
)

# Burns 0.5 s of CPU (however long that takes on a loaded machine) and prints how much it
# burnt, as the process counts it itself (a pooled worker's count starts before).
BURN = (
    "import time\nstart = time.process_time()\n"
    "while time.process_time() - start < 0.5:\n    pass\n"
    "print(time.process_time() - start, flush=True)\nresult = None\n"
)


async def test_a_child_holding_200_mib_reports_a_peak_of_at_least_that(
    runner: Runner, make_task: MakeTask
) -> None:
    outcome = await runner.run(make_task(HOLD), Logs())
    assert outcome.status == "succeeded", outcome.error
    assert outcome.peak_memory_bytes is not None
    assert 200 * MiB <= outcome.peak_memory_bytes < 400 * MiB


async def test_a_grandchild_s_memory_counts_in_the_attempt_s_peak(
    runner: Runner, make_task: MakeTask
) -> None:
    outcome = await runner.run(make_task(GRANDCHILD), Logs())
    assert outcome.status == "succeeded", outcome.error
    assert outcome.peak_memory_bytes is not None
    assert outcome.peak_memory_bytes >= 200 * MiB


async def test_a_small_step_reports_a_small_peak(runner: Runner, make_task: MakeTask) -> None:
    outcome = await runner.run(make_task("result = None"), Logs())
    assert outcome.peak_memory_bytes is not None
    assert outcome.peak_memory_bytes < 64 * MiB  # the fork server's shared pages do not count


async def test_a_cpu_burning_step_reports_the_cpu_time_it_used(
    runner: Runner, make_task: MakeTask
) -> None:
    logs = Logs()
    began = time.monotonic()
    outcome = await runner.run(make_task(BURN), logs)
    wall = time.monotonic() - began
    assert outcome.status == "succeeded", outcome.error
    used = float(logs.of("stdout")[0])
    assert outcome.cpu_seconds is not None
    # What it counted, plus the little it used after printing; never more than the wall
    # time of a single-threaded step.
    assert used <= outcome.cpu_seconds <= used + 0.15
    assert outcome.cpu_seconds <= wall + 0.05


async def test_a_sleeping_step_reports_little_cpu(runner: Runner, make_task: MakeTask) -> None:
    outcome = await runner.run(make_task("import time\ntime.sleep(0.4)\nresult = None\n"), Logs())
    assert outcome.cpu_seconds is not None
    assert outcome.cpu_seconds < 0.2


async def test_a_grandchild_s_cpu_counts_when_the_step_waited_for_it(
    runner: Runner, make_task: MakeTask
) -> None:
    code = (
        "import subprocess, sys\n"
        f"subprocess.run([sys.executable, '-c', {BURN!r}], check=True)\n"
        "result = None\n"
    )
    outcome = await runner.run(make_task(code), Logs())
    assert outcome.status == "succeeded", outcome.error
    assert outcome.cpu_seconds is not None and outcome.cpu_seconds >= 0.5


async def test_a_failed_step_still_reports_its_use(runner: Runner, make_task: MakeTask) -> None:
    outcome = await runner.run(make_task(HOLD + "raise ValueError('no')\n"), Logs())
    assert outcome.status == "failed"
    assert outcome.peak_memory_bytes is not None and outcome.peak_memory_bytes >= 200 * MiB


async def test_pooled_attempts_report_their_own_peak_and_cpu_not_the_worker_s(
    runner: Runner, make_task: MakeTask
) -> None:
    pid = "import os\nprint(os.getpid(), flush=True)\n"
    logs = [Logs(), Logs(), Logs()]
    big = await runner.run(make_task(pid + HOLD, isolation="pooled"), logs[0])
    burn = await runner.run(make_task(pid + BURN, isolation="pooled"), logs[1])
    small = await runner.run(make_task(pid + "result = None", isolation="pooled"), logs[2])
    assert big.status == burn.status == small.status == "succeeded"
    assert len({log.of("stdout")[0] for log in logs}) == 1  # one worker ran all three
    assert big.peak_memory_bytes is not None and big.peak_memory_bytes >= 200 * MiB
    # The later attempts do not inherit the first's peak, nor the second's CPU.
    assert small.peak_memory_bytes is not None and small.peak_memory_bytes < 64 * MiB
    assert burn.cpu_seconds is not None and burn.cpu_seconds >= 0.5
    assert small.cpu_seconds is not None and small.cpu_seconds < 0.2


async def test_a_pooled_attempt_s_grandchild_counts(runner: Runner, make_task: MakeTask) -> None:
    outcome = await runner.run(make_task(GRANDCHILD, isolation="pooled"), Logs())
    assert outcome.status == "succeeded", outcome.error
    assert outcome.peak_memory_bytes is not None and outcome.peak_memory_bytes >= 200 * MiB
