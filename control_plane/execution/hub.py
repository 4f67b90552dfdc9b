"""The agents connected to this control plane: their labels, free credits and outboxes.

This is per replica and in memory on purpose — it describes live streams, which exist
only in this process. What must survive a restart (agents seen, leases held) is in the
database."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["AgentHub", "AgentSession", "Assignment", "InputRef", "Outgoing"]


@dataclass(frozen=True)
class InputRef:
    """An upstream step's output as handed to a task."""

    step: str
    status: str
    values: dict[str, Any]
    rows: int | None
    artifact_id: str


@dataclass(frozen=True)
class Assignment:
    lease_id: str
    lease_expire_time: datetime
    run_id: str
    pipeline: str
    version: int
    step_name: str
    attempt: int
    step: Any  # legato.v1.spec_pb2.Step
    params: dict[str, Any]
    inputs: list[InputRef]
    timeout: float | None
    memory_bytes: int | None
    traceparent: str
    run_context: dict[str, Any]
    resolved: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outgoing:
    """A message for an agent: ``kind`` is assignment, cancel, drain or ack."""

    kind: str
    assignment: Assignment | None = None
    lease_id: str = ""
    reason: str = ""
    through_seq: int = 0
    rejections: tuple[tuple[int, str, int, str], ...] = ()


@dataclass(eq=False)
class AgentSession:
    name: str
    instance_id: str
    labels: dict[str, str]
    slots: int
    version: str = ""
    hostname: str = ""
    connections: list[str] = field(default_factory=list)
    credits: int = 0
    draining: bool = False
    leases: set[str] = field(default_factory=set)
    outbox: asyncio.Queue[Outgoing | None] = field(default_factory=asyncio.Queue)
    connect_time: datetime | None = None
    token_id: str = ""
    """The enrolment token it authenticated with (empty under --auth none)."""
    credential: str = ""
    closed_reason: str = ""
    """Why the control plane closed the stream, when it did (e.g. a revoked token)."""

    def matches(self, selector: Mapping[str, str]) -> bool:
        return all(self.labels.get(key) == value for key, value in selector.items())

    def send(self, message: Outgoing | None) -> None:
        self.outbox.put_nowait(message)


class AgentHub:
    def __init__(self) -> None:
        self._sessions: dict[str, AgentSession] = {}

    def attach(self, session: AgentSession) -> AgentSession | None:
        """Register a session; returns the one it replaces (same agent name), whose
        stream the caller closes."""
        previous = self._sessions.get(session.name)
        self._sessions[session.name] = session
        return previous

    def detach(self, session: AgentSession) -> None:
        if self._sessions.get(session.name) is session:
            del self._sessions[session.name]

    def get(self, name: str) -> AgentSession | None:
        return self._sessions.get(name)

    def sessions(self) -> list[AgentSession]:
        return list(self._sessions.values())

    def available(self) -> list[AgentSession]:
        return [s for s in self._sessions.values() if s.credits > 0 and not s.draining]

    def cancel(self, agent: str, lease_id: str, reason: str) -> None:
        session = self._sessions.get(agent)
        if session is not None and lease_id in session.leases:
            session.send(Outgoing(kind="cancel", lease_id=lease_id, reason=reason))
