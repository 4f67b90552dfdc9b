"""Wires the agent process: config → logging → Agent (and its metrics page), with signal
handling."""

from __future__ import annotations

import asyncio
import signal

import structlog

from executor.agent import Agent
from executor.config import AgentConfig, ConfigError
from executor.metrics import MetricsServer

__all__ = ["run"]

log = structlog.get_logger("legato.agent")


async def run(config: AgentConfig) -> None:
    """Run until drained or signalled: the first SIGTERM/SIGINT drains (running steps
    finish), the second stops the children at once."""
    agent = Agent(config)
    metrics = _serve_metrics(agent, config.metrics_listen) if config.metrics_listen else None
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            agent.drain("signal received; a second one stops running steps at once")
        else:
            agent.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await agent.run()
    finally:
        if metrics is not None:
            await asyncio.to_thread(metrics.close)
    log.info("agent_stopped", name=agent.name)


def _serve_metrics(agent: Agent, listen: str) -> MetricsServer:
    try:
        server = agent.metrics.serve(listen)
    except OSError as exc:
        raise ConfigError(
            f"--metrics-listen {listen}: cannot listen there ({exc.strerror or exc}); choose "
            "another address, or leave metrics off"
        ) from None
    log.info("metrics_listening", listen=listen, port=server.port)
    return server
