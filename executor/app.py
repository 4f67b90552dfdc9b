"""Wires the agent process: config → logging → Agent, with signal handling."""

from __future__ import annotations

import asyncio
import signal

import structlog

from executor.agent import Agent
from executor.config import AgentConfig

__all__ = ["run"]

log = structlog.get_logger("legato.agent")


async def run(config: AgentConfig) -> None:
    """Run until drained or signalled: the first SIGTERM/SIGINT drains (running steps
    finish), the second stops the children at once."""
    agent = Agent(config)
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
    await agent.run()
    log.info("agent_stopped", name=agent.name)
