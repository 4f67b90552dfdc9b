"""One JSON POST to an HTTP endpoint, retried, and the signature Legato's requests carry.

:func:`post_json` sends ``body`` (already JSON) with ``POST`` and returns the status of a
2xx answer. It retries — with exponential backoff, ``backoff * 2**n`` seconds capped at
``max_backoff`` — on a refused or dropped connection, a timeout, a 5xx and a 429; a
``Retry-After`` in seconds on such an answer replaces the backoff (capped the same way).
Any other answer fails at once: a 4xx with its status and the start of its body, a 3xx
because redirects are not followed (a POST must not silently become a GET). Each retry
prints one line to stdout, and the last failure says how many attempts were made.

Messages name the target by ``what`` and never by the URL, which for Slack is itself a
secret; text from the network stack is scrubbed of the URL too.

:func:`sign` computes the ``Legato-Signature`` header: ``t=<unix seconds>,v1=<hex>``, the
hex being HMAC-SHA256 with the secret as key over ``b"<t>." + body``. Legato's inbound
webhooks verify the same scheme.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

from executor.kinds.base import StepError

__all__ = ["SIGNATURE_HEADER", "USER_AGENT", "post_json", "sign"]

SIGNATURE_HEADER = "Legato-Signature"
USER_AGENT = "legato-agent"
_SNIPPET_BYTES = 2048
"""Bytes of an error answer's body read for the message."""
_SNIPPET_CHARS = 200
"""Characters of that body kept in the message."""
_DRAIN_BYTES = 1 << 16
"""Bytes of a successful answer's body read (and dropped) before the connection closes."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Turns a 3xx into an :class:`urllib.error.HTTPError` instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class _Failure:
    """An attempt that may succeed when tried again."""

    description: str
    """``answered 503: <body>`` or ``failed: <error>``."""
    retry_after: float | None = None


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Legato-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def post_json(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    what: str,
    attempts: int = 5,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    backoff: float = 0.5,
    max_backoff: float = 8.0,
) -> int:
    """POST ``body`` to ``url`` with ``headers`` (``Content-Type: application/json`` and
    ``User-Agent: legato-agent`` unless they say otherwise); the status of the 2xx answer.
    Raises :class:`StepError` at once on an answer that retrying cannot change, and after
    ``attempts`` attempts otherwise. ``what`` names the target in messages and log lines."""
    _check_url(url, what)
    opener = urllib.request.build_opener(_NoRedirects())
    defaults = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    request = urllib.request.Request(url, data=body, headers={**defaults, **headers}, method="POST")
    attempts = max(1, attempts)
    failure = _Failure("made no attempt")
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            delay = _delay(failure, attempt - 1, backoff, max_backoff)
            next_try = f"attempt {attempt} of {attempts}"
            print(f"{what} {failure.description}; retry in {delay:g}s ({next_try})")
            sleep(delay)
        outcome = _attempt(opener, request, url, what, timeout)
        if isinstance(outcome, int):
            return outcome
        failure = outcome
    raise StepError(f"{what} failed after {attempts} attempts; the last one {failure.description}")


def _check_url(url: str, what: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise StepError(f"{what} is not an http:// or https:// URL")
    if any(ord(char) <= 32 or ord(char) == 127 for char in url):
        raise StepError(f"{what} has a space or a control character in its URL")


def _delay(failure: _Failure, retry: int, backoff: float, max_backoff: float) -> float:
    """Seconds to wait before retry number ``retry`` (from 1)."""
    wanted = failure.retry_after
    if wanted is None:
        wanted = backoff * 2 ** (retry - 1)
    return max(0.0, min(wanted, max_backoff))


def _attempt(
    opener: urllib.request.OpenerDirector,
    request: urllib.request.Request,
    url: str,
    what: str,
    timeout: float,
) -> int | _Failure:
    """The status of a 2xx answer, or the failure to retry; raises on a final one."""
    try:
        with opener.open(request, timeout=timeout) as response:
            _drain(response)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return _answer_failure(exc, url, what)
    except urllib.error.URLError as exc:
        return _Failure(f"failed: {_scrub(_reason(exc.reason, timeout), url)}")
    except (OSError, http.client.HTTPException) as exc:
        return _Failure(f"failed: {_scrub(_reason(exc, timeout), url)}")


def _drain(response: IO[bytes]) -> None:
    """Read (and drop) the start of a 2xx answer's body: the answer counts even when
    reading its body fails, since the receiver has taken the request."""
    with contextlib.suppress(OSError, http.client.HTTPException):
        response.read(_DRAIN_BYTES)


def _answer_failure(exc: urllib.error.HTTPError, url: str, what: str) -> _Failure:
    status = exc.code
    with exc:
        snippet = _scrub(_snippet(exc), url)
    answered = f"answered {status}" + (f": {snippet}" if snippet else "")
    if status == 429 or status >= 500:
        return _Failure(answered, _retry_after(exc.headers.get("Retry-After")))
    if 300 <= status < 400:
        raise StepError(
            f"{what} answered {status}, a redirect, which is not followed; use the URL it "
            "redirects to"
        )
    raise StepError(f"{what} {answered}")


def _snippet(answer: IO[bytes]) -> str:
    """The start of an answer's body on one line, cut to :data:`_SNIPPET_CHARS`."""
    try:
        raw = answer.read(_SNIPPET_BYTES)
    except (OSError, http.client.HTTPException):
        return ""
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds; None when absent or an HTTP date."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) else None


def _reason(error: object, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout:g}s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL or its path and query (which may hold a secret token)."""
    parts = urlsplit(url)
    secrets = [url, parts.path + (f"?{parts.query}" if parts.query else ""), parts.path]
    for secret in sorted({s for s in secrets if len(s) > 1}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return re.sub(r"\s+", " ", text).strip()
