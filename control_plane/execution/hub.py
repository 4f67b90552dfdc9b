"""The agents connected to this control plane: their labels, free credits and outboxes.

This is per replica and in memory on purpose — it describes live streams, which exist
only in this process. What must survive a restart (agents seen, leases held) is in the
database.

**Flow control.** An agent grants credits for its free slots, and the dispatcher takes one
per task it sends; but an agent is never sent more tasks than it has slots, whatever it
grants. ``AgentSession.credits`` — what the dispatcher may still send — is the credit
balance capped at the slots no task holds (leases on the stream, plus tasks claimed and
not yet sent). A credit beyond that waits until a lease is released: the real agent sends
its +1 credit ahead of its queued reports, so the credit usually arrives just *before*
the result that frees the slot, and that slot is used as soon as the result is in (the
dispatcher is woken). A grant that would take the balance over the slots is refused
(``AgentSession.grant`` returns how much): an agent that follows the protocol never
holds more credits than its free slots, so the caller logs it as a protocol violation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["MAX_SLOTS", "AgentHub", "AgentSession", "Assignment", "InputRef", "Outgoing"]

MAX_SLOTS = 1024
"""The most slots an agent may register (the agent's own ``--slots`` limit)."""


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
    ready_time: datetime | None = None
    """Since when the step could run (made ready, or its retry delay ended)."""


@dataclass(frozen=True)
class Outgoing:
    """A message for an agent: ``kind`` is assignment, cancel, drain or ack."""

    kind: str
    assignment: Assignment | None = None
    lease_id: str = ""
    reason: str = ""
    through_seq: int = 0
    rejections: tuple[tuple[int, str, int, str], ...] = ()


class _Leases(set[str]):
    """The leases a session holds. Releasing one (a result, a stale heartbeat) frees its
    slot, and calls ``freed`` so that a credit waiting for a slot is used at once."""

    def __init__(self, freed: Callable[[], None]) -> None:
        super().__init__()
        self._freed = freed

    def discard(self, lease_id: object) -> None:
        if lease_id in self:
            super().discard(lease_id)
            self._freed()


@dataclass(eq=False)
class AgentSession:
    name: str
    instance_id: str
    labels: dict[str, str]
    slots: int
    version: str = ""
    hostname: str = ""
    connections: list[str] = field(default_factory=list)
    balance: int = 0
    """Credits granted and not yet taken by a task: at most ``slots`` (see ``grant``)."""
    reserved: int = 0
    """Tasks claimed for this agent whose assignment is not sent yet: they hold a slot."""
    draining: bool = False
    leases: set[str] = field(init=False)
    outbox: asyncio.Queue[Outgoing | None] = field(default_factory=asyncio.Queue)
    connect_time: datetime | None = None
    token_id: str = ""
    """The enrolment token it authenticated with (empty under --auth none)."""
    credential: str = ""
    closed_reason: str = ""
    """Why the control plane closed the stream, when it did (e.g. a revoked token)."""
    store_failed: bool = False
    """The stream was closed because the database could not take a report: the agent
    reconnects and sends it again (it was not acknowledged)."""
    wake: Callable[[], None] | None = None
    """Wakes the dispatcher when a released lease lets a waiting credit through."""
    violation_logged: bool = False
    """Whether this stream's first protocol violation was logged (one per stream)."""

    def __post_init__(self) -> None:
        self.leases = _Leases(self._freed)

    @property
    def held(self) -> int:
        """Slots in use: leases on this stream and tasks claimed but not yet sent."""
        return len(self.leases) + self.reserved

    @property
    def credits(self) -> int:
        """Tasks the dispatcher may send now: the balance, capped at the free slots."""
        return max(0, min(self.balance, self.slots - self.held))

    @credits.setter
    def credits(self, value: int) -> None:
        # The dispatcher takes a credit (-1) when it claims a task for this agent, which
        # holds a slot until the assignment is sent, and gives it back (+1) when the
        # claim's transaction fails.
        change = value - self.credits
        self.balance += change
        self.reserved -= change

    def grant(self, credits: int) -> int:
        """Add credits the agent granted, keeping the balance at most ``slots``; returns
        how many were refused (an agent never has more credits than free slots, so any
        refused credit is a protocol violation)."""
        accepted = max(0, min(credits, self.slots - self.balance))
        self.balance += accepted
        return credits - accepted

    def matches(self, selector: Mapping[str, str]) -> bool:
        return all(self.labels.get(key) == value for key, value in selector.items())

    def send(self, message: Outgoing | None) -> None:
        if message is not None and message.kind == "assignment" and self.reserved > 0:
            self.reserved -= 1  # its slot is held by the lease now
        self.outbox.put_nowait(message)

    def _freed(self) -> None:
        # A credit was waiting for this slot: the balance did not fit the free slots.
        if self.wake is not None and self.balance >= self.slots - self.held > 0:
            self.wake()


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
