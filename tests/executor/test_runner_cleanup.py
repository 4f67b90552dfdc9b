"""What dies with a step: every process an attempt started, including one that left the
step's session and process group (``setsid``) and ignores SIGTERM, whether the attempt
succeeds, times out, is cancelled, or its runner stops, loses its fork server or is killed
with SIGKILL (alone or with its fork server); and, where a cgroup v2 is writable, each
attempt in a cgroup of its own, and those of dead agents removed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from executor.runner import Runner
from executor.runner.cgroups import CgroupPool, cheap_moves
from tests.executor.escapees import (
    escapee_alive,
    escapee_pid,
    kill_escapee,
    step_code,
    terminated,
)
from tests.executor.runner_support import USER_MODULES, Logs, MakeTask, alive, wait_until

pytestmark = pytest.mark.timeout(90)

SLEEP = "time.sleep(1000)"
STUBBORN = f"import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n{SLEEP}"
"""A step that ignores SIGTERM too, so it lives through the grace and an orphan's handler
has all of it to note the SIGTERM it got: once the step's own process exits, what is left of
it is killed at once, which can beat the orphan's handler on a busy machine."""
NO_CGROUP = (
    "no writable cgroup v2 here (the agent's cgroup in /proc/self/cgroup is not delegated): "
    "attempts are contained by the subreapers alone"
)


