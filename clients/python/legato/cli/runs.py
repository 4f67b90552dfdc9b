"""Run commands: run, runs, status, logs, cancel, rerun, output.

``run --follow``, ``rerun --follow`` and ``logs -f`` print the run's log as it grows, and
what it waits for, until the run ends (see ``cli/follow.py``). RUN is an id, a unique
prefix of a recent one, or ``latest`` (see ``cli/runref.py``); ``-p`` values are read by
their parameter's declared type (see ``cli/params.py``)."""

from __future__ import annotations

import argparse
import difflib
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import grpc
import yaml
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor

from legato.cli.follow import ENDED, StreamStoppedError, explain_waits, format_log_line, watch
from legato.cli.notifications import run_notifications
from legato.cli.output import emit_message, local_time, render_table
from legato.cli.params import ParamError, param, parse_param_value, plain_scalars, typed_params
from legato.cli.runref import add_run_argument, resolve_run
from legato.cli.specfiles import CommandError
from legato.cli.usage import cpu_cell, memory_cell, slowest_step
from legato.client import Client
from legato.errors import RpcError
from legato.spec.enums import enum_choices, enum_number, short_name
from legato.spec.units import format_duration
from legato.spec.wellknown import well_known_to_python
from legato.v1 import run_pb2, spec_pb2
from legato.v1 import run_service_pb2 as pb

__all__ = ["format_log_line", "parse_param_value", "register"]

Handler = Callable[[Client, argparse.Namespace], int]

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
RUN_STATUS = run_pb2.RunStatus.DESCRIPTOR
STEP_STATUS = run_pb2.StepStatus.DESCRIPTOR
TRIGGER_KIND = run_pb2.TriggerKind.DESCRIPTOR
CELL_CHARS = 60


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        parser.set_defaults(handler=handler, needs_client=True)
        return parser

    p = command("run", run, "start a run of a pipeline")
    p.add_argument("pipeline", help="the pipeline to run")
    p.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        type=param,
        default=[],
        metavar="KEY=VALUE",
        help="a parameter, read by its declared type (a string stays as written: 0123, no); "
        "repeatable",
    )
    p.add_argument(
        "--params-file",
        metavar="FILE",
        help="parameters as a JSON or YAML mapping (- for stdin); -p wins over it",
    )
    p.add_argument("--version", type=int, default=0, help="default: the latest version")
    p.add_argument(
        "--follow",
        action="store_true",
        help="print the log until the run ends; exit 1 unless it succeeds",
    )

    p = command("runs", list_runs, "list runs, newest first")
    p.add_argument("pipeline", nargs="?", default="", help="only runs of this pipeline")
    p.add_argument("--backfill", default="", metavar="ID", help="only the runs of this backfill")
    p.add_argument(
        "--status",
        dest="statuses",
        action="append",
        default=[],
        choices=enum_choices(RUN_STATUS),
        help="only runs with this status; repeatable",
    )
    p.add_argument(
        "--trigger",
        dest="triggers",
        action="append",
        default=[],
        choices=enum_choices(TRIGGER_KIND),
        help="only runs started this way; repeatable",
    )
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20, 0: all)")

    p = command("status", status, "show a run and its steps")
    add_run_argument(p)

    p = command("logs", logs, "print the log of a run")
    add_run_argument(p)
    p.add_argument("--step", default="", help="only this step's lines (a step of the run)")
    p.add_argument("--attempt", type=int, default=0, help="with --step: only this attempt")
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until the run ends"
    )

    p = command("cancel", cancel, "stop a run: running steps are stopped, pending ones cancelled")
    add_run_argument(p)
    p.add_argument("--reason", default="", help="recorded with the cancellation")

    p = command("rerun", rerun, "start a new run of a finished one's failed and cancelled steps")
    add_run_argument(p)
    p.add_argument("--all", dest="all_steps", action="store_true", help="run every step again")
    p.add_argument(
        "--latest-version",
        action="store_true",
        help="use the pipeline's latest version instead of the run's",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="print the log until the run ends; exit 1 unless it succeeds",
    )

    p = command("output", output, "show a step's output: its summary and first rows")
    add_run_argument(p)
    p.add_argument("step", metavar="STEP", help="the step whose output to show")
    p.add_argument("--limit", type=int, default=20, help="rows to show (default 20)")
    p.add_argument(
        "--save",
        metavar="DIR",
        type=Path,
        help="also download the step's artifacts (its table as output.arrow, files it made) to DIR",
    )


