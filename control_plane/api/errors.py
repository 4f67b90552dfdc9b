"""The one place domain errors become gRPC statuses (AIP-193).

Each ``LegatoError`` becomes its status code with a ``google.rpc.Status`` in the
``grpc-status-details-bin`` trailer carrying an ``ErrorInfo`` (reason, domain, metadata)
and, for invalid specs, a ``BadRequest`` with one field violation per problem. Anything
else is a bug: it is logged with its traceback and the caller gets INTERNAL with an id to
find that log entry, never the exception text — except a database that cannot be reached
(:mod:`control_plane.store.outages`), which is UNAVAILABLE / ``DATABASE_UNAVAILABLE``:
retryable, and nothing was changed.

Whatever an error quotes, what goes on the wire is bounded (``MAX_MESSAGE`` characters of
message, ``MAX_DESCRIPTION`` per field violation, ``MAX_METADATA`` per metadata value, at
most ``MAX_VIOLATIONS`` violations): a backstop behind ``quote``, so no caller gets
megabytes of error for a megabyte of input."""

from __future__ import annotations

import inspect
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from control_plane import errors
from control_plane.store.outages import UNAVAILABLE_MESSAGE, store_unavailable

__all__ = ["ERROR_DOMAIN", "ErrorInterceptor", "abort_with", "bounded_text"]

ERROR_DOMAIN = "legato.dev"
MAX_MESSAGE = 1024
MAX_DESCRIPTION = 512
MAX_FIELD = 200
MAX_METADATA = 200
MAX_METADATA_ENTRIES = 20
MAX_VIOLATIONS = 50
log = structlog.get_logger("legato.api")

_CODES: list[tuple[type[errors.LegatoError], grpc.StatusCode]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.Conflict, grpc.StatusCode.ABORTED),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
]


def status_code(error: errors.LegatoError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def to_status(error: errors.LegatoError) -> tuple[grpc.StatusCode, status_pb2.Status]:
    code = status_code(error)
    status = status_pb2.Status(code=code.value[0], message=bounded_text(error.message, MAX_MESSAGE))
    metadata = {
        bounded_text(key, MAX_METADATA): bounded_text(value, MAX_METADATA)
        for key, value in list(error.metadata.items())[:MAX_METADATA_ENTRIES]
    }
    info = error_details_pb2.ErrorInfo(
        reason=bounded_text(error.reason, MAX_METADATA), domain=ERROR_DOMAIN, metadata=metadata
    )
    details = [info]
    if isinstance(error, errors.InvalidArgument) and error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=bounded_text(v.field, MAX_FIELD),
                        description=bounded_text(v.description, MAX_DESCRIPTION),
                    )
                    for v in error.violations[:MAX_VIOLATIONS]
                ]
            )
        )
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return code, status


async def abort_with(
    context: grpc.aio.ServicerContext[Any, Any], error: errors.LegatoError
) -> None:
    code, status = to_status(error)
    await context.abort(
        code,
        status.message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )


def bounded_text(text: str, limit: int) -> str:
    """``text``, cut to at most ``limit`` characters (saying how long it was)."""
    if len(text) <= limit:
        return text
    tail = f"… [{len(text)} characters, cut]"
    return text[: max(0, limit - len(tail))] + tail


async def _abort_internal(context: grpc.aio.ServicerContext[Any, Any], method: str) -> None:
    failure = sys.exc_info()[1]
    if failure is not None and store_unavailable(failure):
        # Not a bug: the database is restarting or unreachable. Retryable, and said so.
        log.warning("rpc_store_unavailable", method=method, error=str(failure)[:200])
        await abort_with(
            context, errors.Unavailable(UNAVAILABLE_MESSAGE, reason="DATABASE_UNAVAILABLE")
        )
        return
    error_id = uuid.uuid4().hex[:12]
    log.exception("rpc_failed", method=method, error_id=error_id)
    error = errors.LegatoError(
        f"internal error in {method}; the server log has the details under error_id={error_id}",
        reason="INTERNAL",
        metadata={"error_id": error_id},
    )
    _, status = to_status(error)
    status.code = code_pb2.INTERNAL
    await context.abort(
        grpc.StatusCode.INTERNAL,
        error.message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )


def _wrap_unary(
    behavior: Callable[..., Awaitable[Any]], method: str
) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except errors.LegatoError as error:
            await abort_with(context, error)
        except Exception:
            await _abort_internal(context, method)

    return wrapped


def _wrap_streaming(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(behavior):
        return _wrap_unary(behavior, method)

    async def wrapped(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for response in behavior(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except errors.LegatoError as error:
            await abort_with(context, error)
        except Exception:
            await _abort_internal(context, method)

    return wrapped


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions raised by servicers to statuses (see the module docstring)."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        h: Any = handler
        common = {
            "request_deserializer": h.request_deserializer,
            "response_serializer": h.response_serializer,
        }
        if h.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(_wrap_unary(h.unary_unary, method), **common)
        if h.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_streaming(h.unary_stream, method), **common
            )
        if h.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(h.stream_unary, method), **common
            )
        if h.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_streaming(h.stream_stream, method), **common
            )
        return handler
