"""The fork server: cheap starts, one process group per attempt, concurrency, and its own
death handled (restarted; running attempts lost; it dies with the agent)."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from executor.runner import ForkServerError, Runner
from tests.executor.runner_support import Logs, MakeTask, alive, children_of, wait_until


async def test_the_fork_server_is_single_threaded(runner: Runner) -> None:
    assert runner.zygote_pid is not None
    assert len(os.listdir(f"/proc/{runner.zygote_pid}/task")) == 1


async def test_each_attempt_has_its_own_session_and_process_group(
    runner: Runner, make_task: MakeTask
) -> None:
    code = "import os\nresult = [os.getpid(), os.getpgid(0), os.getsid(0), os.getppid()]\n"
    outcome = await runner.run(make_task(code), Logs())
    pid, group, session, parent = outcome.values["result"]
    assert pid == group == session
    assert parent == runner.zygote_pid


async def test_a_no_op_starts_user_code_within_milliseconds(
    runner: Runner, make_task: MakeTask
) -> None:
    # An interpreter start alone is ~20-60 ms, with pandas ~500 ms; a fork is not.
    delays = []
    for _ in range(40):
        task = make_task("import time\nresult = time.time()")
        began = time.time()
        outcome = await runner.run(task, Logs())
        delays.append(outcome.values["result"] - began)
    assert statistics.median(delays) < 0.015, sorted(delays)


async def test_four_attempts_run_at_once(runner: Runner, make_task: MakeTask) -> None:
    code = "import os, time\ntime.sleep(0.5)\nresult = os.getpid()\n"
    began = time.monotonic()
    outcomes = await asyncio.gather(*(runner.run(make_task(code), Logs()) for _ in range(4)))
    assert time.monotonic() - began < 1.5
    assert [o.status for o in outcomes] == ["succeeded"] * 4
    assert len({o.values["result"] for o in outcomes}) == 4


async def test_a_dead_fork_server_is_restarted(runner: Runner, make_task: MakeTask) -> None:
    first = runner.zygote_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    # A new fork server imports the step kinds' libraries again (pandas, pyarrow,
    # SQLAlchemy): seconds on a loaded 2-core machine, so the bound is generous.
    await wait_until(lambda: runner.zygote_pid not in (None, first), within=30)
    outcome = await runner.run(make_task("result = 1"), Logs())
    assert outcome.status == "succeeded", outcome.error
    assert not alive(first)


async def test_attempts_of_a_dead_fork_server_are_lost_and_killed(
    runner: Runner, make_task: MakeTask
) -> None:
    logs = Logs()
    code = "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(1000)\n"
    running = asyncio.create_task(runner.run(make_task(code), logs))
    await wait_until(lambda: bool(logs.lines))
    zygote = runner.zygote_pid
    assert zygote is not None
    os.kill(zygote, signal.SIGKILL)
    outcome = await asyncio.wait_for(running, 5)
    assert (outcome.status, outcome.failure_kind) == ("failed", "lost")
    assert outcome.error == (
        "step 'clean' was lost: the agent's fork server died while it ran; "
        "its processes were killed"
    )
    child = int(logs.of("stdout")[0])
    await wait_until(lambda: not alive(child))
    next_outcome = await runner.run(make_task("result = 2"), Logs())
    assert next_outcome.values == {"result": 2}


async def test_stop_ends_the_fork_server_and_its_children(make_task: MakeTask) -> None:
    runner = Runner(grace_seconds=1.0)
    await runner.start()
    zygote = runner.zygote_pid
    assert zygote is not None
    await wait_until(lambda: len(children_of(zygote)) == 1)  # the spare child
    spare = children_of(zygote)[0]
    running = asyncio.create_task(runner.run(make_task("import time\ntime.sleep(1000)"), Logs()))
    await wait_until(lambda: bool(runner.running()) and len(children_of(zygote)) == 2)
    await asyncio.wait_for(runner.stop(), 5)
    assert (await running).status == "cancelled"
    assert not alive(zygote) and not alive(spare)
    assert runner.zygote_pid is None


def test_the_fork_server_dies_with_the_agent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from executor.runner import Runner

        async def main() -> None:
            runner = Runner()
            await runner.start()
            print("zygote", runner.zygote_pid, flush=True)
            await asyncio.sleep(1000)

        asyncio.run(main())
        """
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert agent.stdout is not None
        line = ""
        while not line.startswith("zygote "):  # after the agent's own log lines
            line = agent.stdout.readline()
            assert line, "the agent exited before starting its fork server"
        zygote = int(line.split()[1])
        assert alive(zygote)
    finally:
        agent.kill()
        agent.wait()
    deadline = time.monotonic() + 5
    while alive(zygote):
        assert time.monotonic() < deadline, "the fork server outlived the agent"
        time.sleep(0.02)


async def test_a_fork_server_that_cannot_start_is_an_error(tmp_path: Path) -> None:
    runner = Runner(python=str(tmp_path / "no-python"))
    with pytest.raises(ForkServerError, match="cannot start the fork server"):
        await runner.start()
    runner = Runner(python="/bin/false")
    with pytest.raises(ForkServerError, match="exited with status 1 before it was ready"):
        await runner.start()


async def test_a_module_that_fails_to_preload_is_imported_by_the_step_instead(
    make_task: MakeTask, tmp_path: Path
) -> None:
    runner = Runner(preload=["pandas", "no_such_module_for_legato"])
    await runner.start()
    try:
        outcome = await runner.run(make_task("result = len(pd.DataFrame({'a': [1]}))"), Logs())
        assert outcome.values == {"result": 1}
    finally:
        await runner.stop()
