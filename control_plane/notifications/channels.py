"""Sending one notification to its channel.

- **webhook**: ``POST`` of a JSON body ``{"event", "idempotency_key", "run": {...}}`` with
  ``Content-Type: application/json``, ``Idempotency-Key`` (the same on every attempt),
  ``Legato-Event``, ``Legato-Run`` and, when the channel names a ``secret``,
  ``Legato-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`` — the scheme
  Legato's inbound webhooks and webhook exports use — plus the channel's ``headers``.
- **email**: see ``notifications/email.py``; **pagerduty**: see ``notifications/pagerduty.py``.
- **openlineage**: lineage's OpenLineage run events (the event is the row's facts), sent
  with the openlineage-python client (``lineage/openlineage_client.py``).
- **slack**: ``POST`` of ``{"text", "channel"}`` to the incoming-webhook URL held by the
  secret the channel names; ``text`` is the channel's template (``{{ run.status }}``,
  ``{{ run.error }}``, ``{{ event }}``, ...) or a default line naming the pipeline, the run,
  what happened and the error.

A 2xx answer delivers it (``send`` returns the answer, ``200 OK``). A refused or dropped
connection, a timeout, a 5xx or a 429 is tried again later (``RetryableError``); any other
answer, a missing secret or an unsupported channel is a failure that no retry can mend
(``DeliveryError``, whose ``answer`` is the receiver's, ``404 no_service``). Messages never
contain a secret or a Slack URL."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from control_plane.access.secrets import Secrets
from control_plane.lineage.openlineage_client import OPENLINEAGE_CHANNEL, OpenLineageSender
from control_plane.notifications.email import Smtp, send_email
from control_plane.notifications.errors import DeliveryError, RetryableError
from control_plane.notifications.events import happened, rendered
from control_plane.notifications.pagerduty import DEFAULT_EVENTS_URL, event_body
from control_plane.store.notifications import Notification
from control_plane.triggers.webhooks import SIGNATURE_HEADER, signature_header

__all__ = ["Settings", "send"]

TIMEOUT_SECONDS = 10.0
_BODY_SHOWN = 200


@dataclass(frozen=True)
class Settings:
    """What the channels need from the server: its secrets, its SMTP relay (None: email is
    not sent) and the PagerDuty Events API endpoint."""

    secrets: Secrets
    smtp: Smtp | None = None
    pagerduty_url: str = DEFAULT_EVENTS_URL
    openlineage: OpenLineageSender | None = None
    """Sends the ``openlineage`` channel's events (lineage's rows in this outbox)."""


async def send(
    notification: Notification,
    http: aiohttp.ClientSession,
    settings: Settings,
    *,
    dedup_key: str = "",
) -> str:
    """Deliver ``notification`` and return the receiver's answer (``200 OK``), or raise
    ``RetryableError``/``DeliveryError``. ``dedup_key`` replaces the pipeline's own
    PagerDuty ``dedup_key`` (a test's incident is not the pipeline's)."""
    if notification.channel == "webhook":
        return await _webhook(notification, settings.secrets, http)
    if notification.channel == "slack":
        return await _slack(notification, settings.secrets, http)
    if notification.channel == "email":
        return await send_email(notification, settings.smtp)
    if notification.channel == "pagerduty":
        return await _pagerduty(notification, settings, http, dedup_key)
    if notification.channel == OPENLINEAGE_CHANNEL:
        if settings.openlineage is None:
            raise DeliveryError(
                "OpenLineage is not configured on this server (--openlineage-url); the "
                "event was not sent"
            )
        return await settings.openlineage.send(notification.facts)
    raise DeliveryError(
        f"the {notification.channel or 'unknown'} channel is unknown; nothing was sent"
    )


async def _pagerduty(
    notification: Notification, settings: Settings, http: aiohttp.ClientSession, dedup_key: str
) -> str:
    name = str(notification.settings.get("routingKey") or "")
    key = _secret(settings.secrets, name)
    body = event_body(
        notification.event, notification.facts, notification.settings, key, dedup_key=dedup_key
    )
    headers = {"Content-Type": "application/json"}
    return await _post(http, settings.pagerduty_url, body, headers, "PagerDuty Events API")


def webhook_body(notification: Notification) -> bytes:
    body = {
        "event": notification.event,
        "idempotency_key": notification.idempotency_key,
        "run": notification.facts,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


async def _webhook(
    notification: Notification, secrets: Secrets, http: aiohttp.ClientSession
) -> str:
    settings = notification.settings
    body = webhook_body(notification)
    headers = {str(k): str(v) for k, v in (settings.get("headers") or {}).items()}
    headers.update(
        {
            "Content-Type": "application/json",
            "Idempotency-Key": notification.idempotency_key,
            "Legato-Event": notification.event,
            "Legato-Run": notification.run_id,
        }
    )
    secret_name = str(settings.get("secret") or "")
    if secret_name:
        headers[SIGNATURE_HEADER] = signature_header(
            _secret(secrets, secret_name), int(time.time()), body
        )
    return await _post(
        http, str(settings.get("url") or ""), body, headers, f"webhook {settings.get('url')}"
    )


async def _slack(notification: Notification, secrets: Secrets, http: aiohttp.ClientSession) -> str:
    settings = notification.settings
    name = str(settings.get("webhook") or "")
    url = _secret(secrets, name)
    message: dict[str, Any] = {"text": slack_text(notification)}
    if settings.get("channel"):
        message["channel"] = str(settings["channel"])
    body = json.dumps(message).encode()
    headers = {"Content-Type": "application/json"}
    return await _post(http, url, body, headers, f"Slack webhook '{name}'")


def slack_text(notification: Notification) -> str:
    """The channel's ``text`` template over ``run`` and ``event``, or the default line."""
    facts = notification.facts
    template = str(notification.settings.get("text") or "")
    if template:
        return rendered(template, facts, notification.event, "slack text")
    return happened(facts, notification.event) + f" (`legato status {facts.get('id')}`)"


def _secret(secrets: Secrets, name: str) -> str:
    value = secrets.get(name)
    if value is None:
        raise DeliveryError(
            f"the server has no secret {name!r}; give it with --secrets or "
            f"LEGATO_SECRET_{name.upper().replace('-', '_')}"
        )
    return value


async def _post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], what: str
) -> str:
    """POST ``body``; the answer (``200 OK``) when it is a 2xx."""
    try:
        async with http.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
        ) as answer:
            if 200 <= answer.status < 300:
                return f"{answer.status} {answer.reason or ''}".rstrip()
            text = (await answer.text(errors="replace"))[:_BODY_SHOWN]
            shown = f"{what} answered {answer.status}: {text}".rstrip(": ")
            said = f"{answer.status} {' '.join(text.split()) or answer.reason or ''}".rstrip()
            if answer.status >= 500 or answer.status == 429:
                raise RetryableError(shown, answer=said)
            raise DeliveryError(shown, answer=said)
    except aiohttp.InvalidURL:
        raise DeliveryError(f"{what}: not a valid URL") from None
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        reason = type(exc).__name__ if isinstance(exc, asyncio.TimeoutError) else str(exc)
        raise RetryableError(f"{what} failed: {_scrub(reason, url)}") from None
    except ValueError as exc:  # an invalid URL
        raise DeliveryError(f"{what}: {_scrub(str(exc), url)}") from None


def _scrub(text: str, url: str) -> str:
    return text.replace(url, "<url>") if url else text
