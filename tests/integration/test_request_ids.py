"""Request ids over the real gRPC API on both stores: a retried call, however many arrive
at once, acts once and answers with the first call's result; the same id sent with another
request is refused, naming the id and what differs."""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TypeVar

import grpc
import pytest

from legato import Client, RpcError
from legato.spec import load_spec_text
from legato.testing import LocalControlPlane

pytestmark = pytest.mark.timeout(120)

T = TypeVar("T")
CALLERS = 8

PIPELINE = """
name: {name}
params:
  rows: {{type: integer, default: 1}}
steps:
  - name: only
    transform: {{code: "result = 1"}}
"""
DAILY = """
name: daily
schedule: {cron: "0 5 * * *", timezone: UTC}
steps:
  - name: only
    transform: {code: "result = 1"}
"""
SUBSCRIBER = """
name: listener
triggers:
  - event: {type: orders.created}
steps:
  - name: only
    transform: {code: "result = 1"}
"""


def apply(client: Client, text: str, name: str = "") -> None:
    text = text.format(name=name) if name else text
    client.apply_pipeline(load_spec_text(textwrap.dedent(text)).spec)


def all_at_once(call: Callable[[], T]) -> list[T]:
    """``call`` from CALLERS threads released together."""
    start = threading.Barrier(CALLERS)

    def one() -> T:
        start.wait()
        return call()

    with ThreadPoolExecutor(CALLERS) as pool:
        futures = [pool.submit(one) for _ in range(CALLERS)]
        return [future.result() for future in futures]


def refused(call: Callable[[], object]) -> RpcError:
    with pytest.raises(RpcError) as caught:
        call()
    error = caught.value
    assert error.code == grpc.StatusCode.ALREADY_EXISTS, error
    assert error.reason == "REQUEST_ID_REUSED", error
    return error


def test_concurrent_triggers_with_one_request_id_start_one_run(plane: LocalControlPlane) -> None:
    client = plane.client(role="operator")
    apply(plane.client(), PIPELINE, "etl")
    answers = all_at_once(lambda: client.trigger_run("etl", request_id="deploy-7"))
    assert len({answer.run.id for answer in answers}) == 1
    assert sum(answer.created for answer in answers) == 1
    assert [run.id for run in client.list_runs(pipeline="etl")] == [answers[0].run.id]


def test_a_request_id_sent_with_another_trigger_is_refused(plane: LocalControlPlane) -> None:
    client = plane.client(role="operator")
    apply(plane.client(), PIPELINE, "etl")
    apply(plane.client(), PIPELINE, "other")
    first = client.trigger_run("etl", params={"rows": 3}, request_id="nightly-1")
    again = client.trigger_run("etl", params={"rows": 3}, request_id="nightly-1")
    assert (again.run.id, again.created) == (first.run.id, False)

    error = refused(lambda: client.trigger_run("etl", params={"rows": 4}, request_id="nightly-1"))
    assert "request_id 'nightly-1'" in error.message
    assert "params" in error.message and '{"rows":3.0}' in error.message
    assert '{"rows":4.0}' in error.message
    assert error.metadata["fields"] == "params"
    error = refused(lambda: client.trigger_run("other", params={"rows": 3}, request_id="nightly-1"))
    assert "pipeline" in error.message and '"etl"' in error.message and '"other"' in error.message
    assert [r.id for r in client.list_runs(pipeline="etl")] == [first.run.id]
    assert list(client.list_runs(pipeline="other")) == []


def test_concurrent_differing_triggers_with_one_id_start_one_run_and_refuse_the_rest(
    plane: LocalControlPlane,
) -> None:
    client = plane.client(role="operator")
    apply(plane.client(), PIPELINE, "etl")
    rows = iter(range(CALLERS))
    lock = threading.Lock()

    def trigger() -> str:
        with lock:
            value = next(rows)
        try:
            return client.trigger_run("etl", params={"rows": value}, request_id="r").run.id
        except RpcError as error:
            return error.reason

    answers = all_at_once(trigger)
    runs = [run.id for run in client.list_runs(pipeline="etl")]
    assert len(runs) == 1
    assert sorted(answers) == sorted([runs[0]] + ["REQUEST_ID_REUSED"] * (CALLERS - 1))


def test_reruns_backfills_and_events_honour_request_ids(plane: LocalControlPlane) -> None:
    client = plane.client(role="operator")
    apply(plane.client(), PIPELINE, "etl")
    apply(plane.client(), DAILY)
    apply(plane.client(), SUBSCRIBER)
    ended = []
    for _ in range(2):
        run = client.trigger_run("etl").run
        ended.append(client.cancel_run(run.id).id)

    reruns = all_at_once(lambda: client.rerun_run(ended[0], request_id="again").id)
    assert len(set(reruns)) == 1
    error = refused(lambda: client.rerun_run(ended[1], request_id="again"))
    assert "request_id 'again'" in error.message and ended[1] in error.message
    refused(lambda: client.rerun_run(ended[0], all_steps=True, request_id="again"))
    assert len(list(client.list_runs(pipeline="etl"))) == 3

    start, end = datetime(2026, 3, 20, tzinfo=UTC), datetime(2026, 3, 23, tzinfo=UTC)
    backfills = all_at_once(
        lambda: client.create_backfill("daily", start, end, request_id="fill").backfill.id
    )
    assert len(set(backfills)) == 1
    error = refused(
        lambda: client.create_backfill(
            "daily", start, datetime(2026, 3, 24, tzinfo=UTC), request_id="fill"
        )
    )
    assert "end_time" in error.message and "2026-03-23" in error.message
    assert len(list(client.list_runs(backfill_id=backfills[0]))) == 3

    published = all_at_once(
        lambda: client.publish_event("orders.created", {"n": 1}, request_id="pub")
    )
    assert len({p.event_id for p in published}) == 1
    assert sum(not p.duplicate for p in published) == 1
    error = refused(lambda: client.publish_event("orders.created", {"n": 2}, request_id="pub"))
    assert "payload" in error.message
    assert len(list(client.list_runs(pipeline="listener"))) == 1


def test_pipeline_changes_honour_request_ids(plane: LocalControlPlane) -> None:
    client = plane.client(role="editor")
    spec = load_spec_text(textwrap.dedent(PIPELINE.format(name="etl"))).spec
    versions = all_at_once(lambda: client.apply_pipeline(spec, request_id="v1").version.number)
    assert versions == [1] * CALLERS
    changed = load_spec_text(textwrap.dedent(PIPELINE.format(name="etl")) + "description: x\n")
    error = refused(lambda: client.apply_pipeline(changed.spec, request_id="v1"))
    assert "spec" in error.message
    assert client.get_pipeline("etl").latest_version == 1
    client.apply_pipeline(changed.spec)
    client.rollback_pipeline("etl", 1, request_id="back")
    refused(lambda: client.rollback_pipeline("etl", 2, request_id="back"))
    assert client.get_pipeline("etl").latest_version == 3
