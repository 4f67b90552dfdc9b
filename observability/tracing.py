"""OpenTelemetry set-up shared by the control plane and the agent.

Exporting follows the standard variables: nothing is exported unless
``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` is set or ``OTEL_TRACES_EXPORTER`` names an
exporter (``otlp`` or ``console``); ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`` picks
``grpc`` (default) or ``http/protobuf``; ``OTEL_SERVICE_NAME`` overrides the service name.
Needs opentelemetry-sdk (server and agent extras): it lives outside the client package,
which a `pip install legato` gets without it.

A run is one trace whose ids the control plane chose when it created the run (they are
stored with it and handed to agents as a W3C ``traceparent``), so spans recorded at
different moments, in different processes, share one tree. ``Tracing.span`` records a
finished span with explicit times and, for the run's root span, explicit ids."""

from __future__ import annotations

import contextvars
import os
import random
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

__all__ = ["Tracing", "parse_traceparent"]

_forced_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "legato_forced_ids", default=None
)


class _Ids(IdGenerator):
    """Random ids, except while a span with ids chosen in advance is being created."""

    def generate_span_id(self) -> int:
        forced = _forced_ids.get()
        return forced[1] if forced else random.getrandbits(64)

    def generate_trace_id(self) -> int:
        forced = _forced_ids.get()
        return forced[0] if forced else random.getrandbits(128)


def _exporter() -> SpanExporter | None:
    env = os.environ
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    name = env.get("OTEL_TRACES_EXPORTER", "otlp" if endpoint else "none").strip().lower()
    if name in ("", "none"):
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(
            f"OTEL_TRACES_EXPORTER={name!r} is not supported; use otlp, console or none"
        )
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        return Grpc()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

        return Http()
    raise ValueError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use grpc or http/protobuf"
    )


def parse_traceparent(value: str) -> tuple[int, int] | None:
    """(trace id, span id) of a W3C ``traceparent``, or None when it is not one."""
    parts = value.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        return int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None


class Tracing:
    """Records spans for one process (control plane or agent); a no-op when exporting is
    not configured."""

    def __init__(self, service_name: str) -> None:
        exporter = _exporter()
        self._provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None
        if exporter is not None:
            resource = Resource.create(
                {"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}
            )
            self._provider = TracerProvider(resource=resource, id_generator=_Ids())
            self._provider.add_span_processor(BatchSpanProcessor(exporter))
            self._tracer = self._provider.get_tracer("legato")

    def span(
        self,
        name: str,
        *,
        trace_id: str,
        start: datetime,
        end: datetime,
        parent_span_id: str = "",
        span_id: str = "",
        attributes: Mapping[str, Any] | None = None,
        error: str = "",
    ) -> None:
        """Record a finished span. ``span_id`` forces the span's own id (the run's root
        span); ``parent_span_id`` makes it a child of a span recorded elsewhere."""
        if self._tracer is None or not trace_id:
            return
        context = Context()
        if parent_span_id:
            parent = SpanContext(
                trace_id=int(trace_id, 16),
                span_id=int(parent_span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            context = trace.set_span_in_context(NonRecordingSpan(parent), context)
        token = _forced_ids.set((int(trace_id, 16), int(span_id, 16))) if span_id else None
        try:
            recorded = self._tracer.start_span(
                name,
                context=context,
                start_time=_nanos(start),
                attributes={k: v for k, v in (attributes or {}).items() if v is not None},
            )
        finally:
            if token is not None:
                _forced_ids.reset(token)
        if error:
            recorded.set_status(Status(StatusCode.ERROR, error[:500]))
        recorded.end(end_time=_nanos(end))

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.force_flush(5_000)
            self._provider.shutdown()


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)
