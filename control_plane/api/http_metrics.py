"""``GET /metrics`` on the HTTP listener: the Prometheus page of ``control_plane/metrics``.

Secure by default, like every gRPC call: the scraper sends ``Authorization: Bearer
<API token>``, checked as the access interceptor checks it (``Authenticator.api``: cached,
revocation and expiry honoured); any role will do, since every role includes the viewer's.
Only a server run with ``--auth none`` (loopback listeners only) serves it to anyone.

    200  the page (Prometheus text, or OpenMetrics when the Accept header asks for it)
    401  no credential, not a Bearer one, or a token that is unknown, revoked or expired
    403  an agent's enrolment token (it only lets an agent connect)
    503  the database cannot be reached to check the token

Refusals are plain text that says what to send, and are logged (``metrics_refused``,
never with the credential)."""

from __future__ import annotations

import structlog
from aiohttp import web

from control_plane.access.authenticator import Authenticator
from control_plane.errors import PermissionDenied, Unauthenticated, Unavailable
from control_plane.metrics.scraped import Scrape
from control_plane.store.outages import store_unavailable

__all__ = ["MetricsEndpoint"]

log = structlog.get_logger("legato.http")

NEEDS_TOKEN = (
    "GET /metrics needs an API token: send `Authorization: Bearer <token>` (in a Prometheus "
    "scrape config, `authorization: {credentials_file: ...}`). Any role will do; an admin "
    "makes one with `legato tokens create prometheus --role viewer`"
)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="legato"'}


class MetricsEndpoint:
    """``authenticator`` None: ``--auth none``, the page is served to anyone."""

    def __init__(self, scrape: Scrape, authenticator: Authenticator | None) -> None:
        self._scrape = scrape
        self._authenticator = authenticator

    async def get(self, request: web.Request) -> web.Response:
        if self._authenticator is not None:
            refusal = await self._check(request, self._authenticator)
            if refusal is not None:
                return refusal
        body, content_type = await self._scrape.page(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _check(
        self, request: web.Request, authenticator: Authenticator
    ) -> web.Response | None:
        """None when the request carries a live API token; else the refusal."""
        header = request.headers.get("Authorization", "").strip()
        if not header:
            return _refuse(request, 401, "CREDENTIAL_MISSING", NEEDS_TOKEN)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _refuse(
                request,
                401,
                "CREDENTIAL_MALFORMED",
                "the Authorization header must be `Bearer <token>`; " + NEEDS_TOKEN,
            )
        try:
            await authenticator.api(token.strip())
        except Unauthenticated as exc:
            return _refuse(request, 401, exc.reason, exc.message)
        except PermissionDenied as exc:
            return _refuse(request, 403, exc.reason, exc.message)
        except Exception as exc:
            if not isinstance(exc, Unavailable) and not store_unavailable(exc):
                raise
            return _refuse(
                request,
                503,
                "DATABASE_UNAVAILABLE",
                "the token cannot be checked: the control plane's database is unavailable; "
                "retry shortly",
            )
        return None


def _refuse(request: web.Request, status: int, reason: str, message: str) -> web.Response:
    log.warning("metrics_refused", status=status, reason=reason, peer=request.remote)
    headers = _CHALLENGE if status == 401 else None
    return web.Response(status=status, text=message + "\n", headers=headers)
