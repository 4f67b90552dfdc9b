"""Agent commands: agents, drain, agents token create|list|revoke."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from legato.cli.output import emit_message, local_time, render_table
from legato.cli.tokens import parse_expiry, parse_labels
from legato.client import Client
from legato.spec.enums import short_name
from legato.v1 import access_service_pb2 as access_pb
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

    p = command("agents", list_agents, "list executor agents; `agents token` enrols them")
    p.add_argument("--all", action="store_true", help="include disconnected agents")
    agents_sub = p.add_subparsers(dest="agents_command", metavar="COMMAND")
    token = agents_sub.add_parser("token", help="enrolment tokens of agents (admin)")
    token_sub = token.add_subparsers(dest="token_command", metavar="COMMAND")
    token_sub.required = True

    def token_command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser = token_sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        parser.set_defaults(handler=handler, needs_client=True)
        return parser

    t = token_command(
        "create", create_token, "enrol an agent: a token that gives it its name and labels"
    )
    t.add_argument("--name", required=True, help="the agent's name")
    t.add_argument(
        "--labels",
        action="append",
        metavar="K=V[,K=V]",
        help="labels the agent carries (steps select on them); it may claim no others",
    )
    t.add_argument(
        "--connections",
        default="",
        metavar="A,B|*",
        help="connections it may advertise (names, or * for any; default none)",
    )
    t.add_argument("--expires", metavar="WHEN", help="a duration (90d) or a date (2027-01-31)")
    t.add_argument("-q", "--quiet", action="store_true", help="print only the secret (for scripts)")
    t = token_command("list", list_agent_tokens, "list enrolment tokens (never their secrets)")
    t.add_argument("--name", default="", help="only this agent's")
    t.add_argument("--all", action="store_true", help="include revoked and expired tokens")
    t = token_command(
        "revoke",
        revoke_agent_token,
        "revoke an enrolment token: the agent is cut off within seconds, its steps retried",
    )
    t.add_argument("id", metavar="ID", help="the token's id (`legato agents token list`)")

    p = command("drain", drain, "let an agent finish its tasks and take no new ones")
    p.add_argument("agent", metavar="AGENT", help="the agent's name (legato agents lists them)")


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


def create_token(client: Client, args: argparse.Namespace) -> int:
    connections = [c.strip() for c in args.connections.split(",") if c.strip()]
    response = client.create_agent_token(
        args.name,
        labels=parse_labels(args.labels),
        connections=connections,
        expire_time=parse_expiry(args.expires),
    )
    if args.quiet:
        print(response.secret)
        return 0
    if args.output != "table":
        emit_message(response, args.output)
        return 0
    token = response.token
    labels = ",".join(f"{k}={v}" for k, v in sorted(token.labels.items())) or "none"
    print(
        f"agent {token.agent} enrolled: token {token.id}, labels {labels}, connections "
        f"{','.join(token.connections) or 'none'}"
    )
    print("its secret, shown only now; give it to the agent (--token-file or LEGATO_AGENT_TOKEN):")
    print(response.secret)
    return 0


def list_agent_tokens(client: Client, args: argparse.Namespace) -> int:
    items = list(client.list_agent_tokens(agent=args.name, show_revoked=args.all))
    if args.output != "table":
        emit_message(access_pb.ListAgentTokensResponse(tokens=items), args.output)
        return 0
    if not items:
        print("no agent tokens" + ("" if args.all else " (--all also lists revoked ones)"))
        return 0
    rows = [
        [
            t.agent,
            t.id,
            ",".join(f"{k}={v}" for k, v in sorted(t.labels.items())) or "-",
            ",".join(t.connections) or "-",
            "revoked" if t.revoke_time.seconds else "active",
            local_time(t.create_time),
            local_time(t.last_use_time),
        ]
        for t in items
    ]
    headers = ["AGENT", "ID", "LABELS", "CONNECTIONS", "STATE", "CREATED", "LAST USED"]
    print(render_table(headers, rows))
    return 0


def revoke_agent_token(client: Client, args: argparse.Namespace) -> int:
    token = client.revoke_agent_token(args.id)
    if args.output != "table":
        emit_message(token, args.output)
    else:
        print(f"enrolment token {token.id} of agent {token.agent} revoked")
    return 0
