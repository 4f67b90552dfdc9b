"""Runs as Python objects: a :class:`RunHandle` to wait for, follow, cancel or read a run,
and :class:`Run`, :class:`StepRun`, :class:`LogLine` and :class:`StepOutput` for what it
returns. ::

    run = client.run("etl", params={"since_days": 7})   # a RunHandle
    finished = run.wait(timeout=600)                     # a Run, once it has ended
    if finished.status == RunStatus.SUCCEEDED:
        totals = run.output("totals").to_pandas()        # the step's whole table
    for line in run.logs(step="load"):
        print(line.time, line.step, line.attempt, line.text)

A :class:`Run` is a snapshot (``run.get()`` takes another); the handle holds only the id.
The same objects come from :class:`legato.AsyncClient`, whose handle's methods are
coroutines (:class:`legato.aio.AsyncRunHandle`)."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from legato.errors import DeadlineExceeded, MissingDependency, RunFailed, RunWaitTimeout
from legato.statuses import FailureKind, LogStream, RunStatus, StepStatus, TriggerKind, enum_value
from legato.v1 import run_pb2
from legato.v1 import run_service_pb2 as runs

if TYPE_CHECKING:
    import pandas

    from legato.client import Client

__all__ = [
    "LogLine",
    "OutputFile",
    "Run",
    "RunHandle",
    "StepOutput",
    "StepOutputData",
    "StepRun",
    "arrow_table",
    "pandas_frame",
    "require_pandas",
]

PANDAS_EXTRA = "pandas"
"""The extra that installs what :meth:`StepOutput.to_pandas` needs."""


def _time(message: Message, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    moment: datetime = getattr(message, name).ToDatetime(tzinfo=UTC)
    return moment


def _duration(message: Message, name: str) -> timedelta | None:
    if not message.HasField(name):
        return None
    span: timedelta = getattr(message, name).ToTimedelta()
    return span


def _optional(message: Message, name: str) -> int | None:
    return int(getattr(message, name)) if message.HasField(name) else None


def struct_to_python(value: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict, keeping its order; whole numbers come back as ints."""
    return {key: _value(item) for key, item in value.fields.items()}


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_python(value.struct_value)
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) <= 2**53 else number
    if kind in ("string_value", "bool_value"):
        return getattr(value, kind)
    return None


def _row(row: struct_pb2.Struct, columns: Sequence[run_pb2.Column]) -> dict[str, Any]:
    """A preview row with its values in the table's column order."""
    values = struct_to_python(row)
    ordered = {c.name: values.pop(c.name) for c in columns if c.name in values}
    return {**ordered, **values}


@dataclass(frozen=True)
class LogLine:
    """One line of a run's log: ``step`` is empty for the run's own lines (started,
    finished), ``stream`` says whether Legato wrote it or the step printed it."""

    seq: int
    time: datetime | None
    step: str
    attempt: int
    stream: LogStream
    text: str

    @classmethod
    def from_proto(cls, line: run_pb2.LogLine) -> LogLine:
        return cls(
            seq=line.seq,
            time=_time(line, "time"),
            step=line.step,
            attempt=line.attempt,
            stream=enum_value(LogStream, line.stream),
            text=line.text,
        )

    def __str__(self) -> str:
        when = f"{self.time:%Y-%m-%d %H:%M:%S}Z " if self.time else ""
        where = f"[{self.step}#{self.attempt}] " if self.step else ""
        return f"{when}{where}{self.text}"


@dataclass(frozen=True)
class StepRun:
    """A step of a run: its latest attempt's status, agent, records and error, and why
    it waits when it is not running yet (``waiting_reason``)."""

    name: str
    kind: str
    status: StepStatus
    attempt: int
    agent: str
    records_in: int | None
    records_out: int | None
    error: str
    failure_kind: FailureKind
    waiting_reason: str
    child_run_id: str
    start_time: datetime | None
    end_time: datetime | None
    duration: timedelta | None
    proto: run_pb2.StepRun = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, step: run_pb2.StepRun) -> StepRun:
        return cls(
            name=step.name,
            kind=step.kind,
            status=enum_value(StepStatus, step.status),
            attempt=step.attempt,
            agent=step.agent,
            records_in=_optional(step, "records_in"),
            records_out=_optional(step, "records_out"),
            error=step.error,
            failure_kind=enum_value(FailureKind, step.failure_kind),
            waiting_reason=step.waiting_reason,
            child_run_id=step.child_run_id,
            start_time=_time(step, "start_time"),
            end_time=_time(step, "end_time"),
            duration=_duration(step, "duration"),
            proto=step,
        )


