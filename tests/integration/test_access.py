"""Who may call what, proven against real control planes (gRPC on loopback, SQLite and
PostgreSQL) with the SDK, hand-driven agent streams and real `legato agent` processes:
the roles, refused credentials, revocation across replicas, and the two drills of the
security review (a client posing as an agent; an agent reporting on another's lease)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cluster import LEGATO, Cluster, status_name
from test_cli import Server, legato, start_server
from test_leases import HandAgent

from control_plane.access import token_secrets
from control_plane.access.roles import ROLES, Role, allows
from control_plane.access.rules import Rules
from legato.client import Client
from legato.errors import RpcError, from_grpc_error
from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import (
    access_pb2,
    agent_pb2,
    agent_service_pb2,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
    spec_pb2,
)

pb = agent_service_pb2
pytestmark = pytest.mark.timeout(120)

DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def _spec(text: str) -> spec_pb2.PipelineSpec:
    return load_spec_text(textwrap.dedent(text)).spec


SCHEDULED = """
name: {name}
schedule: {{cron: "0 2 * * *", timezone: UTC}}
steps:
  - name: only
    transform: {{code: "result = {value}"}}
"""


def scheduled(name: str, value: int = 1) -> spec_pb2.PipelineSpec:
    return _spec(SCHEDULED.format(name=name, value=value))


def refused(call: Callable[[], object]) -> RpcError:
    with pytest.raises(RpcError) as caught:
        call()
    return caught.value


async def leave_a_known_agent(plane: LocalControlPlane, name: str) -> None:
    """Connect agent ``name`` once, so that it is known (and can be drained)."""
    agent = HandAgent(plane.address, name, plane.agent_token(name))
    await agent.connect(credits=0)
    await agent.close()


# -- roles ---------------------------------------------------------------------------------


def test_each_role_may_do_its_levels_calls_and_is_told_which_role_the_others_need(
    plane: LocalControlPlane,
) -> None:
    admin = plane.client()
    admin.apply_pipeline(scheduled("etl"))
    admin.apply_pipeline(scheduled("versions"))
    admin.apply_pipeline(scheduled("versions", value=2))
    run_id = admin.trigger_run("etl").run.id
    asyncio.run(leave_a_known_agent(plane, "a1"))
    day = datetime(2026, 6, 1, tzinfo=UTC)

    calls: dict[str, tuple[Role, Callable[[Client, str], object]]] = {
        "RunService/GetRun": ("viewer", lambda c, r: c.get_run(run_id)),
        "RunService/ListRuns": ("viewer", lambda c, r: list(c.list_runs())),
        "RunService/GetRunLogs": ("viewer", lambda c, r: list(c.get_run_logs(run_id))),
        "PipelineService/GetPipeline": ("viewer", lambda c, r: c.get_pipeline("etl")),
        "AuditService/ListAuditEvents": ("viewer", lambda c, r: list(c.list_audit_events())),
        "RunService/TriggerRun": ("operator", lambda c, r: c.trigger_run("etl")),
        "RunService/CancelRun": ("operator", lambda c, r: c.cancel_run(run_id)),
        "PipelineService/PauseSchedule": ("operator", lambda c, r: c.pause_schedule("etl")),
        "EventService/Publish": ("operator", lambda c, r: c.publish_event("orders.created")),
        "RunService/CreateBackfill": (
            "operator",
            lambda c, r: c.create_backfill("etl", day, day + timedelta(days=2), dry_run=True),
        ),
        "PipelineService/ApplyPipeline": (
            "editor",
            lambda c, r: c.apply_pipeline(scheduled(f"made-by-{r}")),
        ),
        "PipelineService/RollbackPipeline": (
            "editor",
            lambda c, r: c.rollback_pipeline("versions", 1),
        ),
        "PipelineService/ArchivePipeline": (
            "editor",
            lambda c, r: c.archive_pipeline(f"made-by-{r}"),
        ),
        "AccessService/CreateToken": (
            "admin",
            lambda c, r: c.create_token(f"made-by-{r}", access_pb2.ROLE_VIEWER),
        ),
        "AccessService/ListTokens": ("admin", lambda c, r: list(c.list_tokens())),
        "AgentService/DrainAgent": ("admin", lambda c, r: c.drain_agent("a1")),
    }
    rules = Rules()
    problems: list[str] = []
    for role in ROLES:
        client = plane.client(role=role)
        for method, (needed, call) in calls.items():
            rule = rules.get(f"/legato.v1.{method}")
            assert rule is not None and rule.role == needed, method
            if allows(role, needed):
                try:
                    call(client, role)
                except RpcError as failure:
                    problems.append(f"{role} {method}: {failure.code.name} {failure.message}")
                continue
            denied = refused(lambda: call(client, role))  # noqa: B023
            name = method.split("/")[1]
            expected = f"{name} needs the {needed} role"
            if denied.code != DENIED or expected not in denied.message:
                problems.append(f"{role} {method}: {denied.code.name} {denied.message}")
            elif f"has the {role} role" not in denied.message:
                problems.append(f"{role} {method}: the message does not say the token's role")
            elif (denied.reason, denied.metadata.get("required_role")) != ("ROLE_REQUIRED", needed):
                problems.append(f"{role} {method}: {denied.reason} {denied.metadata}")
    assert problems == []
    # What the allowed calls did, they did: proof the matrix ran the real calls.
    assert admin.get_pipeline("made-by-editor").archived
    assert {t.name for t in admin.list_tokens()} >= {"made-by-admin"}
    assert "made-by-operator" not in {t.name for t in admin.list_tokens()}


def test_missing_unknown_revoked_and_expired_credentials_are_unauthenticated(
    plane: LocalControlPlane,
) -> None:
    admin = plane.client()
    cases = {
        "none": ("", "this call needs a credential: send the metadata `authorization: Bearer"),
        "garbage": ("hunter2", "the credential sent is not a Legato token (API tokens look"),
        "cut short": ("lgt_nope_nope", "it starts like one but is not lgt_<16-character id>"),
        "unknown": (token_secrets.new_secret("api")[1], "no token has that id"),
    }
    for what, (secret, message) in cases.items():
        error = refused(lambda: list(plane.client(token=secret).list_runs()))  # noqa: B023
        assert (what, error.code) == (what, UNAUTHENTICATED)
        assert message in error.message, (what, error.message)
        if what in ("garbage", "cut short"):
            assert error.reason == "CREDENTIAL_MALFORMED", (what, error.reason)
        assert (
            "legato tokens create" in error.message
            or "ask an admin" in error.message
            or (what == "unknown")
        )

    made = admin.create_token("short-lived", access_pb2.ROLE_VIEWER)
    doomed = admin.create_token("doomed", access_pb2.ROLE_VIEWER)
    expiring = admin.create_token(
        "expiring", access_pb2.ROLE_VIEWER, expire_time=datetime.now(UTC) + timedelta(seconds=1.5)
    )
    user, revoked, expired = (plane.client(token=t.secret) for t in (made, doomed, expiring))
    for client in (user, revoked, expired):
        list(client.list_runs())
    admin.revoke_token("doomed")
    error = refused(lambda: list(revoked.list_runs()))  # at once on the replica that revoked
    assert (error.code, error.reason) == (UNAUTHENTICATED, "TOKEN_REVOKED")
    assert "the token 'doomed' was revoked at" in error.message and "ask an admin" in error.message

    time.sleep(
        max(0.0, expiring.token.expire_time.ToDatetime(tzinfo=UTC).timestamp() - time.time())
    )
    error = refused(lambda: list(expired.list_runs()))
    assert (error.code, error.reason) == (UNAUTHENTICATED, "TOKEN_EXPIRED")
    assert "the token 'expiring' expired at" in error.message
    list(user.list_runs())  # the others still work

    # A header that is not `Bearer <token>` is named as such.
    channel = grpc.insecure_channel(plane.address)
    stub = run_service_pb2_grpc.RunServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListRuns(
            run_service_pb2.ListRunsRequest(),
            metadata=(("authorization", f"Basic {made.secret}"),),
            timeout=10,
        )
    malformed = from_grpc_error(caught.value, plane.address)
    assert (malformed.code, malformed.reason) == (UNAUTHENTICATED, "CREDENTIAL_MALFORMED")
    channel.close()


async def test_agent_tokens_only_connect_and_api_tokens_cannot(plane: LocalControlPlane) -> None:
    secret = plane.agent_token("a1")
    as_agent = plane.client(token=secret)
    for call in (lambda: list(as_agent.list_runs()), lambda: as_agent.trigger_run("etl")):
        error = await asyncio.to_thread(refused, call)
        assert (error.code, error.reason) == (DENIED, "AGENTS_NOT_ALLOWED")
        assert "needs an API token" in error.message
    # An agent may ask who it is.
    caller = await asyncio.to_thread(as_agent.get_caller)
    assert (caller.kind, caller.name) == (access_pb2.ACTOR_KIND_AGENT, "a1")

    for role in ("viewer", "admin"):
        impostor = HandAgent(plane.address, "a1", plane.token(role))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await impostor.connect(credits=1)
        assert caught.value.code() == DENIED
        assert "only executor agents call Connect; an API token cannot" in (
            caught.value.details() or ""
        )
        await impostor.close()


# -- revocation across replicas ------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_revocation_on_one_replica_is_honoured_by_another_within_seconds(db_url: str) -> None:
    with LocalControlPlane(db=db_url) as one, LocalControlPlane(db=db_url) as two:
        admin = one.client()
        admin.apply_pipeline(scheduled("etl"))
        run_id = admin.trigger_run("etl").run.id  # no agent: it stays running
        secret = one.token("viewer", name="ci")
        here, there = one.client(token=secret), two.client(token=secret)
        assert there.get_run(run_id).id == run_id

        watching = two.client(token=secret)
        events: queue.Queue[object] = queue.Queue()

        def watch() -> None:
            try:
                for event in watching.watch_run(run_id, include_logs=False):
                    events.put(event)
            except RpcError as error:
                events.put(error)
            events.put(None)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        first = events.get(timeout=10)
        assert isinstance(first, run_service_pb2.WatchRunResponse) and first.HasField("run")

        admin.revoke_token("ci")
        revoked = time.monotonic()
        error = refused(lambda: here.get_run(run_id))
        assert error.reason == "TOKEN_REVOKED"  # at once where it was revoked

        while True:  # within the other replica's cache time (2 s)
            try:
                there.get_run(run_id)
            except RpcError as failure:
                assert (failure.code, failure.reason) == (UNAUTHENTICATED, "TOKEN_REVOKED")
                break
            assert time.monotonic() - revoked < 3.0, "the other replica still takes the token"
            time.sleep(0.05)

        ended = None
        while ended is None or isinstance(ended, run_service_pb2.WatchRunResponse):
            ended = events.get(timeout=8)
        took = time.monotonic() - revoked
        assert isinstance(ended, RpcError), ended
        assert (ended.code, ended.reason) == (UNAUTHENTICATED, "TOKEN_REVOKED")
        assert "the credential of this stream (token" in ended.message
        assert took < 5.5, f"the watch ended {took:.1f} s after the revocation"
        thread.join(timeout=5)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_an_agent_revoked_on_another_replica_is_cut_off_and_its_step_retried(
    db_url: str,
) -> None:
    with LocalControlPlane(db=db_url) as one, LocalControlPlane(db=db_url) as two:
        admin = one.client()
        await asyncio.to_thread(admin.apply_pipeline, _spec(ONE_STEP))
        run_id = (await asyncio.to_thread(admin.trigger_run, "one")).run.id
        secret = one.agent_token("remote")
        remote = HandAgent(two.address, "remote", secret)  # connected to the other replica
        await remote.connect(credits=1)
        task = await remote.next("assignment")

        await asyncio.to_thread(admin.revoke_agent_token, secret.split("_")[1])
        revoked = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await remote.next("assignment", within=10)
        took = time.monotonic() - revoked
        assert caught.value.code() == UNAUTHENTICATED
        assert "the enrolment credential of agent 'remote'" in (caught.value.details() or "")
        assert took < 4.0, f"the stream closed {took:.1f} s after the revocation"
        await remote.close()

        deadline = time.monotonic() + 5  # the stream closes first, then the step is lost
        run = await asyncio.to_thread(admin.get_run, run_id)
        while run.steps[0].attempts[0].status != run_pb2.STEP_STATUS_FAILED:
            assert time.monotonic() < deadline, run
            await asyncio.sleep(0.05)
            run = await asyncio.to_thread(admin.get_run, run_id)
        (lost,) = run.steps[0].attempts
        assert (lost.lease_id, lost.failure_kind) == (task.lease_id, spec_pb2.FAILURE_KIND_LOST)
        assert "its enrolment token was revoked" in lost.error
        assert "retry 1 of 2" in run.steps[0].waiting_reason  # retried, waiting for an agent
        again = HandAgent(two.address, "remote", secret)
        with pytest.raises(grpc.aio.AioRpcError) as refused_again:
            await again.connect(credits=1)
        assert refused_again.value.code() == UNAUTHENTICATED
        await again.close()


# -- drill 1: a client posing as an agent --------------------------------------------------

QUERY = """
name: orders
params:
  floor: {type: integer, default: 10}
