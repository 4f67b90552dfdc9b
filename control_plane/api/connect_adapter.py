"""The browser-facing API: Connect requests handed to the same servicers, through the
same interceptors, as gRPC calls — one implementation of each RPC whatever the
transport (docs/architecture.md says why this adapter rather than the connect-python
runtime).

``ServiceTable`` stands in for the grpc.aio server when the servicers are registered: it
passes their handlers on to the server and keeps them. ``ConnectAdapter`` serves
``POST /api/<package.Service>/<Method>`` on the HTTP listener: it decodes the request
(``api/connect_protocol.py``), builds the call's metadata from the HTTP request, runs the
method's handler wrapped by the error and access interceptors with a
:class:`ConnectContext` in place of grpc's servicer context, and encodes what comes back.
Unary and server-streaming methods are served (HTTP/1.1 has no full-duplex streams);
client-streaming ones (the agents') are UNIMPLEMENTED here.

**Credentials.** ``Authorization: Bearer <token>`` is passed on as gRPC's
``authorization`` metadata. The browser's session cookie (``api/http_web.py`` sets it) is
passed on as ``legato-web-session`` only for a request the UI itself made: it must carry
``Connect-Protocol-Version: 1`` (a header a cross-site form cannot send, and that a
cross-site script can send only after a CORS preflight this listener never approves),
and its ``Origin`` and ``Sec-Fetch-Site``, when present, must say same-origin. With the
cookie's ``SameSite=Strict`` that makes the cookie useless to another site (CSRF)."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
import structlog
from aiohttp import web
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from control_plane.api.connect_protocol import (
    Codec,
    ConnectError,
    codec_for,
    end_stream,
    envelope,
    error_body,
    http_status,
    read_envelope,
)
from control_plane.api.context import USER_METADATA_KEY, WEB_SESSION_METADATA_KEY

__all__ = ["SESSION_COOKIE", "ConnectAdapter", "ConnectContext", "ServiceTable", "same_origin"]

log = structlog.get_logger("legato.connect")

SESSION_COOKIE = "legato_session"
MAX_TIMEOUT_MS = 10**10
Handler = Any  # grpc.RpcMethodHandler: its attributes are typed loosely by grpc-stubs
Interceptor = grpc.aio.ServerInterceptor


class ServiceTable:
    """Passes servicers' handlers on to ``server`` and keeps them by method path."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self.handlers: dict[str, Handler] = {}

    def as_server(self) -> grpc.aio.Server:
        """This table where the generated ``add_*Servicer_to_server`` functions want a
        server: they call only the two methods below."""
        return cast(grpc.aio.Server, self)

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        self._server.add_registered_method_handlers(service, handlers)
        for name, handler in handlers.items():
            self.handlers[f"/{service}/{name}"] = handler


@dataclass(frozen=True)
class _CallDetails:
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class ConnectContext:
    """What the servicers and interceptors use of ``grpc.aio.ServicerContext``, for a
    call that came over Connect: its metadata, its peer, and ``abort``."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], peer: str) -> None:
        self._metadata = metadata
        self._peer = peer
        self.error: ConnectError | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}  # no client certificates from browsers

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Iterable[tuple[str, str | bytes]] = (),
    ) -> None:
        status = next(
            (
                value
                for key, value in trailing_metadata
                if key == "grpc-status-details-bin" and isinstance(value, bytes)
            ),
            None,
        )
        self.error = ConnectError.from_status(code, details, status)
        raise grpc.aio.AbortError()


class ConnectAdapter:
    """Serves the services named in ``services`` (full names) over Connect."""

    def __init__(
        self,
        handlers: dict[str, Handler],
        interceptors: Sequence[Interceptor],
        *,
        services: Iterable[str],
    ) -> None:
        self._handlers = handlers
        self._interceptors = list(interceptors)
        self._services = frozenset(services)
        self._wrapped: dict[str, Handler] = {}
        self._requests: dict[str, type[Message]] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        service = request.match_info["service"]
        method = request.match_info["method"]
        path = f"/{service}/{method}"
        handler = self._handlers.get(path) if service in self._services else None
        if handler is None:
            return _error(
                ConnectError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"there is no RPC {service}/{method} on this server's web API",
                )
            )
        streaming = handler.unary_stream is not None
        if handler.unary_unary is None and not streaming:
            return _error(
                ConnectError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{method} streams its requests, which Connect over HTTP/1.1 cannot "
                    "carry; call it over gRPC",
                )
            )
        codec = codec_for(request.headers.get("Content-Type", ""), streaming=streaming)
        if codec is None:
            kind = "application/connect+json" if streaming else "application/json"
            return web.Response(
                status=415,
                text=f"{method} takes Content-Type {kind} (or the +proto form)",
                headers={"Accept-Post": kind},
            )
        try:
            metadata = _metadata(request)
            body = await _body(request)
            if streaming:
                body = read_envelope(body)
            message = codec.decode(body, self._request_class(path)())
            timeout = _timeout(request)
            wrapped = await self._wrap(path, metadata)
        except ConnectError as error:
            if streaming:
                return await _stream_error(request, codec, error)
            return _error(error)
        context = ConnectContext(metadata, _peer(request))
        if streaming:
            return await self._stream(request, wrapped, message, context, codec, timeout)
        return await self._unary(wrapped, message, context, codec, timeout)

    async def _unary(
        self,
        handler: Handler,
        message: Message,
        context: ConnectContext,
        codec: Codec,
        seconds: float | None,
    ) -> web.StreamResponse:
        try:
            async with asyncio.timeout(seconds):
                response = await handler.unary_unary(message, context)
        except grpc.aio.AbortError:
            return _error(context.error or _internal())
        except TimeoutError:
            return _error(_deadline())
        return web.Response(body=codec.encode(response), content_type=f"application/{codec.name}")

    async def _stream(
        self,
        request: web.Request,
        handler: Handler,
        message: Message,
        context: ConnectContext,
        codec: Codec,
        seconds: float | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200, headers={"Content-Type": f"application/connect+{codec.name}"}
        )
        await response.prepare(request)
        error: ConnectError | None = None
        try:
            async with asyncio.timeout(seconds):
                async for item in handler.unary_stream(message, context):
                    await response.write(envelope(codec.encode(item)))
        except grpc.aio.AbortError:
            error = context.error or _internal()
        except TimeoutError:
            error = _deadline()
        except ConnectionResetError:
            return response  # the browser went away
        with contextlib.suppress(ConnectionResetError):
            await response.write(end_stream(error))
            await response.write_eof()
        return response

    async def _wrap(self, path: str, metadata: tuple[tuple[str, str], ...]) -> Handler:
        """The method's handler inside the interceptors, as grpc.aio would run it."""
        wrapped = self._wrapped.get(path)
        if wrapped is not None:
            return wrapped
        details = _CallDetails(path, metadata)

        def chain(index: int) -> Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]:
            async def continuation(call: grpc.HandlerCallDetails) -> Handler:
                if index == len(self._interceptors):
                    return self._handlers[path]
                return await self._interceptors[index].intercept_service(chain(index + 1), call)

            return continuation

        wrapped = await chain(0)(details)  # type: ignore[arg-type]
        self._wrapped[path] = wrapped
        return wrapped

    def _request_class(self, path: str) -> type[Message]:
        found = self._requests.get(path)
        if found is None:
            service, method = path.strip("/").split("/")
            descriptor = (
                descriptor_pool.Default().FindServiceByName(service).FindMethodByName(method)
            )
            found = message_factory.GetMessageClass(descriptor.input_type)
            self._requests[path] = found
        return found


