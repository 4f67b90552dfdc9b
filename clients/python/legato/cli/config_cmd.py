"""``legato config``: contexts like kubectl's, in the user's config file (mode 0600).

    legato config set-context prod --server legato.example.com:7470 --ca ca.pem --token lgt_...
    legato config use-context prod
    legato config get-contexts
    legato config view                 # tokens masked
    legato config delete-context prod

A context binds a server to the credentials for it; the CLI and the SDK send a context's
token only to that context's server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from legato.cli.output import render_table
from legato.cli.specfiles import CommandError
from legato.connection import (
    ConfigFileError,
    check_address,
    config_path,
    load_config,
    save_config,
)

__all__ = ["mask", "register"]

_KEYS = ("server", "token", "token-file", "ca", "cert", "key", "tls")


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    config = sub.add_parser("config", help="contexts: which server, with which credentials")
    config_sub = config.add_subparsers(dest="config_command", metavar="COMMAND")
    config_sub.required = True

    p = config_sub.add_parser(
        "set-context", help="add a context, or change the settings it is given"
    )
    p.add_argument("name", metavar="NAME", help="the context's name, e.g. prod")
    p.add_argument("--server", help="HOST:PORT of the control plane")
    p.add_argument("--token", help="API token (lgt_...); stored in the config file (0600)")
    p.add_argument("--token-file", help="read the token from this file at each call instead")
    p.add_argument("--ca", help="CA certificate (PEM) that signed the server's; turns TLS on")
    p.add_argument("--cert", help="client certificate (PEM), when the server requires one")
    p.add_argument("--key", help="the client certificate's key")
    p.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help="use TLS with the system's CAs (a server with a public certificate)",
    )
    p.add_argument("--use", action="store_true", help="also make it the current context")
    p.set_defaults(handler=set_context, needs_client=False)

    p = config_sub.add_parser("use-context", help="make a context the current one")
    p.add_argument("name", metavar="NAME", help="the context to use from now on")
    p.set_defaults(handler=use_context, needs_client=False)

    p = config_sub.add_parser("get-contexts", help="list the contexts")
    p.set_defaults(handler=get_contexts, needs_client=False)

    p = config_sub.add_parser("current-context", help="print the current context")
    p.set_defaults(handler=current_context, needs_client=False)

    p = config_sub.add_parser("view", help="print the config file, tokens masked")
    p.add_argument("--raw", action="store_true", help="show tokens as they are")
    p.set_defaults(handler=view, needs_client=False)

    p = config_sub.add_parser("delete-context", help="remove a context")
    p.add_argument("name", metavar="NAME", help="the context to remove")
    p.set_defaults(handler=delete_context, needs_client=False)


def set_context(args: argparse.Namespace) -> int:
    config = _load()
    contexts: dict[str, Any] = dict(config.get("contexts") or {})
    context = dict(contexts.get(args.name) or {})
    for key in _KEYS:
        value = getattr(args, key.replace("-", "_"))
        if value is None or value == "":
            continue
        if key in ("ca", "cert", "key", "token-file"):
            path = Path(value).expanduser()
            if not path.is_file():
                print(f"legato config set-context: --{key} {value}: no such file", file=sys.stderr)
                raise CommandError
            value = str(path.resolve())
        context[key] = value
    if args.token and args.token_file:
        print("legato config set-context: give --token or --token-file, not both", file=sys.stderr)
        raise CommandError
    if args.token:
        context.pop("token-file", None)
    if args.token_file:
        context.pop("token", None)
    if not context.get("server"):
        print(
            f"legato config set-context: context {args.name!r} needs --server HOST:PORT",
            file=sys.stderr,
        )
        raise CommandError
    try:
        check_address(str(context["server"]), "--server")
    except ConfigFileError as error:
        print(f"legato config set-context: {error}", file=sys.stderr)
        raise CommandError from None
    contexts[args.name] = context
    config["contexts"] = contexts
    if args.use or not config.get("current-context"):
        config["current-context"] = args.name
    path = save_config(config)
    state = " (current)" if config["current-context"] == args.name else ""
    print(f"context {args.name}{state} set in {path}")
    return 0


def use_context(args: argparse.Namespace) -> int:
    config = _load()
    if args.name not in (config.get("contexts") or {}):
        known = ", ".join(sorted(config.get("contexts") or {})) or "none"
        print(
            f"legato config use-context: there is no context {args.name!r} (contexts: {known})",
            file=sys.stderr,
        )
        raise CommandError
    config["current-context"] = args.name
    save_config(config)
    print(f"current context: {args.name}")
    return 0


def get_contexts(args: argparse.Namespace) -> int:
    config = _load()
    contexts = config.get("contexts") or {}
    if not contexts:
        print("no contexts; `legato config set-context NAME --server ...` adds one")
        return 0
    current = config.get("current-context")
    rows = [
        [
            "*" if name == current else "",
            name,
            str(context.get("server", "")),
            "token" if context.get("token") or context.get("token-file") else "-",
            "tls" if context.get("ca") or context.get("cert") or context.get("tls") else "-",
        ]
        for name, context in sorted(contexts.items())
    ]
    print(render_table(["CURRENT", "NAME", "SERVER", "AUTH", "TRANSPORT"], rows))
    return 0


def current_context(args: argparse.Namespace) -> int:
    name = _load().get("current-context")
    if not name:
        print("legato config current-context: no context is current", file=sys.stderr)
        return 1
    print(name)
    return 0


def view(args: argparse.Namespace) -> int:
    config = _load()
    if not args.raw:
        contexts = {
            name: {k: mask(v) if k == "token" else v for k, v in (context or {}).items()}
            for name, context in (config.get("contexts") or {}).items()
        }
        config = {**config, "contexts": contexts} if contexts else config
    print(f"# {config_path()}")
    print(yaml.safe_dump(config, sort_keys=False), end="")
    return 0


def delete_context(args: argparse.Namespace) -> int:
    config = _load()
    contexts = dict(config.get("contexts") or {})
    if args.name not in contexts:
        print(f"legato config delete-context: there is no context {args.name!r}", file=sys.stderr)
        raise CommandError
    del contexts[args.name]
    config["contexts"] = contexts
    if config.get("current-context") == args.name:
        config.pop("current-context")
    save_config(config)
    print(f"context {args.name} deleted")
    return 0


def mask(token: Any) -> str:
    """A token as ``lgt_abcd…(masked)``: enough to tell tokens apart, not to use one."""
    text = str(token)
    prefix, _, rest = text.partition("_")
    token_id = rest.partition("_")[0]
    if prefix in ("lgt", "lga") and token_id:
        return f"{prefix}_{token_id}_***"
    return "***"


def _load() -> dict[str, Any]:
    try:
        return load_config()
    except ConfigFileError as exc:
        print(f"legato config: {exc}", file=sys.stderr)
        raise CommandError from None
