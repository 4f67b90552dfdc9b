"""Webhook triggers: ``POST /hooks/<pipeline>`` signed with HMAC-SHA256 starts a run.

The signature header is ``Legato-Signature: t=<unix seconds>,v1=<hex>``, where the hex is
HMAC-SHA256, keyed with the secret a webhook trigger names, over ``f"{t}."`` followed by
the raw body. A request is accepted when ``t`` is within five minutes of the server's
clock and a ``v1`` value matches the secret of any of the pipeline's webhook triggers
(several ``v1`` values may be sent while a secret is rotated). The body must be a JSON
object; it becomes the reserved run parameter ``webhook``. A signature is accepted once:
it is recorded in the requests table in the transaction that starts the run, so every
replica refuses it afterwards.

This module does not know HTTP: it raises the control plane's errors, with reasons the
listener (``api/http_hooks.py``) turns into status codes."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from google.protobuf import struct_pb2
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import WEBHOOK
from control_plane.access.secrets import Secrets
from control_plane.errors import Conflict, InvalidArgument, LegatoError, NotFound
from control_plane.execution.effects import Effects
from control_plane.execution.plans import PlanCache
from control_plane.execution.runs import Runs, TriggerSpec
from control_plane.quoting import quote
from control_plane.store import audit, requests
from control_plane.store import pipelines as pipeline_queries
from control_plane.store.db import Database

__all__ = [
    "MAX_DEPTH",
    "SIGNATURE_HEADER",
    "TOLERANCE_SECONDS",
    "MissingSecretError",
    "Signature",
    "SignatureError",
    "Webhooks",
    "parse_body",
    "parse_signature",
    "sign",
    "signature_header",
    "verify",
]

log = structlog.get_logger("legato.webhooks")

SIGNATURE_HEADER = "Legato-Signature"
TOLERANCE_SECONDS = 300
# Deeper bodies would exceed protobuf's nesting limit once carried in a run's params.
MAX_DEPTH = 32
_METHOD = "Webhook"
_SECONDS = re.compile(r"[0-9]{1,12}")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


class SignatureError(LegatoError):
    """The request is not signed, or not signed with a secret of the pipeline (HTTP 401)."""

    reason = "SIGNATURE_INVALID"


class MissingSecretError(LegatoError):
    """A webhook trigger names a secret the server does not hold (HTTP 500)."""

    reason = "SECRET_NOT_CONFIGURED"


@dataclass(frozen=True)
class Signature:
    timestamp: int
    digests: tuple[str, ...]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``v1`` value: hex HMAC-SHA256 of ``f"{timestamp}."`` + ``body``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The value of a ``Legato-Signature`` header for ``body`` (for senders and tests)."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def parse_signature(header: str | None) -> Signature:
    if not header or not header.strip():
        raise SignatureError(
            f"missing {SIGNATURE_HEADER} header; send t=<unix time>,v1=<hex HMAC-SHA256>",
            reason="SIGNATURE_MISSING",
        )
    timestamp: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t" and _SECONDS.fullmatch(value):
            timestamp = int(value)
        elif key == "v1" and _HEX_DIGEST.fullmatch(value):
            digests.append(value.lower())
    if timestamp is None or not digests:
        raise SignatureError(
            f"malformed {SIGNATURE_HEADER} header; expected t=<unix time>,v1=<64 hex digits>"
        )
    return Signature(timestamp, tuple(digests))


def verify(
    signature: Signature,
    body: bytes,
    secrets: Sequence[tuple[str, str | None]],
    *,
    now: float,
    tolerance: float = TOLERANCE_SECONDS,
) -> tuple[str, str]:
    """The (secret name, digest) that signed ``body``, from ``secrets`` as (name, value or
    None when the server does not hold it). Raises SignatureError for a timestamp outside
    ``tolerance`` of ``now`` or a signature no secret gives, MissingSecretError when none
    matched and a secret could not be checked."""
    age = now - signature.timestamp
    if age > tolerance:
        raise SignatureError(
            f"the signature is {int(age)}s old; signatures are accepted for "
            f"{int(tolerance)}s, so sign the request again with the current time",
            reason="SIGNATURE_EXPIRED",
        )
    if -age > tolerance:
        raise SignatureError(
            f"the signature's time is {int(-age)}s ahead of the server's clock (at most "
            f"{int(tolerance)}s); check the sender's clock",
            reason="SIGNATURE_EXPIRED",
        )
    missing = []
    for name, value in secrets:
        if value is None:
            missing.append(name)
            continue
        expected = sign(value, signature.timestamp, body)
        for digest in signature.digests:
            if hmac.compare_digest(expected, digest):
                return name, digest
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise MissingSecretError(
            f"the webhook secret {names} is not configured on the server; add it to the "
            "--secrets file or set LEGATO_SECRET_<NAME>",
            metadata={"secret": missing[0]},
        )
    raise SignatureError("the signature does not match the request body and secret")


def parse_body(body: bytes) -> dict[str, Any]:
    """The body as a JSON object of at most MAX_DEPTH levels, without NaN or Infinity."""
    too_deep = InvalidArgument(
        f"the body is nested more than {MAX_DEPTH} levels deep", reason="INVALID_WEBHOOK_BODY"
    )
    try:
        data = json.loads(body, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(
            f"the body is not JSON: {exc}", reason="INVALID_WEBHOOK_BODY"
        ) from None
    except RecursionError:
        raise too_deep from None
    if not isinstance(data, dict):
        raise InvalidArgument(
            f"the body is JSON {_json_kind(data)}, not an object; send {{...}}",
            reason="INVALID_WEBHOOK_BODY",
        )
    if _depth(data) > MAX_DEPTH:
        raise too_deep
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _depth(value: Any) -> int:
    """Levels of nesting: 1 for a flat object."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        deepest = max(deepest, depth)
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        level.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


