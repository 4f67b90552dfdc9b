"""OpenLineage run events of Legato's runs, built with the openlineage-python client's
classes and kept as JSON in the outbox.

The job model (as Airflow's provider has it): a pipeline run is a run of the job
``<namespace>/<pipeline>``, with START when the run starts and COMPLETE, FAIL or ABORT
when it ends; each step that ran is a run of the job ``<pipeline>.<step>`` (its latest
attempt) with START and COMPLETE or FAIL, whose ``parent`` facet points at the pipeline's
run, and whose inputs and outputs are the datasets it read and wrote (their namespace and
name are the DatasetRef's). A step's events are written when its run ends, with the times
the step started and ended.

Run ids are UUIDs derived from Legato's ids (``uuid5``): the pipeline run's from the run
id, a step's from the run id, the step and the attempt. An event, its time and its ids
are built once, when the outbox row is written, so a redelivery sends the same event."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from control_plane.lineage.records import from_json
from legato import __version__
from legato.v1 import lineage_pb2, spec_pb2

__all__ = ["PRODUCER", "RunFacts", "StepFacts", "run_event", "run_uuid", "step_event", "step_uuid"]

PRODUCER = "https://github.com/legato-orchestrator/legato"
_IDS = uuid.UUID("8d8f4c2a-5a51-4b8e-9c43-6f4f0d1e2b7a")
_END = {
    "succeeded": "COMPLETE",
    "failed": "FAIL",
    "timed_out": "FAIL",
    "cancelled": "ABORT",
}
_JOB_TYPES = {
    "query": "QUERY",
    "transform": "TRANSFORM",
    "function": "FUNCTION",
    "export": "EXPORT",
    "trigger": "TRIGGER",
}


def run_uuid(run_id: str) -> str:
    return str(uuid.uuid5(_IDS, f"run/{run_id}"))


def step_uuid(run_id: str, step: str, attempt: int) -> str:
    return str(uuid.uuid5(_IDS, f"step/{run_id}/{step}/{attempt}"))


class RunFacts:
    """What an event says of the pipeline run."""

    def __init__(
        self,
        *,
        run_id: str,
        pipeline: str,
        namespace: str,
        status: str,
        error: str,
        description: str,
        logical_time: datetime | None,
    ) -> None:
        self.run_id = run_id
        self.pipeline = pipeline
        self.namespace = namespace
        self.status = status
        self.error = error
        self.description = description
        self.logical_time = logical_time


class StepFacts:
    """What an event says of one step."""

    def __init__(
        self,
        *,
        name: str,
        kind: str,
        status: str,
        attempt: int,
        error: str,
        lineage: dict[str, Any] | None,
        columns: Sequence[dict[str, Any]],
        spec: spec_pb2.Step | None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.status = status
        self.attempt = attempt
        self.error = error
        self.lineage = lineage
        self.columns = columns
        self.spec = spec


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _engine() -> Any:
    from openlineage.client.facet_v2 import processing_engine_run

    return processing_engine_run.ProcessingEngineRunFacet(
        version=__version__, name="Legato", openlineageAdapterVersion=__version__
    )


def _job_type(job_type: str) -> Any:
    from openlineage.client.facet_v2 import job_type_job

    return job_type_job.JobTypeJobFacet(
        processingType="BATCH", integration="LEGATO", jobType=job_type
    )


def _error(message: str, language: str) -> Any:
    from openlineage.client.facet_v2 import error_message_run

    return error_message_run.ErrorMessageRunFacet(
        message=message or "failed", programmingLanguage=language
    )


def _dump(event: Any) -> dict[str, Any]:
    from openlineage.client.serde import Serde

    return Serde.to_dict(event)


def run_event(facts: RunFacts, event_type: str, at: datetime) -> dict[str, Any]:
    """The pipeline run's START (``event_type``) or end event (``""``: from its status)."""
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import documentation_job, nominal_time_run

    kind = event_type or _END.get(facts.status, "OTHER")
    run_facets: dict[str, Any] = {"processing_engine": _engine()}
    if facts.logical_time is not None:
        run_facets["nominalTime"] = nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=_iso(facts.logical_time)
        )
    if kind == "FAIL":
        run_facets["errorMessage"] = _error(facts.error, "LEGATO")
    job_facets: dict[str, Any] = {"jobType": _job_type("PIPELINE")}
    if facts.description:
        job_facets["documentation"] = documentation_job.DocumentationJobFacet(
            description=facts.description
        )
    event = RunEvent(
        eventType=RunState[kind],
        eventTime=_iso(at),
        run=Run(runId=run_uuid(facts.run_id), facets=run_facets),
        job=Job(namespace=facts.namespace, name=facts.pipeline, facets=job_facets),
        producer=PRODUCER,
    )
    return _dump(event)


