"""Pooled attempts (``isolation: pooled``) on real workers: reused across attempts, each
attempt with its own output, environment and working directory; limits and crashes kill
the worker, which is replaced; what a step leaves running dies with its attempt."""

from __future__ import annotations

import asyncio

from executor.runner import Outcome, Runner
from tests.executor.runner_support import Logs, MakeTask, alive, wait_until

PID = "import os\nprint(os.getpid(), flush=True)\nresult = None  # no output\n"


async def pooled(
    runner: Runner, make_task: MakeTask, code: str, **kwargs: object
) -> tuple[Outcome, int]:
    """Run ``code`` (which must print its pid first) pooled: its Outcome and its pid."""
    logs = Logs()
    outcome = await runner.run(make_task(PID + code, isolation="pooled", **kwargs), logs)
    return outcome, int(logs.of("stdout")[0])


async def test_pooled_attempts_run_in_the_same_worker(runner: Runner, make_task: MakeTask) -> None:
    first, pid = await pooled(runner, make_task, "result = {'n': 1}")
    second, again = await pooled(runner, make_task, "result = {'n': 2}")
    assert (first.status, first.values, second.status, second.values) == (
        "succeeded",
        {"n": 1},
        "succeeded",
        {"n": 2},
    )
    assert again == pid and alive(pid)
    # A process attempt is not given the worker.
    logs = Logs()
    assert (await runner.run(make_task(PID), logs)).status == "succeeded"
    assert int(logs.of("stdout")[0]) != pid


async def test_each_pooled_attempt_has_its_own_output_environment_and_directory(
    runner: Runner, make_task: MakeTask
) -> None:
    code = (
        "print('from the first', flush=True)\n"
        "os.environ['LEFT_BY_STEP'] = '1'\n"
        "result = {'cwd': os.getcwd(), 'step': os.environ['LEGATO_STEP']}\n"
    )
    first_task = make_task(PID + code, isolation="pooled", step="one")
    first_logs = Logs()
    first = await runner.run(first_task, first_logs)
    check = "result = {'cwd': os.getcwd(), 'left': os.environ.get('LEFT_BY_STEP'), "
    check += "'step': os.environ['LEGATO_STEP']}\n"
    second_task = make_task(PID + check, isolation="pooled", step="two")
    second_logs = Logs()
    second = await runner.run(second_task, second_logs)
    assert first_logs.of("stdout")[0] == second_logs.of("stdout")[0]  # the same worker
    assert first_logs.of("stdout")[1:] == ["from the first"]
    assert second_logs.of("stdout")[1:] == []
    assert first.values == {"cwd": str(first_task.workdir), "step": "one"}
    assert second.values == {"cwd": str(second_task.workdir), "left": None, "step": "two"}


async def test_a_timeout_kills_the_worker_and_the_next_attempt_gets_a_new_one(
    runner: Runner, make_task: MakeTask
) -> None:
    _ok, worker = await pooled(runner, make_task, "")
    outcome, same = await pooled(runner, make_task, "import time\ntime.sleep(60)\n", timeout=0.5)
    assert same == worker
    assert (outcome.status, outcome.failure_kind) == ("failed", "timeout")
    assert outcome.error == (
        "step 'clean' exceeded its timeout of 500ms (timeout); stopped with SIGTERM"
    )
    assert not alive(worker)
    after, replacement = await pooled(runner, make_task, "")
    assert after.status == "succeeded" and replacement != worker


async def test_a_stopped_step_that_survives_sigterm_does_not_keep_its_worker(
    runner: Runner, make_task: MakeTask
) -> None:
    code = "import signal, time\nsignal.signal(signal.SIGTERM, lambda *_: None)\ntime.sleep(0.6)\n"
    outcome, worker = await pooled(runner, make_task, code, timeout=0.2)
    assert outcome.failure_kind == "timeout"
    await wait_until(lambda: not alive(worker))
    _after, replacement = await pooled(runner, make_task, "")
    assert replacement != worker