class Webhooks:
    def __init__(
        self,
        db: Database,
        runs: Runs,
        plans: PlanCache,
        secrets: Secrets,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._runs = runs
        self._plans = plans
        self._secrets = secrets
        self._clock = clock

    async def receive(self, pipeline: str, header: str | None, body: bytes) -> str:
        """Check a webhook request for ``pipeline`` and start its run; returns the run id."""
        names = await self._secret_names(pipeline)
        signature = parse_signature(header)
        secrets = [(name, self._secrets.get(name)) for name in names]
        secret, digest = verify(signature, body, secrets, now=self._clock().timestamp())
        data = parse_body(body)

        async def work(session: AsyncSession, effects: Effects) -> str:
            return await self._start(session, effects, pipeline, secret, digest, data)

        try:
            return await self._runs.in_transaction(work)
        except IntegrityError:
            raise _replayed() from None

    async def _secret_names(self, pipeline: str) -> list[str]:
        """The secrets of the latest version's webhook triggers, in order, each once."""
        async with self._db.read() as session:
            # No pipeline name holds NUL, and PostgreSQL refuses to compare one.
            row = (
                None
                if "\x00" in pipeline
                else await pipeline_queries.find_pipeline(session, pipeline)
            )
            if row is None or row.archived or not row.latest_version:
                state = "is archived" if row is not None and row.archived else "does not exist"
                raise NotFound(
                    f"no webhook here: pipeline {quote(pipeline)} {state}",
                    reason="WEBHOOK_NOT_FOUND",
                    metadata={"pipeline": pipeline},
                )
            plan = await self._plans.get(session, row.id, row.name, row.latest_version)
        names = [t.webhook.secret for t in plan.spec.triggers if t.WhichOneof("kind") == "webhook"]
        if not names:
            raise NotFound(
                f"no webhook here: pipeline {pipeline!r} has no webhook trigger",
                reason="WEBHOOK_NOT_FOUND",
                metadata={"pipeline": pipeline},
            )
        return list(dict.fromkeys(names))

    async def _start(
        self,
        session: AsyncSession,
        effects: Effects,
        pipeline: str,
        secret: str,
        digest: str,
        data: dict[str, Any],
    ) -> str:
        key = f"{pipeline}:{digest}"
        if await requests.find_result(session, _METHOD, key) is not None:
            raise _replayed()
        params = struct_pb2.Struct()
        params.update({"webhook": data})
        run = await self._runs.create_in(
            session,
            pipeline,
            params,
            TriggerSpec(kind="webhook", details={"webhook_secret": secret}),
            WEBHOOK,
            effects,
        )
        await requests.record_result(session, _METHOD, key, {"run_id": run.id}, run.create_time)
        audit.record(
            session,
            now=run.create_time,
            actor=WEBHOOK,
            action="ReceiveWebhook",
            resource=f"runs/{run.id}",
            pipeline=pipeline,
            details={"pipeline": pipeline, "secret": secret},
        )
        return run.id


def _replayed() -> Conflict:
    return Conflict(
        "this signature was used already; sign each request anew (with the current time)",
        reason="SIGNATURE_REPLAYED",
    )
