"""Lineage's domain on plain data: dataset names, declared datasets and their validation,
the edges a finished run adds, the walk of the graph, the OpenLineage events (valid
against the vendored schema, the same every time they are built) and the settings."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from control_plane.config import ConfigError, ServerConfig
from control_plane.lineage import openlineage_events as ol
from control_plane.lineage.names import Dataset, DatasetNameError, parse_dataset
from control_plane.lineage.recorder import records_lineage
from control_plane.lineage.records import StepRecord, declared_lineage, edges_of, to_json
from control_plane.lineage.walk import depth_of, walk
from control_plane.validation import validate_spec
from legato.v1 import lineage_pb2, spec_pb2
from tests.openlineage_validation import validate_event

# -- names -------------------------------------------------------------------------------


def test_a_dataset_is_namespace_dot_name() -> None:
    assert parse_dataset("warehouse.public.orders") == Dataset("warehouse", "public.orders")
    assert parse_dataset("s3.bucket/path/x.parquet") == Dataset("s3", "bucket/path/x.parquet")
    assert parse_dataset("webhook.https://h/in").node == "dataset:webhook.https://h/in"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("orders", "'orders' is not a dataset name: write it as namespace.name"),
        (".orders", "is not a dataset name"),
        ("wh.", "is not a dataset name"),
        ("my wh.orders", "has the namespace 'my wh', which is not a name"),
        (" wh.orders", "spaces around it"),
        ("wh.or\nders", "control characters"),
        ("w." + "x" * 1000, "longer than 1000 characters"),
    ],
)
def test_a_malformed_dataset_says_how_to_write_one(text: str, says: str) -> None:
    with pytest.raises(DatasetNameError, match=r"namespace\.name") as error:
        parse_dataset(text)
    assert says in str(error.value)


# -- declarations ------------------------------------------------------------------------


def _spec(*steps: spec_pb2.Step) -> spec_pb2.PipelineSpec:
    return spec_pb2.PipelineSpec(name="p", steps=list(steps))


def _transform(*, inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = ()) -> spec_pb2.Step:
    return spec_pb2.Step(
        name="t",
        transform=spec_pb2.TransformStep(code="result = None"),
        inputs=inputs,
        outputs=outputs,
    )


def test_declared_datasets_are_validated_with_their_path() -> None:
    spec = _spec(
        spec_pb2.Step(name="first", transform=spec_pb2.TransformStep(code="result = None")),
        spec_pb2.Step(name="second", function=spec_pb2.FunctionStep(function="m:f")),
        _transform(inputs=("wh.public.a", "orders"), outputs=("lake.x", "lake.x")),
    )
    found = {(v.field, v.description) for v in validate_spec(spec)}
    assert (
        "steps[2].inputs[1]",
        "'orders' is not a dataset name: write it as namespace.name, e.g. warehouse.public.orders",
    ) in found
    assert (
        "steps[2].outputs[1]",
        "'lake.x' is already outputs[0]; name each dataset once",
    ) in found


@pytest.mark.parametrize(
    ("step", "source"),
    [
        (spec_pb2.Step(name="q", query=spec_pb2.QueryStep(connection="wh", sql="SELECT 1")), "SQL"),
        (
            spec_pb2.Step(
                name="e",
                needs=["q"],
                export=spec_pb2.ExportStep(
                    input="q", table=spec_pb2.TableExport(connection="wh", table="t")
                ),
            ),
            "target",
        ),
        (spec_pb2.Step(name="k", trigger=spec_pb2.TriggerStep(pipeline="other")), "pipeline"),
    ],
)
def test_query_export_and_trigger_steps_may_not_declare_datasets(
    step: spec_pb2.Step, source: str
) -> None:
    step.outputs.append("wh.public.t")
    query = spec_pb2.Step(name="q", query=spec_pb2.QueryStep(connection="wh", sql="SELECT 1"))
    spec = _spec(step) if step.name == "q" else _spec(query, step)
    found = [v for v in validate_spec(spec) if v.field.endswith(".outputs")]
    assert len(found) == 1
    assert "whose datasets come from" in found[0].description
    assert source in found[0].description
    assert "remove outputs" in found[0].description


def test_declared_lineage_of_function_and_transform_steps() -> None:
    lineage = declared_lineage(_transform(inputs=("s3.raw/x",), outputs=("wh.public.y",)))
    assert lineage is not None
    assert [(r.namespace, r.name, r.kind) for r in lineage.inputs] == [
        ("s3", "raw/x", lineage_pb2.DATASET_KIND_DECLARED)
    ]
    assert [r.name for r in lineage.outputs] == ["public.y"]
    assert declared_lineage(_transform()) is None
    assert not records_lineage(_spec(_transform()))
    assert records_lineage(_spec(_transform(outputs=("a.b",))))


# -- edges -------------------------------------------------------------------------------


def _lineage(inputs: list[str], outputs: list[str]) -> dict[str, object]:
    def refs(texts: list[str]) -> list[lineage_pb2.DatasetRef]:
        return [
            lineage_pb2.DatasetRef(namespace=t.split(".", 1)[0], name=t.split(".", 1)[1])
            for t in texts
        ]

    return to_json(lineage_pb2.StepLineage(inputs=refs(inputs), outputs=refs(outputs)))


def test_a_run_adds_edges_for_what_succeeded_sorted_and_once() -> None:
    edges = edges_of(
        "etl",
        [
            StepRecord("read", "query", "succeeded", _lineage(["wh.a", "wh.b"], [])),
            StepRecord("again", "query", "succeeded", _lineage(["wh.a"], [])),
            StepRecord("write", "export", "succeeded", _lineage([], ["wh.c"])),
            StepRecord("broken", "query", "failed", _lineage(["wh.z"], [])),
            StepRecord("kick", "trigger", "succeeded", None, child_pipeline="report"),
            StepRecord("skipped", "trigger", "skipped", None, child_pipeline="other"),
        ],
    )
    assert [(e.source, e.target, e.kind, e.step) for e in edges] == [
        ("dataset:wh.a", "pipeline:etl", "read", "again"),
        ("dataset:wh.a", "pipeline:etl", "read", "read"),
        ("dataset:wh.b", "pipeline:etl", "read", "read"),
        ("pipeline:etl", "dataset:wh.c", "write", "write"),
        ("pipeline:etl", "pipeline:report", "trigger", "kick"),
    ]


# -- the walk ----------------------------------------------------------------------------


@dataclass(frozen=True)
class E:
    source: str
    target: str
    kind: str = "read"
    pipeline: str = "p"
    step: str = "s"


GRAPH = [
    E("dataset:raw.a", "pipeline:ingest"),
    E("pipeline:ingest", "dataset:wh.a", "write"),
    E("dataset:wh.a", "pipeline:mart"),
    E("pipeline:mart", "dataset:wh.b", "write"),
    E("pipeline:mart", "pipeline:notify", "trigger"),
    E("dataset:wh.b", "pipeline:ingest"),  # a cycle back to the start's upstream
]


def _run_walk(start: str, **options: object) -> tuple[dict[str, int], bool, int]:
    reads: list[int] = []

    async def fetch(nodes: Collection[str], upstream: bool) -> list[E]:
        reads.append(len(nodes))
        return [e for e in GRAPH if (e.target if upstream else e.source) in nodes]

    graph = asyncio.run(walk(start, fetch, **options))  # type: ignore[arg-type]
    return dict(graph.nodes()), graph.truncated, len(reads)


def test_the_walk_goes_both_ways_one_read_per_level() -> None:
    nodes, truncated, reads = _run_walk("dataset:wh.a", upstream=True, downstream=True, depth=10)
    assert nodes["dataset:wh.a"] == 0
    assert nodes["pipeline:ingest"] == -1
    assert nodes["dataset:raw.a"] == -2
    assert nodes["pipeline:mart"] == 1  # upstream too, through the cycle, but 3 hops away
    assert nodes["dataset:wh.b"] == -2  # 2 hops either way: a tie keeps upstream
    assert nodes["pipeline:notify"] == 2
    assert not truncated
    assert reads <= 2 * 5


def test_the_walk_stops_at_its_depth_and_says_so() -> None:
    nodes, truncated, _ = _run_walk("dataset:wh.a", upstream=False, downstream=True, depth=1)
    assert nodes == {"dataset:wh.a": 0, "pipeline:mart": 1}
    assert truncated
    nodes, truncated, _ = _run_walk("dataset:raw.a", upstream=True, downstream=False, depth=3)
    assert nodes == {"dataset:raw.a": 0} and not truncated


def test_depth_defaults_and_caps() -> None:
    assert (depth_of(0), depth_of(3), depth_of(500)) == (10, 3, 50)


# -- OpenLineage events ------------------------------------------------------------------

AT = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)
RUN = ol.RunFacts(
    run_id="01JRUN",
    pipeline="etl",
    namespace="legato",
    status="failed",
    error="step 'q' failed: boom",
    description="Orders into the mart",
    logical_time=AT,
)


def test_the_pipeline_run_events_are_valid_and_stable() -> None:
    start = ol.run_event(RUN, "START", AT)
    end = ol.run_event(RUN, "", AT)
    for event in (start, end):
        validate_event(event)
    assert start == ol.run_event(RUN, "START", AT)  # a redelivery is the same event
    assert start["run"]["runId"] == end["run"]["runId"] == ol.run_uuid("01JRUN")
    assert (start["eventType"], end["eventType"]) == ("START", "FAIL")
    assert end["run"]["facets"]["errorMessage"]["message"] == "step 'q' failed: boom"
    assert start["run"]["facets"]["nominalTime"]["nominalStartTime"] == "2026-12-08T10:00:00Z"
    assert start["job"] == {
        "namespace": "legato",
        "name": "etl",
        "facets": start["job"]["facets"],
    }
    assert start["job"]["facets"]["jobType"]["jobType"] == "PIPELINE"


def test_a_step_event_carries_datasets_sql_schema_and_its_parent() -> None:
    lineage = lineage_pb2.StepLineage(
        inputs=[lineage_pb2.DatasetRef(namespace="wh", name="public.a")],
        outputs=[lineage_pb2.DatasetRef(namespace="wh", name="public.b")],
        columns=[
            lineage_pb2.ColumnLineage(
                column="x",
                sources=[lineage_pb2.ColumnSource(namespace="wh", name="public.a", column="x")],
            )
        ],
    )
    step = ol.StepFacts(
        name="q",
        kind="query",
        status="succeeded",
        attempt=2,
        error="",
        lineage=to_json(lineage),
        columns=[{"name": "x", "type": "int64"}],
        spec=spec_pb2.Step(
            name="q",
            description="the sums",
            query=spec_pb2.QueryStep(connection="wh", sql="INSERT INTO b SELECT x FROM a"),
        ),
    )
    event = ol.step_event(RUN, step, "", AT)
    validate_event(event)
    assert event["eventType"] == "COMPLETE"
    assert event["job"]["name"] == "etl.q"
    assert event["run"]["runId"] == ol.step_uuid("01JRUN", "q", 2) != ol.step_uuid("01JRUN", "q", 1)
    assert event["run"]["facets"]["parent"]["run"]["runId"] == ol.run_uuid("01JRUN")
    assert event["job"]["facets"]["sourceCode"]["sourceCode"] == "INSERT INTO b SELECT x FROM a"
    assert [d["name"] for d in event["inputs"]] == ["public.a"]
    output = event["outputs"][0]
    assert output["facets"]["schema"]["fields"][0]["name"] == "x"
    assert output["facets"]["columnLineage"]["fields"]["x"]["inputFields"][0]["field"] == "x"
    failed = ol.step_event(
        RUN, ol.StepFacts(**{**step.__dict__, "status": "failed", "error": "no"}), "", AT
    )
    validate_event(failed)
    assert failed["run"]["facets"]["errorMessage"]["programmingLanguage"] == "SQL"


def test_the_schema_check_can_fail() -> None:
    event = ol.run_event(RUN, "START", AT)
    event["run"]["runId"] = "not-a-uuid"
    with pytest.raises(AssertionError, match="uuid"):
        validate_event(event)
    event = ol.run_event(RUN, "START", AT)
    del event["run"]["facets"]["processing_engine"]["version"]
    with pytest.raises(AssertionError, match="version"):
        validate_event(event)


# -- settings ----------------------------------------------------------------------------


def test_openlineage_settings_are_checked_at_start_up() -> None:
    config = ServerConfig.load(env={"LEGATO_SERVER_OPENLINEAGE_URL": "http://marquez:5000"})
    assert (config.openlineage_url, config.openlineage_endpoint) == (
        "http://marquez:5000",
        "api/v1/lineage",
    )
    assert ServerConfig.load(env={}).openlineage_url == ""
    with pytest.raises(ConfigError, match="LEGATO_SERVER_OPENLINEAGE_URL 'ftp://x'"):
        ServerConfig.load(env={"LEGATO_SERVER_OPENLINEAGE_URL": "ftp://x"})
    with pytest.raises(ConfigError, match="--openlineage-namespace 'a b' is not a namespace"):
        ServerConfig(openlineage_url="http://x", openlineage_namespace="a b")
    with pytest.raises(ConfigError, match="--openlineage-url is not"):
        ServerConfig(openlineage_api_key_secret="ol-key")
    with pytest.raises(ConfigError, match="is a URL; give the path"):
        ServerConfig(openlineage_url="http://x", openlineage_endpoint="http://x/api")