steps:
  - name: extract
    query:
      connection: warehouse
      sql: SELECT id FROM orders WHERE amount >= :floor
    retry: {max_retries: 1}
"""


async def register(agent: HandAgent, credits: int = 1, **fields: Any) -> pb.AgentRegistered:
    """Open ``agent``'s stream with a registration of the test's choosing."""
    agent.call = agent.stub.Connect(agent._requests(), metadata=agent.metadata)
    fields.setdefault("name", agent.name)
    await agent.send(register=pb.AgentRegistration(slots=1, instance_id=agent.name, **fields))
    registered: pb.ConnectResponse = await agent.call.read()
    await agent.send(credit=pb.CreditGrant(credits=credits))
    return registered.registered


async def refused_registration(agent: HandAgent, **fields: Any) -> RpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await register(agent, **fields)
    await agent.close()
    return from_grpc_error(caught.value, "control plane")


async def collect(agent: HandAgent, into: list[str]) -> None:
    """Note the kind of every message ``agent`` receives (reading in the background:
    a read given up on would cancel the call)."""
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
        while True:
            message = await agent.call.read()
            if message is grpc.aio.EOF:
                return
            into.append(message.WhichOneof("message"))


async def test_only_an_enrolled_agent_with_the_connection_receives_a_query_step(
    plane: LocalControlPlane,
) -> None:
    client = plane.client()
    await asyncio.to_thread(client.apply_pipeline, _spec(QUERY))
    run_id = (await asyncio.to_thread(client.trigger_run, "orders", params={"floor": 7})).run.id

    nobody = HandAgent(plane.address, "nobody", "")
    nobody.metadata = ()  # type: ignore[assignment]  # no authorization at all
    error = await refused_registration(nobody, connections=["warehouse"])
    assert (error.code, error.reason) == (UNAUTHENTICATED, "AGENT_CREDENTIAL_MISSING"), error
    assert "legato agents token create --name NAME" in error.message

    crm = HandAgent(plane.address, "crm", plane.agent_token("crm", connections=["crm"]))
    error = await refused_registration(crm, connections=["warehouse"])
    assert (error.code, error.reason) == (DENIED, "CONNECTION_NOT_ALLOWED")
    assert "advertises the connection 'warehouse', which its enrolment does not allow" in (
        error.message
    )

    eu_token = plane.agent_token("eu", labels={"region": "eu"}, connections=[])
    for claimed in ({"region": "us"}, {"connection/warehouse": "true"}, {"gpu": "yes"}):
        eu = HandAgent(plane.address, "eu", eu_token)
        error = await refused_registration(eu, labels=claimed)
        assert (error.code, error.reason) == (DENIED, "LABEL_NOT_ALLOWED"), claimed
        key, value = next(iter(claimed.items()))
        assert f"claims the label {key!r}={value!r}" in error.message
        assert "(its labels: region=eu)" in error.message

    # Enrolled without the connection, an agent registers but is given nothing.
    eu = HandAgent(plane.address, "eu", eu_token)
    registered = await register(eu, labels={"region": "eu"})
    assert registered.agent_id == "eu"
    received: list[str] = []
    reader = asyncio.create_task(collect(eu, received))
    await asyncio.sleep(1.0)
    run = await asyncio.to_thread(client.get_run, run_id)
    assert [len(step.attempts) for step in run.steps] == [0], run

    # The control: the agent enrolled for the connection gets the step, SQL and params.
    warehouse = HandAgent(plane.address, "wh", plane.agent_token("wh", connections=["warehouse"]))
    await register(warehouse, connections=["warehouse"])
    task = await warehouse.next("assignment")
    assert task.step.query.sql.startswith("SELECT id FROM orders")
    assert task.params["floor"] == 7
    run = await asyncio.to_thread(client.get_run, run_id)
    assert [a.agent for a in run.steps[0].attempts] == ["wh"]
    assert "assignment" not in received and not reader.done()
    reader.cancel()
    for agent in (eu, warehouse):
        await agent.close()


def test_a_real_agent_claiming_more_than_its_enrolment_exits_with_code_3(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.apply(QUERY)
    run_id = cluster.client.trigger_run("orders").run.id
    cases = {
        "crm-only": ({}, {"connections": ["crm"]}, "advertises the connection 'warehouse'"),
        "eu-only": ({"region": "us"}, {"labels": {"region": "eu"}}, "claims the label 'region'"),
        "nobody": ({}, None, "an agent must prove who it is"),
    }
    env = {"LEGATO_CONNECTION_WAREHOUSE": f"sqlite:///{tmp_path}/warehouse.db"}
    processes = {
        name: cluster.start_agent(
            name,
            labels=labels,
            wait=False,
            env=env,
            token="" if enrolment is None else cluster.plane.agent_token(name, **enrolment),  # type: ignore[arg-type]
        )
        for name, (labels, enrolment, _) in cases.items()
    }
    for name, process in processes.items():
        assert process.wait(timeout=30) == 3, name
        log = (tmp_path / f"{name}.log").read_text()
        assert cases[name][2] in log, log
    run = cluster.client.get_run(run_id)
    assert [len(step.attempts) for step in run.steps] == [0], run


# -- drill 2: an agent reporting on another agent's lease ----------------------------------

ONE_STEP = """
name: one
steps:
  - name: only
    transform: {code: "result = 1"}
    retry: {max_retries: 2}
