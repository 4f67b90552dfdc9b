"""Agent commands: agents, drain."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from legato.cli.output import emit_message, local_time, render_table
from legato.client import Client
from legato.spec.enums import short_name
from legato.v1 import agent_pb2
from legato.v1 import agent_service_pb2 as pb

__all__ = ["register"]

Handler = Callable[[Client, argparse.Namespace], int]


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        parser.set_defaults(handler=handler, needs_client=True)
        return parser

    p = command("agents", list_agents, "list executor agents")
    p.add_argument("--all", action="store_true", help="include disconnected agents")

    p = command("drain", drain, "let an agent finish its tasks and take no new ones")
    p.add_argument("agent", metavar="AGENT")


def list_agents(client: Client, args: argparse.Namespace) -> int:
    items = list(client.list_agents(show_disconnected=args.all))
    if args.output != "table":
        emit_message(pb.ListAgentsResponse(agents=items), args.output)
        return 0
    if not items:
        print("no agents" + ("" if args.all else " connected (--all also lists disconnected ones)"))
        return 0
    rows = [
        [
            a.name,
            _state(a.state),
            ",".join(f"{k}={v}" for k, v in sorted(a.labels.items())) or "-",
            f"{a.slots_used}/{a.slots}",
            a.version or "-",
            local_time(a.last_seen_time),
            ",".join(a.connections) or "-",
        ]
        for a in items
    ]
    headers = ["NAME", "STATE", "LABELS", "SLOTS", "VERSION", "LAST SEEN", "CONNECTIONS"]
    print(render_table(headers, rows))
    return 0


def drain(client: Client, args: argparse.Namespace) -> int:
    agent = client.drain_agent(args.agent)
    if args.output != "table":
        emit_message(agent, args.output)
    else:
        print(f"agent {agent.name} {_state(agent.state)}")
    return 0


def _state(state: agent_pb2.AgentState.ValueType) -> str:
    value = agent_pb2.AgentState.DESCRIPTOR.values_by_number.get(state)
    return short_name(value) if value is not None else str(state)
