"""The email channel against a real SMTP server on loopback (aiosmtpd): STARTTLS with a
certificate the server's --smtp-ca trusts and a login whose password is a server secret;
a plain-text and an HTML part; a refused recipient fails the notification for good."""

from __future__ import annotations

import ssl
import textwrap
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from legato.devcerts import create_certs
from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import run_service_pb2 as pb
from tests.drills.processes import free_port

pytestmark = pytest.mark.timeout(120)


class Mailbox:
    """What the SMTP server accepted, and the recipients it refuses."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.refuse = {"nobody@example.com"}
        self.logins: list[str] = []

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"legato",
            b"mail-password",
        )
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[Mailbox, int, Path]]:
    certs = create_certs(tmp_path / "certs", hosts=["localhost", "127.0.0.1"])
    assert certs.server is not None and certs.server_key is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server, certs.server_key)
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=mailbox.authenticate,
        auth_required=True,
    )
    controller.start()
    try:
        yield mailbox, port, certs.ca
    finally:
        controller.stop()


SPEC = """
name: nightly
notifications:
  - on: [cancelled]
    email: {to: [data@example.com, oncall@example.com]}
  - on: [cancelled]
    email: {to: [nobody@example.com], subject: "{{ run.pipeline }}: {{ event }}"}
steps:
  - {name: a, transform: {code: "result = 1"}, agent_selector: {nobody: here}}
"""


def test_email_goes_out_over_starttls_with_a_login(
    db_url: str, tmp_path: Path, smtp: tuple[Mailbox, int, Path]
) -> None:
    mailbox, port, ca = smtp
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("smtp-password: mail-password\n")
    with LocalControlPlane(
        db=db_url,
        secrets_file=str(secrets),
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_user="legato",
        smtp_password_secret="smtp-password",
        smtp_from="legato@example.com",
        smtp_ca=str(ca),
    ) as plane:
        client = plane.client()
        client.apply_pipeline(load_spec_text(textwrap.dedent(SPEC)).spec)
        run_id = client.trigger_run("nightly").run.id
        client.cancel_run(run_id, reason="not today")
        deadline = time.monotonic() + 20
        while not mailbox.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        (sender, recipients, message), *_ = mailbox.messages
        assert sender == "legato@example.com"
        assert mailbox.logins == ["legato", "legato"]  # one session per notification
        assert recipients == ["data@example.com", "oncall@example.com"]
        assert message["Subject"] == f"[Legato] nightly: run {run_id} was cancelled"
        assert message["Message-ID"] == f"<{run_id}-cancelled-0@example.com>"
        plain = message.get_body(("plain",))
        rich = message.get_body(("html",))
        assert plain is not None and rich is not None
        assert "Error:    not today" in plain.get_content()
        assert f"legato status {run_id}" in plain.get_content()
        assert "<th align='left'>Error</th><td>not today</td>" in rich.get_content()

        def statuses() -> list[tuple[str, int, str]]:
            return sorted(
                (pb.NotificationStatus.Name(n.status), n.attempts, n.last_error)
                for n in client.list_notifications(run_id=run_id)
            )

        deadline = time.monotonic() + 20
        while "NOTIFICATION_STATUS_SENDING" in str(statuses()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert statuses() == [
            ("NOTIFICATION_STATUS_DELIVERED", 1, ""),
            (
                "NOTIFICATION_STATUS_FAILED",
                1,
                f"SMTP 127.0.0.1:{port} refused the recipients nobody@example.com",
            ),
        ]