"""


async def acks_through(agent: HandAgent, seq: int) -> dict[int, pb.ReportRejection]:
    """The rejections of the reports up to ``seq``, by seq."""
    rejections: dict[int, pb.ReportRejection] = {}
    while True:
        ack = await agent.next("ack")
        rejections.update({r.seq: r for r in ack.rejections})
        if ack.through_seq >= seq:
            return rejections


def forged(lease_id: str) -> list[dict[str, Any]]:
    """What an impostor sends about a lease: started, a log line, a failure."""
    return [
        {"started": pb.TaskStarted(lease_id=lease_id)},
        {"logs": pb.TaskLogs(lease_id=lease_id, lines=[agent_pb2.TaskLogLine(text="forged line")])},
        {
            "result": pb.TaskResult(
                lease_id=lease_id,
                outcome=agent_pb2.TASK_OUTCOME_FAILED,
                error="forged failure",
                failure_kind=spec_pb2.FAILURE_KIND_ERROR,
            )
        },
    ]


async def test_an_agent_cannot_report_on_another_agents_lease_nor_take_its_name(
    plane: LocalControlPlane,
) -> None:
    client = plane.client()
    await asyncio.to_thread(client.apply_pipeline, _spec(ONE_STEP))
    run_id = (await asyncio.to_thread(client.trigger_run, "one")).run.id
    real = HandAgent(plane.address, "real", plane.agent_token("real"))
    await real.connect(credits=1)
    task = await real.next("assignment")
    mallory_token = plane.agent_token("mallory")
    mallory = HandAgent(plane.address, "mallory", mallory_token)
    await mallory.connect(credits=0)

    # The lease id is public: anyone with a viewer token reads it from GetRun.
    viewer = plane.client(role="viewer")
    (attempt,) = (await asyncio.to_thread(viewer.get_run, run_id)).steps[0].attempts
    assert attempt.lease_id == task.lease_id
    before = (status_name(attempt.status), attempt.error, attempt.agent)

    sent = [await mallory.send(**report) for report in forged(attempt.lease_id)]
    rejections = await acks_through(mallory, sent[-1])
    for seq in sent:
        rejection = rejections[seq]
        assert (rejection.code, rejection.lease_id) == (7, attempt.lease_id)
        assert f"lease {attempt.lease_id} was not given to agent 'mallory'" in rejection.message

    run = await asyncio.to_thread(client.get_run, run_id)
    (after,) = run.steps[0].attempts
    assert (status_name(after.status), after.error, after.agent) == before == ("leased", "", "real")
    assert run.status == run_pb2.RUN_STATUS_RUNNING
    logs = await asyncio.to_thread(lambda: [line.text for line in client.get_run_logs(run_id)])
    assert "forged line" not in logs

    # Nor can it register under the real agent's name with its own enrolment.
    thief = HandAgent(plane.address, "real", mallory_token)
    error = await refused_registration(thief)
    assert (error.code, error.reason) == (DENIED, "AGENT_NAME_MISMATCH")
    assert "calls itself 'real' but its credential" in error.message

    # The real agent's reports still count.
    for report in (
        {"started": pb.TaskStarted(lease_id=task.lease_id)},
        {"logs": pb.TaskLogs(lease_id=task.lease_id, lines=[agent_pb2.TaskLogLine(text="real")])},
        {"result": pb.TaskResult(lease_id=task.lease_id, outcome=agent_pb2.TASK_OUTCOME_SUCCEEDED)},
    ):
        seq = await real.send(**report)
    assert await acks_through(real, seq) == {}
    run = await asyncio.to_thread(client.get_run, run_id)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert [(a.agent, status_name(a.status), a.error) for a in run.steps[0].attempts] == [
        ("real", "succeeded", "")
    ]
    logs = await asyncio.to_thread(lambda: [line.text for line in client.get_run_logs(run_id)])
    assert "real" in logs and "forged line" not in logs
    for agent in (real, mallory):
        await agent.close()


GATED = """
name: gated
steps:
  - name: nap
    transform:
      code: |
        import os, time
        gate = os.environ.get("GATE", "")
        deadline = time.monotonic() + 60
        while gate and not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        result = 1
    retry: {max_retries: 1}
