"""Drills on request ids: a TriggerRun sent again, or many at once, with one request id.

The promise (docs/architecture, "Scheduling and triggers"): "`TriggerRun` with a
`request_id`: a retried call never starts a second run" — whether the retry comes after
the first call, while its run is going, after it ended, or at the same moment."""

from __future__ import annotations

import threading
import uuid

import pytest

from legato import Client
from legato.errors import RpcError
from legato.v1 import run_pb2

from .harness import Drill, assert_effects, wait_for, wait_run

pytestmark = pytest.mark.timeout(120)


def test_duplicate_request_ids_make_one_run(db_url: str, drill: Drill) -> None:
    """The same TriggerRun again — on another connection, while its run waits for its
    step, and after the run ended — answers with the first run; one run exists and its
    step runs once."""
    cp = drill.server(db_url, start=False)
    drill.start(cp, drill.agent("a1", cp))
    client = cp.client()
    drill.pipeline(cp, "once", {"only": {"hold": 1}})
    request_id = f"drill-{uuid.uuid4()}"
    first = client.trigger_run("once", request_id=request_id).run.id
    with Client(cp.address, token=cp.admin_token) as other:
        assert other.trigger_run("once", request_id=request_id).run.id == first
    wait_for(lambda: bool(drill.ledger.started(first)), "the step to start", 30)
    assert client.trigger_run("once", request_id=request_id).run.id == first
    drill.ledger.open_gate(drill.ledger.started(first)[0])
    run = wait_run(client, first, timeout=30)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    assert client.trigger_run("once", request_id=request_id).run.id == first

    assert [r.id for r in client.list_runs(pipeline="once")] == [first]
    assert_effects(drill.ledger, [first], ["only"], started={(first, "only"): 1})


CALLERS = 8
REQUESTS = 3


def test_concurrent_request_ids_make_one_run(db_url: str, drill: Drill) -> None:
    """Eight TriggerRun calls at the same moment with one request id (a client retrying
    on several connections), for three request ids: every call answers with the one run
    of its id, three runs exist and each runs its step once."""
    cp = drill.server(db_url, start=False)
    drill.start(cp, drill.agent("a1", cp, slots=REQUESTS))
    drill.pipeline(cp, "once", {"only": {}})
    request_ids = [f"drill-{uuid.uuid4()}" for _ in range(REQUESTS)]
    clients = [Client(cp.address, token=cp.admin_token) for _ in range(CALLERS)]
    answers: dict[str, list[str]] = {request_id: [] for request_id in request_ids}
    failures: list[str] = []
    try:
        for client in clients:  # connected before the race starts
            client.get_caller()
        for request_id in request_ids:
            barrier = threading.Barrier(CALLERS)

            def call(
                client: Client, request_id: str = request_id, barrier: threading.Barrier = barrier
            ) -> None:
                barrier.wait()
                try:
                    answers[request_id].append(
                        client.trigger_run("once", request_id=request_id).run.id
                    )
                except RpcError as error:
                    failures.append(f"{request_id}: {error.code.name} {error.message}")

            threads = [threading.Thread(target=call, args=(client,)) for client in clients]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
    finally:
        for client in clients:
            client.close()

    assert not failures, "\n".join(failures)
    runs = {request_id: set(ids) for request_id, ids in answers.items()}
    assert all(len(ids) == 1 for ids in runs.values()), runs
    client = cp.client()
    run_ids = [next(iter(ids)) for ids in runs.values()]
    assert sorted(r.id for r in client.list_runs(pipeline="once")) == sorted(run_ids)
    for run_id in run_ids:
        assert wait_run(client, run_id, timeout=30).status == run_pb2.RUN_STATUS_SUCCEEDED
    assert_effects(drill.ledger, run_ids, ["only"], started={(r, "only"): 1 for r in run_ids})