@dataclass(frozen=True)
class Run:
    """A run as the server last described it. ``steps`` maps step names to
    :class:`StepRun` in DAG order (empty in the lists of ``client.list_runs``)."""

    id: str
    pipeline: str
    version: int
    status: RunStatus
    trigger: TriggerKind
    params: dict[str, Any]
    error: str
    waiting_reason: str
    create_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    duration: timedelta | None
    steps: Mapping[str, StepRun]
    proto: run_pb2.Run = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, run: run_pb2.Run) -> Run:
        return cls(
            id=run.id,
            pipeline=run.pipeline,
            version=run.version,
            status=enum_value(RunStatus, run.status),
            trigger=enum_value(TriggerKind, run.trigger.kind),
            params=struct_to_python(run.params),
            error=run.error,
            waiting_reason=run.waiting_reason,
            create_time=_time(run, "create_time"),
            start_time=_time(run, "start_time"),
            end_time=_time(run, "end_time"),
            duration=_duration(run, "duration"),
            steps={step.name: StepRun.from_proto(step) for step in run.steps},
            proto=run,
        )

    @property
    def ended(self) -> bool:
        return self.status.ended

    @property
    def succeeded(self) -> bool:
        return self.status == RunStatus.SUCCEEDED

    def check(self) -> Run:
        """This run, if it succeeded; else raises :class:`legato.RunFailed` naming its
        error and the steps that failed."""
        if not self.succeeded:
            raise RunFailed(self)
        return self


@dataclass(frozen=True)
class OutputFile:
    """A file a step produced (a chart), or the artifact of its table."""

    id: str
    name: str
    media_type: str
    size_bytes: int
    sha256: str

    @classmethod
    def from_proto(cls, artifact: run_pb2.Artifact) -> OutputFile:
        return cls(
            id=artifact.id,
            name=artifact.name,
            media_type=artifact.media_type,
            size_bytes=artifact.size_bytes,
            sha256=artifact.sha256,
        )


@dataclass(frozen=True)
class StepOutputData:
    """What a step returned: a table (``rows``, ``columns`` and the first rows in
    ``preview``), a dict of ``values``, and ``files``."""

    run_id: str
    step: str
    rows: int | None
    """Rows of its table; None when it returned no table."""
    columns: dict[str, str]
    """Column name → Arrow type (``int64``, ``string``, ``timestamp[us, tz=UTC]``)."""
    values: dict[str, Any]
    artifact_id: str
    files: tuple[OutputFile, ...]
    preview: list[dict[str, Any]]
    """The first rows (``limit`` of ``output()``), for a look; ``to_pandas()`` has all."""
    proto: runs.GetStepOutputResponse = field(repr=False, compare=False)

    @staticmethod
    def fields_from_proto(
        run_id: str, step: str, response: runs.GetStepOutputResponse
    ) -> dict[str, Any]:
        summary = response.summary
        return {
            "run_id": run_id,
            "step": step,
            "rows": _optional(summary, "rows"),
            "columns": {column.name: column.type for column in summary.columns},
            "values": struct_to_python(summary.values),
            "artifact_id": summary.artifact_id,
            "files": tuple(OutputFile.from_proto(a) for a in summary.artifacts),
            "preview": [_row(row, summary.columns) for row in response.rows],
            "proto": response,
        }

    @property
    def has_table(self) -> bool:
        return bool(self.artifact_id)

    def table_artifact(self) -> str:
        """The id of the table's artifact; ``ValueError`` saying what the step returned
        when it returned no table."""
        if self.artifact_id:
            return self.artifact_id
        returned = f"values {sorted(self.values)}" if self.values else "nothing"
        raise ValueError(
            f"step {self.step!r} of run {self.run_id} returned no table (it returned "
            f"{returned}); read its values with .values"
        )

    def file_named(self, name: str) -> OutputFile:
        for item in self.files:
            if item.name == name:
                return item
        names = ", ".join(repr(item.name) for item in self.files) or "none"
        raise KeyError(
            f"step {self.step!r} of run {self.run_id} produced no file {name!r}; its files: {names}"
        )


def _missing(modules: Sequence[str]) -> list[str]:
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


def arrow_table(data: bytes) -> Any:
    """An Arrow IPC file (or stream) as a ``pyarrow.Table``."""
    missing = _missing(["pyarrow"])
    if missing:
        raise MissingDependency("reading a step's table", missing, PANDAS_EXTRA)
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.ipc as ipc  # type: ignore[import-untyped]

    buffer = pa.py_buffer(data)
    try:
        return ipc.open_file(buffer).read_all()
    except pa.ArrowInvalid:
        return ipc.open_stream(buffer).read_all()


def require_pandas() -> None:
    """Raise :class:`legato.MissingDependency` unless pandas and pyarrow are installed."""
    missing = _missing(["pandas", "pyarrow"])
    if missing:
        raise MissingDependency("to_pandas()", missing, PANDAS_EXTRA)


