"""What each kind of step needs: query, transform, function, export, trigger."""

from __future__ import annotations

import keyword
import warnings
from collections.abc import Iterator

from legato.v1 import spec_pb2

from .conditions import StepScope, check_step_expression, check_step_template
from .fields import (
    COLUMN,
    IDENTIFIER,
    TABLE,
    check_enum,
    check_headers,
    check_pipeline_name,
    check_required,
    check_url,
    quote_list,
)
from .violations import Violation, index, join, map_key

__all__ = ["KINDS", "MAX_BATCH_SIZE", "check_kind"]

KINDS = ("query", "transform", "function", "export", "trigger")
MAX_BATCH_SIZE = 10_000


def check_kind(path: str, step: spec_pb2.Step, scope: StepScope) -> Iterator[Violation]:
    """Violations of the step's kind, or one at ``path`` when it has none."""
    kind = step.WhichOneof("kind")
    if kind == "query":
        yield from _check_query(join(path, "query"), step.query, scope)
    elif kind == "transform":
        yield from _check_transform(join(path, "transform"), step, scope)
    elif kind == "function":
        yield from _check_function(join(path, "function.function"), step.function.function)
    elif kind == "export":
        yield from _check_export(path, step, scope)
    elif kind == "trigger":
        yield from _check_trigger(join(path, "trigger"), step.trigger, scope)
    else:
        yield Violation(
            path, f"step {scope.label} has no kind; set exactly one of {', '.join(KINDS)}"
        )


def _check_query(path: str, query: spec_pb2.QueryStep, scope: StepScope) -> Iterator[Violation]:
    yield from check_required(
        join(path, "connection"),
        query.connection,
        f"query step {scope.label} needs connection, the name of a connection configured "
        "on the agents",
    )
    yield from check_required(
        join(path, "sql"), query.sql, f"query step {scope.label} has no SQL; write it in sql"
    )
    for name in sorted(query.parameters):
        parameter_path = map_key(join(path, "parameters"), name)
        if not IDENTIFIER.fullmatch(name):
            yield Violation(
                parameter_path,
                f"'{name}' is not a bind parameter name; use letters, digits and '_' "
                "(it is written :name in the SQL)",
            )
        yield from check_step_expression(parameter_path, query.parameters[name], scope)


def _check_transform(path: str, step: spec_pb2.Step, scope: StepScope) -> Iterator[Violation]:
    code = step.transform.code
    code_path = join(path, "code")
    if not code.strip():
        yield Violation(
            code_path, f"transform step {scope.label} has no code; write Python in code"
        )
        return
    problem = python_syntax_problem(code, f"<step {step.name}>")
    if problem:
        yield Violation(code_path, problem)