def same_origin(request: web.Request) -> str:
    """Why ``request`` may not be the web UI's own (a cross-site request), or ""."""
    site = request.headers.get("Sec-Fetch-Site", "")
    if site and site not in ("same-origin", "none"):
        return f"the request came from another site (Sec-Fetch-Site: {site})"
    origin = request.headers.get("Origin", "")
    if origin and urllib.parse.urlsplit(origin).netloc != request.host:
        return f"the request came from another origin ({origin[:100]})"
    return ""


def _metadata(request: web.Request) -> tuple[tuple[str, str], ...]:
    metadata: list[tuple[str, str]] = []
    authorization = request.headers.get("Authorization", "")
    if authorization:
        metadata.append(("authorization", authorization))
    elif cookie := request.cookies.get(SESSION_COOKIE, ""):
        refused = same_origin(request)
        if not refused and request.headers.get("Connect-Protocol-Version") != "1":
            refused = "it lacks the header Connect-Protocol-Version: 1 the web UI sends"
        if refused:
            raise ConnectError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"a call with the web UI's session cookie was refused: {refused}; the "
                "session only works from the UI's own pages",
            )
        metadata.append((WEB_SESSION_METADATA_KEY, cookie))
    user = request.headers.get(USER_METADATA_KEY, "")
    if user:
        metadata.append((USER_METADATA_KEY, user))
    return tuple(metadata)


async def _body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ConnectError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the request is larger than the {request.client_max_size} bytes this listener "
            f"takes ({exc.text or 'too large'}); see docs/api.md#limits",
        ) from None


def _timeout(request: web.Request) -> float | None:
    value = request.headers.get("Connect-Timeout-Ms", "")
    if not value:
        return None
    if not value.isdigit() or len(value) > 10:
        raise ConnectError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Connect-Timeout-Ms must be a number of milliseconds, got {value[:20]!r}",
        )
    return min(int(value), MAX_TIMEOUT_MS) / 1000


def _peer(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"ipv6:[{host}]:{port}" if ":" in str(host) else f"ipv4:{host}:{port}"
    return "unknown"


def _error(error: ConnectError) -> web.Response:
    return web.Response(
        status=http_status(error.code), body=error_body(error), content_type="application/json"
    )


async def _stream_error(
    request: web.Request, codec: Codec, error: ConnectError
) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200, headers={"Content-Type": f"application/connect+{codec.name}"}
    )
    await response.prepare(request)
    with contextlib.suppress(ConnectionResetError):
        await response.write(end_stream(error))
        await response.write_eof()
    return response


def _internal() -> ConnectError:
    return ConnectError(grpc.StatusCode.INTERNAL, "the call ended without a status")


def _deadline() -> ConnectError:
    return ConnectError(
        grpc.StatusCode.DEADLINE_EXCEEDED, "the call took longer than its Connect-Timeout-Ms"
    )
