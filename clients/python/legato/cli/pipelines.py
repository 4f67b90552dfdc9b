"""Pipeline commands: apply, validate, pipelines, versions, diff, rollback, show,
archive, restore.

``apply`` validates every file on the server before it applies any: a directory of specs
goes in whole or not at all (as far as validation can tell; see :func:`apply`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import grpc

from legato.cli.output import emit_message, local_time, render_table, schedule_zone, zoned_time
from legato.cli.specfiles import CommandError, load_all, print_violations
from legato.client import Client
from legato.errors import RpcError
from legato.spec import LoadedSpec, dump_spec_yaml
from legato.v1 import pipeline_pb2
from legato.v1 import pipeline_service_pb2 as pb

__all__ = ["register"]

Handler = Callable[[Client, argparse.Namespace], int]


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        parser.set_defaults(handler=handler, needs_client=True)
        return parser

    p = command(
        "apply",
        apply,
        "create pipelines or add versions from spec files; every file is validated first "
        "and none is applied unless all are valid",
    )
    p.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        required=True,
        metavar="FILE",
        help="spec file (YAML or JSON), directory of them, or - for stdin; repeatable",
    )
    p.add_argument("-m", "--message", default="", help="why this version exists")

    p = command("validate", validate, "check spec files on the server without saving them")
    p.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        required=True,
        metavar="FILE",
        help="spec file (YAML or JSON), directory of them, or - for stdin; repeatable",
    )

    p = command("pipelines", list_pipelines, "list pipelines, with their schedules' state")
    p.add_argument("--archived", action="store_true", help="include archived pipelines")
    p.add_argument("--prefix", default="", help="only names starting with this")

    p = command("versions", versions, "list the versions of a pipeline, newest first")
    p.add_argument("pipeline", help="the pipeline's name")

    p = command("diff", diff, "compare two versions of a pipeline")
    p.add_argument("pipeline", help="the pipeline's name")
    p.add_argument("from_version", type=int, metavar="FROM", help="the older version's number")
    p.add_argument(
        "to_version",
        type=int,
        nargs="?",
        default=0,
        metavar="TO",
        help="default: the latest version",
    )

    p = command("rollback", rollback, "add a version with the content of an earlier one")
    p.add_argument("pipeline", help="the pipeline's name")
    p.add_argument(
        "--to",
        dest="version",
        type=int,
        required=True,
        metavar="VERSION",
        help="the version whose content the new version gets",
    )
    p.add_argument("-m", "--message", default="", help="why (kept with the new version)")

    p = command("show", show, "print a pipeline's spec as YAML")
    p.add_argument("pipeline", help="the pipeline's name")
    p.add_argument("--version", type=int, default=0, help="default: the latest version")

    p = command("archive", archive, "stop scheduling a pipeline and hide it from lists")
    p.add_argument("pipeline", help="the pipeline's name")
    p = command("restore", restore, "undo archive")
    p.add_argument("pipeline", help="the pipeline's name")


def apply(client: Client, args: argparse.Namespace) -> int:
    """Load every file, check every one on the server (ValidatePipeline, and that its
    pipeline is not archived), and apply them only when all pass. The applies are one
    call per pipeline: one refused after the checks (it was archived meanwhile, the
    connection broke) leaves those before it applied, and the message says which."""
    loaded = load_all(args.files)
    _refuse_duplicates(loaded)
    failed = [item for item in loaded if not _passes(client, item)]
    if failed:
        files = ", ".join(item.filename for item in failed)
        print(
            f"legato apply: nothing applied: {len(failed)} of {len(loaded)} files "
            f"{'has' if len(failed) == 1 else 'have'} problems ({files}); fix them and "
            "apply again",
            file=sys.stderr,
        )
        raise CommandError
    responses: list[pb.ApplyPipelineResponse] = []
    for position, item in enumerate(loaded):
        try:
            response = client.apply_pipeline(item.spec, message=args.message)
        except RpcError as error:
            if error.field_violations or error.reason == "PIPELINE_ARCHIVED":
                print_violations(item, error)
            else:
                print(f"legato apply: {item.filename}: {error.message}", file=sys.stderr)
            _partly_applied(loaded, position)
            raise CommandError from None
        responses.append(response)
        if args.output == "table":
            state = "created" if response.created else "unchanged"
            print(f"pipeline {response.pipeline.name}: version {response.version.number} ({state})")
    if args.output != "table" and responses:
        emit_message(responses[0] if len(responses) == 1 else responses, args.output)
    return 0


def _refuse_duplicates(loaded: list[LoadedSpec]) -> None:
    first: dict[str, str] = {}
    clashes: list[str] = []
    for item in loaded:
        if item.spec.name in first:
            clashes.append(
                f"{item.filename}: pipeline '{item.spec.name}' is also in {first[item.spec.name]}"
            )
        first.setdefault(item.spec.name, item.filename)
    if clashes:
        for line in clashes:
            print(line, file=sys.stderr)
        print(
            "legato apply: nothing applied: each pipeline may be in one file only; rename or "
            "remove the copies",
            file=sys.stderr,
        )
        raise CommandError


def _passes(client: Client, item: LoadedSpec) -> bool:
    """Whether the server would take ``item``; prints its problems when not."""
    try:
        client.validate_pipeline(item.spec)
    except RpcError as error:
        if not error.field_violations:
            raise
        print_violations(item, error)
        return False
    try:
        pipeline = client.get_pipeline(item.spec.name)
    except RpcError as error:
        if error.code == grpc.StatusCode.NOT_FOUND:
            return True  # a new pipeline
        raise
    if pipeline.archived:
        print(
            f"{item.filename}: pipeline '{pipeline.name}' is archived; restore it first "
            f"(legato restore {pipeline.name})",
            file=sys.stderr,
        )
        return False
    return True


def _partly_applied(loaded: list[LoadedSpec], failed_at: int) -> None:
    done = [item.filename for item in loaded[:failed_at]]
    left = [item.filename for item in loaded[failed_at:]]
    applied = f"applied before it: {', '.join(done)}" if done else "nothing was applied"
    print(
        f"legato apply: {loaded[failed_at].filename} was refused after every file passed "
        f"validation; {applied}; not applied: {', '.join(left)}",
        file=sys.stderr,
    )


def validate(client: Client, args: argparse.Namespace) -> int:
    loaded = load_all(args.files)
    failed = False
    for item in loaded:
        try:
            response = client.validate_pipeline(item.spec)
        except RpcError as error:
            if not error.field_violations:
                raise
            print_violations(item, error)
            failed = True
            continue
        if args.output == "table":
            print(
                f"{item.filename}: pipeline {response.spec.name} is valid ({response.content_hash})"
            )
        else:
            emit_message(response, args.output)
    if failed:
        raise CommandError
    return 0


def list_pipelines(client: Client, args: argparse.Namespace) -> int:
    items = list(client.list_pipelines(show_archived=args.archived, name_prefix=args.prefix))
    if args.output != "table":
        emit_message(pb.ListPipelinesResponse(pipelines=items), args.output)
        return 0
    if not items:
        print(
            "no pipelines"
            + ("" if args.archived else " (archived ones are hidden; --archived shows them)")
        )
        return 0
    rows = [
        [
            p.name,
            str(p.latest_version),
            _schedule(p),
            _next_fire(p),
            str(len(p.spec.steps)),
            "yes" if p.archived else "no",
            local_time(p.update_time),
        ]
        for p in items
    ]
    headers = ["NAME", "VERSION", "SCHEDULE", "NEXT FIRE", "STEPS", "ARCHIVED", "UPDATED"]
    print(render_table(headers, rows))
    return 0


def versions(client: Client, args: argparse.Namespace) -> int:
    items = list(client.list_pipeline_versions(args.pipeline))
    if args.output != "table":
        emit_message(pb.ListPipelineVersionsResponse(versions=items), args.output)
        return 0
    rows = [
        [str(v.number), local_time(v.create_time), v.author, _message(v), v.content_hash[:19]]
        for v in items
    ]
    print(render_table(["VERSION", "CREATED", "AUTHOR", "MESSAGE", "HASH"], rows))
    return 0


def diff(client: Client, args: argparse.Namespace) -> int:
    result = client.diff_pipeline_versions(args.pipeline, args.from_version, args.to_version)
    if args.output != "table":
        emit_message(result, args.output)
        return 0
    if result.identical:
        versions = f"versions {result.from_version} and {result.to_version}"
        print(f"{result.pipeline}: {versions} are identical")
        return 0
    print(f"{result.pipeline}: version {result.from_version} → {result.to_version}")
    if result.fields_changed:
        print(f"  changed: {', '.join(result.fields_changed)}")
    if result.steps_added:
        print(f"  steps added: {', '.join(result.steps_added)}")
    if result.steps_removed:
        print(f"  steps removed: {', '.join(result.steps_removed)}")
    for change in result.steps_changed:
        print(f"  step {change.step} changed: {', '.join(change.fields)}")
    print()
    print(result.unified_diff, end="")
    return 0


def rollback(client: Client, args: argparse.Namespace) -> int:
    response = client.rollback_pipeline(args.pipeline, args.version, message=args.message)
    if args.output != "table":
        emit_message(response, args.output)
    elif response.created:
        print(
            f"pipeline {response.pipeline.name}: version {response.version.number} "
            f"(created, same content as version {args.version})"
        )
    else:
        print(
            f"pipeline {response.pipeline.name}: version {response.version.number} "
            f"(unchanged: it already has the content of version {args.version})"
        )
    return 0


def show(client: Client, args: argparse.Namespace) -> int:
    version = client.get_pipeline_version(args.pipeline, args.version)
    if args.output != "table":
        emit_message(pb.GetPipelineVersionResponse(version=version), args.output)
        return 0
    print(
        f"# {version.pipeline} version {version.number} · {version.content_hash} · "
        f"{version.author} · {local_time(version.create_time)}"
    )
    print(dump_spec_yaml(version.spec), end="")
    return 0


def archive(client: Client, args: argparse.Namespace) -> int:
    return _archived(client.archive_pipeline(args.pipeline), args, "archived")


def restore(client: Client, args: argparse.Namespace) -> int:
    return _archived(client.restore_pipeline(args.pipeline), args, "restored")


def _archived(pipeline: pipeline_pb2.Pipeline, args: argparse.Namespace, verb: str) -> int:
    if args.output != "table":
        emit_message(pipeline, args.output)
    else:
        print(f"pipeline {pipeline.name} {verb}")
    return 0


def _schedule(pipeline: pipeline_pb2.Pipeline) -> str:
    if not pipeline.spec.HasField("schedule"):
        return "-"
    schedule = pipeline.spec.schedule
    return f"{schedule.cron} ({schedule.timezone or 'UTC'})"


PAUSE_CHARS = 40


def _next_fire(pipeline: pipeline_pb2.Pipeline) -> str:
    """``paused: <reason>``, the next fire time in the schedule's zone, or ``-``."""
    if not pipeline.spec.HasField("schedule"):
        return "-"
    state = pipeline.schedule
    if state.paused:
        reason = state.pause_reason.splitlines()[0] if state.pause_reason else ""
        if len(reason) > PAUSE_CHARS:
            reason = reason[: PAUSE_CHARS - 1] + "…"
        return f"paused: {reason}" if reason else "paused"
    if pipeline.archived:
        return "- (archived)"
    zone = schedule_zone(pipeline.spec.schedule.timezone)
    return zoned_time(state.next_fire_time, zone)


def _message(version: pipeline_pb2.PipelineVersion) -> str:
    text = version.message.splitlines()[0] if version.message else ""
    if version.rollback_of and f"version {version.rollback_of}" not in text:
        text = f"{text} (rollback to version {version.rollback_of})".strip()
    return text or "-"
