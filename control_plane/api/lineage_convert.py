"""The lineage graph → GetLineageResponse."""

from __future__ import annotations

from control_plane.api.convert import timestamp
from control_plane.lineage.names import node_of
from control_plane.lineage.walk import Graph
from control_plane.store.lineage import EdgeRow
from legato.v1 import lineage_pb2, lineage_service_pb2

__all__ = ["lineage_response"]

_EDGE_KINDS = {
    "read": lineage_pb2.LINEAGE_EDGE_KIND_READ,
    "write": lineage_pb2.LINEAGE_EDGE_KIND_WRITE,
    "trigger": lineage_pb2.LINEAGE_EDGE_KIND_TRIGGER,
}
_DATASET_KINDS = {
    "webhook": lineage_pb2.DATASET_KIND_WEBHOOK,
    "slack": lineage_pb2.DATASET_KIND_SLACK,
}


def _node(node: str, distance: int) -> lineage_pb2.LineageNode:
    kind, text = node_of(node)
    if kind == "pipeline":
        return lineage_pb2.LineageNode(
            id=node,
            kind=lineage_pb2.LINEAGE_NODE_KIND_PIPELINE,
            pipeline=text,
            distance=distance,
        )
    namespace, _, name = text.partition(".")
    return lineage_pb2.LineageNode(
        id=node,
        kind=lineage_pb2.LINEAGE_NODE_KIND_DATASET,
        dataset=lineage_pb2.DatasetRef(
            namespace=namespace,
            name=name,
            kind=_DATASET_KINDS.get(namespace, lineage_pb2.DATASET_KIND_UNSPECIFIED),
        ),
        distance=distance,
    )


def _edge(edge: EdgeRow) -> lineage_pb2.LineageEdge:
    return lineage_pb2.LineageEdge(
        source=edge.source,
        target=edge.target,
        kind=_EDGE_KINDS.get(edge.kind, lineage_pb2.LINEAGE_EDGE_KIND_UNSPECIFIED),
        pipeline=edge.pipeline,
        step=edge.step,
        last_run_id=edge.last_run_id,
        last_seen_time=timestamp(edge.last_seen_time),
        first_seen_time=timestamp(edge.first_seen_time),
    )


def lineage_response(graph: Graph) -> lineage_service_pb2.GetLineageResponse:
    return lineage_service_pb2.GetLineageResponse(
        nodes=[_node(node, distance) for node, distance in graph.nodes()],
        edges=[_edge(edge) for edge in graph.edges if isinstance(edge, EdgeRow)],
        truncated=graph.truncated,
    )