"""
"""On an agent started with GATE=path, the step waits until that file exists."""


def running_attempt(cluster: Cluster, run_id: str, agent: str) -> run_pb2.StepAttempt:
    found: list[run_pb2.StepAttempt] = []

    def running() -> bool:
        attempts = cluster.client.get_run(run_id).steps[0].attempts
        found[:] = [a for a in attempts if a.status == run_pb2.STEP_STATUS_RUNNING]
        return bool(found) and found[0].agent == agent

    cluster.wait_for(running, f"the step to run on {agent}")
    return found[0]


async def test_a_forged_failure_on_a_real_agent_process_lease_changes_nothing(
    cluster: Cluster,
) -> None:
    gate = cluster.workdir / "gate"
    await asyncio.to_thread(cluster.start_agent, "real", slots=1, env={"GATE": str(gate)})
    await asyncio.to_thread(cluster.apply, GATED)
    run_id = (await asyncio.to_thread(cluster.client.trigger_run, "gated")).run.id
    attempt = await asyncio.to_thread(running_attempt, cluster, run_id, "real")

    mallory = HandAgent(cluster.plane.address, "mallory", cluster.plane.agent_token("mallory"))
    await mallory.connect(credits=0)
    sent = [await mallory.send(**report) for report in forged(attempt.lease_id)]
    rejections = await acks_through(mallory, sent[-1])
    assert [rejections[seq].code for seq in sent] == [7, 7, 7]
    await mallory.close()
    gate.touch()

    run = await asyncio.to_thread(cluster.wait_run, run_id)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    assert [(a.agent, status_name(a.status), a.error) for a in run.steps[0].attempts] == [
        ("real", "succeeded", "")
    ]


# -- revoking an agent ---------------------------------------------------------------------


def test_revoking_an_enrolment_disconnects_the_agent_and_retries_its_step_elsewhere(
    cluster: Cluster,
) -> None:
    secret = cluster.plane.agent_token("doomed")
    token_id = secret.split("_")[1]
    never = str(cluster.workdir / "never")
    doomed = cluster.start_agent("doomed", slots=2, token=secret, env={"GATE": never})
    cluster.apply(GATED)
    run_id = cluster.client.trigger_run("gated").run.id
    running_attempt(cluster, run_id, "doomed")
    cluster.start_agent("spare", slots=1, wait=False)  # connects while the CLI runs

    env = {**os.environ, "LEGATO_SERVER": cluster.plane.address}
    env["LEGATO_TOKEN"] = cluster.plane.token("admin")
    revoke = subprocess.run(
        [LEGATO, "agents", "token", "revoke", token_id],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    revoked = time.monotonic()
    assert revoke.returncode == 0, revoke.stderr
    assert revoke.stdout == f"enrolment token {token_id} of agent doomed revoked\n"
    assert doomed.wait(timeout=10) == 3
    assert time.monotonic() - revoked < 5
    log = (cluster.workdir / "doomed.log").read_text()
    assert "was revoked or has expired" in log

    run = cluster.wait_run(run_id)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    assert len(run.steps[0].attempts) == 2, run
    first, second = run.steps[0].attempts
    assert (first.agent, status_name(first.status)) == ("doomed", "failed")
    assert first.failure_kind == spec_pb2.FAILURE_KIND_LOST
    assert "its enrolment token was revoked" in first.error
    assert (second.agent, status_name(second.status)) == ("spare", "succeeded")


# -- the CLI -------------------------------------------------------------------------------


def test_tokens_are_created_shown_once_listed_without_secrets_and_revoked(server: Server) -> None:
    made = legato(server, "tokens", "create", "ci", "--role", "operator", "--description", "CI")
    assert made.returncode == 0, made.stderr
    first, second, secret = made.stdout.splitlines()
    token_id = secret.split("_")[1]
    assert first == f"token ci (operator) created, id {token_id}"
    assert second == "its secret, shown only now; keep it like a password:"
    assert secret.startswith(f"lgt_{token_id}_")

    me = legato(server, "whoami", env={"LEGATO_TOKEN": secret})
    assert me.stdout == f"ci (token, role operator) on {server.address}\n", me.stderr
    assert legato(server, "whoami").stdout.startswith("test-admin (token, role admin) on ")

    for args in (("tokens", "list"), ("tokens", "list", "--all", "-o", "json")):
        listed = legato(server, *args)
        assert listed.returncode == 0, listed.stderr
        assert token_id in listed.stdout and "ci" in listed.stdout
        assert secret.split("_", 2)[2] not in listed.stdout
    table = legato(server, "tokens", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "ID", "ROLE", "STATE", "CREATED", "LAST", "USED", "CREATOR"]
    row = next(line.split() for line in table[1:] if line.startswith("ci "))
    assert row[:4] == ["ci", token_id, "operator", "active"] and row[-1] == "test-admin"
    # An operator may not manage tokens; the message says who may.
    denied = legato(server, "tokens", "list", env={"LEGATO_TOKEN": secret})
    assert denied.returncode != 0 and "ListTokens needs the admin role" in denied.stderr

    revoked = legato(server, "tokens", "revoke", "ci")
    assert revoked.stdout == f"token ci ({token_id}) revoked\n", revoked.stderr
    after = legato(server, "whoami", env={"LEGATO_TOKEN": secret})
    assert after.returncode != 0 and "the token 'ci' was revoked at" in after.stderr
    assert "ci " not in legato(server, "tokens", "list").stdout
    assert "revoked" in legato(server, "tokens", "list", "--all").stdout


CLIENT_SIDE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
"""For what the CLI does on its side: the server's part is proven on both stores above."""


