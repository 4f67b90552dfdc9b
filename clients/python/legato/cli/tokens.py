"""Credential commands: ``tokens create|list|revoke`` (API tokens with roles), ``agents
token create|list|revoke`` (agent enrolment, registered by ``cli/agents.py``) and
``whoami``.

``tokens create --db URL`` works without a server, straight on its database: that is how
the first admin token of a new deployment is made (whoever can write the database is
already its admin). A secret is printed once and never again."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from legato.cli.output import emit_message, local_time, render_table
from legato.cli.specfiles import CommandError
from legato.client import Client
from legato.spec.enums import short_name
from legato.spec.units import UnitError, parse_duration
from legato.v1 import access_pb2
from legato.v1 import access_service_pb2 as pb

__all__ = ["parse_expiry", "parse_labels", "register", "role_value"]

Handler = Callable[[Client, argparse.Namespace], int]
ROLE_NAMES = ("viewer", "operator", "editor", "admin")


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    tokens = sub.add_parser("tokens", help="API tokens with roles (admin)")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", metavar="COMMAND")
    tokens_sub.required = True

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser = tokens_sub.add_parser(
            name, parents=[common], help=help_text, description=help_text
        )
        parser.set_defaults(handler=handler, needs_client=True)
        return parser

    p = command("create", create, "create an API token; its secret is shown once")
    p.add_argument("name", metavar="NAME", help="unique among live tokens, e.g. ci-deploy")
    p.add_argument(
        "--role",
        required=True,
        choices=ROLE_NAMES,
        help="viewer reads; operator also runs; editor also changes pipelines; admin also "
        "manages tokens and agents",
    )
    p.add_argument("--description", default="", help="what the token is for")
    p.add_argument("--expires", metavar="WHEN", help="a duration (30d, 12h) or a date (2027-01-31)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the secret (for scripts)")
    p.add_argument(
        "--db",
        metavar="URL",
        help="create it straight in this database, without a server (the first admin token)",
    )
    p.set_defaults(handler=create_dispatch, needs_client=False)

    p = command("list", list_tokens, "list API tokens (never their secrets)")
    p.add_argument("--all", action="store_true", help="include revoked and expired tokens")

    p = command("revoke", revoke, "revoke an API token; it stops working within seconds")
    p.add_argument("name", metavar="NAME", help="the token's name (or id)")

    p = sub.add_parser("whoami", parents=[common], help="who the server takes this client for")
    p.set_defaults(handler=whoami, needs_client=True)


def create_dispatch(args: argparse.Namespace) -> int:
    """``tokens create``: through the server, or with ``--db`` on the database itself."""
    if args.db:
        return create_offline(args)
    from legato.cli.main import client_for

    with client_for(args) as client:
        return create(client, args)


def create(client: Client, args: argparse.Namespace) -> int:
    response = client.create_token(
        args.name,
        role_value(args.role),
        description=args.description,
        expire_time=parse_expiry(args.expires),
    )
    return _print_created(response, args.output, quiet=args.quiet)


def create_offline(args: argparse.Namespace) -> int:
    from legato.cli.server import offline_tokens

    expire = parse_expiry(args.expires)

    async def make() -> tuple[str, str, str]:
        async with offline_tokens(args.db) as (tokens, actor):
            created = await tokens.create(
                args.name, args.role, actor, description=args.description, expire_time=expire
            )
            return created.row.id, created.row.name, created.secret

    try:
        token_id, name, secret = asyncio.run(make())
    except Exception as exc:  # a LegatoError from the server code, named in its message
        message = getattr(exc, "message", None)
        if message is None:
            raise
        print(f"legato tokens create: {message}", file=sys.stderr)
        return 1
    response = pb.CreateTokenResponse(
        token=access_pb2.ApiToken(id=token_id, name=name, role=role_value(args.role)),
        secret=secret,
    )
    return _print_created(response, args.output, quiet=args.quiet)


def _print_created(response: pb.CreateTokenResponse, output: str, *, quiet: bool) -> int:
    if quiet:
        print(response.secret)
        return 0
    if output != "table":
        emit_message(response, output)
        return 0
    token = response.token
    print(f"token {token.name} ({short_name_of(token.role)}) created, id {token.id}")
    print("its secret, shown only now; keep it like a password:")
    print(response.secret)
    return 0


def list_tokens(client: Client, args: argparse.Namespace) -> int:
    items = list(client.list_tokens(show_revoked=args.all))
    if args.output != "table":
        emit_message(pb.ListTokensResponse(tokens=items), args.output)
        return 0
    if not items:
        print("no tokens" + ("" if args.all else " (--all also lists revoked ones)"))
        return 0
    rows = [
        [
            t.name,
            t.id,
            short_name_of(t.role),
            _state(t.revoke_time, t.expire_time),
            local_time(t.create_time),
            local_time(t.last_use_time),
            t.creator or "-",
        ]
        for t in items
    ]
    headers = ["NAME", "ID", "ROLE", "STATE", "CREATED", "LAST USED", "CREATOR"]
    print(render_table(headers, rows))
    return 0


def revoke(client: Client, args: argparse.Namespace) -> int:
    token = client.revoke_token(args.name)
    if args.output != "table":
        emit_message(token, args.output)
    else:
        print(f"token {token.name} ({token.id}) revoked")
    return 0


def whoami(client: Client, args: argparse.Namespace) -> int:
    caller = client.get_caller()
    if args.output != "table":
        emit_message(caller, args.output)
        return 0
    kind = short_name(access_pb2.ActorKind.DESCRIPTOR.values_by_number[caller.kind])
    role = f", role {short_name_of(caller.role)}" if caller.role else ""
    expiry = f", expires {local_time(caller.expire_time)}" if caller.HasField("expire_time") else ""
    print(f"{caller.name} ({kind}{role}{expiry}) on {client.target}")
    return 0


def role_value(name: str) -> access_pb2.Role.ValueType:
    return access_pb2.Role.Value(f"ROLE_{name.upper()}")


def short_name_of(role: int) -> str:
    value = access_pb2.Role.DESCRIPTOR.values_by_number.get(role)
    return short_name(value) if value is not None and role else "-"


def parse_expiry(text: str | None) -> datetime | None:
    """``30d``/``12h`` from now, or an ISO date or time (local when naive)."""
    if not text:
        return None
    try:
        return datetime.now(UTC) + timedelta(seconds=parse_duration(text))
    except UnitError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        print(
            f"legato: --expires {text!r} is neither a duration (30d, 12h) nor a date (2027-01-31)",
            file=sys.stderr,
        )
        raise CommandError from None
    return moment.astimezone(UTC)


def parse_labels(items: list[str] | None) -> dict[str, str]:
    """``k=v`` items (each may hold several, comma-separated) as a dict."""
    labels: dict[str, str] = {}
    for item in items or []:
        for part in item.split(","):
            if not part.strip():
                continue
            key, sep, value = part.strip().partition("=")
            if not sep or not key:
                print(f"legato: label {part!r} is not KEY=VALUE", file=sys.stderr)
                raise CommandError
            labels[key] = value
    return labels


def _state(revoked: object, expires: object) -> str:
    from google.protobuf import timestamp_pb2

    assert isinstance(revoked, timestamp_pb2.Timestamp)
    assert isinstance(expires, timestamp_pb2.Timestamp)
    if revoked.seconds:
        return "revoked"
    if expires.seconds and expires.ToDatetime(tzinfo=UTC) <= datetime.now(UTC):
        return "expired"
    if expires.seconds:
        return f"expires {local_time(expires)}"
    return "active"
