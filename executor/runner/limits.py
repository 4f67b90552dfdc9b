"""Per-attempt memory limit, the part applied inside the attempt's process.

What ``memory_bytes`` means: the memory the attempt adds on top of the warm fork server,
i.e. the pages its processes have written and hold alone (for a forked child: what it
allocated plus the fork server's pages it modified and so copied). Pages still shared with
the fork server (the preloaded pandas, pyarrow, ...) are not counted; they are charged
once, to the fork server, as cgroup v2 would charge them.

- Where a cgroup v2 with the memory controller is delegated to the agent, the child runs
  in a cgroup of its own whose ``memory.max`` is the limit (see :mod:`.cgroups`); nothing
  else is needed. (Where a cgroup v2 is delegated without it, the child has a cgroup all
  the same, to be killed as a whole, and the limit is applied as below.)
- Otherwise two mechanisms share the work. The runner's watchdog (:mod:`.watchdog`)
  polls the private memory of the process group every 100 ms and kills the group when it
  is over the limit: that is the limit. And the child gets ``RLIMIT_DATA`` = its data
  segment at fork + ``BACKSTOP_FACTOR`` times the limit, so one oversized allocation fails at
  once with MemoryError instead of overshooting between two polls. RLIMIT_DATA (private
  writable mappings) rather than RLIMIT_AS: the address space also counts shared
  libraries and PROT_NONE reservations (glibc's 64 MiB per-thread arenas), so importing a
  large library would fail under RLIMIT_AS. Address space reserved but not yet touched
  (thread stacks, allocator arenas) counts against this backstop only, which is why it is
  looser than the limit. It is inherited by processes the step starts.

A pooled worker (:mod:`.pooled`) runs many attempts, so it sets only the soft limit
(``soft_only``), from its data segment as the attempt starts, and puts the soft limit back
afterwards (:func:`restore`): an unprivileged process can lower its hard limit but never
raise it again.
"""

from __future__ import annotations

import resource

__all__ = ["BACKSTOP_FACTOR", "data_limit", "enter", "restore"]

BACKSTOP_FACTOR = 2


def data_limit(memory_bytes: int, baseline: int) -> int:
    return baseline + BACKSTOP_FACTOR * memory_bytes


def enter(*, memory_bytes: int | None, data_baseline: int, soft_only: bool = False) -> None:
    """Put this process under the attempt's ``memory_bytes`` limit (None when its cgroup
    enforces it); ``data_baseline`` is its data segment size (VmData) as forked (or, for
    a pooled worker, ``soft_only``, as the attempt starts)."""
    if memory_bytes:
        limit = data_limit(memory_bytes, data_baseline)
        _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard if soft_only else limit))


def restore(soft: int) -> None:
    """Put the soft RLIMIT_DATA back to ``soft`` (after a pooled attempt)."""
    current, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if current != soft:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