@CLIENT_SIDE
def test_an_agent_enrolled_with_the_cli_connects_with_its_enrolments_labels(
    server: Server, tmp_path: Path
) -> None:
    made = legato(
        server,
        "agents",
        "token",
        "create",
        "--name",
        "a1",
        "--labels",
        "region=eu",
        "--connections",
        "warehouse",
    )
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert lines[0].startswith("agent a1 enrolled: token ")
    assert lines[0].endswith(", labels region=eu, connections warehouse")
    token_file = tmp_path / "a1.token"
    token_file.write_text(lines[-1] + "\n")
    token_file.chmod(0o600)
    env = {
        **os.environ,
        "LEGATO_CONNECTION_WAREHOUSE": f"sqlite:///{tmp_path}/warehouse.db",
    }
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen(
        [
            LEGATO,
            "agent",
            "--server",
            server.address,
            "--token-file",
            str(token_file),
            "--workdir",
            str(tmp_path / "work"),
            "--log-format",
            "json",
        ],
        stdout=log,
        stderr=log,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        agents: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not agents:
            listed = legato(server, "agents", "-o", "json")
            agents = json.loads(listed.stdout).get("agents", [])
            time.sleep(0.2)
        assert [a["name"] for a in agents] == ["a1"], (tmp_path / "agent.log").read_text()
        assert agents[0]["labels"] == {"region": "eu", "connection/warehouse": "true"}
        assert agents[0]["connections"] == ["warehouse"]
        tokens = legato(server, "agents", "token", "list").stdout
        assert "a1" in tokens and "region=eu" in tokens and lines[-1] not in tokens
    finally:
        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait(timeout=10)
        log.close()


@CLIENT_SIDE
def test_contexts_hold_the_server_and_token_and_the_environment_overrides_them(
    server: Server, tmp_path: Path
) -> None:
    config = Path(os.environ["LEGATO_CONFIG"])
    viewer = legato(server, "tokens", "create", "watcher", "--role", "viewer").stdout
    viewer_secret = viewer.splitlines()[-1]

    def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return legato(None, *args, env=env)  # no LEGATO_SERVER / LEGATO_TOKEN of its own

    made = cli("config", "set-context", "prod", "--server", server.address, "--token", server.token)
    assert made.returncode == 0, made.stderr
    assert made.stdout == f"context prod (current) set in {config}\n"
    assert cli("config", "set-context", "dev", "--server", "127.0.0.1:1").returncode == 0
    assert cli("config", "use-context", "dev").stdout == "current context: dev\n"
    assert cli("config", "use-context", "prod").stdout == "current context: prod\n"
    assert config.stat().st_mode & 0o777 == 0o600

    runs = cli("runs")
    assert runs.returncode == 0, runs.stderr
    assert cli("whoami").stdout == f"test-admin (token, role admin) on {server.address}\n"

    view = cli("config", "view")
    assert server.token not in view.stdout
    assert server.token.split("_", 2)[2] not in view.stdout
    assert f"token: lgt_{server.token.split('_')[1]}_***" in view.stdout
    assert "current-context: prod" in view.stdout
    assert server.token in cli("config", "view", "--raw").stdout

    # The environment wins over the context: another token for the same server...
    assert cli("whoami", LEGATO_TOKEN=viewer_secret).stdout.startswith(
        "watcher (token, role viewer)"
    )
    garbage = cli("whoami", LEGATO_TOKEN="garbage")
    assert garbage.returncode != 0 and "not a Legato token" in garbage.stderr
    # ...and another server, to which the context's token is not sent.
    elsewhere = start_server(f"sqlite:///{tmp_path}/other.db")
    try:
        sent = cli("whoami", LEGATO_SERVER=elsewhere.address)
        assert sent.returncode != 0 and "this call needs a credential" in sent.stderr
        with_token = cli("whoami", LEGATO_SERVER=elsewhere.address, LEGATO_TOKEN=elsewhere.token)
        assert with_token.stdout.startswith(
            "test-admin (token, role admin) on " + elsewhere.address
        )
    finally:
        elsewhere.process.send_signal(signal.SIGTERM)
        elsewhere.process.wait(timeout=20)
    assert cli("config", "use-context", "nope").returncode != 0


# -- the hot path --------------------------------------------------------------------------


async def test_neither_agent_messages_nor_busy_clients_read_a_token_each_time(
    plane: LocalControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens: Any = plane._plane.tokens
    reads: list[str] = []

    def counted(lookup: Callable[[str], Any]) -> Callable[[str], Any]:
        async def wrapper(token_id: str) -> Any:
            reads.append(token_id)
            return await lookup(token_id)

        return wrapper

    monkeypatch.setattr(tokens, "api_token", counted(tokens.api_token))
    monkeypatch.setattr(tokens, "agent_token", counted(tokens.agent_token))
    agent_secret = plane.agent_token("busy")
    agent = HandAgent(plane.address, "busy", agent_secret)
    await agent.connect(credits=0)
    assert reads == [agent_secret.split("_")[1]]  # the stream is authenticated once

    started = time.monotonic()
    for _ in range(300):
        seq = await agent.send(heartbeat=pb.Heartbeat(lease_ids=[]))
    await acks_through(agent, seq)
    client = plane.client(role="viewer")
    for _ in range(100):
        await asyncio.to_thread(lambda: list(client.list_runs()))
    took = time.monotonic() - started
    api_reads = len(reads) - 1
    # One read per token per 2 s (the cache), not one per message or call.
    assert 1 <= api_reads <= 1 + int(took / 2.0), (api_reads, took)
    await agent.close()
