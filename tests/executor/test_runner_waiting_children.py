"""A child waits per free slot: an attempt starts in a process forked before it arrived,
so no fork is on its critical path, and the fork server forks a replacement afterwards."""

from __future__ import annotations

import asyncio

from executor.runner import Runner
from tests.executor.runner_support import USER_MODULES, Logs, MakeTask, children_of, wait_until

PID = "import os\nprint(os.getpid(), flush=True)\nresult = None  # no output\n"


async def test_each_free_slot_has_a_child_waiting_and_attempts_start_in_them(
    make_task: MakeTask,
) -> None:
    runner = Runner(grace_seconds=1.0, module_path=[USER_MODULES], slots=3)
    await runner.start()
    try:
        zygote = runner.zygote_pid
        assert zygote is not None
        await wait_until(lambda: len(children_of(zygote)) == 3)
        waiting = set(children_of(zygote))
        logs = [Logs() for _ in range(3)]
        started: list[int] = []
        outcomes = await asyncio.gather(
            *(runner.run(make_task(PID), log, lambda pid, _at: started.append(pid)) for log in logs)
        )
        assert [o.status for o in outcomes] == ["succeeded"] * 3
        ran = {int(log.of("stdout")[0]) for log in logs}
        # Every attempt ran in a process that existed before it was asked for.
        assert ran == set(started) == waiting
        # And the slots, free again, each get a new waiting child.
        await wait_until(lambda: len(set(children_of(zygote)) - waiting) == 3)
    finally:
        await runner.stop()


async def test_one_slot_keeps_one_child_waiting(runner: Runner, make_task: MakeTask) -> None:
    zygote = runner.zygote_pid
    assert zygote is not None
    await wait_until(lambda: len(children_of(zygote)) == 1)
    (waiting,) = children_of(zygote)
    logs = Logs()
    assert (await runner.run(make_task(PID), logs)).status == "succeeded"
    assert int(logs.of("stdout")[0]) == waiting
    await wait_until(lambda: len(children_of(zygote)) == 1 and children_of(zygote) != [waiting])
