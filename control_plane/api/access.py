"""The access interceptor: every call is authenticated and checked against the rule its
method declares (``control_plane.access.rules``) before a servicer sees it.

- **Who.** ``authorization: Bearer lgt_...`` is an API token (with a role), and so is a
  web UI session (``legato-web-session``, which the Connect adapter takes from the
  browser's cookie: ``access/web_sessions.py``);
  ``Bearer lga_...``, or a verified client certificate naming
  ``spiffe://legato/agent/NAME``, is an agent. No credential → UNAUTHENTICATED; a
  credential without the role the method needs, or an agent calling what agents may not
  (or a person calling what only agents may) → PERMISSION_DENIED, naming what is needed.
  With ``--auth none`` (loopback only) every caller is ``anonymous`` and may do anything.
- **What comes in.** A request that cannot be decoded is INVALID_ARGUMENT (grpcio would
  answer INTERNAL); unary requests are checked by ``api/request_checks.py`` (sizes, NUL
  bytes, enum values) before the servicer runs.
- **Streams.** Each caller may hold ``max_streams`` streaming calls at once (agents'
  ``Connect`` aside); a stream whose token is revoked or expires is ended within seconds
  (UNAUTHENTICATED). An agent's stream reads its token from the store when it opens (not
  the cache), so an agent cut off on one replica cannot reconnect through another. A
  refused client-streaming call reads the first message before answering (see
  ``_admit_stream``), so the client is told why rather than "Internal error from Core".
- **The activity log.** A mutation that is refused to a known caller (PERMISSION_DENIED)
  or fails (an unexpected exception too) is recorded with its code and error, under the
  resource and pipeline its request names; successful ones record themselves in their
  own transaction. Unauthenticated calls are not recorded.

The servicer reads the caller from ``api/context.py``. The error interceptor, outside
this one, turns the errors raised here into statuses."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError

from control_plane.access.audit_log import AuditLog
from control_plane.access.authenticator import NO_CREDENTIAL, Authenticator
from control_plane.access.principals import Principal
from control_plane.access.roles import WHAT, allows
from control_plane.access.rules import Rule, Rules
from control_plane.api.context import claimed_user, reset_caller, set_caller, web_session_of
from control_plane.api.errors import status_code
from control_plane.api.request_checks import check_request
from control_plane.errors import (
    InvalidArgument,
    LegatoError,
    LimitExceeded,
    PermissionDenied,
    Unauthenticated,
)

__all__ = ["AGENT_URI_PREFIX", "AccessInterceptor"]

log = structlog.get_logger("legato.access")

AGENT_URI_PREFIX = "spiffe://legato/agent/"
GUARD_SECONDS = 2.0
FIRST_MESSAGE_SECONDS = 1.0
"""How long a refused streaming call waits for the client's first message."""
_UNLIMITED = {"/legato.v1.AgentService/Connect"}

Context = grpc.aio.ServicerContext[Any, Any]
_INTERNAL = LegatoError(
    "the control plane failed to carry out the call (an internal error; the server log has it)"
)
"""What the activity log says of a mutation that failed with an unexpected exception."""


class _Undecodable:
    """Stands for a request message grpcio could not decode."""

    def __init__(self, error: str) -> None:
        self.error = error


class AccessInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        rules: Rules,
        authenticator: Authenticator | None,
        audit: AuditLog,
        *,
        max_streams: int = 32,
        guard_seconds: float = GUARD_SECONDS,
    ) -> None:
        """``authenticator`` None: ``--auth none``, everyone may do anything."""
        self._rules = rules
        self._authenticator = authenticator
        self._audit = audit
        self._max_streams = max_streams
        self._guard_seconds = guard_seconds
        self._streams: Counter[str] = Counter()
        self._refusals = RefusalLog()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        rule = self._rules.get(method)
        h: Any = handler
        deserialize = _tolerant(h.request_deserializer, method)
        common = {"request_deserializer": deserialize, "response_serializer": h.response_serializer}
        if h.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(h.unary_unary, method, rule), **common
            )
        if h.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(h.stream_unary, method, rule, streaming_request=True), **common
            )
        if h.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(h.unary_stream, method, rule), **common
            )
        if h.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(h.stream_stream, method, rule, streaming_request=True), **common
            )
        return handler

    # -- wrappers -----------------------------------------------------------------------

    def _unary(
        self,
        behavior: Callable[..., Awaitable[Any]],
        method: str,
        rule: Rule | None,
        *,
        streaming_request: bool = False,
    ) -> Callable[..., Awaitable[Any]]:
        async def wrapped(request: Any, context: Context) -> Any:
            if streaming_request:
                principal = await self._admit_stream(method, rule, context, request)
            else:
                principal = await self._admit(method, rule, context, request)
            token = set_caller(principal)
            try:
                if streaming_request:
                    request = _decoded_stream(request)
                    with self._stream_slot(principal, method):
                        return await behavior(request, context)
                _check(request, method)
                return await behavior(request, context)
            except LegatoError as error:
                await self._record_failure(rule, method, principal, request, error)
                raise
            except Exception:
                await self._record_failure(rule, method, principal, request, _INTERNAL)
                raise
            finally:
                reset_caller(token)

        return wrapped

    def _streaming(
        self,
        behavior: Callable[..., Any],
        method: str,
        rule: Rule | None,
        *,
        streaming_request: bool = False,
    ) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):
            return self._unary(behavior, method, rule, streaming_request=streaming_request)

        async def wrapped(request: Any, context: Context) -> AsyncIterator[Any]:
            if streaming_request:
                principal = await self._admit_stream(method, rule, context, request)
                request = _decoded_stream(request)
            else:
                principal = await self._admit(method, rule, context, request)
                _check(request, method)
            set_caller(principal)  # this task runs only this call
            with self._stream_slot(principal, method):
                revoked = asyncio.Event()
                guard = self._guard(principal, revoked, method)
                try:
                    async for response in behavior(request, context):
                        yield response
                except asyncio.CancelledError:
                    if not revoked.is_set():
                        raise
                    current = asyncio.current_task()
                    if current is not None:
                        current.uncancel()
                    raise Unauthenticated(
                        f"the credential of this stream ({principal.credential}) was revoked "
                        "or has expired",
                        reason="TOKEN_REVOKED",
                    ) from None
                finally:
                    if guard is not None:
                        guard.cancel()

        return wrapped

    # -- authentication and authorisation -----------------------------------------------

    async def _admit(
        self, method: str, rule: Rule | None, context: Context, request: Any = None
    ) -> Principal:
        """The authenticated caller, if the rule lets it call ``method``. A mutation
        refused to a known caller is recorded in the activity log (``request``, when
        there is one, says what it was about); an unknown caller's is not."""
        try:
            if rule is None:
                raise PermissionDenied(
                    f"{method} declares no access rule, so nobody may call it",
                    reason="NO_ACCESS_RULE",
                )
            principal = await self._authenticate(
                rule, context, opens_agent_stream=method in _UNLIMITED
            )
        except (Unauthenticated, PermissionDenied) as error:
            self._refusals.log(method, context, error, caller="")
            raise
        try:
            _authorize(method, rule, principal)
        except PermissionDenied as error:
            self._refusals.log(method, context, error, caller=principal.key)
            await self._record_failure(rule, method, principal, request, error)
            raise
        return principal

    async def _authenticate(
        self, rule: Rule, context: Context, *, opens_agent_stream: bool = False
    ) -> Principal:
        claimed = claimed_user(context)
        if self._authenticator is None:
            return Principal(
                kind="anonymous",
                name=claimed or "anonymous",
                role="admin",
                credential="unauthenticated",
                connections=("*",),
            )
        if rule.public:
            return Principal(kind="anonymous", name="anonymous", credential="none")
        bearer = _bearer(context)
        if not bearer and (session := web_session_of(context)):
            return await self._authenticator.web_session(session, claimed_user=claimed)
        certificate = _certificate_agent(context)
        if bearer.startswith("lga_") or (not bearer and certificate and rule.agent):
            return await self._authenticator.agent(
                bearer, certificate_agent=certificate, fresh=opens_agent_stream
            )
        if not bearer and rule.agent and rule.role is None:
            return await self._authenticator.agent("", certificate_agent="")
        if not bearer:
            raise Unauthenticated(NO_CREDENTIAL, reason="CREDENTIAL_MISSING")
        return await self._authenticator.api(bearer, claimed_user=claimed)

    async def _admit_stream(
        self, method: str, rule: Rule | None, context: Context, requests: AsyncIterator[Any]
    ) -> Principal:
        """``_admit`` for a call whose client streams its requests. A refused caller's
        first message is taken before the refusal is sent: a client that writes it and
        then reads (as agents do) would otherwise race the status, and grpcio reports a
        write to a call the server has already ended as INTERNAL "Internal error from
        Core" — an agent with a bad token would retry instead of being told why."""
        try:
            return await self._admit(method, rule, context)
        except LegatoError:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(FIRST_MESSAGE_SECONDS):
                    await anext(aiter(requests), None)
            raise

    @contextlib.contextmanager
    def _stream_slot(self, principal: Principal, method: str) -> Iterator[None]:
        if method in _UNLIMITED:
            yield
            return
        key = principal.key
        if self._streams[key] >= self._max_streams:
            raise LimitExceeded(
                f"{principal.name!r} already has {self._streams[key]} streaming calls open, the "
                f"most one caller may (legato server --max-streams-per-caller); close some first",
                reason="TOO_MANY_STREAMS",
                metadata={"limit": str(self._max_streams)},
            )
        self._streams[key] += 1
        try:
            yield
        finally:
            self._streams[key] -= 1
            if self._streams[key] <= 0:
                del self._streams[key]

    def _guard(
        self, principal: Principal, revoked: asyncio.Event, method: str
    ) -> asyncio.Task[None] | None:
        """A task that cancels this call once its token is no longer valid."""
        authenticator = self._authenticator
        if authenticator is None or not principal.token_id or method in _UNLIMITED:
            return None
        call = asyncio.current_task()
        assert call is not None

        async def watch() -> None:
            while True:
                await asyncio.sleep(self._guard_seconds)
                try:
                    valid = await authenticator.still_valid(principal)
                except Exception:
                    log.exception("credential_check_failed", caller=principal.name)
                    continue
                if not valid:
                    log.info("stream_closed_revoked", caller=principal.name, method=method)
                    revoked.set()
                    call.cancel()
                    return

        return asyncio.create_task(watch(), name=f"legato-guard-{principal.key}")

    async def _record_failure(
        self,
        rule: Rule | None,
        method: str,
        principal: Principal,
        request: Any,
        error: LegatoError,
    ) -> None:
        if rule is None or not rule.mutation:
            return
        resource, pipeline = _resource_of(method, request)
        try:
            await self._audit.failed(
                principal.actor(str(getattr(request, "request_id", "") or "")),
                _short(method),
                resource,
                pipeline=pipeline,
                denied=isinstance(error, PermissionDenied),
                code=status_code(error).value[0],
                error=error.message,
            )
        except Exception:
            log.exception("audit_failure_not_recorded", method=method)


