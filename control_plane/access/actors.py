"""Who acts: the identity behind a mutation, as the activity log records it.

An ``Actor`` is plain data handed from the API layer (which authenticated the caller) to
domain code (which writes it into versions, runs and the activity log). Its ``kind`` says
what proved the identity: an API ``token`` (the token's name), an ``agent`` (its enrolled
name), the control plane itself (``system``: the scheduler, webhooks, trigger steps),
someone with the database in hand (``local``), or nobody (``anonymous``, under
``--auth none``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["SCHEDULER", "WEBHOOK", "Actor", "ActorKind"]

ActorKind = Literal["token", "agent", "system", "local", "anonymous"]


@dataclass(frozen=True)
class Actor:
    """Who is calling, and the request id of the call (may be empty). ``details`` adds
    facts the activity log keeps beside the actor (e.g. the user a client says it acts
    for, which nothing verifies)."""

    name: str
    request_id: str = ""
    kind: ActorKind = "token"
    details: dict[str, Any] = field(default_factory=dict, compare=False)


SCHEDULER = Actor(name="scheduler", kind="system")
WEBHOOK = Actor(name="webhook", kind="system")
