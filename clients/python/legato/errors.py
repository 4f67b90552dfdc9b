"""The SDK's one error type: every failed call raises ``RpcError`` with the gRPC status,
the server's ``ErrorInfo`` reason and, for invalid specs, the field violations."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = ["FieldViolation", "RpcError", "from_grpc_error"]


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass
class RpcError(Exception):
    """A call that failed. ``reason`` is the server's UPPER_SNAKE reason (``NOT_FOUND``,
    ``INVALID_PIPELINE_SPEC``, ...) or the status code's name when the server sent none."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def from_grpc_error(error: grpc.RpcError, target: str, *, tls: bool | None = None) -> RpcError:
    """Convert a grpcio error, decoding the rich status details when present; ``tls``
    (whether the channel used TLS) lets a failed connection say which flag to fix."""
    call: grpc.Call = error  # type: ignore[assignment]
    code = call.code()
    message = call.details() or code.name
    result = RpcError(code=code, message=message, reason=code.name)
    for key, value in call.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            _decode_details(result, value)
    hint = _transport_hint(message, target, tls) if code == grpc.StatusCode.UNAVAILABLE else ""
    if hint:
        result.message = f"cannot connect to the Legato server at {target}: {hint} ({message})"
    elif code == grpc.StatusCode.UNAVAILABLE and result.reason == "UNAVAILABLE":
        result.message = (
            f"cannot reach the Legato server at {target} ({message}); is it running? Start one "
            "with `legato up` or `legato server`, or point --server / LEGATO_SERVER at it"
        )
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        result.message = f"the server at {target} did not answer in time ({message})"
    return result


def _transport_hint(details: str, target: str, tls: bool | None) -> str:
    """What to fix when the TLS handshake (or its absence) is why a call failed."""
    host = target.rpartition(":")[0].strip("[]") or target
    if "CERTIFICATE_VERIFY_FAILED" in details:
        return (
            "its certificate is not signed by the CA given with --ca (LEGATO_CA); give the CA "
            "that signed the server's certificate"
        )
    if "WRONG_VERSION_NUMBER" in details:
        return (
            "it does not serve TLS; drop --ca/--cert/--key (LEGATO_CA ...) or start the server "
            "with --tls-cert and --tls-key"
        )
    if "Hostname Verification" in details or "not in peer certificate" in details:
        return (
            f"its certificate does not name {host!r}; connect with a name it has, or make one "
            f"that does (`legato certs create --host {host}`)"
        )
    if "Socket closed" in details or "Connection reset" in details:
        if tls is False:
            return (
                "it closed the connection at once; if it serves TLS, give the CA that signed "
                "its certificate with --ca (LEGATO_CA)"
            )
        if tls:
            return (
                "it closed the connection during the TLS handshake; if it requires client "
                "certificates (mTLS), give --cert and --key (LEGATO_CERT, LEGATO_KEY) with a "
                "certificate signed by its --client-ca"
            )
    return ""


def _decode_details(result: RpcError, blob: bytes) -> None:
    status = status_pb2.Status.FromString(blob)
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            result.reason = info.reason
            result.metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            result.field_violations = [
                FieldViolation(v.field, v.description) for v in bad.field_violations
            ]