# -- commands --------------------------------------------------------------------------


def run(client: Client, args: argparse.Namespace) -> int:
    file_values, file_texts = _params_file(args)
    spec = _declared_params(client, args) if args.params or file_values else None
    try:
        params = typed_params(
            args.params,
            spec,
            file_values=file_values,
            file_texts=file_texts,
            file_name=args.params_file or "",
        )
    except ParamError as error:
        _fail(args, str(error))
    try:
        response = client.trigger_run(
            args.pipeline, params=params, version=args.version, kind=run_pb2.TRIGGER_KIND_MANUAL
        )
    except TypeError as error:  # a value of the params file that is not JSON
        _fail(args, str(error))
    started = response.run
    if args.output != "table":
        if args.follow:
            ended = _follow_quietly(client, args, started.id)
            if ended is None:
                return EXIT_INTERRUPTED
            response.run.CopyFrom(ended)
        emit_message(response, args.output)
        return _outcome(response.run) if args.follow else 0
    trigger = _enum_name(TRIGGER_KIND, started.trigger.kind)
    print(
        f"run {started.id} started: {started.pipeline} v{started.version} (trigger {trigger})",
        flush=True,
    )
    return _follow_printing(client, args, started.id) if args.follow else 0


def _declared_params(client: Client, args: argparse.Namespace) -> spec_pb2.PipelineSpec | None:
    """The spec of the version that will run, for its parameters' types; None when the
    server cannot say (the values are then read untyped and checked by the server)."""
    try:
        return client.get_pipeline_version(args.pipeline, args.version).spec
    except RpcError as error:
        if error.code == grpc.StatusCode.NOT_FOUND:
            raise  # says which pipeline or version does not exist
        return None


def list_runs(client: Client, args: argparse.Namespace) -> int:
    found = client.list_runs(
        pipeline=args.pipeline,
        statuses=[run_pb2.RunStatus.ValueType(_number(RUN_STATUS, s)) for s in args.statuses],
        triggers=[run_pb2.TriggerKind.ValueType(_number(TRIGGER_KIND, t)) for t in args.triggers],
        page_size=min(args.limit, 1000) if args.limit > 0 else 0,
        backfill_id=args.backfill,
    )
    items = list(itertools.islice(found, args.limit) if args.limit > 0 else found)
    if args.output != "table":
        emit_message(pb.ListRunsResponse(runs=items), args.output)
        return 0
    if not items:
        filtered = args.pipeline or args.statuses or args.triggers or args.backfill
        print("no runs match" if filtered else "no runs")
        return 0
    rows = [
        [
            r.id,
            r.pipeline,
            str(r.version),
            _trigger_cell(r.trigger),
            _enum_name(RUN_STATUS, r.status),
            local_time(r.start_time),
            _duration(r.duration if r.HasField("duration") else None, r.start_time, r.end_time),
        ]
        for r in items
    ]
    headers = ["ID", "PIPELINE", "VERSION", "TRIGGER", "STATUS", "STARTED", "DURATION"]
    print(render_table(headers, rows))
    return 0


def status(client: Client, args: argparse.Namespace) -> int:
    found = client.get_run(resolve_run(client, args))
    if args.output != "table":
        emit_message(found, args.output)
        return 0
    waits = explain_waits(
        found, list(found.steps), lambda: list(client.list_agents()), server=client.target
    )
    duration = found.duration if found.HasField("duration") else None
    fields = [
        ("run", found.id),
        ("pipeline", f"{found.pipeline} v{found.version}"),
        ("status", _enum_name(RUN_STATUS, found.status)),
        ("trigger", _trigger_text(found.trigger)),
        ("params", _compact_json(found.params)),
        ("created", local_time(found.create_time)),
        ("started", local_time(found.start_time)),
        ("ended", local_time(found.end_time)),
        ("duration", _duration(duration, found.start_time, found.end_time)),
        ("error", found.error or "-"),
    ]
    if found.waiting_reason:
        fields.append(("waiting", found.waiting_reason.removeprefix("waiting: ")))
    no_agent = {why for name, why in waits.items() if name and why != _server_reason(found, name)}
    for why in sorted(no_agent):
        fields.append(("waiting", why.removeprefix("waiting: ")))
    for label, value in fields:
        lines = value.splitlines() or [""]
        print(f"{label + ':':<10}{lines[0]}")
        for line in lines[1:]:
            print(f"{'':<10}{line}")
    print()
    if not found.steps:
        print("no steps yet")
        return 0
    slowest = slowest_step(found.steps)
    rows = [
        [
            f"{s.name} *" if s.name == slowest else s.name,
            _enum_name(STEP_STATUS, s.status),
            str(s.attempt) if s.attempt else "-",
            s.agent or "-",
            local_time(s.start_time),
            _duration(s.duration if s.HasField("duration") else None, s.start_time, s.end_time),
            _records(s),
            memory_cell(
                s.peak_memory_bytes if s.HasField("peak_memory_bytes") else None,
                s.memory_limit_bytes,
            ),
            cpu_cell(s.cpu_time, s.HasField("cpu_time")),
            _shorten(s.error or waits.get(s.name) or s.waiting_reason or _child(s)) or "-",
        ]
        for s in found.steps
    ]
    headers = ["STEP", "STATUS", "ATTEMPT", "AGENT", "STARTED", "DURATION", "RECORDS", "MEMORY"]
    print(render_table([*headers, "CPU", "ERROR/WAITING"], rows))
    if slowest:
        print(f"* the slowest step (the longest of the finished steps): {slowest}")
    outputs = [(s.name, _output_text(s.output)) for s in found.steps if s.HasField("output")]
    outputs = [(name, text) for name, text in outputs if text]
    if outputs:
        print()
        print("outputs (legato output RUN STEP shows the rows):")
        for name, text in outputs:
            print(f"  {name}: {text}")
    told = run_notifications(client, found.id)
    if told:
        print()
        print("\n".join(told))
    return 0


