"""The gauges read when Prometheus scrapes: what is in flight in the store, and the
agents connected to this replica.

A scrape (:meth:`Scrape.page`) reads the store first — four cheap statements in one read
transaction (``store/counts.py``: GROUP BY over indexed status columns, restricted to
unfinished rows) — and then renders the page synchronously, so two scrapes at once never
mix their figures. The agents are read from the :class:`AgentHub` while rendering (in
memory, no statement).

The store's figures are the whole deployment's (every replica sees the same database);
the agents' are this replica's (each agent holds its stream to one replica): sum them
over replicas. When the store cannot be read (down, or slower than ``timeout``), the page
is still served — counters, histograms, agents — with ``legato_database_up 0`` and
without the store's gauges, so that the alert says what is wrong instead of a failed
scrape hiding everything else."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.execution.hub import AgentHub
from control_plane.metrics.instruments import ServerMetrics
from control_plane.statuses import RunStatus, StepStatus
from control_plane.store import counts
from control_plane.store.db import Database
from control_plane.store.models import NotificationRow, RunRow, StepRunRow
from control_plane.store.notifications import PENDING, SENDING
from control_plane.store.outages import store_unavailable

__all__ = ["NOTIFICATIONS_UNSENT", "RUNS_IN_FLIGHT", "STEPS_IN_FLIGHT", "Scrape", "StoreCounts"]

log = structlog.get_logger("legato.metrics")

RUNS_IN_FLIGHT = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
STEPS_IN_FLIGHT = (
    StepStatus.PENDING.value,
    StepStatus.READY.value,
    StepStatus.LEASED.value,
    StepStatus.RUNNING.value,
)
NOTIFICATIONS_UNSENT = (PENDING, SENDING)
STORE_TIMEOUT_SECONDS = 5.0
"""The longest a scrape waits for the store (Prometheus gives up after 10 s by default)."""


@dataclass(frozen=True)
class StoreCounts:
    """What is in flight in the store at one moment."""

    runs: dict[str, int]
    steps: dict[str, int]
    waiting_for_agent: int
    notifications: dict[str, int]


async def read_counts(session: AsyncSession, now: datetime) -> StoreCounts:
    return StoreCounts(
        runs=await counts.by_status(session, RunRow, RUNS_IN_FLIGHT),
        steps=await counts.by_status(session, StepRunRow, STEPS_IN_FLIGHT),
        waiting_for_agent=await counts.steps_waiting_for_agent(session, now),
        notifications=await counts.by_status(session, NotificationRow, NOTIFICATIONS_UNSENT),
    )


class _Gauges(Collector):
    """Renders the last store counts and the hub's agents as gauges."""

    def __init__(self, hub: AgentHub) -> None:
        self._hub = hub
        self.counts: StoreCounts | None = None

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "legato_database_up",
            "1 when this scrape could read the store's figures, 0 when the database was "
            "unavailable or too slow (the legato_runs, legato_steps, "
            "legato_steps_waiting_for_agent and legato_notifications gauges are left out)",
            value=0 if self.counts is None else 1,
        )
        yield up
        if self.counts is not None:
            yield from _store_gauges(self.counts)
        yield from _agent_gauges(self._hub)


def _by_status(name: str, text: str, counts: dict[str, int]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, text, labels=["status"])
    for status, count in counts.items():
        gauge.add_metric([status], count)
    return gauge


def _store_gauges(found: StoreCounts) -> Iterator[Metric]:
    yield _by_status(
        "legato_runs",
        "Runs not finished yet, by status (queued or running), on every replica",
        found.runs,
    )
    yield _by_status(
        "legato_steps",
        "Steps of unfinished runs that have not ended, by status (pending, ready, leased, "
        "running), on every replica",
        found.steps,
    )
    yield GaugeMetricFamily(
        "legato_steps_waiting_for_agent",
        "Steps an agent could take now and none has: ready, or pending with their retry "
        "delay over (trigger steps, which the control plane runs, are not counted)",
        value=found.waiting_for_agent,
    )
    yield _by_status(
        "legato_notifications",
        "Notifications not sent yet, by status: pending (due, or waiting for a retry) or "
        "sending (claimed by a replica)",
        found.notifications,
    )


def _agent_gauges(hub: AgentHub) -> Iterator[Metric]:
    sessions = sorted(hub.sessions(), key=lambda s: s.name)
    yield GaugeMetricFamily(
        "legato_agents_connected",
        "Agents with a stream open to this replica (draining ones included)",
        value=len(sessions),
    )
    yield GaugeMetricFamily(
        "legato_agents_draining",
        "Connected agents that are draining: they finish what they run and take nothing new",
        value=sum(1 for s in sessions if s.draining),
    )
    slots = GaugeMetricFamily(
        "legato_connected_agent_slots",
        "Steps a connected agent runs at once (its --slots), by agent",
        labels=["agent"],
    )
    free = GaugeMetricFamily(
        "legato_connected_agent_free_slots",
        "Slots of a connected agent that hold no step (0 while it drains), by agent",
        labels=["agent"],
    )
    for session in sessions:
        slots.add_metric([session.name], session.slots)
        free.add_metric([session.name], 0 if session.draining else session.slots - session.held)
    yield slots
    yield free


class Scrape:
    """The metrics page of one control plane: its :class:`ServerMetrics` and the gauges
    read at scrape time."""

    def __init__(
        self,
        metrics: ServerMetrics,
        db: Database,
        hub: AgentHub,
        *,
        clock: Callable[[], datetime],
        timeout: float = STORE_TIMEOUT_SECONDS,
    ) -> None:
        self._db = db
        self._clock = clock
        self._timeout = timeout
        self._gauges = _Gauges(hub)
        # What the page shows: a registry is itself a collector of what it holds.
        self.registry = CollectorRegistry()
        self.registry.register(metrics.registry)
        self.registry.register(self._gauges)

    async def page(self, accept: str = "") -> tuple[bytes, str]:
        """The page and its content type (OpenMetrics when ``accept`` asks for it, else
        Prometheus text)."""
        found: StoreCounts | None = None
        try:
            async with asyncio.timeout(self._timeout), self._db.read() as session:
                found = await read_counts(session, self._clock())
        except Exception as error:
            if isinstance(error, TimeoutError) or store_unavailable(error):
                log.warning("metrics_store_unavailable", error=str(error)[:200] or "timed out")
            else:
                log.exception("metrics_store_failed")
        # No await from here on: the page is rendered from these counts only.
        self._gauges.counts = found
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type
