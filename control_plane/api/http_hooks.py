"""The control plane's HTTP listener (aiohttp): ``POST /hooks/<pipeline>`` for webhook
triggers, ``GET /metrics`` for Prometheus (``api/http_metrics.py``), and the web UI with
its Connect API (``api/http_web.py``). Checking and
starting the run is ``triggers.webhooks``; this module reads the request (at most MAX_BODY
bytes) and turns the outcome into a status and a JSON body:

    202 {"run_id": ...}                      the run started
    400 {"error", "reason"}                  the body is not a JSON object, bad params
    401                                      signature missing, malformed, wrong or expired
    404                                      no such pipeline, archived, no webhook trigger
    409                                      the signature was used already
    413                                      the body is larger than 1 MiB
    500                                      a secret the trigger names is not configured
    503                                      the database is unavailable
"""

from __future__ import annotations

import ssl
import uuid

import structlog
from aiohttp import web

from control_plane.api.http_metrics import MetricsEndpoint
from control_plane.api.http_web import WebUi
from control_plane.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    LegatoError,
    NotFound,
    Unavailable,
)
from control_plane.triggers.webhooks import (
    SIGNATURE_HEADER,
    MissingSecretError,
    SignatureError,
    Webhooks,
)

__all__ = ["MAX_BODY", "HookListener"]

log = structlog.get_logger("legato.http")

MAX_BODY = 1024 * 1024
MAX_REQUEST = 4 * MAX_BODY
"""Any request's body (a Connect call carries a spec of up to 1 MiB encoded, more as JSON)."""

_STATUS: list[tuple[type[LegatoError], int]] = [
    (SignatureError, 401),
    (NotFound, 404),
    (FailedPrecondition, 404),  # archived while the request was checked
    (Conflict, 409),
    (InvalidArgument, 400),
    (Unavailable, 503),
]


class HookListener:
    """Serves the hooks, and ``metrics`` and ``web`` when given, on ``listen`` (HOST:PORT;
    port 0 picks a free one)."""

    def __init__(
        self,
        webhooks: Webhooks,
        listen: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        metrics: MetricsEndpoint | None = None,
        web_ui: WebUi | None = None,
    ) -> None:
        self._webhooks = webhooks
        self._metrics = metrics
        self._web = web_ui
        self._listen = listen
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Start listening; returns the bound port."""
        app = web.Application(client_max_size=MAX_REQUEST)
        app.router.add_post("/hooks/{pipeline}", self._post)
        if self._metrics is not None:
            app.router.add_get("/metrics", self._metrics.get)
        if self._web is not None:
            self._web.add_routes(app)
        # A call whose client went away is cancelled: a closed browser tab ends its
        # WatchRun stream (and frees its slot) at once.
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, handler_cancellation=True
        )
        await runner.setup()
        host, _, port = self._listen.rpartition(":")
        site = web.TCPSite(runner, host.strip("[]") or None, int(port), ssl_context=self._ssl)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise FailedPrecondition(
                f"cannot listen for webhooks on {self._listen}: {exc.strerror or exc}; choose "
                "another address with --http-listen HOST:PORT, or turn it off with "
                "--http-listen off",
                reason="LISTEN_FAILED",
            ) from None
        self._runner = runner
        bound: int = runner.addresses[0][1]
        return bound

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _post(self, request: web.Request) -> web.Response:
        pipeline = request.match_info["pipeline"]
        try:
            body = await request.read()
            if len(body) > MAX_BODY:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(body))
        except web.HTTPRequestEntityTooLarge:
            return _refuse(
                pipeline,
                413,
                "BODY_TOO_LARGE",
                f"the body is larger than {MAX_BODY} bytes (1 MiB)",
            )
        try:
            run_id = await self._webhooks.receive(
                pipeline, request.headers.get(SIGNATURE_HEADER), body
            )
        except MissingSecretError as exc:
            log.error("webhook_secret_missing", pipeline=pipeline, error=exc.message)
            return _json(500, {"error": exc.message, "reason": exc.reason})
        except LegatoError as exc:
            status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
            return _refuse(pipeline, status, exc.reason, exc.message)
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            log.exception("webhook_failed", pipeline=pipeline, error_id=error_id)
            return _json(500, {"error": f"internal error {error_id}", "reason": "INTERNAL"})
        log.info("webhook_accepted", pipeline=pipeline, run_id=run_id, bytes=len(body))
        return _json(202, {"run_id": run_id})


def _refuse(pipeline: str, status: int, reason: str, message: str) -> web.Response:
    log.warning("webhook_refused", pipeline=pipeline, status=status, reason=reason)
    return _json(status, {"error": message, "reason": reason})


def _json(status: int, data: dict[str, str]) -> web.Response:
    return web.json_response(data, status=status)