@pytest.fixture
def escapees(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Pid files for escapees; whatever a failing test leaves running is killed after it."""
    made: list[Path] = []

    def pidfile(name: str = "escapee") -> Path:
        path = tmp_path / f"{name}.pid"
        made.append(path)
        return path

    yield pidfile
    for path in made:
        kill_escapee(path)


async def test_a_process_that_left_the_group_dies_with_a_successful_step(
    runner: Runner, make_task: MakeTask, escapees: Callable[[str], Path]
) -> None:
    pidfile = escapees("child")
    outcome = await runner.run(make_task(step_code(pidfile)), Logs())
    assert outcome.status == "succeeded", outcome.error
    assert not escapee_alive(pidfile), "the step's child outlived the step"
    assert not alive(outcome.values["result"])


async def test_an_orphan_that_ignores_sigterm_dies_when_the_step_times_out(
    runner: Runner, make_task: MakeTask, escapees: Callable[[str], Path]
) -> None:
    pidfile = escapees("orphan")
    task = make_task(step_code(pidfile, orphan=True, then=STUBBORN), timeout=3.0)
    outcome = await runner.run(task, Logs())
    assert (outcome.status, outcome.failure_kind) == ("failed", "timeout"), outcome.error
    assert pidfile.exists(), "the orphan was not up before the step timed out"
    assert terminated(pidfile), "SIGTERM did not reach the process that left the group"
    assert not escapee_alive(pidfile), "the orphan outlived the step's timeout"


async def test_an_orphan_dies_when_the_step_is_cancelled(
    runner: Runner, make_task: MakeTask, escapees: Callable[[str], Path]
) -> None:
    pidfile = escapees("orphan")
    task = make_task(step_code(pidfile, orphan=True, then=STUBBORN))
    running = asyncio.create_task(runner.run(task, Logs()))
    await wait_until(pidfile.exists, within=30)
    assert runner.cancel(task.lease_id, "cancelled by the test")
    outcome = await running
    assert outcome.status == "cancelled", outcome.error
    assert terminated(pidfile)
    assert not escapee_alive(pidfile), "the orphan outlived the cancelled step"


async def test_orphans_die_when_the_runner_stops(
    make_task: MakeTask, escapees: Callable[[str], Path]
) -> None:
    runner = Runner(grace_seconds=1.0)
    await runner.start()
    orphan, child = escapees("orphan"), escapees("child")
    tasks = [
        make_task(step_code(orphan, orphan=True, then=SLEEP)),
        make_task(step_code(child, then=SLEEP)),
    ]
    running = [asyncio.create_task(runner.run(task, Logs())) for task in tasks]
    await wait_until(lambda: orphan.exists() and child.exists(), within=30)
    await asyncio.wait_for(runner.stop(), 10)
    assert [(await r).status for r in running] == ["cancelled", "cancelled"]
    assert not escapee_alive(orphan) and not escapee_alive(child)


async def test_an_orphan_of_a_running_step_outlives_other_steps_but_not_its_own(
    runner: Runner, make_task: MakeTask, escapees: Callable[[str], Path]
) -> None:
    # The step's process adopts its orphans (it is a subreaper), so the end of another
    # attempt cannot mistake them for leftovers; they die when their own step ends.
    pidfile = escapees("orphan")
    task = make_task(step_code(pidfile, orphan=True, then=SLEEP))
    running = asyncio.create_task(runner.run(task, Logs()))
    await wait_until(pidfile.exists, within=30)
    for _ in range(3):
        other = await runner.run(make_task("result = 1"), Logs())
        assert other.status == "succeeded", other.error
    assert escapee_alive(pidfile), "another attempt's end killed a running step's process"
    runner.cancel(task.lease_id, "done")
    assert (await running).status == "cancelled"
    assert not escapee_alive(pidfile)


async def test_an_orphan_dies_when_the_fork_server_is_killed(
    runner: Runner, make_task: MakeTask, escapees: Callable[[str], Path]
) -> None:
    pidfile = escapees("orphan")
    started: list[int] = []
    task = make_task(step_code(pidfile, orphan=True, then=SLEEP))
    running = asyncio.create_task(runner.run(task, Logs(), lambda pid, _t: started.append(pid)))
    await wait_until(pidfile.exists, within=30)
    zygote = runner.zygote_pid
    assert zygote is not None
    os.kill(zygote, signal.SIGKILL)
    outcome = await asyncio.wait_for(running, 10)
    assert (outcome.status, outcome.failure_kind) == ("failed", "lost")
    await wait_until(lambda: not escapee_alive(pidfile) and not alive(started[0]), within=5)


@pytest.mark.parametrize("kill", ["agent", "group"])
def test_orphans_die_when_the_agent_is_killed_with_sigkill(
    tmp_path: Path, escapees: Callable[[str], Path], kill: str
) -> None:
    # "agent": the agent alone (the OOM killer): its fork server gets PR_SET_PDEATHSIG and
    # kills everything below it. "group": the agent's process group, fork server included
    # (`kill -9 -PGID`): the attempt's process gets its own parent-death signal.
    pidfile = escapees("orphan")
    workdir = tmp_path / "attempt"
    workdir.mkdir()
    code = step_code(pidfile, orphan=True, then=SLEEP)
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from executor.runner import Runner, Task

        async def main() -> None:
            runner = Runner()
            await runner.start()
            task = Task(
                lease_id="lease-1", run_id="run-1", pipeline="etl", step_name="nap",
                attempt=1, kind="transform", config={{"code": {code!r}}}, params={{}},
                inputs=[], timeout=None, memory_bytes=None,
                workdir=Path({str(workdir)!r}),
            )
            started = lambda pid, _t: print("step", pid, flush=True)
            await runner.run(task, lambda *_a: None, started)

        asyncio.run(main())
        """
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
        start_new_session=True,
    )
    step = 0
    try:
        assert agent.stdout is not None
        line = ""
        while not line.startswith("step "):  # after the runner's own log lines
            line = agent.stdout.readline()
            assert line, "the agent exited before starting the step"
        step = int(line.split()[1])
        deadline = time.monotonic() + 30
        while not pidfile.exists():
            assert time.monotonic() < deadline, "the escapee did not start"
            time.sleep(0.02)
    finally:
        if kill == "group":
            os.killpg(agent.pid, signal.SIGKILL)
        agent.kill()
        agent.wait()
    deadline = time.monotonic() + 10
    while escapee_alive(pidfile) or alive(step):
        assert time.monotonic() < deadline, "the step's processes outlived the killed agent"
        time.sleep(0.02)