async def test_a_pooled_step_over_its_memory_limit_fails_and_its_worker_is_replaced(
    runner: Runner, make_task: MakeTask
) -> None:
    grow = "import time\nheap = []\nfor _ in range(400):\n"
    grow += "    heap.append(bytearray(1 << 20))\n    time.sleep(0.002)\n"
    outcome, worker = await pooled(runner, make_task, grow, memory_bytes=64 << 20)
    assert (outcome.status, outcome.failure_kind) == ("failed", "memory")
    assert outcome.error == "step 'clean' exceeded its memory limit of 64Mi (memory)"
    await wait_until(lambda: not alive(worker))
    after, replacement = await pooled(runner, make_task, "", memory_bytes=64 << 20)
    assert after.status == "succeeded" and replacement != worker


async def test_a_pooled_attempt_never_starts_in_a_worker_over_its_memory_limit(
    runner: Runner, make_task: MakeTask
) -> None:
    # The step keeps 40 MiB alive in the worker (a module's global): under its own 64 Mi
    # limit, but the next attempt, limited to 32 Mi, must not start with it.
    hoard = "import sys\nsys.modules['__main__'].hoard = bytearray(40 << 20)\n"
    hoard += "for i in range(0, len(sys.modules['__main__'].hoard), 4096):\n"
    hoard += "    sys.modules['__main__'].hoard[i] = 1\n"
    first, worker = await pooled(runner, make_task, hoard, memory_bytes=64 << 20)
    assert first.status == "succeeded"
    check = "import sys\nresult = {'hoard': hasattr(sys.modules['__main__'], 'hoard')}\n"
    second, other = await pooled(runner, make_task, check, memory_bytes=32 << 20)
    assert (second.status, second.values) == ("succeeded", {"hoard": False})
    assert other != worker
    await wait_until(lambda: not alive(worker))


async def test_a_crashing_pooled_step_fails_and_the_next_one_runs(
    runner: Runner, make_task: MakeTask
) -> None:
    crashed, worker = await pooled(runner, make_task, "os._exit(3)")
    assert (crashed.status, crashed.failure_kind) == ("failed", "error")
    assert crashed.error == "step 'clean' exited with status 3 before it reported a result"
    assert not alive(worker)
    after, replacement = await pooled(runner, make_task, "result = {'ok': True}")
    assert (after.status, after.values) == ("succeeded", {"ok": True})
    assert replacement != worker


async def test_what_a_pooled_step_leaves_running_dies_and_the_worker_is_kept(
    runner: Runner, make_task: MakeTask
) -> None:
    code = (
        "import subprocess\n"
        "sleeper = subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
        "print(sleeper.pid, flush=True)\n"
    )
    logs = Logs()
    outcome = await runner.run(make_task(PID + code, isolation="pooled"), logs)
    worker, sleeper = (int(line) for line in logs.of("stdout"))
    assert outcome.status == "succeeded"
    assert not alive(sleeper)
    _after, same = await pooled(runner, make_task, "")
    assert same == worker


async def test_a_step_that_leaves_a_thread_running_retires_its_worker(
    runner: Runner, make_task: MakeTask
) -> None:
    code = "import threading, time\n"
    code += "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    first, worker = await pooled(runner, make_task, code)
    assert first.status == "succeeded"
    await wait_until(lambda: not alive(worker))
    _after, replacement = await pooled(runner, make_task, "")
    assert replacement != worker


async def test_a_cancelled_pooled_attempt_is_cancelled(runner: Runner, make_task: MakeTask) -> None:
    task = make_task("import time\ntime.sleep(60)\n", isolation="pooled")
    running = asyncio.create_task(runner.run(task, Logs()))
    await wait_until(lambda: task.lease_id in runner.running())
    await asyncio.sleep(0.3)
    assert runner.cancel(task.lease_id, "asked")
    outcome = await running
    assert (outcome.status, outcome.error) == ("cancelled", "step 'clean' was cancelled: asked")
