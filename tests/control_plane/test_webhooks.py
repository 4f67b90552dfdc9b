"""Webhook signatures: what is accepted (a fresh HMAC-SHA256 over ``t.`` + body with a
secret of the pipeline) and what is refused — missing, malformed, wrong, stale, from the
future, replayed — and the bodies that can start a run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from control_plane.access.secrets import Secrets
from control_plane.errors import Conflict, InvalidArgument
from control_plane.execution.plans import PlanCache
from control_plane.pipelines.registry import Actor, Registry
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from control_plane.store.models import RunRow
from control_plane.triggers.webhooks import (
    MAX_DEPTH,
    MissingSecretError,
    SignatureError,
    Webhooks,
    parse_body,
    parse_signature,
    sign,
    signature_header,
    verify,
)
from legato.v1 import spec_pb2
from tests.control_plane.execution_parts import runs_of

T = 1_700_000_000
BODY = b'{"order": 42}'
# printf '%s.%s' 1700000000 '{"order": 42}' | openssl dgst -sha256 -hmac topsecret
OPENSSL_DIGEST = "6294e7e3cee63e287cee6bbf7c077d3c371bca8e697fbde063d3299d6b32f7fc"


def check(header: str | None, *, now: float = T, body: bytes = BODY) -> tuple[str, str]:
    secrets: list[tuple[str, str | None]] = [("orders-hook", "topsecret")]
    return verify(parse_signature(header), body, secrets, now=now)


def test_the_digest_is_what_openssl_computes() -> None:
    assert sign("topsecret", T, BODY) == OPENSSL_DIGEST
    assert signature_header("topsecret", T, BODY) == f"t={T},v1={OPENSSL_DIGEST}"


def test_a_good_signature_names_its_secret() -> None:
    assert check(f"t={T},v1={OPENSSL_DIGEST}") == ("orders-hook", OPENSSL_DIGEST)
    # Spaces, upper-case hex and unknown keys are tolerated.
    assert check(f"t={T}, v1={OPENSSL_DIGEST.upper()}, v0=abc")[0] == "orders-hook"


def test_any_of_several_v1_values_may_match() -> None:
    header = f"t={T},v1={'0' * 64},v1={OPENSSL_DIGEST}"
    assert check(header) == ("orders-hook", OPENSSL_DIGEST)


def test_any_webhook_trigger_secret_may_sign() -> None:
    secrets: list[tuple[str, str | None]] = [("old", "other"), ("new", "topsecret")]
    signature = parse_signature(signature_header("topsecret", T, BODY))
    assert verify(signature, BODY, secrets, now=T)[0] == "new"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_a_missing_signature_is_refused(header: str | None) -> None:
    with pytest.raises(SignatureError) as caught:
        check(header)
    assert caught.value.reason == "SIGNATURE_MISSING"
    assert "Legato-Signature" in caught.value.message


@pytest.mark.parametrize(
    "header",
    [
        "sha256=abc",
        f"v1={OPENSSL_DIGEST}",
        f"t={T}",
        f"t=yesterday,v1={OPENSSL_DIGEST}",
        f"t={T},v1={OPENSSL_DIGEST[:-1]}",
        f"t={T},v1={'z' * 64}",
        f"t={T},v1={'é' * 64}",
        f"t=²,v1={OPENSSL_DIGEST}",
    ],
)
def test_a_malformed_signature_is_refused(header: str) -> None:
    with pytest.raises(SignatureError) as caught:
        check(header)
    assert caught.value.reason == "SIGNATURE_INVALID"
    assert "malformed" in caught.value.message


@pytest.mark.parametrize(
    ("header", "body"),
    [
        (signature_header("wrong", T, BODY), BODY),
        (f"t={T},v1={OPENSSL_DIGEST}", b'{"order": 43}'),
        (f"t={T + 1},v1={OPENSSL_DIGEST}", BODY),
        (f"t={T},v1={'0' * 64}", BODY),
    ],
)
def test_a_wrong_signature_is_refused(header: str, body: bytes) -> None:
    with pytest.raises(SignatureError) as caught:
        check(header, body=body)
    assert caught.value.reason == "SIGNATURE_INVALID"
    assert caught.value.message == "the signature does not match the request body and secret"


def test_a_signature_older_than_five_minutes_is_refused() -> None:
    header = f"t={T},v1={OPENSSL_DIGEST}"
    assert check(header, now=T + 300)[0] == "orders-hook"
    with pytest.raises(SignatureError) as caught:
        check(header, now=T + 301)
    assert caught.value.reason == "SIGNATURE_EXPIRED"
    assert "301s old" in caught.value.message


def test_a_signature_from_the_future_is_refused() -> None:
    header = f"t={T},v1={OPENSSL_DIGEST}"
    assert check(header, now=T - 300)[0] == "orders-hook"
    with pytest.raises(SignatureError) as caught:
        check(header, now=T - 400)
    assert caught.value.reason == "SIGNATURE_EXPIRED"
    assert "400s ahead of the server's clock" in caught.value.message


def test_a_secret_the_server_lacks_is_named() -> None:
    signature = parse_signature(f"t={T},v1={OPENSSL_DIGEST}")
    with pytest.raises(MissingSecretError) as caught:
        verify(signature, BODY, [("orders-hook", None)], now=T)
    assert "'orders-hook' is not configured on the server" in caught.value.message
    assert caught.value.metadata == {"secret": "orders-hook"}
    # Another trigger whose secret is configured still verifies.
    both: list[tuple[str, str | None]] = [("gone", None), ("orders-hook", "topsecret")]
    assert verify(signature, BODY, both, now=T)[0] == "orders-hook"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"order=42", "the body is not JSON"),
        (b"\xff\xfe", "the body is not JSON"),
        (b"[1, 2]", "the body is JSON an array, not an object"),
        (b"null", "the body is JSON null, not an object"),
        (b'{"x": NaN}', "NaN is not a JSON number"),
        (b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), "nested more than"),
        (b"[" * 100_000 + b"]" * 100_000, "nested more than"),
    ],
)
def test_bodies_that_are_not_json_objects_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_body(body)
    assert message in caught.value.message
    assert caught.value.reason == "INVALID_WEBHOOK_BODY"


def test_a_json_object_is_the_body() -> None:
    assert parse_body(b'{"order": 42, "items": [{"sku": "a"}]}') == {
        "order": 42,
        "items": [{"sku": "a"}],
    }


# -- against a database: replay and the clock ---------------------------------------------


@dataclass
class Hooks:
    webhooks: Webhooks
    db: Database
    now: list[datetime]


SPEC = spec_pb2.PipelineSpec(
    name="orders",
    triggers=[spec_pb2.Trigger(webhook=spec_pb2.WebhookTrigger(secret="orders-hook"))],
    steps=[spec_pb2.Step(name="a", transform=spec_pb2.TransformStep(code="result = data"))],
)


@pytest.fixture
async def hooks(db_url: str) -> AsyncIterator[Hooks]:
    db = Database(db_url)
    await upgrade(db)
    now = [datetime.fromtimestamp(T, UTC)]

    def clock() -> datetime:
        return now[0]

    plans = PlanCache()
    runs, _ = runs_of(db, plans, clock)
    await Registry(db).apply(SPEC, "", Actor("alice"))
    webhooks = Webhooks(db, runs, plans, Secrets({"orders-hook": "topsecret"}), clock=clock)
    try:
        yield Hooks(webhooks, db, now)
    finally:
        await db.dispose()


async def test_a_signature_starts_one_run_and_its_replay_is_refused(hooks: Hooks) -> None:
    header = f"t={T},v1={OPENSSL_DIGEST}"
    run_id = await hooks.webhooks.receive("orders", header, BODY)
    async with hooks.db.read() as session:
        run = await session.get(RunRow, run_id)
    assert run is not None
    assert (run.pipeline, run.trigger_kind, run.params) == (
        "orders",
        "webhook",
        {"webhook": {"order": 42}},
    )
    assert run.trigger["webhook_secret"] == "orders-hook"
    hooks.now[0] += timedelta(seconds=30)
    with pytest.raises(Conflict) as caught:
        await hooks.webhooks.receive("orders", header, BODY)
    assert caught.value.reason == "SIGNATURE_REPLAYED"
    # The same body signed at another time is another request.
    again = await hooks.webhooks.receive(
        "orders", signature_header("topsecret", T + 30, BODY), BODY
    )
    assert again != run_id


async def test_the_window_follows_the_injected_clock(hooks: Hooks) -> None:
    hooks.now[0] += timedelta(minutes=6)
    with pytest.raises(SignatureError) as caught:
        await hooks.webhooks.receive("orders", f"t={T},v1={OPENSSL_DIGEST}", BODY)
    assert caught.value.reason == "SIGNATURE_EXPIRED"
