"""A pipeline loaded in a notebook (:func:`load`) and its steps: ``p.step("transform")
.run(data=df)`` runs one step here, ``.run(on="agent")`` on a connected agent through the
control plane, and ``p.test()`` runs the whole DAG here."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from legato.notebook.errors import NotebookError, StepFailed
from legato.notebook.results import StepResult, TestResult
from legato.notebook.tasks import did_you_mean
from legato.spec import LoadedSpec, SpecFormatError, SpecProblem, load_spec_file
from legato.v1 import spec_pb2

if TYPE_CHECKING:
    from legato.client import Client
    from legato.pipeline import Pipeline as CodePipeline

__all__ = ["Pipeline", "Step", "load"]

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def load(
    source: str | os.PathLike[str] | spec_pb2.PipelineSpec | CodePipeline,
    *,
    client: Client | None = None,
    version: int | None = None,
    name: str | None = None,
) -> Pipeline:
    """A pipeline to run steps of: a spec file (``.yaml``, ``.yml``, ``.json``), a
    pipelines-as-code module (``.py``; ``name=`` picks one when it defines several), a
    ``legato.Pipeline`` or ``PipelineSpec``, or the name of a pipeline on the server
    (``client`` or a ``legato.Client()`` from the usual LEGATO_* settings; ``version``
    pinned, else the latest). A file is checked as the server checks a spec on apply,
    and its problems are raised as ``SpecFormatError``, ``FILE:LINE: path: message``."""
    if isinstance(source, spec_pb2.PipelineSpec):
        return Pipeline(_checked(LoadedSpec(source, _empty_map(), "<spec>")), client=client)
    if not isinstance(source, str | os.PathLike):
        return Pipeline(_checked(source.to_loaded_spec()), client=client)
    text = os.fspath(source)
    path = Path(text)
    if path.suffix == ".py":
        return Pipeline(_checked(_from_module(text, name)), client=client, folder=path.parent)
    if path.suffix in SPEC_SUFFIXES or path.exists():
        return Pipeline(_checked(load_spec_file(text)), client=client, folder=path.parent)
    return _from_server(text, client, version)


def _empty_map() -> Any:
    from legato.spec.paths import SourceMap

    return SourceMap()


def _from_module(filename: str, name: str | None) -> LoadedSpec:
    from legato.codefiles import load_pipeline_file

    loaded = load_pipeline_file(filename)
    names = [item.spec.name for item in loaded]
    if name is not None:
        for item in loaded:
            if item.spec.name == name:
                return item
        raise NotebookError(
            f"{filename} defines no pipeline {name!r}{did_you_mean(name, names)}; "
            f"it defines {names}"
        )
    if len(loaded) > 1:
        raise NotebookError(f"{filename} defines {len(loaded)} pipelines {names}: pick one, name=")
    return loaded[0]


def _from_server(name: str, client: Client | None, version: int | None) -> Pipeline:
    from legato.client import Client

    own = client is None
    active = client or Client()
    try:
        found = active.get_pipeline_version(name, version or 0)
    finally:
        if own:
            active.close()
    loaded = LoadedSpec(found.spec, _empty_map(), f"{name} v{found.number}")
    return Pipeline(loaded, client=client, version=found.number)


def _checked(loaded: LoadedSpec) -> LoadedSpec:
    """The spec if the server would take it; else every violation at its line."""
    from control_plane.validation import validate_spec

    violations = validate_spec(loaded.spec)
    if violations:
        problems = [
            SpecProblem(v.field, loaded.source_map.line_for(v.field), v.description)
            for v in violations
        ]
        raise SpecFormatError(problems, loaded.filename)
    return loaded


class Pipeline:
    """A loaded pipeline: ``steps`` (names in dependency order), ``step(name)``,
    ``test(...)``. ``spec`` is its ``PipelineSpec``."""

    def __init__(
        self,
        loaded: LoadedSpec,
        *,
        client: Client | None = None,
        version: int | None = None,
        folder: Path | None = None,
    ) -> None:
        from control_plane.execution.resolver import RunPlan

        self.loaded = loaded
        self.spec = loaded.spec
        self.name = loaded.spec.name
        self.version = version
        self.client = client
        self.folder = folder
        self._plan = RunPlan(loaded.spec)
        self._steps = {s.name: s for s in loaded.spec.steps}

    @property
    def steps(self) -> list[str]:
        """The step names in the order a run decides them (dependencies first)."""
        return list(self._plan.order)

    def step(self, name: str) -> Step:
        if name not in self._steps:
            raise NotebookError(
                f"pipeline {self.name!r} has no step {name!r}{did_you_mean(name, self.steps)}; "
                f"its steps: {', '.join(self.steps)}"
            )
        return Step(self, self._steps[name])

    def module_path(self) -> list[Path]:
        """Where ``function`` steps' modules are imported from: the spec's folder and the
        current directory (then ``PYTHONPATH``), as on an agent started there."""
        return list(dict.fromkeys([self.folder or Path.cwd(), Path.cwd()]))

    def test(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        connections: Mapping[str, str] | None = None,
    ) -> TestResult:
        """Run the whole DAG here in dependency order (see :mod:`legato.notebook.dagruns`):
        ``inputs`` replace the outputs of the steps they name, which then do not run."""
        from legato.notebook.dagruns import run_dag

        return run_dag(self, inputs=inputs, params=params, connections=connections)

    def __repr__(self) -> str:
        shown = ", ".join(self.steps)
        where = f" v{self.version}" if self.version else ""
        return f"<legato pipeline {self.name!r}{where}: {shown}>"

    def _repr_html_(self) -> str:
        rows = []
        for name in self.steps:
            step = self._steps[name]
            kind = step.WhichOneof("kind") or ""
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td>{html.escape(kind)}</td>"
                f"<td>{html.escape(', '.join(step.needs))}</td>"
                f"<td><code>{html.escape(step.when)}</code></td></tr>"
            )
        return (
            f"<p><b>pipeline {html.escape(self.name)}</b></p><table><tr><th>step</th>"
            f"<th>kind</th><th>needs</th><th>when</th></tr>{''.join(rows)}</table>"
        )


class Step:
    """One step of a loaded pipeline."""

    def __init__(self, pipeline: Pipeline, spec: spec_pb2.Step) -> None:
        self.pipeline = pipeline
        self.spec = spec
        self.name = spec.name
        self.kind = spec.WhichOneof("kind") or ""
        self.needs = list(spec.needs)

    def __repr__(self) -> str:
        needs = f", needs {self.needs}" if self.needs else ""
        return f"<legato step {self.name!r} ({self.kind}{needs}) of {self.pipeline.name!r}>"

    def run(
        self,
        data: Any = None,
        *,
        inputs: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        connections: Mapping[str, str] | None = None,
        on: str | None = None,
        timeout: float | str | None = None,
        memory: int | str | None = None,
        check: bool = True,
    ) -> StepResult:
        """Run this step once and return its :class:`StepResult`.

        Here (no ``on``): in a child process with the agent's runner and step kinds,
        under the spec's ``timeout`` and ``memory`` (or these), with ``data`` as the
        output of the one step it needs (or ``inputs`` by step name: DataFrames, lists
        of dicts or dicts of values) and the connections it names from ``connections``
        or ``LEGATO_CONNECTION_<NAME>``. With ``on="agent"``: on that connected agent
        through the control plane, with the agent's connections, as a test run.

        A step that does not succeed raises :class:`StepFailed` (its ``result`` has the
        logs) unless ``check=False``."""
        if self.kind == "trigger":
            raise NotebookError(
                f"step {self.name!r} is a trigger step: it starts pipeline "
                f"{self.spec.trigger.pipeline!r} on the control plane and runs no code here"
            )
        if on is not None:
            if connections:
                raise NotebookError(
                    "connections= is for runs here; with on=, the step uses the agent's"
                )
            from legato.notebook.remote import run_remote

            result = run_remote(
                self, on, data=data, inputs=inputs, params=params, timeout=timeout, memory=memory
            )
        else:
            from legato.notebook.dagruns import run_one

            result = run_one(
                self,
                data=data,
                inputs=inputs,
                params=params,
                connections=connections,
                timeout=timeout,
                memory=memory,
            )
        if check and not result.succeeded:
            raise StepFailed(result)
        return result