class RefusalLog:
    """Logs refused calls (``call_refused``: method, reason, peer, the caller when known;
    never the credential), at most ``per_second`` lines a second: a flood of bad tokens
    shows as a count of the lines left out (``call_refused_suppressed``), not as a flood
    of log lines."""

    def __init__(self, per_second: int = 20, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_second = per_second
        self._clock = clock
        self._window = 0.0
        self._count = 0
        self._suppressed = 0

    def log(self, method: str, context: Context, error: LegatoError, *, caller: str) -> None:
        now = self._clock()
        if now - self._window >= 1.0:
            if self._suppressed:
                log.warning("call_refused_suppressed", count=self._suppressed)
            self._window, self._count, self._suppressed = now, 0, 0
        self._count += 1
        if self._count > self._per_second:
            self._suppressed += 1
            return
        log.warning(
            "call_refused",
            method=_short(method),
            reason=error.reason,
            peer=context.peer(),
            caller=caller or None,
        )


def _authorize(method: str, rule: Rule, principal: Principal) -> None:
    """PermissionDenied, naming what is needed, unless ``principal`` may call ``method``."""
    if rule.public or principal.kind == "anonymous":
        return
    if principal.is_agent:
        if not rule.agent:
            raise PermissionDenied(
                f"agents may not call {_short(method)}; it needs an API token with the "
                f"{rule.role} role",
                reason="AGENTS_NOT_ALLOWED",
            )
        return
    if rule.role is None:
        raise PermissionDenied(
            f"only executor agents call {_short(method)}; an API token cannot",
            reason="AGENTS_ONLY",
        )
    assert principal.role is not None
    if not allows(principal.role, rule.role):
        raise PermissionDenied(
            f"{_short(method)} needs the {rule.role} role ({WHAT[rule.role]}); the token "
            f"{principal.name!r} has the {principal.role} role",
            reason="ROLE_REQUIRED",
            metadata={"required_role": rule.role, "role": principal.role},
        )


def _check(request: Any, method: str) -> None:
    if isinstance(request, _Undecodable):
        raise InvalidArgument(
            f"the request of {_short(method)} could not be decoded: {request.error}",
            reason="UNDECODABLE_REQUEST",
        )
    check_request(request)


async def _decoded_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise InvalidArgument(
                f"a message of the stream could not be decoded: {request.error}",
                reason="UNDECODABLE_REQUEST",
            )
        yield request


def _tolerant(deserialize: Callable[[bytes], Any] | None, method: str) -> Any:
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            return _Undecodable(str(exc)[:200] or type(exc).__name__)

    return decode


def _bearer(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
            raise Unauthenticated(
                "the authorization metadata must be `Bearer <token>`",
                reason="CREDENTIAL_MALFORMED",
            )
    return ""


def _certificate_agent(context: Context) -> str:
    """The agent a verified client certificate names, if any."""
    auth = context.auth_context() or {}
    for value in auth.get("peer_uri", []) or auth.get("x509_subject_alternative_name", []):
        text = value.decode() if isinstance(value, bytes) else str(value)
        if text.startswith(AGENT_URI_PREFIX):
            return text.removeprefix(AGENT_URI_PREFIX)
    return ""


def _short(method: str) -> str:
    return method.rsplit("/", 1)[-1]


_RESOURCES: dict[str, tuple[str, str]] = {
    # method: (collection, request field naming the resource), as successful calls
    # record it (those whose resource is only made by the call name what it was for).
    "ApplyPipeline": ("pipelines", "spec.name"),
    "RollbackPipeline": ("pipelines", "pipeline"),
    "ArchivePipeline": ("pipelines", "name"),
    "RestorePipeline": ("pipelines", "name"),
    "PauseSchedule": ("pipelines", "pipeline"),
    "ResumeSchedule": ("pipelines", "pipeline"),
    "TestNotifications": ("pipelines", "pipeline|spec.name"),
    "TriggerRun": ("pipelines", "pipeline"),
    "TestStep": ("pipelines", "spec.name"),
    "CreateBackfill": ("pipelines", "pipeline"),
    "CancelRun": ("runs", "id"),
    "RerunRun": ("runs", "id"),
    "CancelBackfill": ("backfills", "id"),
    "Publish": ("events", "type"),
    "DrainAgent": ("agents", "name"),
    "CreateToken": ("tokens", "name"),
    "RevokeToken": ("tokens", "name"),
    "CreateAgentToken": ("agents", "agent"),
    "RevokeAgentToken": ("agent-tokens", "id"),
}


def _resource_of(method: str, request: Any) -> tuple[str, str | None]:
    """What a refused or failed mutation was about, from its request: the resource
    and the pipeline concerned, when one is named."""
    name = _short(method)
    service = method.strip("/").split("/")[0].rsplit(".", 1)[-1]
    collection, path = _RESOURCES.get(name, (service.removesuffix("Service").lower(), "name"))
    # "a|b": the first of the fields that is set (a request with a oneof).
    value = next((found for part in path.split("|") if (found := _field(request, part))), "")
    resource = f"{collection}/{value[:200]}" if value else collection
    pipeline = value if collection == "pipelines" else ""
    return resource, pipeline or None


def _field(message: object, path: str) -> str:
    """The string at ``path`` (``spec.name``) of a request, or ""."""
    *parents, name = path.split(".")
    for parent in parents:
        message = _field_message(message, parent)
    return _scalar(message, name)


def _scalar(message: object, name: str) -> str:
    if message is None or isinstance(message, _Undecodable):
        return ""
    value = getattr(message, name, "")
    return value if isinstance(value, str) else ""


def _field_message(message: object, name: str) -> object:
    if message is None or isinstance(message, _Undecodable):
        return None
    return getattr(message, name, None)
