"""The agent's own Prometheus metrics, served on ``--metrics-listen`` (off by default).

A registry of its own (never prometheus_client's global one). The gauges are read from
the agent when Prometheus scrapes: slots, steps running, reports waiting for the control
plane's acknowledgement, whether the stream is up. The counters are bumped by the agent as
things happen: reconnects and steps run by outcome.

The page is served by prometheus_client's own small HTTP server in a daemon thread, so a
busy event loop never makes a scrape time out. What it reads from the agent are sizes of
its collections and flags, which a thread may read at any moment."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from legato import __version__

__all__ = ["OUTCOMES", "AgentMetrics", "AgentState", "MetricsServer"]

OUTCOMES = ("succeeded", "cancelled", "error", "timeout", "memory", "lost")
"""How an attempt ended: succeeded, cancelled, or how it failed (as the control plane's
``legato_step_duration_seconds`` labels it)."""


@dataclass(frozen=True)
class AgentState:
    """How the gauges read the agent (each call is cheap and safe from another thread)."""

    slots: Callable[[], int]
    running: Callable[[], int]
    buffered: Callable[[], int]
    connected: Callable[[], bool]


class _Gauges(Collector):
    def __init__(self, state: AgentState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state
        yield GaugeMetricFamily(
            "legato_agent_slots", "Steps this agent runs at once (--slots)", value=state.slots()
        )
        yield GaugeMetricFamily(
            "legato_agent_running_steps",
            "Steps running on this agent now (downloading inputs, running, uploading outputs)",
            value=state.running(),
        )
        yield GaugeMetricFamily(
            "legato_agent_report_buffer",
            "Reports (step started, log batches, results) kept until the control plane "
            "acknowledges them: they grow while it cannot be reached",
            value=state.buffered(),
        )
        yield GaugeMetricFamily(
            "legato_agent_connected",
            "1 while the agent's stream to the control plane is open, else 0",
            value=1 if state.connected() else 0,
        )


class AgentMetrics:
    def __init__(self, state: AgentState) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        ProcessCollector(registry=registry)
        Gauge(
            "legato_agent_build_info",
            "Always 1; the version of the agent in its label",
            ["version"],
            registry=registry,
        ).labels(version=__version__).set(1)
        registry.register(_Gauges(state))
        self._reconnects = Counter(
            "legato_agent_reconnects_total",
            "Times the agent registered again after its stream to the control plane broke "
            "(the first connection is not counted)",
            registry=registry,
        )
        self._steps = Counter(
            "legato_agent_steps_total",
            "Attempts this agent ran to the end since it started, by outcome: succeeded, "
            "cancelled, or how it failed (error, timeout, memory, lost)",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self._steps.labels(outcome=outcome)

    def reconnected(self) -> None:
        self._reconnects.inc()

    def step_ended(self, outcome: str) -> None:
        self._steps.labels(outcome=outcome).inc()

    def serve(self, listen: str) -> MetricsServer:
        """Serve the page on ``listen`` (HOST:PORT; port 0 picks a free one); OSError
        when the address cannot be bound."""
        host, _, port = listen.rpartition(":")
        server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
        return MetricsServer(server, thread)


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
