"""`legato up` shows the web UI at a URL it prints: a one-time sign-in link that opens a
session for its local admin token, and `legato ui` prints a new one."""

from __future__ import annotations

import http.client
import subprocess
import urllib.parse
from pathlib import Path

from test_cli import LEGATO, legato_up

from legato import Client


def get(url: str, cookie: str = "") -> http.client.HTTPResponse:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=20)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    return connection.getresponse()


def test_up_prints_a_sign_in_link_to_the_web_ui(tmp_path: Path) -> None:
    with legato_up(tmp_path) as (lines, address):
        link = next(line for line in lines if line.startswith("Web UI: ")).split()[2]
        assert "/ui/signin?code=lgc_" in link
        opened = get(link)
        assert opened.status == 303 and opened.getheader("Location") == "/"
        cookie = opened.getheader("Set-Cookie", "").split(";")[0]
        assert cookie.startswith("legato_session=lgs_")
        page = get(urllib.parse.urljoin(link, "/pipelines"), cookie)
        assert page.status == 200 and b'<div id="root">' in page.read()
        assert get(link).getheader("Location", "").startswith("/signin?error=")  # once

        # `legato ui` (finding up's credentials by itself) prints a new link to a page.
        made = subprocess.run(
            [LEGATO, "--server", address, "ui", "/runs"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert made.returncode == 0, made.stderr
        fresh = made.stdout.split()[-1]
        assert fresh != link and get(fresh).getheader("Location") == "/runs"
        token = (tmp_path / ".legato" / "credentials.yaml").read_text()
        assert "lgt_" in token
        with Client(address, token=token.split("token:")[1].split()[0]) as client:
            actions = [e.action for e in client.list_audit_events(action="SignIn")]
        assert len(actions) == 2