def _server_reason(found: run_pb2.Run, step: str) -> str:
    return next((s.waiting_reason for s in found.steps if s.name == step), "")


def _child(step: run_pb2.StepRun) -> str:
    return f"started run {step.child_run_id}" if step.child_run_id else ""


def _output_text(summary: run_pb2.OutputSummary) -> str:
    parts: list[str] = []
    if summary.HasField("rows"):
        columns = ", ".join(f"{c.name} {c.type}" for c in summary.columns)
        parts.append(f"{summary.rows:,} rows ({columns})" if columns else f"{summary.rows:,} rows")
    if summary.values.fields:
        parts.append(f"values {_shorten(_compact_json(summary.values))}")
    if summary.artifacts:
        parts.append("files " + ", ".join(a.name for a in summary.artifacts))
    return "; ".join(parts)


def logs(client: Client, args: argparse.Namespace) -> int:
    if args.attempt and not args.step:
        _fail(args, "--attempt needs --step: attempts are numbered per step")
    run_id = resolve_run(client, args)
    if args.step:
        _check_step(client, args, run_id)
    as_table = args.output == "table"
    lines: list[run_pb2.LogLine] = []
    last_seq = 0
    printed = 0
    for line in client.get_run_logs(run_id, step=args.step, attempt=args.attempt):
        last_seq = max(last_seq, line.seq)
        printed += 1
        if as_table:
            print(format_log_line(line), flush=args.follow)
        else:
            lines.append(line)
    if args.follow:

        def on_line(line: run_pb2.LogLine) -> None:
            if args.step and line.step != args.step:
                return
            if args.attempt and line.attempt != args.attempt:
                return
            if as_table:
                print(format_log_line(line), flush=True)
            else:
                lines.append(line)

        _watch(client, args, run_id, after_seq=last_seq, on_line=on_line, show_waits=as_table)
    if not as_table:
        emit_message(pb.GetRunLogsResponse(lines=lines), args.output)
    elif not printed and not args.follow:
        print(f"run {run_id} has no log lines" + (f" of step {args.step}" if args.step else ""))
    return 0


