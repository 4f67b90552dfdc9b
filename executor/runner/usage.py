"""What an attempt's processes used: its peak memory and its CPU time, put together from
what the kernel and the watchdog saw.

Peak memory is counted as the memory limit counts it (:mod:`.limits`): what the attempt's
processes hold on top of the warm fork server, summed over the process tree, so a figure
can be read against ``memory:``. It is the largest of:

- ``memory.peak`` of the attempt's cgroup, where it has one with the memory controller
  (the kernel's own high-water mark of the pages charged to it: exact);
- the watchdog's samples (every 100 ms) of the process group's anonymous resident memory,
  less what the child shares with the fork server (:mod:`.watchdog`), which adds up the
  child and everything it forked while they run at the same time;
- the child's own peak resident set (``ru_maxrss`` from ``wait4``, the largest of the child
  and each descendant it waited for) less that shared part, which catches an attempt too
  short for a sample, or a spike between two;
- for a pooled worker, how far its resident set rose above where it was as the attempt
  began (its high-water mark is reset per attempt), instead of ``ru_maxrss``, which covers
  the worker's whole life.

CPU time is user + system: the child's rusage from ``wait4`` (which includes every
descendant it waited for), plus, for the processes still running when it exited (which
the fork server kills), the CPU time the watchdog last saw of each. For a pooled worker it
is the worker's rusage (its own and its reaped children's) after the attempt less before.
Processes that left the attempt's process group and were never waited for by the child
are counted in neither, unless the attempt has a cgroup (their memory is then in its
``memory.peak``).
"""

from __future__ import annotations

from executor.runner.forkserver import ExitStatus
from executor.runner.watchdog import GroupUsage

__all__ = ["attempt_usage"]


def attempt_usage(
    *,
    sampled: GroupUsage | None,
    exit_status: ExitStatus | None,
    base_anon: int,
    cgroup_peak: int | None = None,
    pooled: bool = False,
) -> tuple[int | None, float | None]:
    """``(peak_memory_bytes, cpu_seconds)`` of one attempt; None for what was not seen."""
    peaks: list[int] = []
    if sampled is not None and sampled.peak_bytes is not None:
        peaks.append(sampled.peak_bytes)
    if cgroup_peak is not None:
        peaks.append(cgroup_peak)
    cpu: float | None = None
    if exit_status is not None:
        if pooled:
            if exit_status.peak is not None:
                peaks.append(exit_status.peak)
        elif exit_status.max_rss:
            peaks.append(max(0, exit_status.max_rss - base_anon))
        cpu = exit_status.cpu
        if cpu is not None and sampled is not None and not pooled:
            cpu += sum(sampled.cpu.get(pid, 0.0) for pid in exit_status.strays)
    # Without the child's rusage (its fork server died) its own CPU time is unknown: none.
    return (max(peaks) if peaks else None), cpu