def step_event(run: RunFacts, step: StepFacts, event_type: str, at: datetime) -> dict[str, Any]:
    """A step's START or COMPLETE/FAIL (``""``: from its status) event."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import parent_run

    kind = event_type or ("COMPLETE" if step.status == "succeeded" else "FAIL")
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=run_uuid(run.run_id)),
        job=parent_run.Job(namespace=run.namespace, name=run.pipeline),
    )
    run_facets: dict[str, Any] = {"parent": parent, "processing_engine": _engine()}
    if kind == "FAIL":
        language = "SQL" if step.kind == "query" else "PYTHON"
        run_facets["errorMessage"] = _error(step.error, language)
    lineage = from_json(step.lineage)
    outputs = [
        OutputDataset(namespace=ref.namespace, name=ref.name, facets=_output_facets(step, lineage))
        for ref in lineage.outputs
    ]
    event = RunEvent(
        eventType=RunState[kind],
        eventTime=_iso(at),
        run=Run(runId=step_uuid(run.run_id, step.name, step.attempt), facets=run_facets),
        job=Job(
            namespace=run.namespace,
            name=f"{run.pipeline}.{step.name}",
            facets=_step_job_facets(step),
        ),
        inputs=[InputDataset(namespace=ref.namespace, name=ref.name) for ref in lineage.inputs],
        outputs=outputs,
        producer=PRODUCER,
    )
    return _dump(event)


def _step_job_facets(step: StepFacts) -> dict[str, Any]:
    from openlineage.client.facet_v2 import documentation_job, source_code_job, sql_job

    facets: dict[str, Any] = {"jobType": _job_type(_JOB_TYPES.get(step.kind, "STEP"))}
    spec = step.spec
    if spec is None:
        return facets
    if step.kind == "query" and spec.query.sql:
        facets["sql"] = sql_job.SQLJobFacet(query=spec.query.sql)
        facets["sourceCode"] = source_code_job.SourceCodeJobFacet(
            language="SQL", sourceCode=spec.query.sql
        )
    elif step.kind == "transform" and spec.transform.code:
        facets["sourceCode"] = source_code_job.SourceCodeJobFacet(
            language="PYTHON", sourceCode=spec.transform.code
        )
    if spec.description:
        facets["documentation"] = documentation_job.DocumentationJobFacet(
            description=spec.description
        )
    return facets


def _output_facets(step: StepFacts, lineage: lineage_pb2.StepLineage) -> dict[str, Any]:
    """The schema of a step's one output when its output table's columns are known, and
    its column lineage when the SQL gave one."""
    from openlineage.client.facet_v2 import column_lineage_dataset, schema_dataset

    facets: dict[str, Any] = {}
    if len(lineage.outputs) != 1:
        return facets
    if step.columns:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[
                schema_dataset.SchemaDatasetFacetFields(
                    name=str(c.get("name", "")), type=str(c.get("type", "")) or None
                )
                for c in step.columns
            ]
        )
    if lineage.columns:
        facets["columnLineage"] = column_lineage_dataset.ColumnLineageDatasetFacet(
            fields={
                c.column: column_lineage_dataset.Fields(
                    inputFields=[
                        column_lineage_dataset.InputField(
                            namespace=s.namespace, name=s.name, field=s.column
                        )
                        for s in c.sources
                    ]
                )
                for c in lineage.columns
            }
        )
    return facets
