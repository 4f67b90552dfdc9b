"""A step run on a connected agent from a notebook: ``step.run(on="near-warehouse")``.

The spec as the notebook has it goes to the control plane with ``RunService.TestStep``
(the given inputs as Arrow IPC streams and values); the control plane makes a test run of
that one step, routed to that agent only, where it runs with the agent's connections —
the credentials stay on the agent. The notebook follows the run with ``WatchRun``,
printing the step's lines as they come, then downloads the whole output table (the
Arrow artifact, not the preview) as a DataFrame. The server records the run with trigger
``test``: listed only on request (``legato runs --trigger test``, ``include_tests``), no
notifications, not counted by the pipeline's limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from legato.notebook.local import print_line
from legato.notebook.results import StepResult
from legato.notebook.tasks import limits_of, upstream_of
from legato.runs import Run, RunHandle
from legato.statuses import FailureKind, StepStatus
from legato.v1 import run_pb2, spec_pb2

if TYPE_CHECKING:
    from legato.notebook.pipelines import Step

__all__ = ["run_remote"]


def _stream_bytes(table: Any) -> bytes:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.ipc as ipc  # type: ignore[import-untyped]

    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def _spec_with_limits(
    step: Step, timeout: float | str | None, memory: int | str | None
) -> spec_pb2.PipelineSpec:
    """The pipeline's spec, with the step's limits overridden as asked."""
    from legato.spec.units import format_memory

    spec = spec_pb2.PipelineSpec()
    spec.CopyFrom(step.pipeline.spec)
    if timeout is None and memory is None:
        return spec
    seconds, limit = limits_of(spec, step.name, timeout, memory)
    target = next(s for s in spec.steps if s.name == step.name)
    if timeout is not None and seconds is not None:
        target.timeout.FromNanoseconds(int(seconds * 1e9))
    if memory is not None and limit is not None:
        target.memory = format_memory(limit)
    return spec


def run_remote(
    step: Step,
    agent: str,
    *,
    data: Any,
    inputs: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    timeout: float | str | None,
    memory: int | str | None,
) -> StepResult:
    from legato.client import Client

    pipeline = step.pipeline
    upstream = upstream_of(pipeline.spec, step.spec, data, inputs)
    given = {
        item.step: (b"" if item.table is None else _stream_bytes(item.table), item.values)
        for item in upstream
    }
    spec = _spec_with_limits(step, timeout, memory)
    client = pipeline.client or Client()
    try:
        started = client.test_step(
            spec, step.name, agent=agent, params=dict(params or {}), inputs=given
        )
        logs: list[str] = []
        last: run_pb2.Run | None = None
        for event in client.watch_run(started.id, include_logs=True):
            if (
                event.HasField("log")
                and event.log.step == step.name
                and event.log.stream != run_pb2.LOG_STREAM_SYSTEM  # the run log's own lines
            ):
                stream = "stderr" if event.log.stream == run_pb2.LOG_STREAM_STDERR else "stdout"
                logs.append(event.log.text)
                print_line(step.name, stream, event.log.text)
            elif event.HasField("run"):
                last = event.run
        handle = RunHandle(client, started.id)
        run = Run.from_proto(last) if last is not None and last.steps else handle.get()
        return _result(handle, run, step.name, logs)
    finally:
        if pipeline.client is None:
            client.close()


def _result(handle: RunHandle, run: Run, name: str, logs: list[str]) -> StepResult:
    state = run.steps[name]
    status = state.status.value
    data = None
    values: dict[str, Any] = {}
    if state.status == StepStatus.SUCCEEDED:
        output = handle.output(name, limit=1)
        values = dict(output.values)
        if output.has_table:
            data = output.to_pandas()
    return StepResult(
        step=name,
        status=status,
        data=data,
        values=values,
        records_in=state.records_in,
        records_out=state.records_out,
        logs=logs,
        duration=state.duration.total_seconds() if state.duration else 0.0,
        error=state.error,
        failure_kind=""
        if state.failure_kind == FailureKind.UNSPECIFIED
        else state.failure_kind.value,
        run_id=run.id,
    )
