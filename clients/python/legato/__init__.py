"""The legato SDK and CLI.

``Client`` (and ``AsyncClient``, over ``grpc.aio``) is the SDK's entry point;
``Pipeline`` and the step builders (``step``, ``transform``, ``query``, ``function``,
``export``, ``trigger``) write pipelines in Python; ``RunHandle``, ``Run`` and the status
enums read runs; the exceptions of ``legato.errors`` say what failed. ``legato.spec``
reads and writes the YAML format and ``legato.v1`` holds the generated stubs. Names are
loaded on first use, so ``import legato.spec`` does not load gRPC. See docs/sdk.md."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from legato.aio import AsyncClient, AsyncRunHandle, AsyncStepOutput
    from legato.client import Client
    from legato.codefiles import load_pipeline_file, specs_from_file
    from legato.errors import (
        AlreadyExists,
        Cancelled,
        Conflict,
        DeadlineExceeded,
        FailedPrecondition,
        FieldViolation,
        InternalError,
        InvalidArgument,
        InvalidSpec,
        LimitExceeded,
        MissingDependency,
        NotFound,
        PermissionDenied,
        RpcError,
        RunFailed,
        RunWaitTimeout,
        Unauthenticated,
        Unavailable,
        Unimplemented,
    )
    from legato.options import (
        DatabaseTrigger,
        Dst,
        DurationExpectation,
        EmailChannel,
        EventTrigger,
        Limits,
        Notification,
        PagerDutyChannel,
        Param,
        RecordsExpectation,
        Retry,
        RunExpectations,
        Schedule,
        SlackChannel,
        SlackExport,
        StepExpectations,
        TableExport,
        WebhookChannel,
        WebhookExport,
        WebhookTrigger,
    )
    from legato.pipeline import Pipeline
    from legato.runs import LogLine, OutputFile, Run, RunHandle, StepOutput, StepRun
    from legato.spec import SpecFormatError
    from legato.statuses import FailureKind, LogStream, RunStatus, StepStatus, TriggerKind
    from legato.steps import Step, export, function, query, step, transform, trigger

_EXPORTS = {
    "legato.aio": ("AsyncClient", "AsyncRunHandle", "AsyncStepOutput"),
    "legato.client": ("Client",),
    "legato.codefiles": ("load_pipeline_file", "specs_from_file"),
    "legato.errors": (
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
    ),
    "legato.options": (
        "DatabaseTrigger",
        "Dst",
        "DurationExpectation",
        "EmailChannel",
        "EventTrigger",
        "Limits",
        "Notification",
        "PagerDutyChannel",
        "Param",
        "RecordsExpectation",
        "Retry",
        "RunExpectations",
        "Schedule",
        "SlackChannel",
        "SlackExport",
        "StepExpectations",
        "TableExport",
        "WebhookChannel",
        "WebhookExport",
        "WebhookTrigger",
    ),
    "legato.pipeline": ("Pipeline",),
    "legato.spec": ("SpecFormatError",),
    "legato.runs": ("LogLine", "OutputFile", "Run", "RunHandle", "StepOutput", "StepRun"),
    "legato.statuses": ("FailureKind", "LogStream", "RunStatus", "StepStatus", "TriggerKind"),
    "legato.steps": ("Step", "export", "function", "query", "step", "transform", "trigger"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "AsyncRunHandle",
    "AsyncStepOutput",
    "Cancelled",
    "Client",
    "Conflict",
    "DatabaseTrigger",
    "DeadlineExceeded",
    "Dst",
    "DurationExpectation",
    "EmailChannel",
    "EventTrigger",
    "FailedPrecondition",
    "FailureKind",
    "FieldViolation",
    "InternalError",
    "InvalidArgument",
    "InvalidSpec",
    "LimitExceeded",
    "Limits",
    "LogLine",
    "LogStream",
    "MissingDependency",
    "NotFound",
    "Notification",
    "OutputFile",
    "PagerDutyChannel",
    "Param",
    "PermissionDenied",
    "Pipeline",
    "RecordsExpectation",
    "Retry",
    "RpcError",
    "Run",
    "RunExpectations",
    "RunFailed",
    "RunHandle",
    "RunStatus",
    "RunWaitTimeout",
    "Schedule",
    "SlackChannel",
    "SlackExport",
    "SpecFormatError",
    "Step",
    "StepExpectations",
    "StepOutput",
    "StepRun",
    "StepStatus",
    "TableExport",
    "TriggerKind",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "WebhookChannel",
    "WebhookExport",
    "WebhookTrigger",
    "export",
    "function",
    "load_pipeline_file",
    "query",
    "specs_from_file",
    "step",
    "transform",
    "trigger",
]
__version__ = "0.1.0"


_SUBMODULES = frozenset(
    {
        "aio",
        "client",
        "codefiles",
        "connection",
        "errors",
        "options",
        "pipeline",
        "runs",
        "spec",
        "statuses",
        "steps",
        "testing",
        "v1",
    }
)
"""Modules ``legato.<name>`` finds without an import of their own (``legato.spec``)."""


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"legato.{name}")
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'legato' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})
