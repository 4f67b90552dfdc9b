"""How an attempt's peak memory and CPU time are put together from what the kernel and the
watchdog saw (plain data: no processes)."""

from __future__ import annotations

from executor.runner.forkserver import ExitStatus
from executor.runner.usage import attempt_usage
from executor.runner.watchdog import GroupUsage

MiB = 1 << 20


def exited(
    max_rss: int, cpu: float | None, *, strays: tuple[int, ...] = (), peak: int | None = None
) -> ExitStatus:
    return ExitStatus(code=0, signal=None, max_rss=max_rss, strays=strays, cpu=cpu, peak=peak)


def test_the_largest_of_samples_cgroup_and_rusage_less_the_shared_part() -> None:
    sampled = GroupUsage(peak_bytes=300 * MiB)
    status = exited(max_rss=250 * MiB, cpu=1.0)
    assert attempt_usage(sampled=sampled, exit_status=status, base_anon=100 * MiB) == (
        300 * MiB,
        1.0,
    )
    # One process's spike between two samples: its ru_maxrss less what it shares.
    spiky = exited(max_rss=500 * MiB, cpu=1.0)
    peak, _ = attempt_usage(sampled=sampled, exit_status=spiky, base_anon=100 * MiB)
    assert peak == 400 * MiB
    # The cgroup's memory.peak counts what left the process group too.
    peak, _ = attempt_usage(
        sampled=sampled, exit_status=status, base_anon=100 * MiB, cgroup_peak=700 * MiB
    )
    assert peak == 700 * MiB


def test_a_short_attempt_without_samples_has_its_rusage_peak() -> None:
    peak, cpu = attempt_usage(
        sampled=GroupUsage(), exit_status=exited(90 * MiB, 0.01), base_anon=80 * MiB
    )
    assert (peak, cpu) == (10 * MiB, 0.01)


def test_strays_still_running_at_the_exit_add_their_last_seen_cpu() -> None:
    sampled = GroupUsage(peak_bytes=0, cpu={41: 2.0, 42: 0.5})
    status = exited(max_rss=0, cpu=1.0, strays=(42,))
    # 41 was reaped by the step (its CPU is in the step's rusage already): not twice.
    assert attempt_usage(sampled=sampled, exit_status=status, base_anon=0)[1] == 1.5


def test_a_pooled_attempt_uses_its_own_rise_not_the_worker_s_lifetime_peak() -> None:
    status = exited(max_rss=900 * MiB, cpu=0.2, peak=30 * MiB, strays=(7,))
    sampled = GroupUsage(peak_bytes=20 * MiB, cpu={7: 5.0})
    assert attempt_usage(sampled=sampled, exit_status=status, base_anon=100 * MiB, pooled=True) == (
        30 * MiB,
        0.2,
    )


def test_a_lost_attempt_keeps_the_peak_the_watchdog_saw_but_no_cpu() -> None:
    sampled = GroupUsage(peak_bytes=5 * MiB, cpu={9: 0.25})
    assert attempt_usage(sampled=sampled, exit_status=None, base_anon=0) == (5 * MiB, None)
    assert attempt_usage(sampled=None, exit_status=None, base_anon=0) == (None, None)
