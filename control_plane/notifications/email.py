"""The email channel: a message with a plain-text and an HTML part, sent through the
server's SMTP settings (``--smtp-host`` and friends: STARTTLS by default, implicit TLS or,
to a relay on loopback only, none; login with a user and a password held as a secret).

Its ``Message-ID`` is made from the notification's idempotency key, so a message sent
again after a crash is recognisable as the same one. A refusal (a 5xx answer: recipient
unknown, login refused) fails the notification; a 4xx answer, a refused connection or a
timeout is tried again."""

from __future__ import annotations

import html
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from control_plane.notifications.errors import DeliveryError, RetryableError
from control_plane.notifications.events import SHOWN, rendered
from control_plane.store.notifications import Notification

__all__ = ["Smtp", "send_email"]

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Smtp:
    """Where and how the server sends mail."""

    host: str
    port: int
    tls: str  # "starttls" | "tls" | "none"
    user: str = ""
    password: str = ""
    sender: str = "legato@localhost"
    ca_file: str = ""

    def tls_context(self) -> ssl.SSLContext | None:
        if self.tls == "none":
            return None
        return ssl.create_default_context(cafile=self.ca_file or None)


def subject_of(notification: Notification) -> str:
    facts = notification.facts
    template = str(notification.settings.get("subject") or "")
    if template:
        return rendered(template, facts, notification.event, "email subject")
    shown = SHOWN.get(notification.event, notification.event)
    return f"[Legato] {facts.get('pipeline')}: run {facts.get('id')} {shown}"


def _lines(facts: dict[str, Any], event: str) -> list[tuple[str, str]]:
    rows = [
        ("Pipeline", f"{facts.get('pipeline')} (version {facts.get('version')})"),
        ("Run", str(facts.get("id"))),
        ("Event", SHOWN.get(event, event)),
        ("Status", str(facts.get("status"))),
        ("Trigger", str(facts.get("trigger"))),
    ]
    for key, label in (("start_time", "Started"), ("end_time", "Ended")):
        if facts.get(key):
            rows.append((label, str(facts[key])))
    if facts.get("duration_seconds") is not None:
        rows.append(("Duration", f"{float(facts['duration_seconds']):.1f} s"))
    if facts.get("error"):
        rows.append(("Error", str(facts["error"])))
    return rows


def message_of(notification: Notification, smtp: Smtp) -> EmailMessage:
    to = [str(address) for address in notification.settings.get("to") or []]
    facts = notification.facts
    rows = _lines(facts, notification.event)
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject_of(notification)
    domain = smtp.sender.rpartition("@")[2] or "legato"
    message["Message-ID"] = f"<{notification.idempotency_key}@{domain}>"
    width = max(len(label) for label, _ in rows)
    plain = "\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in rows)
    plain += f"\n\nSee it with: legato status {facts.get('id')}\n"
    message.set_content(plain)
    cells = "".join(
        f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in rows
    )
    message.add_alternative(
        f"<html><body><p>{html.escape(subject_of(notification))}</p>"
        f"<table>{cells}</table>"
        f"<p>See it with: <code>legato status {html.escape(str(facts.get('id')))}</code></p>"
        "</body></html>",
        subtype="html",
    )
    return message


async def send_email(notification: Notification, smtp: Smtp | None) -> str:
    """Send the notification's message and return what the relay answered, or raise
    DeliveryError (RetryableError when a later attempt may succeed)."""
    if smtp is None:
        raise DeliveryError("the server has no SMTP settings (--smtp-host); nothing was sent")
    if not notification.settings.get("to"):
        raise DeliveryError("the email channel names no recipient (to)")
    message = message_of(notification, smtp)
    where = f"SMTP {smtp.host}:{smtp.port}"
    try:
        _, answer = await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.user or None,
            password=smtp.password or None,
            use_tls=smtp.tls == "tls",
            start_tls=smtp.tls == "starttls",
            tls_context=smtp.tls_context(),
            timeout=TIMEOUT_SECONDS,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(sorted(r.recipient for r in exc.recipients))
        raise DeliveryError(f"{where} refused the recipients {refused}") from None
    except aiosmtplib.SMTPResponseException as exc:
        error = RetryableError if 400 <= exc.code < 500 else DeliveryError
        raise error(
            f"{where} answered {exc.code}: {exc.message}", answer=f"{exc.code} {exc.message}"
        ) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise RetryableError(f"{where} failed: {exc}") from None
    return f"{where} accepted it: {answer}".rstrip(": ")
