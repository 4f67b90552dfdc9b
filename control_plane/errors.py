"""The control plane's exception tree. Domain code raises these; the error interceptor
(``control_plane.api.errors``) turns each into a gRPC status with a ``google.rpc.ErrorInfo``
reason, and ``InvalidSpec`` also into ``google.rpc.BadRequest`` field violations::

    LegatoError                      INTERNAL
    ├── InvalidArgument              INVALID_ARGUMENT
    │   └── InvalidSpec              INVALID_ARGUMENT  + BadRequest field violations
    ├── NotFound                     NOT_FOUND
    ├── Conflict                     ABORTED            (lost a race; retry)
    ├── AlreadyExists                ALREADY_EXISTS
    ├── FailedPrecondition           FAILED_PRECONDITION
    │   └── LeaseLost                FAILED_PRECONDITION (a report for a lease no longer current)
    ├── LimitExceeded                RESOURCE_EXHAUSTED
    ├── Unavailable                  UNAVAILABLE
    ├── Unimplemented                UNIMPLEMENTED (part of the v1 contract not served yet)
    ├── Unauthenticated              UNAUTHENTICATED (no credential, or one that is unknown,
    │                                                 revoked or expired)
    └── PermissionDenied             PERMISSION_DENIED (a credential without the role, or an
                                                       agent acting on what is not its own)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from control_plane.quoting import quote

__all__ = [
    "AlreadyExists",
    "Conflict",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "InvalidSpec",
    "LeaseLost",
    "LegatoError",
    "LimitExceeded",
    "NotFound",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "pipeline_not_found",
]


class LegatoError(Exception):
    """Base of every error the control plane reports to a caller.

    ``reason`` is an UPPER_SNAKE identifier clients may branch on (AIP-193);
    ``metadata`` adds string facts (the pipeline, the version) to the ErrorInfo."""

    reason: str = "INTERNAL"

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


@dataclass(frozen=True)
class FieldViolation:
    """One problem with one field of a request, by field path (``steps[2].needs[0]``)."""

    field: str
    description: str


class InvalidArgument(LegatoError):
    """A request field that cannot be used; ``violations`` (if any) name each field."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        *,
        violations: Sequence[FieldViolation] = (),
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations = list(violations)


class InvalidSpec(InvalidArgument):
    """A pipeline spec that does not validate; carries every violation found."""

    reason = "INVALID_PIPELINE_SPEC"

    def __init__(self, pipeline: str, violations: Sequence[FieldViolation]) -> None:
        count = len(violations)
        noun = "problem" if count == 1 else "problems"
        first = violations[0] if violations else None
        summary = f"; first: {first.field}: {first.description}" if first else ""
        super().__init__(
            f"pipeline spec {quote(pipeline)} has {count} {noun}{summary}",
            violations=violations,
            metadata={"pipeline": pipeline, "violations": str(count)},
        )


class NotFound(LegatoError):
    reason = "NOT_FOUND"


def pipeline_not_found(name: str) -> NotFound:
    """The error for a pipeline name that matches none."""
    return NotFound(
        f"pipeline {quote(name)} does not exist; `legato pipelines --archived` lists them all",
        reason="PIPELINE_NOT_FOUND",
        metadata={"pipeline": name},
    )


class Conflict(LegatoError):
    reason = "CONFLICT"


class AlreadyExists(LegatoError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(LegatoError):
    reason = "FAILED_PRECONDITION"


class LeaseLost(FailedPrecondition):
    reason = "LEASE_LOST"


class LimitExceeded(LegatoError):
    reason = "LIMIT_EXCEEDED"


class Unavailable(LegatoError):
    reason = "UNAVAILABLE"


class Unimplemented(LegatoError):
    reason = "UNIMPLEMENTED"


class Unauthenticated(LegatoError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(LegatoError):
    reason = "PERMISSION_DENIED"
