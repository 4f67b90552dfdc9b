"""The agent's step runner: each attempt in a child process, under limits, with its output
lines streamed and its result reported. No gRPC and no control plane here; the
connection loop turns wire messages into :class:`Task` and :class:`Outcome` into reports.

How an attempt runs
-------------------
``Runner.start()`` starts one fork server (:mod:`.zygote`), an interpreter that has
imported pandas, pyarrow and the step kinds. ``run(task)`` writes ``<workdir>/task.json``,
makes three pipes (stdout, stderr, result) and sends their write ends to the fork server
(SCM_RIGHTS), which forks. The child (:mod:`.child`) starts its own session and process
group, runs the step kind (:mod:`executor.kinds`) in ``workdir`` and writes one JSON
result document; the fork server reports its pid, then its exit status and peak RSS. A
no-op step thus costs a fork, not an interpreter start, and not even the fork's latency:
the fork server keeps one child forked and prepared per free slot (``Runner(slots=)``), and
the attempt is handed to one of them. If the fork server dies, running attempts end as
``lost`` and it is started again.

Pooled attempts (``Task.isolation == "pooled"``) run in a worker that is reused for attempt
after attempt (:mod:`.pooled`): the same pipes, limits and clean-up per attempt, but no
memory isolation between the attempts of a worker.

Work directory (created and removed by the caller)
--------------------------------------------------
``task.json`` (written by the runner), ``output.arrow`` (the output table, Arrow IPC
file format, when the step produced one; ``Outcome.table_path``). Input tables may be
anywhere (``TaskInput.table_path``); the agent puts them in ``inputs/<step>.arrow``. The
step runs with ``workdir`` as its current directory and ``LEGATO_PIPELINE``,
``LEGATO_STEP``, ``LEGATO_RUN_ID``, ``LEGATO_ATTEMPT``, ``LEGATO_LEASE_ID`` set.

User modules
------------
``function`` steps import ``package.module`` in the child, with the fork server's
``sys.path``: the ``module_path`` directories given to the Runner, then the agent's
``PYTHONPATH``, then the interpreter's site-packages (``pip install`` into the agent's
environment). They are imported fresh in every attempt; preload them (``preload=``) to
pay their import once, at the price of restarting the agent to pick up new versions.

Limits
------
- ``timeout``: counted from the child's start; at expiry SIGTERM to the attempt's
  processes, SIGKILL after ``grace_seconds`` → failed/``timeout``.
- ``memory_bytes``: see :mod:`.limits` (cgroup v2 ``memory.max`` where delegated, else
  RLIMIT_DATA as a backstop plus a 100 ms watchdog over the group's private memory; the
  attempt is SIGKILLed at once, as the kernel's OOM killer would) → failed/``memory``. A
  MemoryError in the step is reported the same way.
- ``cancel(lease_id, reason)`` and ``kill_all(reason)``: SIGTERM, grace, SIGKILL →
  ``cancelled``.

No process outlives its attempt
-------------------------------
Signals go to every process of the attempt, whatever process group or session it moved
to (``setsid``, a daemon's double fork): the child and the fork server are child
subreapers, so the attempt's processes stay a tree below the child, and below the fork
server once the child has exited (:mod:`.reaper`). When the child exits, the fork server
kills what is left of its group, its cgroup and its tree, and run() returns once those are
gone (``DRAIN_SECONDS`` at most). The fork server dies with the runner (PR_SET_PDEATHSIG),
killing everything below it first; the child dies with the fork server (its own
parent-death signal, :data:`.child.PARENT_DIED`), killing everything below it. Where a
cgroup v2 is delegated, each attempt also runs in a cgroup of its own, killed as a whole,
and a runner that starts removes those that dead agents left (:mod:`.cgroups`): that
holds even for processes of an attempt whose child, fork server and runner were all
SIGKILLed at once, which the subreapers alone cannot reach.
"""

from __future__ import annotations

from executor.runner.forkserver import ForkServerError
from executor.runner.runner import DEFAULT_PRELOAD, OUTPUT_FILE, TASK_FILE, Runner
from executor.runner.task import ColumnInfo, Outcome, Task, TaskInput

__all__ = [
    "DEFAULT_PRELOAD",
    "OUTPUT_FILE",
    "TASK_FILE",
    "ColumnInfo",
    "ForkServerError",
    "Outcome",
    "Runner",
    "Task",
    "TaskInput",
]
