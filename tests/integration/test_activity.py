"""The activity log, against real control planes on SQLite and PostgreSQL: every mutation
RPC records who did what to which resource under which request id and how it ended;
refused and failed mutations too; the log can be filtered and paged; `legato activity`
shows it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from test_access import leave_a_known_agent, refused, scheduled
from test_cli import Server, legato
from test_leases import HandAgent

from control_plane.access import token_secrets
from control_plane.access.rules import Rules
from legato.client import Client
from legato.testing import LocalControlPlane
from legato.v1 import access_pb2, audit_service_pb2, audit_service_pb2_grpc, run_pb2, spec_pb2

pytestmark = pytest.mark.timeout(120)

SUCCEEDED = access_pb2.AUDIT_OUTCOME_SUCCEEDED
DENIED = access_pb2.AUDIT_OUTCOME_DENIED
FAILED = access_pb2.AUDIT_OUTCOME_FAILED


@dataclass(frozen=True)
class Expected:
    resource: str
    pipeline: str = ""
    refused: str = ""
    """The resource a refused call names, when the call would have made it."""
    viewer_may: bool = False
    """A viewer may make it too (a sign-in link for oneself): not refused to one."""


def entry(client: Client, action: str, request_id: str) -> access_pb2.AuditEvent:
    """The one entry of ``action`` with ``request_id``."""
    found = [e for e in client.list_audit_events(action=action) if e.request_id == request_id]
    assert len(found) == 1, (action, request_id, found)
    return found[0]


Call = Callable[[Client, str], Expected]


def test_every_mutation_rpc_records_who_did_what_under_which_request(
    plane: LocalControlPlane,
) -> None:
    admin = plane.client()  # the token named "tester"
    viewer = plane.client(role="viewer")
    state: dict[str, str] = {}
    day = datetime(2026, 6, 1, tzinfo=UTC)
    etl = Expected("pipelines/etl", "etl")

    def apply(c: Client, r: str) -> Expected:
        c.apply_pipeline(scheduled("etl"), request_id=r)
        c.apply_pipeline(scheduled("etl", value=2))  # a version to roll back from
        return etl

    def trigger(c: Client, r: str) -> Expected:
        state["run"] = c.trigger_run("etl", request_id=r).run.id
        return Expected(f"runs/{state['run']}", "etl", refused="pipelines/etl")

    def cancel(c: Client, r: str) -> Expected:
        c.cancel_run(state["run"], request_id=r)
        return Expected(f"runs/{state['run']}", "etl", refused=f"runs/{state['run']}")

    def rerun(c: Client, r: str) -> Expected:
        new = c.rerun_run(state["run"], request_id=r)
        assert new.id != state["run"]
        return Expected(f"runs/{new.id}", "etl", refused=f"runs/{state['run']}")

    def backfill(c: Client, r: str) -> Expected:
        made = c.create_backfill("etl", day, day + timedelta(days=2), request_id=r)
        state["backfill"] = made.backfill.id
        return Expected(f"backfills/{made.backfill.id}", "etl", refused="pipelines/etl")

    def cancel_backfill(c: Client, r: str) -> Expected:
        c.cancel_backfill(state["backfill"], request_id=r)
        return Expected(
            f"backfills/{state['backfill']}", "etl", refused=f"backfills/{state['backfill']}"
        )

    def publish(c: Client, r: str) -> Expected:
        published = c.publish_event("orders.created", {"id": 1}, request_id=r)
        return Expected(f"events/{published.event_id}", refused="events/orders.created")

    def create_agent_token(c: Client, r: str) -> Expected:
        made = c.create_agent_token("a1", labels={"region": "eu"}, request_id=r)
        state["agent_token"] = made.token.id
        asyncio.run(leave_a_known_agent(plane, "a1"))  # to be drained next
        return Expected("agents/a1")

    def revoke_agent_token(c: Client, r: str) -> Expected:
        c.revoke_agent_token(state["agent_token"], request_id=r)
        return Expected("agents/a1", refused=f"agent-tokens/{state['agent_token']}")

    def test_notifications(c: Client, r: str) -> Expected:
        # A receiver that is not there: the test fails, the call succeeds (and is recorded).
        spec = scheduled("etl")
        spec.notifications.add(
            on=[spec_pb2.NOTIFICATION_EVENT_FAILED]
        ).webhook.url = "http://127.0.0.1:9/hook"
        (result,) = c.test_notifications(spec=spec, request_id=r).results
        assert not result.ok
        return etl

    def test_step(c: Client, r: str) -> Expected:
        # A connected agent to run it on (with no credit: the test run waits for it).
        async def with_agent() -> run_pb2.Run:
            agent = HandAgent(plane.address, "nb-agent", plane.agent_token("nb-agent"))
            await agent.connect(credits=0)
            try:
                return await asyncio.to_thread(
                    c.test_step, scheduled("etl"), "only", agent="nb-agent", request_id=r
                )
            finally:
                await agent.close()

        run = asyncio.run(with_agent())
        return Expected(f"runs/{run.id}", "etl", refused="pipelines/etl")

    def sign_in_link(c: Client, r: str) -> Expected:
        link = c.create_sign_in_link(next_path="/runs", request_id=r)
        assert "/ui/signin?code=lgc_" in link.url
        return Expected(f"tokens/{c.get_caller().name}", viewer_may=True)

    def simple(call: Callable[[Client, str], object], expected: Expected) -> Call:
        def run(c: Client, r: str) -> Expected:
            call(c, r)
            return expected

        return run

    walk: dict[str, Call] = {
        "PipelineService/ApplyPipeline": apply,
        "PipelineService/RollbackPipeline": simple(
            lambda c, r: c.rollback_pipeline("etl", 1, request_id=r), etl
        ),
        "PipelineService/TestNotifications": test_notifications,
        "PipelineService/PauseSchedule": simple(
            lambda c, r: c.pause_schedule("etl", reason="maintenance", request_id=r), etl
        ),
        "PipelineService/ResumeSchedule": simple(
            lambda c, r: c.resume_schedule("etl", request_id=r), etl
        ),
        "RunService/TriggerRun": trigger,
        "RunService/CancelRun": cancel,
        "RunService/RerunRun": rerun,
        "RunService/TestStep": test_step,
        "RunService/CreateBackfill": backfill,
        "RunService/CancelBackfill": cancel_backfill,
        "EventService/Publish": publish,
        "PipelineService/ArchivePipeline": simple(
            lambda c, r: c.archive_pipeline("etl", request_id=r), etl
        ),
        "PipelineService/RestorePipeline": simple(
            lambda c, r: c.restore_pipeline("etl", request_id=r), etl
        ),
        "AccessService/CreateToken": simple(
            lambda c, r: c.create_token("ci", access_pb2.ROLE_OPERATOR, request_id=r),
            Expected("tokens/ci"),
        ),
        "AccessService/RevokeToken": simple(
            lambda c, r: c.revoke_token("ci", request_id=r), Expected("tokens/ci")
        ),
        "AccessService/CreateAgentToken": create_agent_token,
        "AccessService/CreateSignInLink": sign_in_link,
        "AgentService/DrainAgent": simple(
            lambda c, r: c.drain_agent("a1", request_id=r), Expected("agents/a1")
        ),
        "AccessService/RevokeAgentToken": revoke_agent_token,
    }
    mutations = {
        method.removeprefix("/legato.v1.")
        for method, rule in Rules().methods().items()
        if rule.mutation
    }
    # A new mutation RPC fails here until this walk calls it and finds its entry.
    assert set(walk) == mutations

    problems: list[str] = []

    def check(method: str, request_id: str, want: tuple[object, ...]) -> None:
        action = method.split("/")[1]
        found = [e for e in admin.list_audit_events(action=action) if e.request_id == request_id]
        if len(found) != 1:
            problems.append(f"{method}: {len(found)} entries with request id {request_id}")
            return
        event = found[0]
        got = (
            event.actor,
            event.actor_kind,
            event.resource,
            event.pipeline,
            event.outcome,
            event.code,
        )
        if got != want:
            problems.append(f"{method}: {got} != {want}")
        if abs(event.time.ToDatetime(tzinfo=UTC) - datetime.now(UTC)) > timedelta(minutes=1):
            problems.append(f"{method}: time {event.time.ToJsonString()}")

    token = access_pb2.ACTOR_KIND_TOKEN
    for method, call in walk.items():
        request_id = f"req-{method}"
        expected = call(admin, request_id)
        check(
            method,
            request_id,
            ("tester", token, expected.resource, expected.pipeline, SUCCEEDED, 0),
        )
        if expected.viewer_may:
            mine = call(viewer, f"{request_id}-viewer")
            check(
                method,
                f"{request_id}-viewer",
                ("tester-viewer", token, mine.resource, mine.pipeline, SUCCEEDED, 0),
            )
            continue
        # The same call by a viewer is refused, and recorded as such.
        refused(lambda: call(viewer, f"{request_id}-viewer"))  # noqa: B023
        check(
            method,
            f"{request_id}-viewer",
            (
                "tester-viewer",
                token,
                expected.refused or expected.resource,
                expected.pipeline,
                DENIED,
                grpc.StatusCode.PERMISSION_DENIED.value[0],
            ),
        )
    assert problems == []


def test_refused_and_failed_mutations_are_recorded_and_unauthenticated_ones_are_not(
    plane: LocalControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = plane.client()
    viewer = plane.client(role="viewer")
    refused(lambda: viewer.apply_pipeline(scheduled("etl"), request_id="req-denied"))
    denied = entry(admin, "ApplyPipeline", "req-denied")
    assert (denied.actor, denied.actor_kind, denied.resource, denied.pipeline) == (
        "tester-viewer",
        access_pb2.ACTOR_KIND_TOKEN,
        "pipelines/etl",
        "etl",
    )
    assert (denied.outcome, denied.code) == (DENIED, grpc.StatusCode.PERMISSION_DENIED.value[0])
    assert "needs the editor role" in denied.error

    bad = scheduled("broken")
    bad.steps.add(name="load", needs=["extrac"], transform=spec_pb2.TransformStep(code="x"))
    error = refused(lambda: admin.apply_pipeline(bad, request_id="req-invalid"))
    failed = entry(admin, "ApplyPipeline", "req-invalid")
    assert (failed.outcome, failed.code, failed.resource) == (FAILED, 3, "pipelines/broken")
    assert failed.error == error.message and "extrac" in failed.error

    refused(lambda: admin.cancel_run("no-such-run", request_id="req-unknown"))
    missing = entry(admin, "CancelRun", "req-unknown")
    assert (missing.outcome, missing.code, missing.resource) == (FAILED, 5, "runs/no-such-run")
    assert (missing.actor, missing.pipeline) == ("tester", "")

    operator = plane.client(role="operator")
    refused(lambda: operator.create_token("mine", access_pb2.ROLE_ADMIN, request_id="req-esc"))
    escalation = entry(admin, "CreateToken", "req-esc")
    assert (escalation.actor, escalation.outcome, escalation.resource) == (
        "tester-operator",
        DENIED,
        "tokens/mine",
    )

    # A mutation that breaks inside the server is recorded as failed, without the details.
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as patch:
        patch.setattr(plane._plane.tokens, "create", broken)
        crash = refused(
            lambda: admin.create_token("ci", access_pb2.ROLE_VIEWER, request_id="req-500")
        )
    assert crash.code == grpc.StatusCode.INTERNAL
    internal = entry(admin, "CreateToken", "req-500")
    assert (internal.outcome, internal.code, internal.resource) == (FAILED, 13, "tokens/ci")
    assert "internal error" in internal.error and "disk" not in internal.error

    agent = plane.client(token=plane.agent_token("a1"))
    refused(lambda: agent.apply_pipeline(scheduled("etl"), request_id="req-agent"))
    by_agent = entry(admin, "ApplyPipeline", "req-agent")
    assert (by_agent.actor, by_agent.actor_kind, by_agent.outcome) == (
        "a1",
        access_pb2.ACTOR_KIND_AGENT,
        DENIED,
    )
    assert "agents may not call ApplyPipeline" in by_agent.error

    for token in ("", "garbage", token_secrets.new_secret("api")[1]):
        stranger = plane.client(token=token)
        error = refused(
            lambda: stranger.apply_pipeline(scheduled("etl"), request_id="req-anon")  # noqa: B023
        )
        assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert [e for e in admin.list_audit_events() if e.request_id == "req-anon"] == []
    # Reads are never recorded.
    list(viewer.list_runs())
    assert {e.action for e in admin.list_audit_events()} == {
        "ApplyPipeline",
        "CancelRun",
        "CreateToken",
        "CreateAgentToken",
    }


def test_the_log_filters_by_pipeline_actor_action_and_time_and_pages(
    plane: LocalControlPlane,
) -> None:
    admin = plane.client()
    operator = plane.client(role="operator")
    viewer_token = plane.token("viewer")
    admin.apply_pipeline(scheduled("etl"))
    admin.apply_pipeline(scheduled("crm"))
    operator.trigger_run("etl")
    operator.trigger_run("crm")
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    operator.pause_schedule("etl")
    operator.trigger_run("etl")
    admin.create_token("ci", access_pb2.ROLE_VIEWER)

    def summary(**filters: object) -> list[tuple[str, str, str]]:
        return [
            (e.actor, e.action, e.pipeline)
            for e in admin.list_audit_events(**filters)  # type: ignore[arg-type]
        ]

    everything = summary()
    assert everything == [  # newest first
        ("tester", "CreateToken", ""),
        ("tester-operator", "TriggerRun", "etl"),
        ("tester-operator", "PauseSchedule", "etl"),
        ("tester-operator", "TriggerRun", "crm"),
        ("tester-operator", "TriggerRun", "etl"),
        ("tester", "ApplyPipeline", "crm"),
        ("tester", "ApplyPipeline", "etl"),
        ("legato.testing", "CreateToken", ""),  # the tokens of the three roles
        ("legato.testing", "CreateToken", ""),
        ("legato.testing", "CreateToken", ""),
    ]
    assert summary(pipeline="etl") == [e for e in everything if e[2] == "etl"]
    assert summary(actor="tester-operator") == [e for e in everything if e[0] == "tester-operator"]
    assert summary(action="TriggerRun") == [e for e in everything if e[1] == "TriggerRun"]
    assert summary(since=between) == everything[:3]
    assert summary(until=between) == everything[3:]
    assert summary(pipeline="etl", actor="tester-operator", since=between) == everything[1:3]
    assert summary(pipeline="nope") == []

    # Pages of 3, through the RPC itself: no entry twice, none missing, newest first.
    channel = grpc.insecure_channel(plane.address)
    stub = audit_service_pb2_grpc.AuditServiceStub(channel)
    metadata = (("authorization", f"Bearer {viewer_token}"),)
    pages: list[list[int]] = []
    page_token = ""
    while True:
        response = stub.ListAuditEvents(
            audit_service_pb2.ListAuditEventsRequest(page_size=3, page_token=page_token),
            metadata=metadata,
            timeout=10,
        )
        pages.append([e.id for e in response.events])
        page_token = response.next_page_token
        if not page_token:
            break
    channel.close()
    ids = [i for page in pages for i in page]
    assert [len(page) for page in pages] == [3, 3, 3, 1]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 10
    # Pages keep their filter, and a page token cannot be used with another.
    first = admin.list_audit_events(pipeline="etl", page_size=1)
    next(first)
    assert len(list(first)) == 3
    channel = grpc.insecure_channel(plane.address)
    stub = audit_service_pb2_grpc.AuditServiceStub(channel)
    page = stub.ListAuditEvents(
        audit_service_pb2.ListAuditEventsRequest(page_size=1, pipeline="etl"),
        metadata=metadata,
        timeout=10,
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListAuditEvents(
            audit_service_pb2.ListAuditEventsRequest(
                page_size=1, pipeline="crm", page_token=page.next_page_token
            ),
            metadata=metadata,
            timeout=10,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()


# -- `legato activity` ---------------------------------------------------------------------


def test_legato_activity_shows_a_pipelines_recent_changes(server: Server, tmp_path: Path) -> None:
    etl, crm = tmp_path / "etl.yaml", tmp_path / "crm.yaml"
    etl.write_text(ONE_STEP.format(name="etl") + "schedule: {cron: '0 2 * * *'}\n")
    crm.write_text(ONE_STEP.format(name="crm"))
    assert legato(server, "apply", "-f", str(etl)).returncode == 0
    assert legato(server, "schedule", "pause", "etl").returncode == 0
    assert legato(server, "apply", "-f", str(crm)).returncode == 0
    denied = legato(server, "tokens", "create", "x", "--role", "admin", env={"LEGATO_TOKEN": ""})
    assert denied.returncode != 0  # no credential: not recorded

    shown = legato(server, "activity", "--pipeline", "etl", "--since", "1h")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["TIME", "ACTOR", "ACTION", "RESOURCE", "OUTCOME", "REQUEST"]
    rows = [line.split() for line in lines[1:]]
    assert [row[3:] for row in rows] == [  # after the date, the time and its zone
        ["test-admin", "(token)", "PauseSchedule", "pipelines/etl", "succeeded", rows[0][-1]],
        ["test-admin", "(token)", "ApplyPipeline", "pipelines/etl", "succeeded", rows[1][-1]],
    ]
    assert all(len(row[-1]) == 32 for row in rows)  # the request ids the CLI sent

    everything = legato(server, "activity").stdout.splitlines()
    assert [line.split()[5] for line in everything[1:]] == [
        "ApplyPipeline",
        "PauseSchedule",
        "ApplyPipeline",
        "CreateToken",  # the admin token, made on the database (actor kind local)
    ]
    assert "(local)" in everything[-1]

    as_json = legato(server, "activity", "--pipeline", "etl", "-o", "json")
    events = json.loads(as_json.stdout)["events"]
    assert [e["action"] for e in events] == ["PauseSchedule", "ApplyPipeline"]
    assert (events[0]["actor_kind"], events[0]["outcome"]) == (
        "ACTOR_KIND_TOKEN",
        "AUDIT_OUTCOME_SUCCEEDED",
    )
    # The OS user the CLI says it acts for is kept beside the token's name, unverified.
    assert events[0]["details"] == {"reason": "paused by test-admin", "client_user": "alice"}

    assert legato(server, "activity", "--since", "2099-01-01").stdout == "no activity matches\n"
    assert legato(server, "activity", "--until", "1h").stdout == "no activity matches\n"
    limited = legato(server, "activity", "--limit", "1").stdout.splitlines()
    assert len(limited) == 2 and "ApplyPipeline" in limited[1]
    refused_call = legato(server, "activity", env={"LEGATO_TOKEN": "garbage"})
    assert refused_call.returncode != 0
    assert "not a Legato token" in refused_call.stderr


ONE_STEP = """\
name: {name}
steps:
  - name: a
    transform: {{code: "result = 1"}}
"""
