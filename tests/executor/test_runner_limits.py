"""Limits on real children: timeouts and cancellation stop the whole process group, memory
limits end the attempt as `memory`."""

from __future__ import annotations

import asyncio
import time

import pytest

from executor.runner import Runner
from tests.executor.runner_support import Logs, MakeTask, alive, wait_until

# Starts a grandchild in the step's process group and prints both pids.
SPAWN = (
    "import os, subprocess, sys\n"
    "sleeper = subprocess.Popen(['sleep', '1000'])\n"
    "print(os.getpid(), sleeper.pid, flush=True)\n"
)


def pids(logs: Logs) -> list[int]:
    return [int(p) for p in logs.of("stdout")[0].split()]


async def test_a_timeout_stops_the_whole_process_group(runner: Runner, make_task: MakeTask) -> None:
    logs = Logs()
    began = time.monotonic()
    outcome = await runner.run(make_task(SPAWN + "sleeper.wait()\n", timeout=0.5), logs)
    assert time.monotonic() - began < 3
    assert (outcome.status, outcome.failure_kind) == ("failed", "timeout")
    assert outcome.error == (
        "step 'clean' exceeded its timeout of 500ms (timeout); stopped with SIGTERM"
    )
    child, grandchild = pids(logs)
    assert not alive(child) and not alive(grandchild)


async def test_a_step_ignoring_sigterm_is_killed_after_the_grace(
    runner: Runner, make_task: MakeTask
) -> None:
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + SPAWN
    code += "time.sleep(1000)\n"
    logs = Logs()
    began = time.monotonic()
    outcome = await runner.run(make_task(code, timeout=0.3), logs)
    elapsed = time.monotonic() - began
    assert 1.2 < elapsed < 4  # the timeout, then the runner's 1 s grace
    assert outcome.failure_kind == "timeout"
    assert outcome.error == (
        "step 'clean' exceeded its timeout of 300ms (timeout); killed with SIGKILL after 1s grace"
    )
    assert not any(alive(pid) for pid in pids(logs))


async def test_what_a_step_leaves_running_is_killed_when_it_ends(
    runner: Runner, make_task: MakeTask
) -> None:
    logs = Logs()
    # It returns with `sleep` still running.
    outcome = await runner.run(make_task(SPAWN + "result = None\n"), logs)
    assert outcome.status == "succeeded", outcome.error
    assert not any(alive(pid) for pid in pids(logs))


async def test_a_large_allocation_over_the_memory_limit_fails_as_memory(
    runner: Runner, make_task: MakeTask
) -> None:
    logs = Logs()
    code = "import numpy as np\nblock = np.ones(300 * 2**20 // 8)\n"
    outcome = await runner.run(make_task(code, memory_bytes=100 * 2**20), logs)
    assert (outcome.status, outcome.failure_kind) == ("failed", "memory")
    assert outcome.error.startswith("step 'clean' exceeded its memory limit of 100Mi (memory)")
    assert "MemoryError" in outcome.error and "(transform line 2)" in outcome.error
    assert any("MemoryError" in line for line in logs.of("stderr"))


async def test_memory_growing_past_the_limit_is_caught_by_the_watchdog(
    runner: Runner, make_task: MakeTask
) -> None:
    # 20 MiB at a time stays under the RLIMIT_DATA backstop (2 x the limit) until 200 MiB:
    # the watchdog must stop it first, at a little over 100 MiB.
    code = (
        "import time\nimport numpy as np\nblocks = []\n"
        "for _ in range(15):\n"
        "    blocks.append(np.ones(20 * 2**20 // 8))\n"
        "    time.sleep(0.1)\n"
        "print('survived', flush=True)\n"
    )
    logs = Logs()
    outcome = await runner.run(make_task(code, memory_bytes=100 * 2**20), logs)
    assert (outcome.status, outcome.failure_kind) == ("failed", "memory")
    assert outcome.error == "step 'clean' exceeded its memory limit of 100Mi (memory)"
    assert logs.of("stdout") == []


async def test_memory_under_the_limit_is_fine(runner: Runner, make_task: MakeTask) -> None:
    code = "import numpy as np\nresult = {'sum': float(np.ones(40 * 2**20 // 8).sum())}\n"
    outcome = await runner.run(make_task(code, memory_bytes=100 * 2**20), Logs())
    assert outcome.status == "succeeded", outcome.error
    assert outcome.values == {"sum": float(40 * 2**20 // 8)}


async def test_cancel_stops_the_attempt_with_its_reason(
    runner: Runner, make_task: MakeTask
) -> None:
    logs = Logs()
    task = make_task(SPAWN + "sleeper.wait()\n")
    started = asyncio.Event()
    running = asyncio.create_task(runner.run(task, logs, lambda _pid, _t: started.set()))
    await asyncio.wait_for(started.wait(), 5)
    await wait_until(lambda: logs.lines)  # the grandchild has started
    assert runner.running() == [task.lease_id]
    assert runner.cancel(task.lease_id, "the run was cancelled by alice")
    outcome = await asyncio.wait_for(running, 5)
    assert (outcome.status, outcome.failure_kind) == ("cancelled", None)
    assert outcome.error == "step 'clean' was cancelled: the run was cancelled by alice"
    assert not any(alive(pid) for pid in pids(logs))
    assert runner.running() == []
    assert not runner.cancel(task.lease_id, "again")


async def test_cancel_before_the_child_starts(runner: Runner, make_task: MakeTask) -> None:
    task = make_task("import time\ntime.sleep(1000)\n")
    started: list[int] = []
    running = asyncio.create_task(runner.run(task, Logs(), lambda pid, _t: started.append(pid)))
    await asyncio.sleep(0)  # run() has registered the attempt, not yet forked
    assert runner.cancel(task.lease_id, "lease lost")
    outcome = await asyncio.wait_for(running, 5)
    assert outcome.status == "cancelled" and outcome.error.endswith("lease lost")
    assert started == []


async def test_kill_all_ends_every_attempt(runner: Runner, make_task: MakeTask) -> None:
    tasks = [make_task("import time\ntime.sleep(1000)\n") for _ in range(3)]
    started: list[int] = []
    runs = [
        asyncio.create_task(runner.run(t, Logs(), lambda pid, _t: started.append(pid)))
        for t in tasks
    ]
    await wait_until(lambda: len(started) == 3)
    await asyncio.wait_for(runner.kill_all("the agent is stopping"), 5)
    outcomes = [run.result() for run in runs]  # kill_all returned: all have ended
    assert [o.status for o in outcomes] == ["cancelled"] * 3
    assert all(o.error.endswith("the agent is stopping") for o in outcomes)
    assert not any(alive(pid) for pid in started)


async def test_cancelling_run_itself_kills_the_child(runner: Runner, make_task: MakeTask) -> None:
    logs = Logs()
    running = asyncio.create_task(runner.run(make_task(SPAWN + "sleeper.wait()\n"), logs))
    await wait_until(lambda: logs.lines)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await wait_until(lambda: not any(alive(pid) for pid in pids(logs)))
    assert runner.running() == []