def cgroup_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError(f"process {pid} has no cgroup v2")


async def test_with_cgroups_each_attempt_runs_in_a_cgroup_of_its_own(
    make_task: MakeTask, escapees: Callable[[str], Path]
) -> None:
    pool = CgroupPool.detect()
    if pool is None:
        pytest.skip(NO_CGROUP)
    # Asked for, whatever moves cost here (by default only where they are cheap).
    runner = Runner(grace_seconds=1.0, module_path=[USER_MODULES], attempt_cgroups=True)
    await runner.start()
    try:
        await _runs_in_its_own_cgroup(runner, pool, make_task, escapees)
    finally:
        await runner.stop()


def test_every_attempt_gets_a_cgroup_by_default_only_where_moves_are_cheap(
    tmp_path: Path,
) -> None:
    pool = CgroupPool.detect()
    if pool is None:
        pytest.skip(NO_CGROUP)
    assert pool.per_attempt == cheap_moves()
    assert CgroupPool.detect(per_attempt=True).per_attempt  # type: ignore[union-attr]
    mounts = "36 25 0:31 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,{}\n"
    for options, cheap in (("nsdelegate", False), ("nsdelegate,favordynmods", True)):
        (tmp_path / "mountinfo").write_text(mounts.format(options))
        assert cheap_moves(tmp_path) is cheap


async def _runs_in_its_own_cgroup(
    runner: Runner, pool: CgroupPool, make_task: MakeTask, escapees: Callable[[str], Path]
) -> None:
    pidfile = escapees("orphan")
    task = make_task(step_code(pidfile, orphan=True, then=SLEEP))
    started: list[int] = []
    running = asyncio.create_task(runner.run(task, Logs(), lambda pid, _t: started.append(pid)))
    await wait_until(pidfile.exists, within=30)
    zygote = runner.zygote_pid
    cgroup = cgroup_of(started[0])
    assert cgroup.rsplit("/", 1)[1].startswith(f"legato-{os.getpid()}-{zygote}-")
    assert cgroup_of(escapee_pid(pidfile)) == cgroup
    path = pool.root / cgroup.rsplit("/", 1)[1]
    assert {started[0], escapee_pid(pidfile)} <= set(
        map(int, (path / "cgroup.procs").read_text().split())
    )
    runner.cancel(task.lease_id, "done")
    assert (await running).status == "cancelled"
    assert not escapee_alive(pidfile)
    assert not path.exists()


def test_a_cgroup_left_by_a_dead_agent_is_killed_when_the_next_one_starts() -> None:
    pool = CgroupPool.detect()
    if pool is None:
        pytest.skip(NO_CGROUP)
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid stands for an agent and a fork server that are gone
    sleeper = subprocess.Popen(["sleep", "300"])
    live = os.getpid()
    stale = pool.root / f"legato-{gone.pid}-{gone.pid}-1"
    kept = pool.root / f"legato-{live}-{live}-1000"  # its agent and fork server run
    try:
        stale.mkdir()
        kept.mkdir()
        (stale / "cgroup.procs").write_text(str(sleeper.pid))
        assert CgroupPool.detect() is not None
        assert sleeper.wait(timeout=5) == -signal.SIGKILL
        assert not stale.exists()
        assert kept.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
        for path in (stale, kept):
            with contextlib.suppress(FileNotFoundError):
                path.rmdir()


async def test_a_closed_runner_starts_no_attempt(runner: Runner, make_task: MakeTask) -> None:
    """An attempt that reaches the runner after the agent began to stop (its inputs were
    still downloading) ends cancelled without a process."""
    await runner.close("the agent is stopping")
    started: list[int] = []
    outcome = await runner.run(make_task("result = 1"), Logs(), lambda pid, _t: started.append(pid))
    assert (outcome.status, started) == ("cancelled", [])
    assert "the agent is stopping" in outcome.error
