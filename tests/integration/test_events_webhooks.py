"""Events and webhooks end to end: a real control plane on both databases, events published
over gRPC (SDK and CLI), webhooks POSTed over real HTTP, and an agent where a step runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cluster import Cluster
from google.protobuf import json_format

from control_plane.triggers.webhooks import signature_header
from legato import Client
from legato.errors import RpcError
from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import run_pb2

pytestmark = pytest.mark.timeout(120)

LEGATO = str(Path(sys.executable).with_name("legato"))
SECRET = "s3cret-key"
PIPELINES = {
    "eu-orders": """
        name: eu-orders
        params:
          channel: {type: string, default: web}
        triggers:
          - event:
              type: orders.created
              filter: "event.payload.get('region') == 'eu'"
              params: {channel: shop}
        steps:
          - {name: a, transform: {code: "result = data"}}
    """,
    "all-orders": """
        name: all-orders
        triggers:
          - event: {type: orders.created}
        steps:
          - {name: a, transform: {code: "result = data"}}
    """,
    "refunds": """
        name: refunds
        triggers:
          - event: {type: orders.refunded}
        steps:
          - {name: a, transform: {code: "result = data"}}
    """,
    "fragile": """
        name: fragile
        triggers:
          - event: {type: orders.created, filter: "event.payload.total > 100"}
        steps:
          - {name: a, transform: {code: "result = data"}}
    """,
    "hooked": """
        name: hooked
        triggers:
          - webhook: {secret: old-hook}
          - webhook: {secret: orders-hook}
        steps:
          - {name: a, transform: {code: "result = data"}}
    """,
    "unhooked": """
        name: unhooked
        triggers:
          - webhook: {secret: missing-hook}
        steps:
          - {name: a, transform: {code: "result = data"}}
    """,
}


@pytest.fixture
def secrets_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.yaml"
    path.write_text("orders-hook: ${TEST_ORDERS_HOOK}\nold-hook: retired-key\n")
    return path


@pytest.fixture
def plane(
    db_url: str, secrets_file: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalControlPlane]:
    monkeypatch.setenv("TEST_ORDERS_HOOK", SECRET)
    with LocalControlPlane(db=db_url, secrets_file=str(secrets_file)) as running:
        client = running.client()
        for text in PIPELINES.values():
            client.apply_pipeline(load_spec_text(textwrap.dedent(text)).spec)
        yield running


def runs_of(client: Client, pipeline: str) -> list[run_pb2.Run]:
    return list(client.list_runs(pipeline=pipeline))


def pipelines_of(client: Client, run_ids: Any) -> list[str]:
    return sorted(client.get_run(run_id).pipeline for run_id in run_ids)


# -- events -----------------------------------------------------------------------------


def test_an_event_starts_the_matching_subscribers_only(plane: LocalControlPlane) -> None:
    client = plane.client()
    eu = client.publish_event("orders.created", {"region": "eu", "order": 7}, source="shop")
    # fragile's filter fails on a payload without 'total': it is skipped, the others run.
    assert pipelines_of(client, eu.run_ids) == ["all-orders", "eu-orders"]
    assert not eu.duplicate and eu.event_id

    run = client.get_run(next(r for r in eu.run_ids if client.get_run(r).pipeline == "eu-orders"))
    assert run.trigger.kind == run_pb2.TRIGGER_KIND_EVENT
    assert run.trigger.event_id == eu.event_id
    params = json_format.MessageToDict(run.params)
    assert params["channel"] == "shop"  # the trigger's own params
    event = params["event"]
    assert (event["type"], event["source"], event["id"]) == ("orders.created", "shop", eu.event_id)
    assert event["payload"] == {"region": "eu", "order": 7}
    assert event["time"]

    us = client.publish_event("orders.created", {"region": "us", "total": 500})
    assert pipelines_of(client, us.run_ids) == ["all-orders", "fragile"]
    refund = client.publish_event("orders.refunded", {})
    assert pipelines_of(client, refund.run_ids) == ["refunds"]
    assert client.publish_event("nobody.listens", {"x": 1}).run_ids == []
    assert len(runs_of(client, "all-orders")) == 2


def test_a_repeated_request_id_starts_nothing_new(plane: LocalControlPlane) -> None:
    client = plane.client()
    first = client.publish_event("orders.created", {"region": "eu"}, request_id="pub-1")
    again = client.publish_event("orders.created", {"region": "eu"}, request_id="pub-1")
    assert again.duplicate and not first.duplicate
    assert (again.event_id, list(again.run_ids)) == (first.event_id, list(first.run_ids))
    assert len(runs_of(client, "all-orders")) == 1


def test_concurrent_publishes_with_one_request_id_store_one_event(
    plane: LocalControlPlane,
) -> None:
    client = plane.client()

    def publish(_: int) -> Any:
        return client.publish_event("orders.refunded", {"n": 1}, request_id="same")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(publish, range(4)))
    assert len({r.event_id for r in results}) == 1
    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    assert len(runs_of(client, "refunds")) == 1


def test_archived_pipelines_and_removed_triggers_are_not_triggered(
    plane: LocalControlPlane,
) -> None:
    client = plane.client()
    client.archive_pipeline("all-orders")
    started = client.publish_event("orders.created", {"region": "eu"})
    assert pipelines_of(client, started.run_ids) == ["eu-orders"]

    client.restore_pipeline("all-orders")
    # A new version without the trigger unsubscribes eu-orders.
    client.apply_pipeline(
        load_spec_text(
            "name: eu-orders\nsteps:\n  - {name: a, transform: {code: 'result = data'}}\n"
        ).spec
    )
    started = client.publish_event("orders.created", {"region": "eu"})
    assert pipelines_of(client, started.run_ids) == ["all-orders"]


def test_an_empty_type_is_refused_naming_the_field(plane: LocalControlPlane) -> None:
    with pytest.raises(RpcError) as caught:
        plane.client().publish_event("", {"x": 1})
    error = caught.value
    assert (error.code.name, error.reason) == ("INVALID_ARGUMENT", "INVALID_EVENT")
    assert [v.field for v in error.field_violations] == ["type"]


def test_a_second_replica_sees_the_same_subscriptions(plane: LocalControlPlane) -> None:
    with LocalControlPlane(db=plane.config.db) as other:
        started = other.client().publish_event("orders.created", {"region": "eu"})
        assert pipelines_of(other.client(), started.run_ids) == ["all-orders", "eu-orders"]


def test_a_step_reads_the_event_from_its_params(db_url: str, tmp_path: Path) -> None:
    with LocalControlPlane(db=db_url, lease_timeout=3.0) as running:
        cluster = Cluster(running, tmp_path)
        try:
            cluster.start_agent("a1")
            cluster.apply(
                """
                name: on-order
                triggers:
                  - event: {type: orders.created}
                steps:
                  - name: read
                    transform:
                      code: |
                        payload = params["event"]["payload"]
                        result = {"order": payload["order"], "type": params["event"]["type"]}
                  - name: big
                    needs: [read]
                    when: "params.event.payload.order > 100"
                    transform: {code: "result = data"}
                """
            )
            started = cluster.client.publish_event("orders.created", {"order": 42})
            run = cluster.wait_run(started.run_ids[0])
        finally:
            cluster.stop()
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    read, big = run.steps
    assert dict(read.output.values) == {"order": 42, "type": "orders.created"}
    assert big.status == run_pb2.STEP_STATUS_SKIPPED


def test_a_run_started_by_hand_may_carry_an_event(plane: LocalControlPlane) -> None:
    client = plane.client()
    run = client.trigger_run("refunds", params={"event": {"payload": {"order": 1}}}).run
    assert json_format.MessageToDict(run.params) == {"event": {"payload": {"order": 1}}}
    with pytest.raises(RpcError) as caught:
        client.trigger_run("refunds", params={"event": {}, "day": "x"})
    assert caught.value.reason == "INVALID_PARAMS"
    assert [v.field for v in caught.value.field_violations] == ["params.day"]


def test_the_cli_publishes_and_prints_the_runs(plane: LocalControlPlane) -> None:
    def legato(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LEGATO_SERVER": plane.address, "LEGATO_TOKEN": plane.token()}
        return subprocess.run([LEGATO, *args], capture_output=True, text=True, env=env, timeout=60)

    out = legato("events", "publish", "orders.refunded", "--data", '{"order": 1}')
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("event ") and lines[0].endswith(" published: 1 run started")
    assert lines[1].split() == ["RUN", "PIPELINE"]
    assert lines[2].split()[1] == "refunds"

    args = ["events", "publish", "orders.created", "--data", '{"region": "eu"}']
    first = legato(*args, "--request-id", "cli-1", "-o", "json")
    again = legato(*args, "--request-id", "cli-1", "-o", "json")
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    one, two = json.loads(first.stdout), json.loads(again.stdout)
    assert len(one["run_ids"]) == 2 and "duplicate" not in one
    assert (two["event_id"], two["run_ids"], two["duplicate"]) == (
        one["event_id"],
        one["run_ids"],
        True,
    )

    bad = legato("events", "publish", "orders.created", "--data", "[1]")
    assert bad.returncode == 1
    assert "legato events publish: --data must be a JSON object" in bad.stderr
    empty = legato("events", "publish", "")
    assert empty.returncode == 1 and "type is required" in empty.stderr


# -- webhooks ---------------------------------------------------------------------------


def post(
    plane: LocalControlPlane,
    pipeline: str,
    body: bytes,
    signature: str | None,
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Legato-Signature"] = signature
    request = urllib.request.Request(
        f"http://{plane.http_address}/hooks/{pipeline}", data=body, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def signed(body: bytes, *, secret: str = SECRET, age: int = 0) -> str:
    return signature_header(secret, int(time.time()) - age, body)


def test_a_signed_webhook_starts_a_run_once(plane: LocalControlPlane) -> None:
    body = b'{"order": 42, "items": ["a", "b"]}'
    signature = signed(body)
    status, data = post(plane, "hooked", body, signature)
    assert status == 202, data
    run = plane.client().get_run(data["run_id"])
    assert (run.pipeline, run.trigger.kind) == ("hooked", run_pb2.TRIGGER_KIND_WEBHOOK)
    assert json_format.MessageToDict(run.params) == {"webhook": {"order": 42, "items": ["a", "b"]}}

    status, data = post(plane, "hooked", body, signature)
    assert (status, data["reason"]) == (409, "SIGNATURE_REPLAYED")
    # The retired secret of the other webhook trigger verifies too.
    status, data = post(plane, "hooked", body, signed(body, secret="retired-key"))
    assert status == 202, data
    assert len(runs_of(plane.client(), "hooked")) == 2


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, "SIGNATURE_MISSING"),
        ("t=1,v1=abc", "SIGNATURE_INVALID"),
        ("wrong-secret", "SIGNATURE_INVALID"),
        ("stale", "SIGNATURE_EXPIRED"),
        ("future", "SIGNATURE_EXPIRED"),
    ],
)
def test_unsigned_and_badly_signed_webhooks_get_401(
    plane: LocalControlPlane, signature: str | None, reason: str
) -> None:
    body = b'{"order": 1}'
    header = {
        "wrong-secret": signed(body, secret="guess"),
        "stale": signed(body, age=400),
        "future": signed(body, age=-400),
    }.get(signature or "", signature)
    status, data = post(plane, "hooked", body, header)
    assert (status, data["reason"]) == (401, reason), data
    assert data["error"]
    assert runs_of(plane.client(), "hooked") == []


def test_webhooks_without_a_target_get_404(plane: LocalControlPlane) -> None:
    body = b"{}"
    for pipeline in ("nosuch", "all-orders"):
        status, data = post(plane, pipeline, body, signed(body))
        assert (status, data["reason"]) == (404, "WEBHOOK_NOT_FOUND"), pipeline
    plane.client().archive_pipeline("hooked")
    status, data = post(plane, "hooked", body, signed(body))
    assert (status, data["reason"]) == (404, "WEBHOOK_NOT_FOUND")
    assert "archived" in data["error"]


def test_a_secret_missing_on_the_server_is_a_500_naming_it(plane: LocalControlPlane) -> None:
    body = b"{}"
    status, data = post(plane, "unhooked", body, signed(body))
    assert (status, data["reason"]) == (500, "SECRET_NOT_CONFIGURED")
    assert "'missing-hook'" in data["error"]
    assert runs_of(plane.client(), "unhooked") == []


def test_bodies_that_are_not_small_json_objects_are_refused(plane: LocalControlPlane) -> None:
    for body in (b"[1, 2]", b"not json"):
        status, data = post(plane, "hooked", body, signed(body))
        assert (status, data["reason"]) == (400, "INVALID_WEBHOOK_BODY"), body
    large = json.dumps({"blob": "x" * (1024 * 1024)}).encode()
    status, data = post(plane, "hooked", large, signed(large))
    assert (status, data["reason"]) == (413, "BODY_TOO_LARGE")
    assert runs_of(plane.client(), "hooked") == []


def test_a_replay_is_refused_by_another_replica(plane: LocalControlPlane) -> None:
    body = b'{"order": 5}'
    signature = signed(body)
    assert post(plane, "hooked", body, signature)[0] == 202
    with LocalControlPlane(db=plane.config.db, secrets_file=plane.config.secrets_file) as other:
        status, data = post(other, "hooked", body, signature)
    assert (status, data["reason"]) == (409, "SIGNATURE_REPLAYED")


def test_the_documented_curl_and_openssl_recipe(plane: LocalControlPlane) -> None:
    script = """
        body='{"order": 42}'; t=$(date +%s)
        sig=$(printf '%s.%s' "$t" "$body" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')
        curl -sS -X POST http://$ADDRESS/hooks/hooked -H "Legato-Signature: t=$t,v1=$sig" \\
          -H 'Content-Type: application/json' -d "$body"
    """
    env = {**os.environ, "SECRET": SECRET, "ADDRESS": plane.http_address}
    out = subprocess.run(
        ["bash", "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["run_id"]
    params = json_format.MessageToDict(plane.client().get_run(run_id).params)
    assert params == {"webhook": {"order": 42}}
