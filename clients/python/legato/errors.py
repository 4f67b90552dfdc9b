"""The SDK's exceptions. A failed call raises ``RpcError`` with the gRPC status, the
server's ``ErrorInfo`` reason and, for invalid requests, every field violation; it is
raised as the subclass of its status, so ``except legato.NotFound`` catches a missing
pipeline or run and ``except legato.RpcError`` still catches every failed call::

    Exception
    ├── RpcError                    a call failed: .code .reason .message .metadata .violations
    │   ├── InvalidArgument         INVALID_ARGUMENT
    │   │   └── InvalidSpec         INVALID_ARGUMENT, reason INVALID_PIPELINE_SPEC
    │   ├── NotFound                NOT_FOUND
    │   ├── AlreadyExists           ALREADY_EXISTS
    │   ├── Conflict                ABORTED (lost a race with another change; retry)
    │   ├── FailedPrecondition      FAILED_PRECONDITION (e.g. an archived pipeline)
    │   ├── LimitExceeded           RESOURCE_EXHAUSTED
    │   ├── Unauthenticated         UNAUTHENTICATED (no token, or an unknown, revoked, expired one)
    │   ├── PermissionDenied        PERMISSION_DENIED (a token without the role)
    │   ├── Unavailable             UNAVAILABLE (no server there, or its database is restarting)
    │   ├── DeadlineExceeded        DEADLINE_EXCEEDED
    │   ├── Unimplemented           UNIMPLEMENTED
    │   ├── Cancelled               CANCELLED
    │   └── InternalError           INTERNAL, UNKNOWN, DATA_LOSS (a server bug: its log has the id)
    ├── RunFailed                   RunHandle.wait(check=True) / Run.check(): it did not succeed
    ├── RunWaitTimeout (TimeoutError)  RunHandle.wait(timeout=...) ran out, the run still going
    └── MissingDependency (ImportError)  StepOutput.to_pandas() without pandas or pyarrow

Problems a spec file or a ``legato.Pipeline`` has before it reaches the server are
``legato.spec.SpecFormatError`` (one ``FILE:LINE: path: message`` per problem)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from google.rpc import error_details_pb2, status_pb2

if TYPE_CHECKING:
    from legato.runs import Run

__all__ = [
    "AlreadyExists",
    "Cancelled",
    "Conflict",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "InternalError",
    "InvalidArgument",
    "InvalidSpec",
    "LimitExceeded",
    "MissingDependency",
    "NotFound",
    "PermissionDenied",
    "RpcError",
    "RunFailed",
    "RunWaitTimeout",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "from_grpc_error",
]


@dataclass(frozen=True)
class FieldViolation:
    """One problem with one field, by its path in the request (``steps[2].needs[0]``)."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}" if self.field else self.description


@dataclass
class RpcError(Exception):
    """A call that failed. ``reason`` is the server's UPPER_SNAKE reason (``NOT_FOUND``,
    ``INVALID_PIPELINE_SPEC``, ...) or the status code's name when the server sent none;
    ``metadata`` the facts it added (the pipeline, the version); ``field_violations``
    (also ``violations``) every field of the request it refused, with why."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    @property
    def violations(self) -> list[FieldViolation]:
        """Every field violation the server listed (``BadRequest``); empty when none."""
        return self.field_violations


class InvalidArgument(RpcError):  # noqa: N818 - the status's name, as in the control plane
    """The request has a value the server cannot use; ``violations`` names each field."""


class InvalidSpec(InvalidArgument):
    """A pipeline spec that does not validate. ``violations`` lists every problem, each
    with its field path (``steps[1].needs[0]``) and what to write instead; ``str()`` is
    the server's summary (how many problems, and the first)."""


class NotFound(RpcError):  # noqa: N818
    """No such pipeline, version, run, step, token or agent."""


class AlreadyExists(RpcError):  # noqa: N818
    """Something of that name exists already (a token's name)."""


class Conflict(RpcError):  # noqa: N818
    """Another change won a race (ABORTED): read again and retry."""


class FailedPrecondition(RpcError):  # noqa: N818
    """The request is valid but not in this state (an archived pipeline, a run still
    active, a pipeline without a schedule)."""


class LimitExceeded(RpcError):  # noqa: N818
    """A request or answer over a limit (RESOURCE_EXHAUSTED)."""


class Unauthenticated(RpcError):  # noqa: N818
    """No token was sent, or the server does not know it (revoked, expired, mistyped)."""


class PermissionDenied(RpcError):  # noqa: N818
    """The token's role may not do this (e.g. a viewer applying a pipeline)."""


