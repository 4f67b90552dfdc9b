"""The authenticated caller of one call: what proved it, its name, and what it may do."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from control_plane.access.actors import Actor, ActorKind
from control_plane.access.roles import Role

__all__ = ["ANY_CONNECTION", "Principal"]

ANY_CONNECTION = "*"


@dataclass(frozen=True)
class Principal:
    """``kind`` is ``token`` (an API token: ``role`` set), ``agent`` (an enrolment token
    or a client certificate: ``labels`` and ``connections`` are what it may claim) or
    ``anonymous`` (a server run with ``--auth none``, which allows everything)."""

    kind: ActorKind
    name: str
    role: Role | None = None
    token_id: str = ""
    expire_time: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    connections: tuple[str, ...] = ()
    credential: str = ""
    """How it proved who it is, for people: ``token <id>``, ``certificate <name>``."""
    claimed_user: str = ""
    """The user a client says it acts for (metadata ``legato-user``); not verified."""

    @property
    def key(self) -> str:
        """What limits per caller are counted by."""
        return f"{self.kind}:{self.name}"

    @property
    def is_agent(self) -> bool:
        return self.kind == "agent"

    def allows_connection(self, name: str) -> bool:
        return ANY_CONNECTION in self.connections or name in self.connections

    def actor(self, request_id: str = "") -> Actor:
        details: dict[str, Any] = {}
        if self.claimed_user and self.claimed_user != self.name:
            details["client_user"] = self.claimed_user
        return Actor(
            name=self.name, request_id=request_id.strip()[:200], kind=self.kind, details=details
        )
