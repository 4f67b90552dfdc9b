"""The webhook target of ``export``: POSTs the input's rows as JSON, in batches.

Each batch is one ``POST`` to ``url`` (retried as :func:`executor.kinds.http.post_json`
says) with the body::

    {"pipeline": "etl", "run_id": "r1", "step": "send", "attempt": 1,
     "batch": 0, "batches": 3, "records": [{"id": 1, "at": "2026-06-12T06:00:00+00:00"}]}

``batch`` counts from 0; ``records`` holds up to ``batch_size`` (default
:data:`DEFAULT_BATCH_SIZE`) rows of the input table, one object per row keyed by column
name. Values are JSON: timestamps and dates are ISO 8601 strings, durations seconds,
decimals numbers, binary base64 strings, and NaN, NaT and nulls ``null``.

An input without a table is sent as one batch whose ``records`` is ``[<its values>]``, so
a webhook can take a step's results as well as its rows. An input table without rows
sends nothing and reports 0 records: a batch of no records would tell the receiver
nothing, and the step's results already say there were none.

Headers of every request:

- ``Content-Type: application/json`` and ``User-Agent: legato-agent``;
- ``Idempotency-Key: <run_id>:<step>:<batch>``, the same for every attempt of the step, so
  that a receiver can drop the batches a failed attempt already delivered;
- ``Legato-Run``, ``Legato-Step``, ``Legato-Attempt``: the body's run, step and attempt;
- ``Legato-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`` when
  ``secret`` names a secret of the agent (see :func:`executor.kinds.http.sign`);
- the spec's ``headers``, which may not replace any of the above but ``User-Agent``.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from executor.kinds.base import StepContext, StepError, StepResult, Upstream
from executor.kinds.http import SIGNATURE_HEADER, USER_AGENT, post_json, sign
from executor.kinds.output import _json
from executor.masking import safe_url

__all__ = ["DEFAULT_BATCH_SIZE", "export_webhook"]

DEFAULT_BATCH_SIZE = 500
_RESERVED = frozenset(
    name.lower()
    for name in (
        "Content-Type",
        "Content-Length",
        "Host",
        "Idempotency-Key",
        "Legato-Run",
        "Legato-Step",
        "Legato-Attempt",
        SIGNATURE_HEADER,
    )
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""A header name (RFC 9110's token)."""


def export_webhook(config: dict[str, Any], source: Upstream, ctx: StepContext) -> StepResult:
    url = str(config.get("url") or "")
    if not url:
        raise StepError(f"export step {ctx.step!r} has a webhook target without a url")
    batch_size = int(config.get("batch_size") or DEFAULT_BATCH_SIZE)
    headers = _user_headers(config.get("headers") or {}, ctx)
    secret_name = str(config.get("secret") or "")
    secret = ctx.connection(secret_name) if secret_name else None
    what = f"webhook {safe_url(url)}"
    batches, total = _plan(source, batch_size)
    if batches == 0:
        print(f"{what}: {source.step!r} has no rows; nothing sent")
    delivered = 0
    for index, records in enumerate(_batches(source, batch_size)):
        body = _body(ctx, index, batches, records)
        post_json(url, body, _headers(ctx, index, headers, secret, body), what=what)
        delivered += len(records)
    if batches:
        print(f"{what}: delivered {delivered:,} records of {source.step!r} in {batches} batches")
    values = {"batches": batches, "delivered": delivered, "url": safe_url(url)}
    return StepResult(values=values, records_in=total, written=delivered)


def _plan(source: Upstream, batch_size: int) -> tuple[int, int | None]:
    """(batches to send, rows of the input table or None when it has none)."""
    rows = source.rows()
    if rows is None:
        return 1, None
    return math.ceil(rows / batch_size), rows


def _batches(source: Upstream, batch_size: int) -> Iterator[list[dict[str, Any]]]:
    """The records of each batch, converted to JSON values as they are sent."""
    table: pa.Table | None = source.arrow()
    if table is None:
        yield [_json(source.values, f"the values of {source.step!r}")]
        return
    for start in range(0, table.num_rows, batch_size):
        rows = table.slice(start, batch_size).to_pylist()
        yield [_record(row, f"row {start + i} of {source.step!r}") for i, row in enumerate(rows)]


def _record(row: dict[str, Any], where: str) -> dict[str, Any]:
    return {name: _value(value, where) for name, value in row.items()}


def _value(value: Any, where: str) -> Any:
    """A cell as JSON: :func:`executor.kinds.output._json`, plus binary as base64 (also
    inside lists and structs, which Arrow gives as lists and dicts)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(key): _value(item, where) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_value(item, where) for item in value]
    return _json(value, where)


def _body(ctx: StepContext, index: int, batches: int, records: list[dict[str, Any]]) -> bytes:
    payload = {
        "pipeline": ctx.pipeline,
        "run_id": ctx.run_id,
        "step": ctx.step,
        "attempt": ctx.attempt,
        "batch": index,
        "batches": batches,
        "records": records,
    }
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def _headers(
    ctx: StepContext, index: int, user: dict[str, str], secret: str | None, body: bytes
) -> dict[str, str]:
    headers = {
        "User-Agent": USER_AGENT,
        **user,
        "Content-Type": "application/json",
        "Idempotency-Key": f"{ctx.run_id}:{ctx.step}:{index}",
        "Legato-Run": ctx.run_id,
        "Legato-Step": ctx.step,
        "Legato-Attempt": str(ctx.attempt),
    }
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, int(time.time()), body)
    return headers


def _user_headers(headers: dict[str, Any], ctx: StepContext) -> dict[str, str]:
    """The spec's headers, checked: names are tokens, values one line, none reserved."""
    checked: dict[str, str] = {}
    for name, value in headers.items():
        where = f"header {name!r} of export step {ctx.step!r}"
        if not _TOKEN.fullmatch(str(name)):
            raise StepError(f"{where} is not a valid header name")
        if name.lower() in _RESERVED:
            raise StepError(f"{where} is set by Legato and cannot be replaced; remove it")
        if "\r" in str(value) or "\n" in str(value):
            raise StepError(f"{where} has a line break in its value")
        checked[str(name)] = str(value)
    return checked
