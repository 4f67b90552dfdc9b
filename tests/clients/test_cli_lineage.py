"""The client side of lineage: ``inputs=``/``outputs=`` in pipelines as code give the spec
their YAML gives (and a version of their own), the request ``Client.lineage`` builds, and
the tree ``legato lineage`` draws."""

from __future__ import annotations

import pytest

import legato
from control_plane.pipelines.versioning import canonical_json, content_hash
from legato import messages
from legato.cli.lineage import render_tree
from legato.cli.main import build_parser, main
from legato.spec import load_spec_text
from legato.v1 import lineage_pb2
from legato.v1 import lineage_service_pb2 as pb

YAML = """
name: p
steps:
  - name: load
    transform: {code: result = None}
    inputs: [s3.raw/orders, warehouse.public.fx]
    outputs: [warehouse.public.orders]
  - name: call
    needs: [load]
    function: {function: "mod:fn"}
    outputs: [lake.x]
"""


def test_declared_datasets_in_code_are_the_spec_of_their_yaml() -> None:
    pipeline = legato.Pipeline("p")
    load = pipeline.transform(
        "load",
        code="result = None",
        inputs=["s3.raw/orders", "warehouse.public.fx"],
        outputs=["warehouse.public.orders"],
    )
    pipeline.function("call", "mod:fn", needs=load, outputs="lake.x")
    expected = load_spec_text(YAML).spec
    assert pipeline.to_spec() == expected
    assert list(expected.steps[0].inputs) == ["s3.raw/orders", "warehouse.public.fx"]
    assert load_spec_text(pipeline.to_yaml()).spec == expected


def test_a_declaration_is_part_of_the_version() -> None:
    spec = load_spec_text(YAML).spec
    other = load_spec_text(YAML.replace("lake.x", "lake.y")).spec
    assert content_hash(canonical_json(spec)) != content_hash(canonical_json(other))
    assert '"inputs"' in canonical_json(spec)


def test_the_request_names_one_target() -> None:
    request = messages.get_lineage(
        dataset="wh.public.a", pipeline=None, direction="upstream", depth=3
    )
    assert (request.dataset, request.direction, request.depth) == (
        "wh.public.a",
        pb.LINEAGE_DIRECTION_UPSTREAM,
        3,
    )
    assert messages.get_lineage(dataset=None, pipeline="etl", direction="both", depth=0).HasField(
        "pipeline"
    )
    with pytest.raises(ValueError, match="exactly one of dataset"):
        messages.get_lineage(dataset="a.b", pipeline="etl", direction="both", depth=0)
    with pytest.raises(ValueError, match="direction 'sideways'"):
        messages.get_lineage(dataset="a.b", pipeline=None, direction="sideways", depth=0)


def test_the_command_takes_a_dataset_or_a_pipeline_and_one_direction() -> None:
    parser = build_parser()
    args = parser.parse_args(["lineage", "wh.public.a", "--upstream", "--depth", "2"])
    assert (args.dataset, args.direction, args.depth) == ("wh.public.a", "upstream", 2)
    args = parser.parse_args(["lineage", "--pipeline", "etl", "-o", "json"])
    assert (args.pipeline, args.output, args.direction) == ("etl", "json", None)
    with pytest.raises(SystemExit):
        parser.parse_args(["lineage", "a.b", "--upstream", "--downstream"])


def _dataset(node_id: str, distance: int) -> lineage_pb2.LineageNode:
    namespace, _, name = node_id.removeprefix("dataset:").partition(".")
    return lineage_pb2.LineageNode(
        id=node_id,
        kind=lineage_pb2.LINEAGE_NODE_KIND_DATASET,
        dataset=lineage_pb2.DatasetRef(namespace=namespace, name=name),
        distance=distance,
    )


def _pipeline(name: str, distance: int) -> lineage_pb2.LineageNode:
    return lineage_pb2.LineageNode(
        id=f"pipeline:{name}",
        kind=lineage_pb2.LINEAGE_NODE_KIND_PIPELINE,
        pipeline=name,
        distance=distance,
    )


def _edge(
    source: str, target: str, kind: lineage_pb2.LineageEdgeKind.ValueType, step: str, pipeline: str
) -> lineage_pb2.LineageEdge:
    edge = lineage_pb2.LineageEdge(
        source=source, target=target, kind=kind, step=step, pipeline=pipeline
    )
    edge.last_seen_time.FromSeconds(1_765_188_000)  # 2025-12-08 10:00:00 UTC
    return edge


READ, WRITE, TRIGGER = (
    lineage_pb2.LINEAGE_EDGE_KIND_READ,
    lineage_pb2.LINEAGE_EDGE_KIND_WRITE,
    lineage_pb2.LINEAGE_EDGE_KIND_TRIGGER,
)


def test_the_tree_shows_both_ways_with_the_step_on_each_edge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "UTC")
    response = pb.GetLineageResponse(
        nodes=[
            _dataset("dataset:wh.public.orders", 0),
            _pipeline("ingest", -1),
            _pipeline("mart", 1),
            _dataset("dataset:s3.raw/orders", -2),
            _dataset("dataset:wh.public.daily", 2),
            _pipeline("notify", 2),
        ],
        edges=[
            _edge("pipeline:ingest", "dataset:wh.public.orders", WRITE, "load", "ingest"),
            _edge("dataset:s3.raw/orders", "pipeline:ingest", READ, "fetch", "ingest"),
            _edge("dataset:wh.public.orders", "pipeline:mart", READ, "extract", "mart"),
            _edge("dataset:wh.public.orders", "pipeline:mart", READ, "check", "mart"),
            _edge("pipeline:mart", "dataset:wh.public.daily", WRITE, "save", "mart"),
            _edge("pipeline:mart", "pipeline:notify", TRIGGER, "kick", "mart"),
        ],
        truncated=True,
    )
    tree = render_tree(response).splitlines()
    assert tree[0] == "dataset wh.public.orders"
    assert tree[1] == "upstream (where the data comes from):"
    assert tree[2].startswith("└── pipeline ingest — written by step 'load', last seen")
    assert tree[3].startswith("    └── dataset s3.raw/orders — read by step 'fetch'")
    assert tree[4] == "downstream (where the data goes):"
    assert tree[5].startswith("└── pipeline mart — read by steps 'check', 'extract'")
    assert tree[6].startswith("    ├── dataset wh.public.daily — written by step 'save'")
    assert tree[7].startswith("    └── pipeline notify — triggered by step 'kick'")
    assert tree[-1] == "… more beyond --depth; raise it to see further"
    only_up = render_tree(response, direction="upstream")
    assert "downstream" not in only_up and "ingest" in only_up
    alone = pb.GetLineageResponse(nodes=[_pipeline("solo", 0)])
    assert render_tree(alone).splitlines() == [
        "pipeline solo",
        "upstream (where the data comes from):",
        "  (nothing recorded)",
        "downstream (where the data goes):",
        "  (nothing recorded)",
    ]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["lineage"], "give a dataset (legato lineage warehouse.public.orders) or --pipeline"),
        (["lineage", "a.b", "--pipeline", "p"], "--pipeline NAME, not both"),
        (["lineage", "a.b", "--depth", "-2"], "--depth -2: give 1 or more"),
    ],
)
def test_a_wrong_call_says_what_to_give(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--server", "127.0.0.1:9", *argv]) == 1
    assert says in capsys.readouterr().err
