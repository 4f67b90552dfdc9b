"""Tokens and activity-log entries → legato.v1 messages (secrets never: rows hold only
their hashes)."""

from __future__ import annotations

from google.protobuf import struct_pb2

from control_plane.access.roles import Role
from control_plane.api.convert import timestamp
from control_plane.store.models import AgentTokenRow, ApiTokenRow, AuditEntryRow
from legato.v1 import access_pb2

__all__ = ["agent_token_message", "audit_message", "role_message", "token_message"]

_ROLES: dict[str, access_pb2.Role.ValueType] = {
    "viewer": access_pb2.ROLE_VIEWER,
    "operator": access_pb2.ROLE_OPERATOR,
    "editor": access_pb2.ROLE_EDITOR,
    "admin": access_pb2.ROLE_ADMIN,
}
_KINDS: dict[str, access_pb2.ActorKind.ValueType] = {
    "token": access_pb2.ACTOR_KIND_TOKEN,
    "agent": access_pb2.ACTOR_KIND_AGENT,
    "system": access_pb2.ACTOR_KIND_SYSTEM,
    "local": access_pb2.ACTOR_KIND_LOCAL,
    "anonymous": access_pb2.ACTOR_KIND_ANONYMOUS,
}
_OUTCOMES: dict[str, access_pb2.AuditOutcome.ValueType] = {
    "succeeded": access_pb2.AUDIT_OUTCOME_SUCCEEDED,
    "denied": access_pb2.AUDIT_OUTCOME_DENIED,
    "failed": access_pb2.AUDIT_OUTCOME_FAILED,
}


def role_message(role: str | None) -> access_pb2.Role.ValueType:
    return _ROLES.get(role or "", access_pb2.ROLE_UNSPECIFIED)


def role_of(value: int) -> Role | None:
    for name, number in _ROLES.items():
        if number == value:
            return name  # type: ignore[return-value]
    return None


def actor_kind_message(kind: str) -> access_pb2.ActorKind.ValueType:
    return _KINDS.get(kind, access_pb2.ACTOR_KIND_UNSPECIFIED)


def token_message(row: ApiTokenRow) -> access_pb2.ApiToken:
    return access_pb2.ApiToken(
        id=row.id,
        name=row.name,
        role=role_message(row.role),
        description=row.description,
        create_time=timestamp(row.create_time),
        expire_time=timestamp(row.expire_time),
        revoke_time=timestamp(row.revoke_time),
        last_use_time=timestamp(row.last_use_time),
        creator=row.creator,
    )


def agent_token_message(row: AgentTokenRow) -> access_pb2.AgentToken:
    return access_pb2.AgentToken(
        id=row.id,
        agent=row.agent,
        labels={str(k): str(v) for k, v in (row.labels or {}).items()},
        connections=list(row.connections or []),
        create_time=timestamp(row.create_time),
        expire_time=timestamp(row.expire_time),
        revoke_time=timestamp(row.revoke_time),
        last_use_time=timestamp(row.last_use_time),
        creator=row.creator,
    )


def audit_message(row: AuditEntryRow) -> access_pb2.AuditEvent:
    details = struct_pb2.Struct()
    details.update(row.details or {})
    return access_pb2.AuditEvent(
        id=row.id,
        time=timestamp(row.time),
        actor=row.actor,
        actor_kind=actor_kind_message(row.actor_kind),
        action=row.action,
        resource=row.resource,
        pipeline=row.pipeline or "",
        request_id=row.request_id or "",
        outcome=_OUTCOMES.get(row.outcome, access_pb2.AUDIT_OUTCOME_UNSPECIFIED),
        code=row.code,
        error=row.error,
        details=details,
    )
