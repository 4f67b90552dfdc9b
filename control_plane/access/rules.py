"""The access rule of every RPC, read from the ``(legato.v1.access)`` option each method
of each legato.v1 service declares in its proto. A method without a rule is refused to
everyone (and ``tests/control_plane/test_access_rules.py`` fails), so a new RPC cannot be
served unguarded by forgetting it.

Services that are not ours: health checks are open (load balancers probe them without
credentials and learn nothing but "serving"); reflection needs a viewer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.descriptor import ServiceDescriptor

from control_plane.access.roles import Role
from legato.v1 import (
    access_pb2,
    access_service_pb2,
    agent_service_pb2,
    audit_service_pb2,
    event_service_pb2,
    lineage_service_pb2,
    pipeline_service_pb2,
    run_service_pb2,
)

__all__ = ["LEGATO_SERVICES", "Rule", "Rules", "missing_rules"]

_ROLES: dict[int, Role] = {
    access_pb2.ROLE_VIEWER: "viewer",
    access_pb2.ROLE_OPERATOR: "operator",
    access_pb2.ROLE_EDITOR: "editor",
    access_pb2.ROLE_ADMIN: "admin",
}

LEGATO_SERVICES: tuple[ServiceDescriptor, ...] = (
    pipeline_service_pb2.DESCRIPTOR.services_by_name["PipelineService"],
    run_service_pb2.DESCRIPTOR.services_by_name["RunService"],
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"],
    agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"],
    access_service_pb2.DESCRIPTOR.services_by_name["AccessService"],
    audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"],
    lineage_service_pb2.DESCRIPTOR.services_by_name["LineageService"],
)


@dataclass(frozen=True)
class Rule:
    """``role``: the least API-token role that may call (None: no API token may);
    ``agent``: agents may call; ``mutation``: recorded in the activity log, refused or
    not; ``public``: no credential needed."""

    role: Role | None
    agent: bool = False
    mutation: bool = False
    public: bool = False


_OTHERS = {
    "/grpc.health.v1.Health/Check": Rule(role=None, public=True),
    "/grpc.health.v1.Health/Watch": Rule(role=None, public=True),
    "/grpc.health.v1.Health/List": Rule(role=None, public=True),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Rule(role="viewer"),
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Rule(role="viewer"),
}


def rule_of(method: object) -> Rule | None:
    """The rule a method descriptor declares, or None."""
    options = method.GetOptions()  # type: ignore[attr-defined]
    if not options.HasExtension(access_pb2.access):
        return None
    declared = options.Extensions[access_pb2.access]
    role = _ROLES.get(declared.role)
    if role is None and not declared.agent:
        return None
    return Rule(role=role, agent=declared.agent, mutation=declared.mutation)


def missing_rules(services: Iterable[ServiceDescriptor]) -> list[str]:
    """Full method names that declare no rule."""
    return [
        f"/{service.full_name}/{method.name}"
        for service in services
        for method in service.methods
        if rule_of(method) is None
    ]


class Rules:
    """Rules by full method name (``/legato.v1.RunService/GetRun``)."""

    def __init__(self, services: Iterable[ServiceDescriptor] = LEGATO_SERVICES) -> None:
        self._rules: dict[str, Rule] = dict(_OTHERS)
        for service in services:
            for method in service.methods:
                rule = rule_of(method)
                if rule is not None:
                    self._rules[f"/{service.full_name}/{method.name}"] = rule

    def get(self, method: str) -> Rule | None:
        return self._rules.get(method)

    def methods(self) -> dict[str, Rule]:
        return dict(self._rules)
