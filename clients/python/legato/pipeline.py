"""Pipelines as code: ``legato.Pipeline`` is a pipeline written in Python, field for
field the YAML format (docs/spec.md), that becomes the same ``PipelineSpec``.

    import legato

    etl = legato.Pipeline(
        name="etl",
        schedule=legato.Schedule("0 2 * * *", timezone="America/New_York", overlap="queue"),
        params={"since_days": legato.Param(int, default=1)},
        retry=legato.Retry(3, delay="60s"),
    )

    @etl.step(timeout="10m")
    def extract(params): ...

    @etl.transform(needs=[extract], memory="2Gi")
    def clean(data):
        return data[data["amount"] > 0]

    etl.export("load", needs=[clean], table=legato.TableExport("warehouse", "orders"))

    etl.apply(client)            # or client.apply(etl); `legato apply -f this_file.py`

Problems are found when the spec is made (``to_spec``, ``apply``) and raised together as
``legato.spec.SpecFormatError``, each at the line of Python that wrote it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, Unpack, overload

from legato import steps as kinds
from legato.document import Located, Problems, argument_locations, build_spec, caller_location
from legato.options import (
    Limits,
    Notification,
    Param,
    Retry,
    RunExpectations,
    Schedule,
    SlackExport,
    TableExport,
    WebhookExport,
    param_type_name,
    trigger_document,
)
from legato.spec import LoadedSpec, dump_spec_yaml, spec_to_dict
from legato.steps import FunctionStep, Step, StepOptions, TransformFunctionStep
from legato.v1 import spec_pb2

if TYPE_CHECKING:
    from legato.aio import AsyncClient
    from legato.client import Client
    from legato.v1 import pipeline_service_pb2 as pipelines

__all__ = ["Pipeline"]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound=Step)


class Pipeline:
    """A pipeline written in Python. The keyword arguments are the spec's top-level
    fields; ``params`` maps names to :class:`legato.Param` (or a Python type),
    ``schedule`` is a :class:`legato.Schedule` (or a cron string), ``retry`` a
    :class:`legato.Retry` (or a number of retries). Steps come from ``steps=[...]`` or
    the methods named after the step kinds."""

    def __init__(
        self,
        name: str,
        *,
        description: str | None = None,
        labels: Mapping[str, str] | None = None,
        params: Mapping[str, Param | type | Mapping[str, Any]] | None = None,
        schedule: Schedule | str | Mapping[str, Any] | None = None,
        triggers: Sequence[Any] | None = None,
        limits: Limits | Mapping[str, Any] | None = None,
        retry: Retry | Mapping[str, Any] | int | None = None,
        notifications: Sequence[Notification | Mapping[str, Any]] | None = None,
        steps: Sequence[Step] | None = None,
        default_notifications: bool | None = None,
        expect: RunExpectations | Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.labels = labels
        self.params = params
        self.schedule = schedule
        self.triggers = triggers
        self.limits = limits
        self.retry = retry
        self.notifications = notifications
        self.default_notifications = default_notifications
        self.expect = expect
        self.steps: list[Step] = []
        self.location = caller_location()
        for item in steps or ():
            self.add(item)

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={[s.name for s in self.steps]})"

    # -- steps ------------------------------------------------------------------------

    def add(self, step: S) -> S:
        """Append ``step`` (made by ``legato.query``, ``@legato.step``, ...) and return it."""
        if not isinstance(step, Step):
            raise TypeError(
                f"pipeline {self.name!r}: {step!r} is not a step; make one with legato.query, "
                "legato.transform, legato.function, legato.export, legato.trigger or @legato.step"
            )
        self.steps.append(step)
        return step

    def query(
        self,
        name: str,
        /,
        *,
        connection: str,
        sql: str,
        parameters: Mapping[str, str] | None = None,
        **options: Unpack[StepOptions],
    ) -> Step:
        """Add a ``query`` step (see :func:`legato.query`)."""
        return self.add(
            kinds.query(name, connection=connection, sql=sql, parameters=parameters, **options)
        )

    def function(
        self,
        name: str,
        reference: str | Callable[..., Any],
        /,
        *,
        args: Mapping[str, Any] | None = None,
        **options: Unpack[StepOptions],
    ) -> Step:
        """Add a ``function`` step calling ``"package.module:function"``."""
        return self.add(kinds.function(name, reference, args=args, **options))

    @overload
    def step(self, fn: Callable[P, R], /) -> FunctionStep[P, R]: ...
    @overload
    def step(
        self,
        /,
        *,
        name: str | None = None,
        args: Mapping[str, Any] | None = None,
        **options: Unpack[StepOptions],
    ) -> Callable[[Callable[P, R]], FunctionStep[P, R]]: ...
    def step(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        args: Mapping[str, Any] | None = None,
        **options: Unpack[StepOptions],
    ) -> FunctionStep[P, R] | Callable[[Callable[P, R]], FunctionStep[P, R]]:
        """Add a Python function as a ``function`` step (see :func:`legato.step`)."""

        def decorate(target: Callable[P, R]) -> FunctionStep[P, R]:
            return self.add(kinds.step(name=name, args=args, **options)(target))

        return decorate(fn) if fn is not None else decorate

    @overload
    def transform(self, name: str, /, *, code: str, **options: Unpack[StepOptions]) -> Step: ...
    @overload
    def transform(self, fn: Callable[P, R], /) -> TransformFunctionStep[P, R]: ...
    @overload
    def transform(
        self, /, *, name: str | None = None, **options: Unpack[StepOptions]
    ) -> Callable[[Callable[P, R]], TransformFunctionStep[P, R]]: ...
    def transform(
        self,
        first: str | Callable[P, R] | None = None,
        /,
        *,
        code: str | None = None,
        name: str | None = None,
        **options: Unpack[StepOptions],
    ) -> (
        Step | TransformFunctionStep[P, R] | Callable[[Callable[P, R]], TransformFunctionStep[P, R]]
    ):
        """Add a ``transform`` step: ``transform("totals", code="result = ...")`` or a
        decorated function (see :func:`legato.transform`)."""
        if isinstance(first, str):
            if code is None:
                raise TypeError(
                    f"transform {first!r} needs its code: .transform({first!r}, code='...'), "
                    "or decorate a function with @pipeline.transform"
                )
            return self.add(kinds.transform(first, code=code, **options))
        if code is not None:
            raise TypeError(
                "code= is for transform(name, code=...); a decorated function is the code"
            )

        def decorate(target: Callable[P, R]) -> TransformFunctionStep[P, R]:
            return self.add(kinds.transform(name=name, **options)(target))

        return decorate(first) if first is not None else decorate

    def export(
        self,
        name: str,
        /,
        *,
        input: Step | str | None = None,
        table: TableExport | Mapping[str, Any] | None = None,
        webhook: WebhookExport | Mapping[str, Any] | None = None,
        slack: SlackExport | Mapping[str, Any] | None = None,
        **options: Unpack[StepOptions],
    ) -> Step:
        """Add an ``export`` step (see :func:`legato.export`)."""
        return self.add(
            kinds.export(name, input=input, table=table, webhook=webhook, slack=slack, **options)
        )

    def trigger(
        self,
        name: str,
        /,
        *,
        pipeline: str | Pipeline,
        params: Mapping[str, str] | None = None,
        wait: bool | None = None,
        **options: Unpack[StepOptions],
    ) -> Step:
        """Add a ``trigger`` step starting another pipeline (see :func:`legato.trigger`)."""
        return self.add(kinds.trigger(name, pipeline=pipeline, params=params, wait=wait, **options))

    # -- the spec ---------------------------------------------------------------------

    def document(self, problems: Problems) -> Located:
        """The pipeline as the dicts and lists a YAML file of it would hold."""
        lines = argument_locations(self.location, ["name"])
        located = Located(self.location, {"name": self.name}, fields=lines)
        fields: dict[str, Any] = {
            "description": self.description,
            "labels": self.labels,
            "params": _params(self.params),
            "schedule": {"cron": self.schedule}
            if isinstance(self.schedule, str)
            else self.schedule,
            "triggers": (
                None
                if self.triggers is None
                else [trigger_document(t, problems) for t in self.triggers]
            ),
            "limits": self.limits,
            "retry": {"max_retries": self.retry}
            if isinstance(self.retry, int) and not isinstance(self.retry, bool)
            else self.retry,
            "notifications": self.notifications,
            "default_notifications": self.default_notifications,
            "expect": self.expect,
        }
        located.update({key: value for key, value in fields.items() if value is not None})
        located["steps"] = [
            item.document(problems, ("steps", index)) for index, item in enumerate(self.steps)
        ]
        return located

    def to_loaded_spec(self) -> LoadedSpec:
        """The spec with a source map into the file the pipeline is written in (what
        ``legato apply`` needs to print the server's violations at their lines); raises
        ``SpecFormatError`` with every problem."""
        problems = Problems()
        return build_spec(self.document(problems), problems)

    def to_spec(self) -> spec_pb2.PipelineSpec:
        """The ``PipelineSpec``: equal to ``load_spec_text`` of the same pipeline in YAML.
        Raises ``legato.spec.SpecFormatError`` with every problem found, each at its line."""
        return self.to_loaded_spec().spec

    def to_dict(self) -> dict[str, Any]:
        """The spec as the plain dicts of its YAML, in canonical form."""
        return spec_to_dict(self.to_spec())

    def to_yaml(self) -> str:
        """The spec as YAML text (what ``legato show`` prints once it is applied)."""
        return dump_spec_yaml(self.to_spec())

    # -- the server -------------------------------------------------------------------

    @overload
    def apply(self, client: Client, *, message: str = "") -> pipelines.ApplyPipelineResponse: ...
    @overload
    def apply(
        self, client: AsyncClient, *, message: str = ""
    ) -> Awaitable[pipelines.ApplyPipelineResponse]: ...
    def apply(
        self, client: Client | AsyncClient, *, message: str = ""
    ) -> pipelines.ApplyPipelineResponse | Awaitable[pipelines.ApplyPipelineResponse]:
        """Save this pipeline as its next version (``created``) or find it unchanged:
        ``client.apply(self)``. With an :class:`legato.AsyncClient`, await it."""
        return client.apply(self, message=message)

    @overload
    def validate(self, client: Client) -> pipelines.ValidatePipelineResponse: ...
    @overload
    def validate(self, client: AsyncClient) -> Awaitable[pipelines.ValidatePipelineResponse]: ...
    def validate(
        self, client: Client | AsyncClient
    ) -> pipelines.ValidatePipelineResponse | Awaitable[pipelines.ValidatePipelineResponse]:
        """Check the pipeline as ``apply`` would, saving nothing."""
        return client.validate(self)


def _params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {
        name: {"type": param_type_name(value)} if isinstance(value, type) else value
        for name, value in params.items()
    }