def _check_step(client: Client, args: argparse.Namespace, run_id: str) -> None:
    """Fail unless ``--step`` names a step of the run (a typo would print nothing)."""
    names = [s.name for s in client.get_run(run_id).steps]
    if args.step in names:
        return
    close = difflib.get_close_matches(args.step, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    _fail(
        args,
        f"run {run_id} has no step '{args.step}' (its steps: {', '.join(names) or 'none'}){hint}",
    )


def cancel(client: Client, args: argparse.Namespace) -> int:
    result = client.cancel_run(resolve_run(client, args), reason=args.reason)
    if args.output != "table":
        emit_message(result, args.output)
    elif result.status == run_pb2.RUN_STATUS_CANCELLED:
        print(f"run {result.id} cancelled")
    elif result.status in ENDED:
        print(f"run {result.id} already {_enum_name(RUN_STATUS, result.status)}")
    else:
        print(f"run {result.id} cancelling: its running steps are being stopped")
    return 0


def rerun(client: Client, args: argparse.Namespace) -> int:
    source = resolve_run(client, args)
    started = client.rerun_run(source, all_steps=args.all_steps, latest_version=args.latest_version)
    if args.output != "table":
        if args.follow:
            ended = _follow_quietly(client, args, started.id)
            if ended is None:
                return EXIT_INTERRUPTED
            started = ended
        emit_message(started, args.output)
        return _outcome(started) if args.follow else 0
    print(
        f"run {started.id} started: rerun of {source} ({started.pipeline} v{started.version})",
        flush=True,
    )
    return _follow_printing(client, args, started.id) if args.follow else 0


def output(client: Client, args: argparse.Namespace) -> int:
    response = client.get_step_output(resolve_run(client, args), args.step, limit=args.limit)
    if args.output != "table":
        emit_message(response, args.output)
        return 0
    summary = response.summary
    has_table = summary.HasField("rows")
    columns = ", ".join(f"{c.name} ({c.type})" for c in summary.columns)
    print(f"{'rows:':<10}{summary.rows if has_table else '- (the step returned no table)'}")
    if has_table:
        print(f"{'columns:':<10}{columns or '-'}")
    print(f"{'values:':<10}{_compact_json(summary.values) if summary.values.fields else '-'}")
    if summary.artifacts:
        names = ", ".join(
            f"{a.name} ({a.media_type}, {a.size_bytes} bytes)" for a in summary.artifacts
        )
        print(f"artifacts: {names}")
    if args.save is not None:
        _save_artifacts(client, args, summary)
    if not has_table:
        return 0
    print()
    rows = [well_known_to_python(row) for row in response.rows]
    headers = [c.name for c in summary.columns] or list(dict.fromkeys(k for r in rows for k in r))
    if headers:
        print(render_table(headers, [[_cell(row.get(h)) for h in headers] for row in rows]))
    if len(rows) < summary.rows:
        print(f"({len(rows)} of {summary.rows} rows; --limit N shows more)")
    return 0


def _save_artifacts(
    client: Client, args: argparse.Namespace, summary: run_pb2.OutputSummary
) -> None:
    wanted = [(summary.artifact_id, "output.arrow")] if summary.artifact_id else []
    wanted += [(a.id, a.name) for a in summary.artifacts]
    if not wanted:
        print(f"{'saved:':<10}nothing (the step stored no artifacts)")
        return
    root = args.save.resolve()
    for artifact_id, name in wanted:
        target = (root / name).resolve()
        if not target.is_relative_to(root):
            _fail(args, f"artifact name {name!r} points outside {root}; not saved")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_artifact(artifact_id, target)
        except OSError as exc:
            _fail(args, f"cannot save artifact {name!r} to {target}: {exc}")
        print(f"{'saved:':<10}{target}")


# -- following a run -------------------------------------------------------------------


def _follow_printing(client: Client, args: argparse.Namespace, run_id: str) -> int:
    """Print the run's log and what it waits for until it ends, then how it ended; the
    exit code is the outcome."""
    try:
        ended = _watch(
            client,
            args,
            run_id,
            after_seq=0,
            on_line=lambda line: print(format_log_line(line), flush=True),
            show_waits=True,
        )
    except KeyboardInterrupt:
        _interrupted(run_id)
        return EXIT_INTERRUPTED
    how = _enum_name(RUN_STATUS, ended.status)
    if ended.HasField("duration"):
        how += f" in {_duration(ended.duration, ended.start_time, ended.end_time)}"
    print(f"run {ended.id} {how}" + (f": {ended.error.splitlines()[0]}" if ended.error else ""))
    return _outcome(ended)


def _follow_quietly(client: Client, args: argparse.Namespace, run_id: str) -> run_pb2.Run | None:
    """Wait for the run to end without printing its log; None when interrupted."""
    try:
        return _watch(client, args, run_id, after_seq=0, on_line=None)
    except KeyboardInterrupt:
        _interrupted(run_id)
        return None


def _watch(
    client: Client,
    args: argparse.Namespace,
    run_id: str,
    *,
    after_seq: int,
    on_line: Callable[[run_pb2.LogLine], None] | None,
    show_waits: bool = False,
) -> run_pb2.Run:
    """Hand each new log line to ``on_line`` until the run ends; the ended run."""
    try:
        return watch(
            client,
            run_id,
            after_seq=after_seq,
            on_line=on_line,
            on_wait=(lambda line: print(line, flush=True)) if show_waits else None,
        )
    except StreamStoppedError as stopped:
        _fail(
            args,
            f"the server stopped sending events of run {run_id}, which is still "
            f"{_enum_name(RUN_STATUS, stopped.run.status)}; follow it again with: "
            f"legato logs -f {run_id}",
        )


def _interrupted(run_id: str) -> None:
    print(
        f"\nstopped following run {run_id}; it goes on. To stop it: legato cancel {run_id}",
        file=sys.stderr,
    )


def _outcome(ended: run_pb2.Run) -> int:
    return 0 if ended.status == run_pb2.RUN_STATUS_SUCCEEDED else EXIT_FAILED


# -- parameters ------------------------------------------------------------------------


def _params_file(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The params file's values, and its plain scalars as written (for string params)."""
    path: str | None = args.params_file
    if path is None:
        return {}, {}
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as error:
        _fail(args, f"{path}: cannot read the params file ({error.strerror})")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        _fail(args, f"{path}: not JSON or YAML ({error})")
    except ValueError as error:  # a date YAML cannot build, like 2026-13-01
        _fail(args, f"{path}: {error}; put the value in quotes")
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        kind = "list" if isinstance(data, list) else type(data).__name__
        _fail(args, f"{path}: expected a mapping of parameter names to values, got a {kind}")
    return data, plain_scalars(text)


# -- cells -----------------------------------------------------------------------------


def _enum_name(enum: EnumDescriptor, number: int) -> str:
    value = enum.values_by_number.get(number)
    return short_name(value) if value is not None else str(number)


def _number(enum: EnumDescriptor, name: str) -> int:
    number = enum_number(enum, name)
    assert number is not None, name  # argparse checked the choices
    return number


def _trigger_cell(trigger: run_pb2.RunTrigger) -> str:
    """``manual``; ``schedule@2026-06-12 09:00 UTC`` for scheduled and backfill runs."""
    name = _enum_name(TRIGGER_KIND, trigger.kind)
    timed = (run_pb2.TRIGGER_KIND_SCHEDULE, run_pb2.TRIGGER_KIND_BACKFILL)
    if trigger.kind in timed and trigger.HasField("logical_time"):
        return f"{name}@{local_time(trigger.logical_time, seconds=False)}"
    return name


def _trigger_text(trigger: run_pb2.RunTrigger) -> str:
    parts = [_trigger_cell(trigger)]
    if trigger.rerun_of:
        parts.append(f"of run {trigger.rerun_of}")
    if trigger.parent_run_id:
        step = f" step {trigger.parent_step}" if trigger.parent_step else ""
        parts.append(f"from run {trigger.parent_run_id}{step}")
    if trigger.event_id:
        parts.append(f"event {trigger.event_id}")
    if trigger.backfill_id:
        parts.append(f"backfill {trigger.backfill_id}")
    if trigger.actor:
        parts.append(f"by {trigger.actor}")
    return " ".join(parts)


def _duration(
    duration: duration_pb2.Duration | None,
    start: timestamp_pb2.Timestamp,
    end: timestamp_pb2.Timestamp,
) -> str:
    """The recorded duration; while running, the time since the start."""
    if duration is not None:
        seconds = duration.ToNanoseconds() / 1e9
    elif _is_set(start):
        until = end.ToNanoseconds() / 1e9 if _is_set(end) else time.time()
        seconds = max(until - start.ToNanoseconds() / 1e9, 0.0)
    else:
        return "-"
    if seconds >= 60:
        seconds = round(seconds)
    elif seconds >= 1:
        seconds = round(seconds, 1)
    return format_duration(seconds)


def _is_set(ts: timestamp_pb2.Timestamp) -> bool:
    return bool(ts.seconds or ts.nanos)


def _records(step: run_pb2.StepRun) -> str:
    """``127 → 98``, or the one count the step has, or ``-``."""
    has_in, has_out = step.HasField("records_in"), step.HasField("records_out")
    if has_in and has_out:
        return f"{step.records_in} → {step.records_out}"
    if has_in or has_out:
        return str(step.records_in if has_in else step.records_out)
    return "-"


def _shorten(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= CELL_CHARS else first[: CELL_CHARS - 1] + "…"


def _compact_json(struct: struct_pb2.Struct) -> str:
    return json.dumps(well_known_to_python(struct), ensure_ascii=False)


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _fail(args: argparse.Namespace, message: str) -> NoReturn:
    print(f"legato {args.command}: {message}", file=sys.stderr)
    raise CommandError