def pandas_frame(data: bytes) -> pandas.DataFrame:
    """An Arrow IPC file as a pandas DataFrame."""
    require_pandas()
    frame: pandas.DataFrame = arrow_table(data).to_pandas()
    return frame


@dataclass(frozen=True)
class StepOutput(StepOutputData):
    """A step's output, read through a :class:`legato.Client`: ``to_pandas()`` and
    ``to_arrow()`` download the whole table (the Arrow artifact the step wrote, not the
    preview); ``save()`` writes its files."""

    client: Client = field(repr=False, compare=False)

    def to_arrow(self) -> Any:
        """The whole table as a ``pyarrow.Table`` (needs pyarrow)."""
        _, data = self.client.read_artifact(self.table_artifact())
        return arrow_table(data)

    def to_pandas(self) -> pandas.DataFrame:
        """The whole table as a pandas DataFrame (needs pandas and pyarrow:
        ``pip install 'legato[pandas]'``)."""
        require_pandas()
        _, data = self.client.read_artifact(self.table_artifact())
        return pandas_frame(data)

    def read_file(self, name: str) -> bytes:
        """The content of the file ``name`` the step produced."""
        _, data = self.client.read_artifact(self.file_named(name).id)
        return data

    def save(self, directory: str | Path) -> list[Path]:
        """Write the step's files into ``directory`` (made if missing); their paths."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        saved = []
        for item in self.files:
            path = target / Path(item.name).name
            self.client.download_artifact(item.id, path)
            saved.append(path)
        return saved


class RunHandle:
    """A run of a :class:`legato.Client`, by id: ``client.run(...)`` returns one, and
    ``client.run_handle(run_id)`` makes one for a run started elsewhere."""

    def __init__(self, client: Client, run_id: str, *, created: bool = True) -> None:
        self.client = client
        self.id = run_id
        self.created = created
        """False when the request id had started this run before (nothing new began)."""

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r})"

    def get(self) -> Run:
        """The run now, with its steps."""
        return Run.from_proto(self.client.get_run(self.id))

    def wait(self, timeout: float | None = None, *, check: bool = False) -> Run:
        """Block until the run ends and return it. ``timeout`` (seconds) raises
        :class:`legato.RunWaitTimeout` saying what the run waits for; ``check`` raises
        :class:`legato.RunFailed` unless it succeeded."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            last: run_pb2.Run | None = None
            try:
                for event in self.client.watch_run(self.id, include_logs=False, timeout=remaining):
                    if event.HasField("run"):
                        last = event.run
            except DeadlineExceeded:
                raise RunWaitTimeout(self.get(), timeout or 0.0) from None
            # The stream ends once the run has, with the whole run as its last message.
            run = Run.from_proto(last) if last is not None else self.get()
            if run.ended or run.status == RunStatus.UNSPECIFIED:
                return run.check() if check else run

    def cancel(self, reason: str = "") -> Run:
        """Cancel the run; a run that had already ended comes back unchanged."""
        return Run.from_proto(self.client.cancel_run(self.id, reason=reason))

    def rerun(self, *, all_steps: bool = False, latest_version: bool = False) -> RunHandle:
        """A new run from this finished one (its failed steps, or ``all_steps``)."""
        run = self.client.rerun_run(self.id, all_steps=all_steps, latest_version=latest_version)
        return RunHandle(self.client, run.id)

    def logs(self, step: str = "", *, attempt: int = 0, follow: bool = False) -> Iterator[LogLine]:
        """The run's log lines in order (with ``step``, only that step's; with ``attempt``
        only that attempt's). ``follow`` goes on with new lines until the run ends."""
        if not follow:
            for line in self.client.get_run_logs(self.id, step=step, attempt=attempt):
                yield LogLine.from_proto(line)
            return
        for event in self.client.watch_run(self.id, include_logs=True):
            if event.HasField("log") and _wanted(event.log, step, attempt):
                yield LogLine.from_proto(event.log)

    def output(self, step: str, *, limit: int = 20) -> StepOutput:
        """What ``step`` returned, with its first ``limit`` rows in ``preview``."""
        response = self.client.get_step_output(self.id, step, limit=limit)
        return StepOutput(
            **StepOutputData.fields_from_proto(self.id, step, response), client=self.client
        )

    def events(self, *, include_logs: bool = True) -> Iterator[runs.WatchRunResponse]:
        """The raw events of ``client.watch_run`` until the run ends."""
        return self.client.watch_run(self.id, include_logs=include_logs)


def _wanted(line: run_pb2.LogLine, step: str, attempt: int) -> bool:
    return (not step or line.step == step) and (not attempt or line.attempt == attempt)
