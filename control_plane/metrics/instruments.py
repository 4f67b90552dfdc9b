"""The control plane's counters and histograms, updated in memory as things happen.

One :class:`ServerMetrics` per control plane, with a registry of its own (tests run
several control planes in one process; nothing goes to prometheus_client's global
registry). Every method is a counter increment or a histogram observation: the execution
calls them on its hot path (as an ``ExecutionObserver``, after its transactions commit),
the scheduler, the reaper and the notification delivery through hooks.

These count what happened on this replica since it started: with several replicas, sum
them (``sum by (status) (rate(legato_runs_finished_total[5m]))``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from legato import __version__

__all__ = ["ServerMetrics"]

RUN_ENDS = ("succeeded", "failed", "cancelled", "timed_out")
STEP_ENDS = ("succeeded", "failed", "timed_out", "skipped", "upstream_failed", "cancelled")
CHANNELS = ("webhook", "slack", "email", "pagerduty")
SENDS = ("delivered", "retried", "failed")

# Steps run from milliseconds (a transform) to hours (a warehouse load).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
# A step waits for an agent milliseconds when one has a free slot, minutes when none has.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
# A fire is on time within a second; minutes late after a restart; hours for a catch-up.
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
        ProcessCollector(registry=registry)
        Gauge(
            "legato_build_info",
            "Always 1; the version of the control plane in its label",
            ["version"],
            registry=registry,
        ).labels(version=__version__).set(1)
        self._runs = Counter(
            "legato_runs_finished_total",
            "Runs that ended on this replica since it started, by final status",
            ["status"],
            registry=registry,
        )
        self._steps = Counter(
            "legato_steps_finished_total",
            "Steps that ended for good on this replica since it started (a failed attempt "
            "that is retried is not an end), by final status",
            ["status"],
            registry=registry,
        )
        self._durations = Histogram(
            "legato_step_duration_seconds",
            "How long each attempt of a step ran, from its start (its lease when it never "
            "started) to its end, by step kind and outcome (succeeded, cancelled, or the "
            "failure kind: error, timeout, memory, lost)",
            ["kind", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._waits = Histogram(
            "legato_step_queue_wait_seconds",
            "How long a step waited for an agent: from when it could run (its last "
            "upstream step ended, its run started or its retry delay ended) to its lease",
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self._expired = Counter(
            "legato_lease_expirations_total",
            "Attempts the reaper ended as lost because their agent stopped renewing the "
            "lease (crashed, killed, cut off)",
            registry=registry,
        )
        self._lag = Histogram(
            "legato_schedule_fire_lag_seconds",
            "How late a schedule fired: from its fire time to the commit of its run "
            "(catch-up runs of missed fire times included)",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self._sends = Counter(
            "legato_notification_deliveries_total",
            "Notification sends by channel and outcome: delivered, retried (failed, tried "
            "again later) or failed (given up: no retry can mend it, or the last attempt)",
            ["channel", "outcome"],
            registry=registry,
        )
        # Every series an alert may name exists from the start, at 0.
        for status in RUN_ENDS:
            self._runs.labels(status=status)
        for status in STEP_ENDS:
            self._steps.labels(status=status)
        for channel in CHANNELS:
            for outcome in SENDS:
                self._sends.labels(channel=channel, outcome=outcome)

    # -- ExecutionObserver ----------------------------------------------------------------

    def run_finished(self, status: str) -> None:
        self._runs.labels(status=status).inc()

    def step_finished(self, status: str) -> None:
        self._steps.labels(status=status).inc()

    def attempt_ended(self, kind: str, outcome: str, seconds: float) -> None:
        self._durations.labels(kind=kind, outcome=outcome).observe(seconds)

    def step_leased(self, waited_seconds: float) -> None:
        self._waits.observe(waited_seconds)

    def leases_expired(self, count: int) -> None:
        self._expired.inc(count)

    # -- hooks ----------------------------------------------------------------------------

    def schedule_fired(self, lag_seconds: float) -> None:
        self._lag.observe(max(0.0, lag_seconds))

    def notification_sent(self, channel: str, outcome: str) -> None:
        self._sends.labels(channel=channel, outcome=outcome).inc()
