"""The web UI on the HTTP listener: its static bundle, signing in and out, and the
Connect API (``api/connect_adapter.py``) at ``/api/``.

    POST /api/<package.Service>/<Method>   the services, over Connect
    POST /ui/session    {"token": "lgt_..."}  → 200 {"name", "role"} and the cookie;
                                            401/403 {"error", "reason"}
    GET  /ui/signin?code=lgc_...           a sign-in link: → 303 to its next path with the
                                            cookie, or to /signin?error=... when it is spent
    POST /ui/signout                       → 204, the session ended and the cookie cleared
    GET  /assets/...                       the bundle's files (named by content: cached)
    GET  anything else                     index.html: the UI routes in the browser

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict``, ``Path=/``,
``Secure`` when the listener speaks TLS, and lasts as long as its session. Pages carry a
Content-Security-Policy that allows nothing but this origin, and ``Referrer-Policy:
no-referrer`` so a sign-in link's code never leaves in a Referer header."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import structlog
from aiohttp import web

from control_plane.access import token_secrets
from control_plane.access.authenticator import Authenticator
from control_plane.access.web_sessions import WebSession, WebSessions
from control_plane.api.connect_adapter import SESSION_COOKIE, ConnectAdapter, same_origin
from control_plane.errors import LegatoError, PermissionDenied, Unavailable

__all__ = ["STATIC_DIR", "WebUi"]

log = structlog.get_logger("legato.web")

STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"
MAX_TOKEN_BODY = 16 * 1024
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Legato</title>
<p>The web UI's bundle is not in this installation ({path}). Build it from the source
tree with <code>scripts/build-ui</code> (needs Node.js and npm), or install a release of
Legato, which carries it.</p>"""


class WebUi:
    """The UI's routes. ``authenticator`` None: ``--auth none``, nobody signs in."""

    def __init__(
        self,
        connect: ConnectAdapter,
        sessions: WebSessions,
        authenticator: Authenticator | None,
        *,
        secure: bool,
        static_dir: Path = STATIC_DIR,
    ) -> None:
        self._connect = connect
        self._sessions = sessions
        self._authenticator = authenticator
        self._secure = secure
        self._static = static_dir

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/{service}/{method}", self._connect.handle)
        app.router.add_post("/ui/session", self._sign_in)
        app.router.add_get("/ui/signin", self._link)
        app.router.add_post("/ui/signout", self._sign_out)
        app.router.add_get("/assets/{path:.+}", self._asset)
        app.router.add_get("/{path:.*}", self._page)

    # -- signing in and out -------------------------------------------------------------

    async def _sign_in(self, request: web.Request) -> web.Response:
        refused = _not_from_the_ui(request)
        if refused:
            return _json(403, refused, "CROSS_SITE_REQUEST")
        if self._authenticator is None:
            return _json(
                409, "authentication is off (--auth none): no sign-in is needed", "AUTH_OFF"
            )
        body = await request.content.read(MAX_TOKEN_BODY + 1)
        try:
            data = json.loads(body) if len(body) <= MAX_TOKEN_BODY else None
        except ValueError:
            data = None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token.strip():
            return _json(
                400, 'send {"token": "lgt_..."}: the API token to sign in with', "BAD_REQUEST"
            )
        parsed = token_secrets.parse(token.strip())
        if parsed is None:
            return _json(
                401,
                "that is not a Legato API token: they look like lgt_…, and an admin makes them "
                "with `legato tokens create NAME --role viewer`",
                "INVALID_TOKEN",
            )
        try:
            principal = await self._authenticator.api(token.strip())
            session = await self._sessions.open(principal)
        except LegatoError as error:
            return _refusal(error)
        log.info("web_signed_in", name=principal.name, via="token")
        response = _json_body(200, {"name": principal.name, "role": principal.role or ""})
        self._set_cookie(response, session)
        return response

    async def _link(self, request: web.Request) -> web.StreamResponse:
        code = request.query.get("code", "")
        if self._authenticator is None:
            raise web.HTTPSeeOther("/")
        try:
            session = await self._sessions.exchange(code, self._authenticator.token_for_session)
        except LegatoError as error:
            log.warning("web_sign_in_refused", reason=error.reason)
            query = urllib.parse.urlencode({"error": error.message})
            return _redirect(f"/signin?{query}")
        log.info("web_signed_in", via="link")
        response = _redirect(session.next_path)
        self._set_cookie(response, session)
        return response

    async def _sign_out(self, request: web.Request) -> web.Response:
        refused = _not_from_the_ui(request)
        if refused:
            return _json(403, refused, "CROSS_SITE_REQUEST")
        secret = request.cookies.get(SESSION_COOKIE, "")
        if secret and self._authenticator is not None:
            actor = None
            try:
                actor = (await self._authenticator.web_session(secret)).actor()
            except LegatoError:
                actor = None  # expired or its token revoked: still end it
            try:
                parsed = token_secrets.parse(secret)
                if await self._sessions.close(secret, actor) and parsed is not None:
                    self._authenticator.forget_session(parsed.id)
            except LegatoError as error:
                return _refusal(error)
        response = web.Response(status=204)
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    def _set_cookie(self, response: web.StreamResponse, session: WebSession) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            session.secret,
            max_age=session.max_age,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self._secure,
        )

    # -- the bundle ---------------------------------------------------------------------

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        path = _inside(self._static / "assets", request.match_info["path"])
        if path is None or not path.is_file():
            raise web.HTTPNotFound(text="no such file in the web UI's bundle")
        return web.FileResponse(
            path,
            headers={"Cache-Control": "public, max-age=31536000, immutable", **_SECURITY_HEADERS},
        )

    async def _page(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["path"]
        top = _inside(self._static, name) if name and "/" not in name else None
        if top is not None and top.is_file() and top.name != "index.html":
            return web.FileResponse(
                top, headers={"Cache-Control": "public, max-age=3600", **_SECURITY_HEADERS}
            )
        index = self._static / "index.html"
        if not index.is_file():
            return web.Response(
                status=503,
                text=_NOT_BUILT.format(path=self._static),
                content_type="text/html",
                headers=_SECURITY_HEADERS,
            )
        return web.Response(
            body=index.read_bytes(),
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-cache", **_SECURITY_HEADERS},
        )


def _not_from_the_ui(request: web.Request) -> str:
    if request.content_type != "application/json":
        return "send Content-Type: application/json (the web UI does)"
    refused = same_origin(request)
    return f"refused: {refused}" if refused else ""


def _inside(root: Path, relative: str) -> Path | None:
    """``root/relative`` when it stays inside ``root``."""
    try:
        path = (root / relative).resolve()
        path.relative_to(root.resolve())
    except (ValueError, OSError):
        return None
    return path


def _refusal(error: LegatoError) -> web.Response:
    if isinstance(error, Unavailable):
        status = 503
    elif isinstance(error, PermissionDenied):
        status = 403
    else:
        status = 401
    return _json(status, error.message, error.reason)


def _json(status: int, message: str, reason: str) -> web.Response:
    return _json_body(status, {"error": message, "reason": reason})


def _json_body(status: int, data: dict[str, str]) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


def _redirect(location: str) -> web.Response:
    return web.Response(
        status=303, headers={"Location": location, "Cache-Control": "no-store", **_SECURITY_HEADERS}
    )