class Unavailable(RpcError):  # noqa: N818
    """The server cannot be reached, or its database is restarting (the client already
    retried for a while)."""


class DeadlineExceeded(RpcError):  # noqa: N818
    """The call took longer than its deadline (the client's ``timeout``)."""


class Unimplemented(RpcError):  # noqa: N818
    """The server does not serve this call (an older server)."""


class Cancelled(RpcError):  # noqa: N818
    """The call was cancelled before it finished."""


class InternalError(RpcError):
    """A bug in the server; its message carries an id to find the server's log entry."""


_CLASSES: dict[grpc.StatusCode, type[RpcError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNKNOWN: InternalError,
    grpc.StatusCode.DATA_LOSS: InternalError,
}
SPEC_REASON = "INVALID_PIPELINE_SPEC"


def error_class(code: grpc.StatusCode, reason: str) -> type[RpcError]:
    """The exception class a failure with ``code`` and ``reason`` is raised as."""
    if code == grpc.StatusCode.INVALID_ARGUMENT and reason == SPEC_REASON:
        return InvalidSpec
    return _CLASSES.get(code, RpcError)


class RunFailed(Exception):  # noqa: N818 - reads as what happened, like the statuses
    """A run that ended without succeeding, where success was asked for. ``run`` is the
    finished :class:`legato.runs.Run`."""

    def __init__(self, run: Run) -> None:
        self.run = run
        failed = [step for step in run.steps.values() if step.error]
        parts = [f"run {run.id} of pipeline {run.pipeline!r} {run.status.value}"]
        if run.error:
            parts.append(f": {run.error}")
        if failed:
            listed = "; ".join(f"{step.name}: {step.error}" for step in failed)
            parts.append(f" (failed steps — {listed})")
        super().__init__("".join(parts))


class RunWaitTimeout(TimeoutError):  # noqa: N818
    """``wait(timeout=...)`` ran out before the run ended; ``run`` is its state then
    (with ``waiting_reason`` when nothing is running)."""

    def __init__(self, run: Run, timeout: float) -> None:
        self.run = run
        self.timeout = timeout
        reasons = [run.waiting_reason] if run.waiting_reason else []
        reasons += [
            f"step {step.name!r} {step.waiting_reason}"
            for step in run.steps.values()
            if step.waiting_reason
        ]
        why = f" ({'; '.join(reasons)})" if reasons else ""
        super().__init__(
            f"run {run.id} of pipeline {run.pipeline!r} is still {run.status.value} after "
            f"{timeout:g}s{why}; wait longer, or look with `legato status {run.id}`"
        )


class MissingDependency(ImportError):  # noqa: N818
    """An optional package a method needs is not installed; the message says what to
    install."""

    def __init__(self, what: str, packages: Sequence[str], extra: str) -> None:
        names = " and ".join(packages)
        super().__init__(
            f"{what} needs {names}, which {'is' if len(packages) == 1 else 'are'} not "
            f"installed; install {'it' if len(packages) == 1 else 'them'} with "
            f"pip install 'legato[{extra}]' (or pip install {' '.join(packages)})"
        )


def from_grpc_error(error: grpc.RpcError, target: str, *, tls: bool | None = None) -> RpcError:
    """Convert a grpcio error (sync or ``grpc.aio``), decoding the rich status details
    when present, to the subclass of its status; ``tls`` (whether the channel used TLS)
    lets a failed connection say which flag to fix."""
    call: grpc.Call = error  # type: ignore[assignment]
    code = call.code()
    message = call.details() or code.name
    reason = code.name
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    for key, value in call.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            reason, metadata, violations = _decode_details(value, reason)
    hint = _transport_hint(message, target, tls) if code == grpc.StatusCode.UNAVAILABLE else ""
    if hint:
        message = f"cannot connect to the Legato server at {target}: {hint} ({message})"
    elif code == grpc.StatusCode.UNAVAILABLE and reason == "UNAVAILABLE":
        message = (
            f"cannot reach the Legato server at {target} ({message}); is it running? Start one "
            "with `legato up` or `legato server`, or point --server / LEGATO_SERVER at it"
        )
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"the server at {target} did not answer in time ({message})"
    return error_class(code, reason)(
        code=code,
        message=message,
        reason=reason,
        metadata=metadata,
        field_violations=violations,
    )


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


def _decode_details(blob: bytes, reason: str) -> tuple[str, dict[str, str], list[FieldViolation]]:
    """The reason, metadata and field violations of a ``google.rpc.Status``."""
    status = status_pb2.Status.FromString(blob)
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return reason, metadata, violations
