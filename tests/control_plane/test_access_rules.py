"""Every RPC of every legato.v1 service declares who may call it, and the roles are what
the docs say: a new RPC without a rule fails here before it can ship unguarded."""

from __future__ import annotations

import pytest

from control_plane.access.roles import ROLES, allows, parse_role
from control_plane.access.rules import LEGATO_SERVICES, Rule, Rules, missing_rules
from legato.v1 import access_service_pb2, pipeline_service_pb2


def test_every_rpc_of_every_service_declares_a_rule() -> None:
    assert missing_rules(LEGATO_SERVICES) == []


def test_every_service_of_the_api_is_covered() -> None:
    """A new service file must be added to LEGATO_SERVICES (and so to the rule check)."""
    from pathlib import Path

    protos = Path(__file__).resolve().parents[2] / "proto" / "legato" / "v1"
    declared = {
        line.split()[1]
        for path in protos.glob("*.proto")
        for line in path.read_text().splitlines()
        if line.startswith("service ")
    }
    assert declared == {s.name for s in LEGATO_SERVICES}


def test_a_method_without_a_rule_is_reported() -> None:
    # A descriptor whose methods carry no option stands for a service someone forgot.
    from google.protobuf import descriptor_pb2, descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto(name="x.proto", package="x")
    file.message_type.add(name="Empty")
    service = file.service.add(name="Forgotten")
    service.method.add(name="DoIt", input_type=".x.Empty", output_type=".x.Empty")
    pool.Add(file)
    forgotten = pool.FindServiceByName("x.Forgotten")
    assert missing_rules([forgotten]) == ["/x.Forgotten/DoIt"]
    assert Rules([forgotten]).get("/x.Forgotten/DoIt") is None


ROLE_OF = {
    "/legato.v1.PipelineService/GetPipeline": Rule("viewer"),
    "/legato.v1.PipelineService/ApplyPipeline": Rule("editor", mutation=True),
    "/legato.v1.PipelineService/ArchivePipeline": Rule("editor", mutation=True),
    "/legato.v1.PipelineService/PauseSchedule": Rule("operator", mutation=True),
    "/legato.v1.RunService/TriggerRun": Rule("operator", mutation=True),
    "/legato.v1.RunService/GetRunLogs": Rule("viewer"),
    "/legato.v1.RunService/CreateBackfill": Rule("operator", mutation=True),
    "/legato.v1.EventService/Publish": Rule("operator", mutation=True),
    "/legato.v1.AgentService/Connect": Rule(None, agent=True),
    "/legato.v1.AgentService/UploadArtifact": Rule(None, agent=True),
    "/legato.v1.AgentService/DownloadArtifact": Rule("viewer", agent=True),
    "/legato.v1.AgentService/DrainAgent": Rule("admin", mutation=True),
    "/legato.v1.AccessService/CreateToken": Rule("admin", mutation=True),
    "/legato.v1.AccessService/ListTokens": Rule("admin"),
    "/legato.v1.AccessService/GetCaller": Rule("viewer", agent=True),
    "/legato.v1.AccessService/CreateSignInLink": Rule("viewer", mutation=True),
    "/legato.v1.AuditService/ListAuditEvents": Rule("viewer"),
    "/grpc.health.v1.Health/Check": Rule(None, public=True),
}


@pytest.mark.parametrize(("method", "rule"), sorted(ROLE_OF.items()))
def test_the_documented_roles(method: str, rule: Rule) -> None:
    assert Rules().get(method) == rule


# Mutations a viewer may make: they change only the caller's own sign-in.
OWN_SIGN_IN = {"/legato.v1.AccessService/CreateSignInLink"}


def test_every_mutation_needs_more_than_a_viewer() -> None:
    for method, rule in Rules().methods().items():
        if rule.mutation and method not in OWN_SIGN_IN:
            assert rule.role in ("operator", "editor", "admin"), method
        if method.rsplit("/", 1)[-1].startswith(("Get", "List", "Watch", "Preview", "Diff")):
            assert not rule.mutation, method


def test_roles_are_ordered() -> None:
    assert ROLES == ("viewer", "operator", "editor", "admin")
    assert allows("admin", "viewer") and allows("editor", "editor")
    assert not allows("operator", "editor") and not allows("viewer", "operator")
    assert parse_role(" Editor ") == "editor"
    with pytest.raises(ValueError, match="'root' is not a role; use one of viewer, operator"):
        parse_role("root")


def test_the_option_is_readable_from_the_generated_descriptors() -> None:
    service = access_service_pb2.DESCRIPTOR.services_by_name["AccessService"]
    assert {m.name for m in service.methods} >= {"CreateToken", "RevokeAgentToken"}
    apply = pipeline_service_pb2.DESCRIPTOR.services_by_name["PipelineService"].methods_by_name[
        "ApplyPipeline"
    ]
    from legato.v1 import access_pb2

    assert apply.GetOptions().Extensions[access_pb2.access].role == access_pb2.ROLE_EDITOR


def test_the_access_table_of_the_api_docs_matches_the_protos() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    documented: dict[str, tuple[str, bool]] = {}
    for line in docs.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[0].endswith("Service`"):
            method = f"/legato.v1.{cells[0].strip('`')}/{cells[1].strip('`')}"
            documented[method] = (cells[2], cells[3] == "yes")
    expected = {}
    for method, rule in Rules().methods().items():
        if method.startswith("/legato.v1."):
            who = [r for r in (rule.role, "agent" if rule.agent else None) if r]
            expected[method] = (" or ".join(who), rule.mutation)
    assert documented == expected
