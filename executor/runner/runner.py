"""The Runner: runs attempts in children of the fork server, under limits, and reports
their logs and outcomes. See the package docstring for the contract."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

import executor
import legato
from executor.runner import pipes, procfs
from executor.runner.cgroups import CgroupPool
from executor.runner.forkserver import (
    Child,
    ExitStatus,
    ForkServer,
    ForkServerError,
    ForkServerLostError,
    Started,
    kill_orphaned_attempt,
)
from executor.runner.outcome import Ending, Stop, build, parse_document
from executor.runner.task import Outcome, Task
from executor.runner.usage import attempt_usage
from executor.runner.watchdog import MemoryWatchdog
from legato.spec.connections import ENV_PREFIX

__all__ = ["DEFAULT_PRELOAD", "OUTPUT_FILE", "TASK_FILE", "Runner"]

log = structlog.get_logger("legato.runner")

DEFAULT_PRELOAD: tuple[str, ...] = ("numpy", "pandas", "pyarrow", "pyarrow.ipc", "executor.kinds")
TASK_FILE = "task.json"
OUTPUT_FILE = "output.arrow"
ARTIFACTS_DIR = "artifacts"
"""Files a step writes here (``$LEGATO_ARTIFACTS_DIR``) are stored as its artifacts."""
DRAIN_SECONDS = 2.0
"""How long the pipes may stay open after the child exited (something that left its
process group may hold them) before the runner stops reading."""
MAX_RESULT_BYTES = 16 << 20

# Numerical libraries start thread pools when imported; a fork server must not have
# threads, so its pools are sized to one. Children get the agent's values back in their
# environment (for the programs they start), but libraries already loaded keep one thread.
SINGLE_THREADED = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
}

LogCallback = Callable[[str, str, datetime], None]
StartedCallback = Callable[[int, datetime], None]


def _now() -> datetime:
    return datetime.now(UTC)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def _until_gone(pgid: int, pids: Sequence[int], within: float) -> None:
    """Wait (a little) until the killed processes of group ``pgid`` and the killed ``pids``
    have exited, so that none of an attempt's processes is still running when run()
    returns. (Signal 0 and /proc only test for existence: harmless even if an id were
    reused.)"""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    left = list(pids)
    while loop.time() < deadline:
        left = [pid for pid in left if procfs.alive(pid)]
        if not left and not _group_exists(pgid):
            return
        await asyncio.sleep(0.005)


def _kill_when_started(server: ForkServer, child: int, started: asyncio.Future[Started]) -> None:
    if not started.cancelled() and started.exception() is None:
        server.signal(started.result().pid, signal.SIGKILL, child)


@dataclass
class _Attempt:
    task: Task
    server: ForkServer | None = None
    """The fork server that started the child (it signals the child's group)."""
    pid: int | None = None
    child: int | None = None
    """The fork server's id of the attempt (a pooled worker's pid serves many)."""
    stop: Stop | None = None
    urgent: bool = False
    """Stopped without grace (SIGKILL at once)."""
    killed: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    kill_timer: asyncio.TimerHandle | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class Runner:
    """Runs step attempts in child processes of a warm fork server.

    ``grace_seconds``: between SIGTERM and SIGKILL when stopping an attempt. ``python``:
    the interpreter of the fork server. ``preload``: modules it imports before forking.
    ``module_path``: directories searched for user modules (``function`` steps), before
    the agent's ``PYTHONPATH``. ``slots``: how many attempts run at once (the agent's
    slots): the fork server keeps one child waiting per free slot.
    """

    def __init__(
        self,
        *,
        grace_seconds: float = 5.0,
        python: str = sys.executable,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        module_path: Sequence[Path | str] = (),
        attempt_cgroups: bool | None = None,
        slots: int = 1,
    ) -> None:
        """``attempt_cgroups``: a cgroup for every attempt where cgroup v2 is writable
        (None: only where moving a process is cheap, see :mod:`.cgroups`)."""
        self.grace_seconds = grace_seconds
        self._slots = slots
        self._attempt_cgroups = attempt_cgroups
        self._python = python
        self._preload = list(preload)
        self._module_path = [str(Path(p).resolve()) for p in module_path]
        self._server: ForkServer | None = None
        self._server_lock = asyncio.Lock()
        self._restart: asyncio.Task[None] | None = None
        self._attempts: dict[str, _Attempt] = {}
        self._watchdog = MemoryWatchdog()
        self._cgroups: CgroupPool | None = None
        self._environ: dict[str, str | None] = {}
        self._started = False
        self._closing: Stop | None = None

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the fork server (and detect a delegated cgroup v2, and its memory
        controller)."""
        self._cgroups = await asyncio.to_thread(
            functools.partial(CgroupPool.detect, per_attempt=self._attempt_cgroups)
        )
        if self._cgroups is not None:
            log.info(
                "attempt_cgroups",
                root=str(self._cgroups.root),
                every_attempt=self._cgroups.per_attempt,
                memory_limits="cgroup v2" if self._cgroups.memory else "watchdog",
            )
        self._started = True
        await self._ensure_server()

    async def stop(self) -> None:
        """Kill running attempts at once and stop the fork server."""
        self._started = False
        for attempt in list(self._attempts.values()):
            self._stop(attempt, Stop("cancel", "the runner is stopping"), grace=False)
        await self._wait_all()
        if self._restart is not None:
            self._restart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restart
        await self._watchdog.close()
        if self._server is not None:
            await self._server.stop()
            self._server = None

    @property
    def zygote_pid(self) -> int | None:
        """The fork server's pid, while it runs."""
        server = self._server
        return server.pid if server is not None and server.alive else None

    def _server_env(self) -> dict[str, str]:
        # Steps get the connections they name in their task, never the agent's others, and
        # none of the agent's own credentials or settings (its enrolment token above all).
        env = {k: v for k, v in os.environ.items() if not _agent_only(k)}
        self._environ = {name: os.environ.get(name) for name in SINGLE_THREADED}
        env.update(SINGLE_THREADED)
        # User modules come from module_path, then the agent's PYTHONPATH; `executor` and
        # `legato` from where this process imported them (a checkout works uninstalled).
        paths = [*self._module_path, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        for package in (executor, legato):
            root = str(Path(package.__file__ or ".").resolve().parents[1])
            if root not in paths:
                paths.append(root)
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    async def _ensure_server(self) -> ForkServer:
        async with self._server_lock:
            if self._server is not None and self._server.alive:
                return self._server
            if self._server is not None:
                await self._server.stop()
            server = ForkServer(
                python=self._python,
                preload=self._preload,
                env=self._server_env(),
                on_lost=self._server_lost,
                cgroups=self._cgroups,
                slots=self._slots,
            )
            await server.start()
            self._server = server
            log.info("fork_server_started", pid=server.pid)
            return server

    def _server_lost(self) -> None:
        lost = self._server.pid if self._server else None
        log.warning("fork_server_lost", pid=lost)
        if self._started and (self._restart is None or self._restart.done()):
            self._restart = asyncio.get_running_loop().create_task(self._restart_server(lost))

    async def _restart_server(self, lost: int | None) -> None:
        if self._cgroups is not None and lost is not None:  # its spare's, and any it left
            await asyncio.to_thread(self._cgroups.remove_stale, fork_server=lost)
        try:
            await self._ensure_server()
        except ForkServerError as exc:  # the next run() tries again
            log.error("fork_server_restart_failed", error=str(exc))

    # -- control ------------------------------------------------------------------------

    def running(self) -> list[str]:
        return list(self._attempts)

    def cancel(self, lease_id: str, reason: str) -> bool:
        """Stop the attempt of ``lease_id`` (SIGTERM, grace, SIGKILL); its run() returns a
        cancelled Outcome. False when no such attempt runs."""
        attempt = self._attempts.get(lease_id)
        if attempt is None or attempt.finished.is_set():
            return False
        self._stop(attempt, Stop("cancel", reason), grace=True)
        return True

    async def close(self, reason: str) -> None:
        """Stop every attempt (as :meth:`kill_all`) and start none from now on: an attempt
        still on its way here (its inputs downloading) ends cancelled at once."""
        self._closing = Stop("cancel", reason)
        await self.kill_all(reason)

    async def kill_all(self, reason: str) -> None:
        """Cancel every attempt (SIGTERM, grace, SIGKILL) and wait until all have ended."""
        for attempt in list(self._attempts.values()):
            self._stop(attempt, Stop("cancel", reason), grace=True)
        await self._wait_all()

    async def _wait_all(self) -> None:
        attempts = list(self._attempts.values())
        if attempts:
            await asyncio.gather(*(a.finished.wait() for a in attempts))

    def _stop(self, attempt: _Attempt, stop: Stop, *, grace: bool) -> None:
        """Stop an attempt for ``stop`` (the first reason is the one reported)."""
        if attempt.stop is None:
            attempt.stop = stop
        attempt.urgent = attempt.urgent or not grace
        if attempt.pid is None:
            return  # applied as soon as the child has started
        if attempt.urgent:
            self._kill(attempt)
            return
        self._signal(attempt, signal.SIGTERM)
        if attempt.kill_timer is None:
            loop = asyncio.get_running_loop()
            attempt.kill_timer = loop.call_later(self.grace_seconds, self._kill, attempt)

    def _stop_for_timeout(self, attempt: _Attempt) -> None:
        self._stop(attempt, Stop("timeout"), grace=True)

    def _kill(self, attempt: _Attempt) -> None:
        if not attempt.finished.is_set():
            attempt.killed = True
            self._signal(attempt, signal.SIGKILL)

    def _signal(self, attempt: _Attempt, signum: int) -> None:
        if attempt.pid is not None and attempt.server is not None:
            attempt.server.signal(attempt.pid, signum, attempt.child)

    # -- running ------------------------------------------------------------------------

    async def run(
        self,
        task: Task,
        on_log: LogCallback,
        on_started: StartedCallback | None = None,
    ) -> Outcome:
        """Run one attempt of ``task`` and return its Outcome. Step failures (errors,
        limits, cancellation, a lost fork server) are Outcomes, never exceptions."""
        if task.lease_id in self._attempts:
            raise ValueError(f"lease {task.lease_id!r} is already running")
        attempt = _Attempt(task)
        self._attempts[task.lease_id] = attempt
        try:
            return await self._run(attempt, on_log, on_started)
        finally:
            attempt.finished.set()
            for timer in [*attempt.timers, attempt.kill_timer]:
                if timer is not None:
                    timer.cancel()
            del self._attempts[task.lease_id]

    def _write_task(self, task: Task) -> Path:
        # By hand, not dataclasses.asdict (which deep-copies every value): this runs per
        # attempt, and the JSON encoder copies nothing.
        workdir = os.path.abspath(task.workdir)
        artifacts = os.path.join(workdir, ARTIFACTS_DIR)
        document = {f.name: getattr(task, f.name) for f in fields(task)}
        document.update(
            workdir=workdir,
            inputs=[
                {
                    "step": i.step,
                    "values": i.values,
                    "table_path": str(i.table_path) if i.table_path else None,
                }
                for i in task.inputs
            ],
            output_path=os.path.join(workdir, OUTPUT_FILE),
            environ={
                **self._environ,
                "LEGATO_PIPELINE": task.pipeline,
                "LEGATO_STEP": task.step_name,
                "LEGATO_RUN_ID": task.run_id,
                "LEGATO_ATTEMPT": str(task.attempt),
                "LEGATO_LEASE_ID": task.lease_id,
                "LEGATO_ARTIFACTS_DIR": artifacts,
            },
            connections=dict(task.connections),
            resolved=dict(task.resolved),
        )
        with contextlib.suppress(FileExistsError):
            os.mkdir(artifacts)
        path = os.path.join(workdir, TASK_FILE)
        # It may hold connection URLs with credentials: readable by this user only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(document, default=str))
        return Path(path)

    async def _run(
        self, attempt: _Attempt, on_log: LogCallback, on_started: StartedCallback | None
    ) -> Outcome:
        task = attempt.task
        begun = _now()

        def ending(**fields: Any) -> Outcome:
            defaults: dict[str, Any] = {
                "task": task,
                "begun": begun,
                "started_at": None,
                "ended_at": _now(),
                "document": None,
                "exit": None,
                "stop": attempt.stop,
                "killed": attempt.killed,
                "grace": self.grace_seconds,
            }
            return build(Ending(**{**defaults, **fields}))

        if self._closing is not None:
            return ending(stop=self._closing)
        try:
            server = await self._ensure_server()
        except ForkServerError as exc:
            return ending(stop=attempt.stop or Stop("lost", f"the agent cannot fork: {exc}"))
        if attempt.stop is not None:
            return ending()
        return await self._supervise(attempt, server, on_log, on_started, ending)

    async def _supervise(
        self,
        attempt: _Attempt,
        server: ForkServer,
        on_log: LogCallback,
        on_started: StartedCallback | None,
        ending: Callable[..., Outcome],
    ) -> Outcome:
        task = attempt.task
        request = {
            "task": str(self._write_task(task)),
            "memory": task.memory_bytes,
            "pooled": task.isolation == "pooled",
        }
        readers: list[pipes.LineReader | pipes.BlobReader] = [
            pipes.LineReader("stdout", on_log),
            pipes.LineReader("stderr", on_log),
            pipes.BlobReader(MAX_RESULT_BYTES),
        ]
        try:
            read_ends, write_ends = pipes.open_pipes(len(readers))
        except OSError as exc:
            return ending(stop=attempt.stop or Stop("lost", f"the agent cannot make pipes: {exc}"))
        try:
            await asyncio.gather(*map(pipes.connect, read_ends, readers))
            if attempt.stop is not None:  # cancelled meanwhile: do not start it
                for reader in readers:
                    reader.close()
                return ending()
            child = await server.fork(request, write_ends)
        except (ForkServerLostError, OSError) as exc:
            for reader in readers:
                reader.close()
            return ending(stop=attempt.stop or Stop("lost", f"the agent cannot fork: {exc}"))
        finally:
            for fd in write_ends:
                os.close(fd)
        try:
            return await self._watch(attempt, server, child, readers, on_started, ending)
        finally:
            for reader in readers:
                reader.close()

    async def _watch(
        self,
        attempt: _Attempt,
        server: ForkServer,
        child: Child,
        readers: Sequence[pipes.LineReader | pipes.BlobReader],
        on_started: StartedCallback | None,
        ending: Callable[..., Outcome],
    ) -> Outcome:
        try:
            started = await child.started
        except (ForkServerLostError, ForkServerError) as exc:
            return ending(stop=attempt.stop or Stop("lost", str(exc)))
        except asyncio.CancelledError:  # run() itself was cancelled: the child must not run
            child.started.add_done_callback(functools.partial(_kill_when_started, server, child.id))
            raise
        try:
            return await self._wait(attempt, server, child, started, readers, on_started, ending)
        finally:
            if started.cgroup is not None:  # killed by the fork server: remove it
                await asyncio.to_thread(CgroupPool.remove, started.cgroup)

    async def _wait(
        self,
        attempt: _Attempt,
        server: ForkServer,
        child: Child,
        started: Started,
        readers: Sequence[pipes.LineReader | pipes.BlobReader],
        on_started: StartedCallback | None,
        ending: Callable[..., Outcome],
    ) -> Outcome:
        """Wait for the started child, then for its output and every process it left."""
        task = attempt.task
        pid = started.pid
        started_at = _now()
        attempt.server = server
        attempt.pid = pid
        attempt.child = child.id
        loop = asyncio.get_running_loop()
        if on_started is not None:
            try:
                on_started(pid, started_at)
            except Exception:
                log.exception("on_started_failed", lease=task.lease_id)
        if attempt.stop is not None:  # stopped while starting
            self._stop(attempt, attempt.stop, grace=not attempt.urgent)
        if task.timeout is not None:
            attempt.timers.append(loop.call_later(task.timeout, self._stop_for_timeout, attempt))

        def over(_usage: int) -> None:
            self._stop(attempt, Stop("memory"), grace=False)

        # Every attempt is watched for its use; only one with a limit the cgroup does not
        # enforce is killed by the watchdog.
        watched = self._watchdog.watch(
            pid,
            limit=None if started.memory_cgroup else task.memory_bytes,
            base_anon=started.base_anon,
            on_exceeded=over,
            baseline=(procfs.anon_bytes(pid) or 0) if started.pooled else None,
        )
        exit_status: ExitStatus | None = None
        try:
            exit_status = await child.exited
        except ForkServerLostError:
            # Nobody reaps or reports this child any more: kill its processes ourselves.
            kill_orphaned_attempt(pid)
            if attempt.stop is None:
                attempt.stop = Stop("lost", "the agent's fork server died while it ran")
        except asyncio.CancelledError:
            self._kill(attempt)
            raise
        finally:
            self._watchdog.unwatch(pid, watched)
        await asyncio.wait([asyncio.ensure_future(r.done) for r in readers], timeout=DRAIN_SECONDS)
        # The attempt ends once its last output line is read: no line is stamped after it.
        ended_at = _now()
        if exit_status is not None and exit_status.kept:
            # A pooled worker killed what the step left before it reported; it lives on.
            if exit_status.retired:
                log.info("pooled_worker_retired", pid=pid, reason=exit_status.retired)
        else:
            await _until_gone(pid, exit_status.strays if exit_status else (), DRAIN_SECONDS)
        result = readers[2]
        assert isinstance(result, pipes.BlobReader)
        document = None if result.overflow else parse_document(bytes(result.data))
        peak, cpu = attempt_usage(
            sampled=watched,
            exit_status=exit_status,
            base_anon=started.base_anon,
            cgroup_peak=(
                CgroupPool.memory_peak(started.cgroup) if started.cgroup is not None else None
            ),
            pooled=started.pooled,
        )
        return ending(
            peak_memory_bytes=peak,
            cpu_seconds=cpu,
            started_at=started_at,
            ended_at=ended_at,
            document=document,
            exit=exit_status,
            stop=attempt.stop,
            killed=attempt.killed,
            oom_killed=(
                started.cgroup is not None
                and started.memory_cgroup
                and CgroupPool.oom_killed(started.cgroup)
            ),
        )


_AGENT_ONLY_PREFIXES = (ENV_PREFIX, "LEGATO_AGENT_", "LEGATO_SERVER_", "LEGATO_SECRET_")
_AGENT_ONLY_NAMES = frozenset({"LEGATO_TOKEN"})


def _agent_only(name: str) -> bool:
    """Whether the agent's environment variable ``name`` stays out of step processes:
    connections (a step gets those its task names), the agent's enrolment token and
    settings, a server's settings and secrets, and a CLI token."""
    return name.startswith(_AGENT_ONLY_PREFIXES) or name in _AGENT_ONLY_NAMES
