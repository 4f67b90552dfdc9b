"""The API's enums as readable, str-valued Python enums: ``RunStatus.SUCCEEDED`` is
``"succeeded"`` (the word ``legato runs`` prints and the spec format uses).

Each member also compares equal to its proto number, so code that holds the generated
constants keeps working::

    RunStatus.SUCCEEDED == "succeeded"                       # True
    RunStatus.SUCCEEDED == run_pb2.RUN_STATUS_SUCCEEDED      # True
    RunStatus(run_pb2.RUN_STATUS_FAILED) is RunStatus.FAILED  # proto numbers convert
    RunStatus.SUCCEEDED.proto                                # 3, for a request

A member hashes as its string, so in sets and dict keys use members or strings, not
proto numbers (``.proto`` gives the number)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self, TypeVar

from legato.v1 import run_pb2, spec_pb2

__all__ = [
    "FailureKind",
    "LogStream",
    "ProtoEnum",
    "RunStatus",
    "StepStatus",
    "TriggerKind",
    "enum_value",
]


class ProtoEnum(StrEnum):
    """A str enum whose values are a proto enum's names in lower case without the
    prefix."""

    @property
    def proto(self) -> int:
        """The proto number of this value."""
        proto, prefix = _PROTO[type(self)]
        return int(proto.Value(prefix + self.value.upper()))

    @classmethod
    def from_proto(cls, number: int) -> Self:
        """The member of a proto number; a number this SDK does not know (a newer server)
        raises ``ValueError`` naming it."""
        proto, prefix = _PROTO[cls]
        try:
            name = proto.Name(number)
        except ValueError:
            raise ValueError(
                f"{number} is not a {cls.__name__} this SDK knows; upgrade the legato package"
            ) from None
        return cls(name.removeprefix(prefix).lower())

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return cls.from_proto(value)
        if isinstance(value, str):
            text = value.lower().removeprefix(_PROTO[cls][1].lower())
            for member in cls:
                if member.value == text:
                    return member
        return None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, int) and not isinstance(other, bool):
            return self.proto == other
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return str.__hash__(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class RunStatus(ProtoEnum):
    """Where a run is: queued → running → one of the ends (``ended``)."""

    UNSPECIFIED = "unspecified"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"

    @property
    def ended(self) -> bool:
        """Whether a run in this status is over."""
        return self not in (RunStatus.UNSPECIFIED, RunStatus.QUEUED, RunStatus.RUNNING)


class StepStatus(ProtoEnum):
    """Where a step of a run is: pending → ready → leased → running → one of the ends."""

    UNSPECIFIED = "unspecified"
    PENDING = "pending"
    READY = "ready"
    LEASED = "leased"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def ended(self) -> bool:
        """Whether a step in this status is over."""
        return self not in _STEP_ACTIVE


_STEP_ACTIVE = frozenset(
    {
        StepStatus.UNSPECIFIED,
        StepStatus.PENDING,
        StepStatus.READY,
        StepStatus.LEASED,
        StepStatus.RUNNING,
    }
)


class TriggerKind(ProtoEnum):
    """What started a run."""

    UNSPECIFIED = "unspecified"
    SCHEDULE = "schedule"
    EVENT = "event"
    WEBHOOK = "webhook"
    MANUAL = "manual"
    API = "api"
    BACKFILL = "backfill"
    RERUN = "rerun"
    PIPELINE = "pipeline"
    TEST = "test"


class LogStream(ProtoEnum):
    """Where a log line came from: Legato itself (``system``), or the step's output."""

    UNSPECIFIED = "unspecified"
    SYSTEM = "system"
    STDOUT = "stdout"
    STDERR = "stderr"


class FailureKind(ProtoEnum):
    """Why an attempt failed (what a retry policy's ``retry_on`` selects)."""

    UNSPECIFIED = "unspecified"
    ERROR = "error"
    TIMEOUT = "timeout"
    LOST = "lost"
    MEMORY = "memory"


E = TypeVar("E", bound=ProtoEnum)

_PROTO: dict[type[ProtoEnum], tuple[Any, str]] = {
    RunStatus: (run_pb2.RunStatus, "RUN_STATUS_"),
    StepStatus: (run_pb2.StepStatus, "STEP_STATUS_"),
    TriggerKind: (run_pb2.TriggerKind, "TRIGGER_KIND_"),
    LogStream: (run_pb2.LogStream, "LOG_STREAM_"),
    FailureKind: (spec_pb2.FailureKind, "FAILURE_KIND_"),
}
"""Each enum's proto enum and the prefix of its value names."""


def _check(enum: type[ProtoEnum]) -> None:
    """Every proto value has a member and every member a proto value (at import, so a
    regenerated proto with a new value fails the SDK's tests, not a user's run)."""
    proto, prefix = _PROTO[enum]
    names = {value.name.removeprefix(prefix).lower() for value in proto.DESCRIPTOR.values}
    members = {member.value for member in enum}
    if names != members:
        raise RuntimeError(f"{enum.__name__} is out of step with its proto: {names ^ members}")


for _enum in _PROTO:
    _check(_enum)


def enum_value(enum: type[E], number: int) -> E:
    """The member of ``number``; UNSPECIFIED for a number this SDK does not know (a newer
    server's), whose number the message's ``proto`` field still has."""
    try:
        return enum.from_proto(number)
    except ValueError:
        return enum("unspecified")
