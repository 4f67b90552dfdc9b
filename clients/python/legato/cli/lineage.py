"""``legato lineage``: where a dataset or a pipeline's data comes from and where it goes,
across pipelines, as runs recorded it: a tree upstream and downstream, or the
GetLineage response (``-o json``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import NoReturn

from legato.cli.output import emit_message, local_time
from legato.cli.specfiles import CommandError
from legato.client import Client
from legato.v1 import lineage_pb2
from legato.v1 import lineage_service_pb2 as pb

__all__ = ["register", "render_tree"]

_VERBS = {
    lineage_pb2.LINEAGE_EDGE_KIND_READ: "read by",
    lineage_pb2.LINEAGE_EDGE_KIND_WRITE: "written by",
    lineage_pb2.LINEAGE_EDGE_KIND_TRIGGER: "triggered by",
}


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    help_text = "where a dataset's or a pipeline's data comes from and goes, across pipelines"
    p = sub.add_parser("lineage", parents=[common], help=help_text, description=help_text)
    p.set_defaults(handler=lineage, needs_client=True)
    p.add_argument(
        "dataset",
        nargs="?",
        metavar="DATASET",
        help="a dataset as namespace.name, e.g. warehouse.public.orders (or use --pipeline)",
    )
    p.add_argument("--pipeline", metavar="NAME", help="a pipeline instead of a dataset")
    way = p.add_mutually_exclusive_group()
    way.add_argument(
        "--upstream",
        dest="direction",
        action="store_const",
        const="upstream",
        help="only where the data comes from",
    )
    way.add_argument(
        "--downstream",
        dest="direction",
        action="store_const",
        const="downstream",
        help="only where the data goes",
    )
    p.add_argument(
        "--depth",
        type=int,
        default=0,
        metavar="N",
        help="hops to walk each way (dataset → pipeline is one; default 10, at most 50)",
    )


def lineage(client: Client, args: argparse.Namespace) -> int:
    if bool(args.dataset) == bool(args.pipeline):
        _fail(
            "give a dataset (legato lineage warehouse.public.orders) or --pipeline NAME"
            + (", not both" if args.dataset else "")
        )
    if args.depth < 0:
        _fail(f"--depth {args.depth}: give 1 or more (0 means the default, 10)")
    response = client.lineage(
        dataset=args.dataset,
        pipeline=args.pipeline,
        direction=args.direction or "both",
        depth=args.depth,
    )
    if args.output != "table":
        emit_message(response, args.output)
        return 0
    print(render_tree(response, direction=args.direction or "both"))
    return 0


def _fail(message: str) -> NoReturn:
    print(f"legato lineage: {message}", file=sys.stderr)
    raise CommandError


def _label(node: lineage_pb2.LineageNode) -> str:
    if node.kind == lineage_pb2.LINEAGE_NODE_KIND_PIPELINE:
        return f"pipeline {node.pipeline}"
    return f"dataset {node.dataset.namespace}.{node.dataset.name}"


def _how(edges: list[lineage_pb2.LineageEdge]) -> str:
    """``written by step 'load', last seen 2026-12-08 10:00:01`` (the step is of the
    pipeline at either end of the edge: the one that reads, writes or triggers)."""
    parts = []
    for kind in sorted({edge.kind for edge in edges}):
        steps = sorted({edge.step for edge in edges if edge.kind == kind})
        named = ", ".join(f"'{step}'" for step in steps)
        noun = "step" if len(steps) == 1 else "steps"
        parts.append(f"{_VERBS.get(kind, 'linked by')} {noun} {named}")
    latest = max(edges, key=lambda edge: edge.last_seen_time.ToNanoseconds())
    return f"{'; '.join(parts)}, last seen {local_time(latest.last_seen_time)}"


def render_tree(response: pb.GetLineageResponse, *, direction: str = "both") -> str:
    """The response as trees like ``tree`` draws them: the node asked about, then what is
    upstream of it (where its data comes from) and downstream (where it goes). A node
    reached twice is drawn once; the second time says so."""
    if not response.nodes:
        return "nothing recorded"
    nodes = {node.id: node for node in response.nodes}
    root = response.nodes[0]
    lines = [_label(root)]
    sections = [
        ("upstream (where the data comes from)", True),
        ("downstream (where the data goes)", False),
    ]
    wanted = [
        (title, up)
        for title, up in sections
        if direction == "both" or (direction == "upstream") == up
    ]
    for title, up in wanted:
        lines.append(f"{title}:")
        drawn: set[str] = set()
        tree = list(_tree(response, nodes, root.id, up, "", drawn))
        lines.extend(tree or ["  (nothing recorded)"])
    if response.truncated:
        lines.append("… more beyond --depth; raise it to see further")
    return "\n".join(lines)


def _tree(
    response: pb.GetLineageResponse,
    nodes: dict[str, lineage_pb2.LineageNode],
    at: str,
    up: bool,
    prefix: str,
    drawn: set[str],
) -> Iterator[str]:
    drawn.add(at)
    here = nodes[at].distance
    step = -1 if up else 1
    linked: dict[str, list[lineage_pb2.LineageEdge]] = {}
    for edge in response.edges:
        near, far = (edge.target, edge.source) if up else (edge.source, edge.target)
        if near == at and far in nodes and nodes[far].distance == here + step:
            linked.setdefault(far, []).append(edge)
    children = sorted(linked, key=lambda node: (nodes[node].kind, node))
    for position, child in enumerate(children):
        last = position == len(children) - 1
        branch, indent = ("└── ", "    ") if last else ("├── ", "│   ")
        seen = child in drawn
        suffix = " (drawn above)" if seen else ""
        yield f"{prefix}{branch}{_label(nodes[child])} — {_how(linked[child])}{suffix}"
        if not seen:
            yield from _tree(response, nodes, child, up, prefix + indent, drawn)