def python_syntax_problem(code: str, filename: str) -> str | None:
    """Why ``code`` does not compile, with line and column inside it; compiled, never run."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(code, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f" at line {exc.lineno}" if exc.lineno else ""
        if exc.lineno and exc.offset:
            where += f", column {exc.offset}"
        return f"code does not compile: {exc.msg}{where}"
    except ValueError as exc:  # null bytes
        return f"code does not compile: {exc}"
    except (RecursionError, MemoryError):
        return "code does not compile: it is nested too deeply"
    return None


def _check_function(path: str, target: str) -> Iterator[Violation]:
    if not target:
        yield Violation(path, "function step needs function, written package.module:function")
        return
    module, colon, attribute = target.partition(":")
    parts = [*module.split("."), *attribute.split(".")]
    if not colon or not all(part.isidentifier() and not keyword.iskeyword(part) for part in parts):
        yield Violation(
            path,
            f"'{target}' is not a function reference; write package.module:function",
        )


def _check_export(path: str, step: spec_pb2.Step, scope: StepScope) -> Iterator[Violation]:
    export = step.export
    export_path = join(path, "export")
    yield from _check_input(path, step, scope)
    target = export.WhichOneof("target")
    if target == "table":
        yield from _check_table(join(export_path, "table"), export.table, scope)
    elif target == "webhook":
        webhook_path = join(export_path, "webhook")
        yield from check_url(join(webhook_path, "url"), export.webhook.url)
        if export.webhook.batch_size > MAX_BATCH_SIZE:
            yield Violation(
                join(webhook_path, "batch_size"),
                f"{export.webhook.batch_size} rows per request is more than the maximum of "
                f"{MAX_BATCH_SIZE}",
            )
        yield from check_headers(join(webhook_path, "headers"), export.webhook.headers)
    elif target == "slack":
        yield from check_required(
            join(export_path, "slack.webhook"),
            export.slack.webhook,
            "a slack export needs webhook, the name of the secret that holds the "
            "incoming-webhook URL",
        )
        if export.slack.text:
            yield from check_step_template(
                join(export_path, "slack.text"), export.slack.text, scope
            )
    else:
        yield Violation(
            export_path,
            f"export step {scope.label} has no target; set one of table, webhook, slack",
        )


def _check_input(path: str, step: spec_pb2.Step, scope: StepScope) -> Iterator[Violation]:
    needs = list(dict.fromkeys(need for need in step.needs if need))
    chosen = step.export.input
    if chosen and chosen not in needs:
        yield Violation(
            join(path, "export.input"),
            f"'{chosen}' is not one of the needs of step {scope.label} ({quote_list(needs)}); "
            "add it to needs or export one of those",
        )
    elif not chosen and len(needs) > 1:
        yield Violation(
            join(path, "export.input"),
            f"step {scope.label} needs {len(needs)} steps ({quote_list(needs)}); "
            "set input to the one whose table it exports",
        )
    elif not chosen and not needs:
        yield Violation(
            join(path, "needs"),
            f"export step {scope.label} needs no step, so it has nothing to export; "
            "add the step whose table it exports to needs",
        )


def _check_table(path: str, table: spec_pb2.TableExport, scope: StepScope) -> Iterator[Violation]:
    yield from check_required(
        join(path, "connection"),
        table.connection,
        f"table export {scope.label} needs connection, the name of a connection configured "
        "on the agents",
    )
    if not table.table:
        yield Violation(
            join(path, "table"), "table export needs table, written table or schema.table"
        )
    elif not TABLE.fullmatch(table.table):
        yield Violation(
            join(path, "table"),
            f"'{table.table}' is not a table name; write table or schema.table "
            "with letters, digits and '_'",
        )
    yield from check_enum(join(path, "mode"), spec_pb2.ExportMode.DESCRIPTOR, table.mode)
    yield from _check_keys(path, table)


def _check_keys(path: str, table: spec_pb2.TableExport) -> Iterator[Violation]:
    keys_path = join(path, "keys")
    if table.mode == spec_pb2.EXPORT_MODE_UPSERT and not table.keys:
        yield Violation(
            keys_path, "upsert needs keys, the columns that identify a row; list them in keys"
        )
    keys = list(table.keys)
    for position, column in enumerate(keys):
        if not COLUMN.fullmatch(column):
            yield Violation(
                index(keys_path, position),
                f"'{column}' is not a column name; use letters, digits and '_'",
            )
        elif column in keys[:position]:
            yield Violation(
                index(keys_path, position),
                f"'{column}' is listed twice (first at keys[{keys.index(column)}]); "
                "remove the repeat",
            )


def _check_trigger(
    path: str, trigger: spec_pb2.TriggerStep, scope: StepScope
) -> Iterator[Violation]:
    pipeline_path = join(path, "pipeline")
    if trigger.pipeline and trigger.pipeline == scope.pipeline:
        yield Violation(
            pipeline_path,
            f"step {scope.label} triggers its own pipeline '{scope.pipeline}', which would "
            "start runs without end; name another pipeline",
        )
    else:
        yield from check_pipeline_name(pipeline_path, trigger.pipeline, "pipeline to trigger")
    for name in sorted(trigger.params):
        param_path = map_key(join(path, "params"), name)
        if not IDENTIFIER.fullmatch(name):
            yield Violation(
                param_path,
                f"'{name}' is not a valid parameter name; use letters, digits and '_'",
            )
        yield from check_step_expression(param_path, trigger.params[name], scope)
