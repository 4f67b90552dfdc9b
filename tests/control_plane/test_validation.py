"""Spec validation: every rule, with its exact field path and message, and the DAG helpers."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from google.protobuf import json_format

from control_plane.validation import (
    CycleError,
    Violation,
    ancestors,
    descendants,
    topological_order,
    validate_spec,
)
from control_plane.validation.violations import index, join, map_key
from legato.v1 import spec_pb2

# A valid spec that uses every section, written as the JSON form of PipelineSpec.
RICH: dict[str, Any] = {
    "name": "daily-sales",
    "description": "Daily sales, scored and loaded",
    "labels": {"team": "data", "app.kubernetes.io/name": "sales"},
    "params": {
        "days": {"type": "PARAM_TYPE_INTEGER", "default": 7, "choices": [1, 7, 30]},
        "region": {"type": "PARAM_TYPE_STRING", "required": True},
        "start": {"type": "PARAM_TYPE_DATETIME", "default": "2026-06-12T09:00:00+02:00"},
        "day": {"type": "PARAM_TYPE_DATE", "default": "2026-06-12"},
        "ratio": {"type": "PARAM_TYPE_NUMBER", "default": 0.5},
        "dry_run": {"type": "PARAM_TYPE_BOOLEAN", "default": False},
        "options": {"type": "PARAM_TYPE_JSON", "default": {"a": 1}},
        "anything": {"default": [1, "x"]},
    },
    "schedule": {
        "cron": "0 9 * * MON-FRI",
        "timezone": "Europe/Berlin",
        "dst": {"skipped": "DST_SKIPPED_POLICY_SHIFT", "repeated": "DST_REPEATED_POLICY_FIRST"},
        "catchup": "CATCHUP_POLICY_LATEST",
        "overlap": "OVERLAP_POLICY_SKIP",
        "pause_after_failures": 5,
        "params": {"region": "eu", "days": 30},
    },
    "triggers": [
        {
            "event": {
                "type": "orders.loaded",
                "filter": "event.payload.rows > 0 and event.type.startswith('orders.')",
                "params": {"region": "us"},
            }
        },
        {"webhook": {"secret": "sales-hook"}},
        {
            "database": {
                "connection": "warehouse",
                "table": "public.orders",
                "watermark": "updated_at",
                "every": "60s",
            }
        },
        {"database": {"connection": "warehouse", "channel": "orders_changed"}},
    ],
    "limits": {
        "max_duration": "7200s",
        "max_concurrent_runs": 2,
        "step_timeout": "1800s",
        "step_memory": "2Gi",
    },
    "retry": {
        "max_retries": 3,
        "delay": "60s",
        "backoff": 2,
        "max_delay": "600s",
        "retry_on": ["FAILURE_KIND_ERROR", "FAILURE_KIND_LOST"],
    },
    "notifications": [
        {"on": ["NOTIFICATION_EVENT_FAILED"], "email": {"to": ["data@example.com"]}},
        {
            "on": ["NOTIFICATION_EVENT_SUCCEEDED"],
            "slack": {"webhook": "slack-hook", "channel": "#data"},
        },
        {
            "on": ["NOTIFICATION_EVENT_FAILED", "NOTIFICATION_EVENT_TIMED_OUT"],
            "pagerduty": {"routing_key": "pd-key", "severity": "critical"},
        },
        {
            "on": ["NOTIFICATION_EVENT_SCHEDULE_PAUSED"],
            "webhook": {"url": "https://hooks.example.com/legato", "headers": {"X-Team": "data"}},
        },
    ],
    "steps": [
        {
            "name": "extract",
            "query": {
                "connection": "warehouse",
                "sql": "SELECT * FROM sales WHERE day > :since LIMIT :limit",
                "parameters": {"since": "params.day", "limit": "params.days * 100"},
            },
            "timeout": "600s",
            "memory": "512Mi",
            "agent_selector": {"region": "eu", "source": "warehouse"},
        },
        {
            "name": "clean",
            "needs": ["extract"],
            "transform": {"code": "data = data.dropna()\nrecords = len(data)\n"},
            "when": "steps.extract.records > 0",
            "retry": {"max_retries": 1},
        },
        {
            "name": "score",
            "needs": ["clean"],
            "function": {"function": "sales.scoring:score_rows", "args": {"model": "v2"}},
            "trigger_rule": "TRIGGER_RULE_ALL_SUCCESS",
        },
        {
            "name": "load",
            "needs": ["score", "clean"],
            "export": {
                "input": "score",
                "table": {
                    "connection": "warehouse",
                    "table": "analytics.daily_sales",
                    "mode": "EXPORT_MODE_UPSERT",
                    "keys": ["day", "region"],
                },
            },
            "when": "steps.extract.outputs.get('total', 0) >= 0",
        },
        {
            "name": "post",
            "needs": ["score"],
            "export": {"webhook": {"url": "https://example.com/hook", "batch_size": 100}},
        },
        {
            "name": "announce",
            "needs": ["score"],
            "export": {"input": "score", "slack": {"webhook": "slack-hook", "text": "done"}},
            "trigger_rule": "TRIGGER_RULE_ALL_DONE",
        },
        {
            "name": "report",
            "needs": ["load"],
            "trigger": {
                "pipeline": "weekly-report",
                "params": {"region": "params.region", "rows": "steps.load.records"},
                "wait": True,
            },
        },
    ],
}

DELETE = object()
_PATH_PART = re.compile(r"\.?([A-Za-z_][\w-]*)|\[(\d+)\]|\[\"([^\"]+)\"\]")


def patched(*changes: tuple[str, Any]) -> spec_pb2.PipelineSpec:
    """RICH with each (path, value) applied; a list index one past the end appends."""
    doc = copy.deepcopy(RICH)
    for path, value in changes:
        parts: list[str | int] = []
        for name, position, quoted in _PATH_PART.findall(path):
            parts.append(int(position) if position else (name or quoted))
        target: Any = doc
        for part in parts[:-1]:
            target = target[part] if not isinstance(target, dict) else target.setdefault(part, {})
        last = parts[-1]
        if value is DELETE:
            del target[last]
        elif isinstance(last, int) and last == len(target):
            target.append(value)
        else:
            target[last] = value
    return json_format.ParseDict(doc, spec_pb2.PipelineSpec())


def found(spec: spec_pb2.PipelineSpec) -> list[tuple[str, str]]:
    return [(v.field, v.description) for v in validate_spec(spec)]


def test_rich_spec_is_valid() -> None:
    assert validate_spec(patched()) == []


def test_minimal_spec_is_valid() -> None:
    spec = spec_pb2.PipelineSpec(
        name="hello", steps=[spec_pb2.Step(name="hi", transform=spec_pb2.TransformStep(code="1"))]
    )
    assert validate_spec(spec) == []


def test_violation_is_a_frozen_value() -> None:
    violation = Violation("name", "x")
    assert violation == Violation("name", "x")
    with pytest.raises(AttributeError):
        violation.field = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("base", "name", "expected"),
    [
        ("", "name", "name"),
        ("schedule", "cron", "schedule.cron"),
    ],
)
def test_join(base: str, name: str, expected: str) -> None:
    assert join(base, name) == expected


def test_index_and_map_keys() -> None:
    assert index("steps", 2) + ".needs[0]" == "steps[2].needs[0]"
    assert map_key("params", "days") == "params.days"
    assert map_key("params", "load-users_2") == "params.load-users_2"
    assert map_key("labels", "app.kubernetes.io/name") == 'labels["app.kubernetes.io/name"]'
    assert map_key("params", "2days") == 'params["2days"]'
    assert map_key("labels", 'say "hi"') == 'labels["say \\"hi\\""]'
    assert map_key("labels", "") == 'labels[""]'


SEVERAL_DECLARED = "anything, day, days, dry_run, options, ratio, region, start"
STEPS = "'extract', 'clean', 'score', 'load', 'post', 'announce', 'report'"
ENUM_CASES = [
    (
        "steps[2].trigger_rule",
        99,
        "99 is not a known trigger rule; use one of all_success, all_done, none_failed, "
        "one_success",
    ),
    (
        "params.days.type",
        42,
        "42 is not a known param type; use one of string, integer, number, boolean, date, "
        "datetime, json",
    ),
    (
        "schedule.overlap",
        9,
        "9 is not a known overlap policy; use one of queue, skip, cancel_previous, allow",
    ),
    ("schedule.catchup", 7, "7 is not a known catchup policy; use one of none, latest, all"),
    (
        "schedule.dst.skipped",
        5,
        "5 is not a known dst skipped policy; use one of shift, skip",
    ),
    (
        "schedule.dst.repeated",
        5,
        "5 is not a known dst repeated policy; use one of first, last, both",
    ),
    (
        "steps[3].export.table.mode",
        8,
        "8 is not a known export mode; use one of append, replace, upsert",
    ),
]


@pytest.mark.parametrize(("path", "number", "message"), ENUM_CASES)
def test_unknown_enum_numbers(path: str, number: int, message: str) -> None:
    assert found(patched((path, number))) == [(path, message)]


# (changes, expected violations): each case breaks one rule of the rich spec.
CASES: list[tuple[str, list[tuple[str, Any]], list[tuple[str, str]]]] = [
    # --- pipeline name and labels
    (
        "name required",
        [("name", "")],
        [("name", "pipeline name is required; use lower-case letters, digits, '-' and '_'")],
    ),
    (
        "name pattern",
        [("name", "Daily Sales")],
        [
            (
                "name",
                "'Daily Sales' is not a valid pipeline name; use 1-63 lower-case letters, "
                "digits, '-' and '_', starting with a letter",
            )
        ],
    ),
    (
        "name too long",
        [("name", "a" * 64)],
        [
            (
                "name",
                f"'{'a' * 64}' is not a valid pipeline name; use 1-63 lower-case letters, "
                "digits, '-' and '_', starting with a letter",
            )
        ],
    ),
    (
        "label key",
        [('labels["bad key"]', "x")],
        [
            (
                'labels["bad key"]',
                "'bad key' is not a valid label key; use up to 63 letters, digits, '.', '_', "
                "'/' and '-', starting with a letter or digit",
            )
        ],
    ),
    # --- params
    (
        "param name",
        [('params["2days"]', {"type": "PARAM_TYPE_INTEGER"})],
        [
            (
                'params["2days"]',
                "'2days' is not a valid parameter name; use letters, digits and '_', "
                "starting with a letter or '_'",
            )
        ],
    ),
    (
        "param name with dash",
        [("params.max-rows", {})],
        [
            (
                "params.max-rows",
                "'max-rows' is not a valid parameter name; use letters, digits and '_', "
                "starting with a letter or '_'",
            )
        ],
    ),
    (
        "integer default",
        [("params.days.default", "x")],
        [
            (
                "params.days.default",
                "default 'x' is not an integer; parameter 'days' has type integer",
            )
        ],
    ),
    (
        "integer default with a fraction",
        [("params.days.default", 7.5)],
        [
            (
                "params.days.default",
                "default 7.5 is not an integer; parameter 'days' has type integer",
            )
        ],
    ),
    (
        "number default",
        [("params.ratio.default", "high")],
        [
            (
                "params.ratio.default",
                "default 'high' is not a number; parameter 'ratio' has type number",
            )
        ],
    ),
    (
        "boolean default",
        [("params.dry_run.default", "yes")],
        [
            (
                "params.dry_run.default",
                "default 'yes' is not true or false; parameter 'dry_run' has type boolean",
            )
        ],
    ),
    (
        "string default",
        [("params.region.default", 5), ("params.region.required", False)],
        [
            (
                "params.region.default",
                "default 5 is not a string; parameter 'region' has type string",
            )
        ],
    ),
    (
        "date default",
        [("params.day.default", "12/06/2026")],
        [
            (
                "params.day.default",
                "default '12/06/2026' is not an ISO 8601 date like 2026-06-12; parameter 'day' "
                "has type date",
            )
        ],
    ),
    (
        "datetime default without offset",
        [("params.start.default", "2026-06-12T09:00:00")],
        [
            (
                "params.start.default",
                "default '2026-06-12T09:00:00' has no UTC offset; add one, like "
                "2026-06-12T09:00:00+02:00 or 2026-06-12T07:00:00Z; parameter 'start' has type "
                "datetime",
            )
        ],
    ),
    (
        "datetime default not a datetime",
        [("params.start.default", "soon")],
        [
            (
                "params.start.default",
                "default 'soon' is not an ISO 8601 date and time like 2026-06-12T09:00:00+02:00; "
                "parameter 'start' has type datetime",
            )
        ],
    ),
    (
        "json default",
        [("params.options.default", "x")],
        [
            (
                "params.options.default",
                "default 'x' is not a JSON object or list; parameter 'options' has type json",
            )
        ],
    ),
    (
        "default among choices",
        [("params.days.default", 5)],
        [
            (
                "params.days.default",
                "default 5 is not one of the choices of parameter 'days' (1, 7, 30); "
                "pick one of them",
            )
        ],
    ),
    (
        "required with a default",
        [("params.days.required", True)],
        [
            (
                "params.days.required",
                "parameter 'days' is required and has a default, so it is never missing; "
                "remove required or the default",
            )
        ],
    ),
    (
        "choices of the type, once each",
        [("params.days.choices", [7, "x", 7, 30])],
        [
            (
                "params.days.choices[1]",
                "choice 'x' is not an integer; parameter 'days' has type integer",
            ),
            (
                "params.days.choices[2]",
                "choice 7 is listed twice (first at choices[0]); remove the repeat",
            ),
        ],
    ),
    # --- schedule
    (
        "cron required",
        [("schedule.cron", "")],
        [("schedule.cron", "a schedule needs a cron expression, like '0 9 * * *' or '@daily'")],
    ),
    (
        "cron name",
        [("schedule.cron", "0 9 * * MOM")],
        [
            (
                "schedule.cron",
                "day-of-week field 'MOM' is not a day name (use 0-7 or SUN-SAT) — did you mean "
                "'MON'?",
            )
        ],
    ),
    (
        "cron range",
        [("schedule.cron", "61 9 * * *")],
        [("schedule.cron", "minute field '61' is out of range 0-59")],
    ),
    (
        "cron field count",
        [("schedule.cron", "0 0 9 * * *")],
        [
            (
                "schedule.cron",
                "cron needs 5 fields (minute hour day-of-month month day-of-week), got 6: "
                "'0 0 9 * * *'",
            )
        ],
    ),
    (
        "time zone in the wrong case",
        [("schedule.timezone", "europe/berlin")],
        [
            (
                "schedule.timezone",
                "'europe/berlin' is not an IANA time zone — did you mean 'Europe/Berlin'?",
            )
        ],
    ),
    (
        "time zone misspelt",
        [("schedule.timezone", "Europe/Berln")],
        [
            (
                "schedule.timezone",
                "'Europe/Berln' is not an IANA time zone — did you mean 'Europe/Berlin'?",
            )
        ],
    ),
    (
        "unknown time zone",
        [("schedule.timezone", "Mars/Olympus_Mons")],
        [
            (
                "schedule.timezone",
                "'Mars/Olympus_Mons' is not an IANA time zone; use a name like Europe/Berlin "
                "or UTC",
            )
        ],
    ),
    (
        "pause after failures",
        [("schedule.pause_after_failures", 1001)],
        [
            (
                "schedule.pause_after_failures",
                "1001 is more than the maximum of 1000; use 0 to never pause",
            )
        ],
    ),
    (
        "schedule params are declared, required ones are given",
        [("schedule.params", {"regoin": "eu"})],
        [
            (
                "schedule.params.regoin",
                f"'regoin' is not a parameter of pipeline 'daily-sales' (declared: "
                f"{SEVERAL_DECLARED}) — did you mean 'region'?",
            ),
            (
                "schedule.params",
                "scheduled runs need a value for the required parameter 'region'; set it in "
                "schedule.params or give the parameter a default",
            ),
        ],
    ),
    (
        "required param without schedule params",
        [("schedule.params", DELETE)],
        [
            (
                "schedule",
                "scheduled runs need a value for the required parameter 'region'; set it in "
                "schedule.params or give the parameter a default",
            )
        ],
    ),
    (
        "schedule param value among choices",
        [("schedule.params.days", 5)],
        [
            (
                "schedule.params.days",
                "5 is not one of the choices of parameter 'days' (1, 7, 30)",
            )
        ],
    ),
    # --- triggers
    (
        "trigger kind",
        [("triggers[1]", {})],
        [("triggers[1]", "trigger has no kind; set exactly one of event, webhook, database")],
    ),
    (
        "event type",
        [("triggers[0].event.type", "")],
        [
            (
                "triggers[0].event.type",
                "an event trigger needs type, the type of the events that start a run",
            )
        ],
    ),
    (
        "event filter roots",
        [("triggers[0].event.filter", "evnt.type == 'x'")],
        [
            (
                "triggers[0].event.filter",
                "'evnt' is not defined — did you mean 'event'?; names available: event "
                "(at column 1)",
            )
        ],
    ),
    (
        "event filter cannot read params",
        [("triggers[0].event.filter", "params.days > 1")],
        [
            (
                "triggers[0].event.filter",
                "'params' is not defined; names available: event (at column 1)",
            )
        ],
    ),
    (
        "event params",
        [("triggers[0].event.params.days", "x")],
        [
            (
                "triggers[0].event.params.days",
                "'x' is not an integer; parameter 'days' has type integer",
            )
        ],
    ),
    (
        "webhook secret",
        [("triggers[1].webhook.secret", "")],
        [
            (
                "triggers[1].webhook.secret",
                "a webhook trigger needs secret, the name of the secret its HMAC-SHA256 "
                "signature is checked against",
            )
        ],
    ),
    (
        "database connection",
        [("triggers[2].database.connection", "")],
        [
            (
                "triggers[2].database.connection",
                "a database trigger needs connection, the name of a connection configured on "
                "agents",
            )
        ],
    ),
    (
        "database channel and table",
        [("triggers[2].database.channel", "orders_changed")],
        [
            (
                "triggers[2].database.table",
                "set channel (LISTEN/NOTIFY) or table (polled by watermark), not both",
            )
        ],
    ),
    (
        "database neither channel nor table",
        [("triggers[3].database.channel", "")],
        [
            (
                "triggers[3].database",
                "a database trigger needs channel (PostgreSQL LISTEN/NOTIFY) or table (polled "
                "for rows whose watermark column grew); set one of them",
            )
        ],
    ),
    (
        "database table name",
        [("triggers[2].database.table", "orders; drop")],
        [
            (
                "triggers[2].database.table",
                "'orders; drop' is not a table name; write table or schema.table",
            )
        ],
    ),
    (
        "database watermark",
        [("triggers[2].database.watermark", "")],
        [
            (
                "triggers[2].database.watermark",
                "a polled table needs watermark, the column whose growth marks new rows (like "
                "updated_at or id)",
            )
        ],
    ),
    (
        "database every below 1s",
        [("triggers[2].database.every", "0.5s")],
        [("triggers[2].database.every", "500ms is less than the minimum of 1s")],
    ),
    (
        "database every above 1d",
        [("triggers[2].database.every", "172800s")],
        [("triggers[2].database.every", "2d is more than the maximum of 1d")],
    ),
    (
        "database every zero",
        [("triggers[2].database.every", "0s")],
        [
            (
                "triggers[2].database.every",
                "0s is not a positive duration; set a duration above 0s",
            )
        ],
    ),
    # --- limits
    (
        "max duration",
        [("limits.max_duration", "3888000s")],
        [("limits.max_duration", "45d is more than the maximum of 30d")],
    ),
    (
        "max duration zero",
        [("limits.max_duration", "0s")],
        [("limits.max_duration", "0s is not a positive duration; set a duration above 0s")],
    ),
    (
        "step timeout default",
        [("limits.step_timeout", "691200s")],
        [("limits.step_timeout", "8d is more than the maximum of 7d")],
    ),
    (
        "max concurrent runs",
        [("limits.max_concurrent_runs", 10001)],
        [
            (
                "limits.max_concurrent_runs",
                "10001 is more than the maximum of 10000; use 0 for no limit",
            )
        ],
    ),
    (
        "step memory too small",
        [("limits.step_memory", "8Mi")],
        [("limits.step_memory", "'8Mi' is less than the minimum of 16Mi")],
    ),
    (
        "step memory too large",
        [("limits.step_memory", "2Ti")],
        [("limits.step_memory", "'2Ti' is more than the maximum of 1Ti")],
    ),
    (
        "step memory unit",
        [("limits.step_memory", "lots")],
        [
            (
                "limits.step_memory",
                "'lots' is not a memory size; write a number with a unit, like 512Mi, 4Gi or 1G",
            )
        ],
    ),
    # --- retry
    (
        "max retries",
        [("retry.max_retries", 101)],
        [("retry.max_retries", "101 retries is more than the maximum of 100")],
    ),
    (
        "retry delay",
        [("retry.delay", "172800s")],
        [("retry.delay", "2d is more than the maximum of 1d")],
    ),
    (
        "retry delay negative",
        [("steps[1].retry.delay", "-5s")],
        [("steps[1].retry.delay", "-5s is not a positive duration; set a duration above 0s")],
    ),
    (
        "backoff below 1",
        [("retry.backoff", 0.5)],
        [
            (
                "retry.backoff",
                "backoff 0.5 is not between 1 and 10; each wait is the previous one times "
                "backoff (1 keeps it constant)",
            )
        ],
    ),
    (
        "backoff above 10",
        [("retry.backoff", 11)],
        [
            (
                "retry.backoff",
                "backoff 11 is not between 1 and 10; each wait is the previous one times "
                "backoff (1 keeps it constant)",
            )
        ],
    ),
    (
        "max delay below delay",
        [("retry.max_delay", "30s")],
        [("retry.max_delay", "max_delay 30s is less than delay 1m; make it at least 1m")],
    ),
    (
        "max delay above 7d",
        [("retry.max_delay", "864000s")],
        [("retry.max_delay", "10d is more than the maximum of 7d")],
    ),
    (
        "retry on repeats",
        [("retry.retry_on", ["FAILURE_KIND_ERROR", "FAILURE_KIND_TIMEOUT", "FAILURE_KIND_ERROR"])],
        [
            (
                "retry.retry_on[2]",
                "'error' is listed twice (first at retry_on[0]); remove the repeat",
            )
        ],
    ),
    (
        "retry on unspecified",
        [("retry.retry_on", ["FAILURE_KIND_UNSPECIFIED"])],
        [
            (
                "retry.retry_on[0]",
                "unspecified is not a known failure kind; use one of error, timeout, lost, memory",
            )
        ],
    ),
    # --- notifications
    (
        "notification channel",
        [("notifications[1]", {"on": ["NOTIFICATION_EVENT_FAILED"]})],
        [
            (
                "notifications[1]",
                "notification has no channel; set exactly one of email, slack, pagerduty, webhook",
            )
        ],
    ),
    (
        "notification events",
        [("notifications[0].on", [])],
        [
            (
                "notifications[0].on",
                "notification lists no events; list when to send it in on, like [failed]",
            )
        ],
    ),
    (
        "notification event twice",
        [("notifications[0].on", ["NOTIFICATION_EVENT_FAILED", "NOTIFICATION_EVENT_FAILED"])],
        [
            (
                "notifications[0].on[1]",
                "'failed' is listed twice (first at on[0]); remove the repeat",
            )
        ],
    ),
    (
        "email recipients",
        [("notifications[0].email.to", [])],
        [
            (
                "notifications[0].email.to",
                "an email notification needs at least one address in to",
            )
        ],
    ),
    (
        "email address",
        [("notifications[0].email.to", ["data@example.com", "data-team"])],
        [
            (
                "notifications[0].email.to[1]",
                "'data-team' is not an email address; write it like name@example.com",
            )
        ],
    ),
    (
        "slack webhook secret",
        [("notifications[1].slack.webhook", "")],
        [
            (
                "notifications[1].slack.webhook",
                "a slack notification needs webhook, the name of the secret that holds the "
                "incoming-webhook URL",
            )
        ],
    ),
    (
        "pagerduty severity",
        [("notifications[2].pagerduty.severity", "high")],
        [
            (
                "notifications[2].pagerduty.severity",
                "'high' is not a PagerDuty severity; use one of critical, error, warning, info",
            )
        ],
    ),
    (
        "pagerduty routing key",
        [("notifications[2].pagerduty.routing_key", "")],
        [
            (
                "notifications[2].pagerduty.routing_key",
                "a pagerduty notification needs routing_key, the name of the secret that holds "
                "the integration key",
            )
        ],
    ),
    (
        "webhook url scheme",
        [("notifications[3].webhook.url", "ftp://example.com/x")],
        [
            (
                "notifications[3].webhook.url",
                "'ftp://example.com/x' is not an http or https URL; write it like "
                "https://host/path",
            )
        ],
    ),
    (
        "webhook header name",
        [("notifications[3].webhook.headers", {"X Team": "data"})],
        [
            (
                'notifications[3].webhook.headers["X Team"]',
                "'X Team' is not a valid HTTP header name",
            )
        ],
    ),
    # --- step names and kinds
    (
        "no steps",
        [("steps", [])],
        [("steps", "pipeline 'daily-sales' has no steps; add at least one")],
    ),
    (
        "step name required",
        [("steps[7]", {"transform": {"code": "x = 1"}})],
        [("steps[7].name", "step has no name; set a name of letters, digits, '-' and '_'")],
    ),
    (
        "step name pattern",
        [("steps[7]", {"name": "load data", "transform": {"code": "x = 1"}})],
        [
            (
                "steps[7].name",
                "'load data' is not a valid step name; use 1-63 letters, digits, '-' and '_', "
                "starting with a letter or '_'",
            )
        ],
    ),
    (
        "step name unique",
        [("steps[7]", {"name": "clean", "transform": {"code": "x = 1"}})],
        [
            (
                "steps[7].name",
                "step name 'clean' is already used by steps[1]; step names must be unique",
            )
        ],
    ),
    (
        "step kind",
        [("steps[7]", {"name": "orphan", "needs": ["extract"]})],
        [
            (
                "steps[7]",
                "step 'orphan' has no kind; set exactly one of query, transform, function, "
                "export, trigger",
            )
        ],
    ),
    (
        "unnamed step without kind",
        [("steps[7]", {"needs": ["extract"]})],
        [
            ("steps[7].name", "step has no name; set a name of letters, digits, '-' and '_'"),
            (
                "steps[7]",
                "step steps[7] has no kind; set exactly one of query, transform, function, "
                "export, trigger",
            ),
        ],
    ),
    # --- needs and cycles
    (
        "needs a misspelt step",
        [("steps[2].needs", ["clen"])],
        [
            (
                "steps[2].needs[0]",
                "'clen' is not a step of pipeline 'daily-sales' — did you mean 'clean'?",
            )
        ],
    ),
    (
        "needs an unknown step",
        [("steps[2].needs", ["clean", "zzz"])],
        [
            (
                "steps[2].needs[1]",
                f"'zzz' is not a step of pipeline 'daily-sales'; its steps are {STEPS}",
            )
        ],
    ),
    (
        "needs itself",
        [("steps[2].needs", ["clean", "score"])],
        [("steps[2].needs[1]", "dependency cycle: score → score; a step cannot need itself")],
    ),
    (
        "needs twice",
        [("steps[2].needs", ["clean", "clean"])],
        [
            (
                "steps[2].needs[1]",
                "'clean' is listed twice in needs (first at needs[0]); remove the repeat",
            )
        ],
    ),
    (
        "empty needs entry",
        [("steps[2].needs", ["clean", ""])],
        [("steps[2].needs[1]", "needs entry is empty; name a step of the pipeline")],
    ),
    (
        "two-step cycle",
        [("steps[0].needs", ["clean"])],
        [
            (
                "steps[1].needs[0]",
                "dependency cycle: extract → clean → extract; remove one of these needs to "
                "break it",
            )
        ],
    ),
    (
        "three-step cycle",
        [("steps[0].needs", ["score"])],
        [
            (
                "steps[1].needs[0]",
                "dependency cycle: extract → clean → score → extract; remove one of these "
                "needs to break it",
            )
        ],
    ),
    # --- when
    (
        "when reads a step that is not upstream",
        [("steps[1].when", "steps.score.records > 0")],
        [("steps[1].when", "'score' is not upstream of step 'clean'; add it to needs")],
    ),
    (
        "when reads a step that does not exist",
        [("steps[1].when", "steps['extrakt'].records > 0")],
        [
            (
                "steps[1].when",
                "'extrakt' is not a step of pipeline 'daily-sales' — did you mean 'extract'?",
            )
        ],
    ),
    (
        "when does not parse",
        [("steps[1].when", "steps.extract.records >")],
        [("steps[1].when", "syntax error: the expression ends unexpectedly")],
    ),
    (
        "when names an unknown root",
        [("steps[1].when", "parms.days > 1")],
        [
            (
                "steps[1].when",
                "'parms' is not defined — did you mean 'params'?; names available: params, "
                "steps, run (at column 1)",
            )
        ],
    ),
    (
        "when calls a function",
        [("steps[1].when", "open('x')")],
        [
            (
                "steps[1].when",
                "function calls other than len, min, max, abs, round, int, float, str, bool, "
                "sum, any, all are not allowed: 'open' (at column 1)",
            )
        ],
    ),
    # --- per-step settings
    (
        "agent selector key",
        [("steps[0].agent_selector", {"-region": "eu"})],
        [
            (
                'steps[0].agent_selector["-region"]',
                "'-region' is not a valid label key; use up to 63 letters, digits, '.', '_', "
                "'/' and '-', starting with a letter or digit",
            )
        ],
    ),
    (
        "step timeout zero",
        [("steps[0].timeout", "0s")],
        [("steps[0].timeout", "0s is not a positive duration; set a duration above 0s")],
    ),
    (
        "step timeout above 7d",
        [("steps[0].timeout", "691200s")],
        [("steps[0].timeout", "8d is more than the maximum of 7d")],
    ),
    (
        "step memory",
        [("steps[0].memory", "1Ki")],
        [("steps[0].memory", "'1Ki' is less than the minimum of 16Mi")],
    ),
    # --- query
    (
        "query connection",
        [("steps[0].query.connection", "")],
        [
            (
                "steps[0].query.connection",
                "query step 'extract' needs connection, the name of a connection configured on "
                "the agents",
            )
        ],
    ),
    (
        "query sql",
        [("steps[0].query.sql", "  ")],
        [("steps[0].query.sql", "query step 'extract' has no SQL; write it in sql")],
    ),
    (
        "query parameter name",
        [("steps[0].query.parameters", {"max-rows": "1"})],
        [
            (
                "steps[0].query.parameters.max-rows",
                "'max-rows' is not a bind parameter name; use letters, digits and '_' (it is "
                "written :name in the SQL)",
            )
        ],
    ),
    (
        "query parameter reads a later step",
        [("steps[0].query.parameters.since", "steps.load.records")],
        [
            (
                "steps[0].query.parameters.since",
                "'load' is not upstream of step 'extract'; add it to needs",
            )
        ],
    ),
    (
        "query parameter expression",
        [("steps[0].query.parameters.since", "params.day +")],
        [
            (
                "steps[0].query.parameters.since",
                "syntax error: the expression ends unexpectedly",
            )
        ],
    ),
    # --- transform
    (
        "transform code required",
        [("steps[1].transform.code", "")],
        [("steps[1].transform.code", "transform step 'clean' has no code; write Python in code")],
    ),
    (
        "transform code compiles",
        [("steps[1].transform.code", "data = data.dropna()\nrecords = = len(data)\n")],
        [("steps[1].transform.code", "code does not compile: invalid syntax at line 2, column 11")],
    ),
    (
        "transform code unclosed",
        [("steps[1].transform.code", "x = (\n")],
        [
            (
                "steps[1].transform.code",
                "code does not compile: '(' was never closed at line 1, column 5",
            )
        ],
    ),
    # --- function
    (
        "function required",
        [("steps[2].function.function", "")],
        [
            (
                "steps[2].function.function",
                "function step needs function, written package.module:function",
            )
        ],
    ),
    (
        "function without colon",
        [("steps[2].function.function", "sales.scoring.score_rows")],
        [
            (
                "steps[2].function.function",
                "'sales.scoring.score_rows' is not a function reference; write "
                "package.module:function",
            )
        ],
    ),
    (
        "function with a keyword",
        [("steps[2].function.function", "sales.class:score")],
        [
            (
                "steps[2].function.function",
                "'sales.class:score' is not a function reference; write package.module:function",
            )
        ],
    ),
    # --- export
    (
        "export target",
        [("steps[4].export", {})],
        [
            (
                "steps[4].export",
                "export step 'post' has no target; set one of table, webhook, slack",
            )
        ],
    ),
    (
        "export input not needed",
        [("steps[3].export.input", "extract")],
        [
            (
                "steps[3].export.input",
                "'extract' is not one of the needs of step 'load' ('score', 'clean'); add it to "
                "needs or export one of those",
            )
        ],
    ),
    (
        "export input ambiguous",
        [("steps[3].export.input", "")],
        [
            (
                "steps[3].export.input",
                "step 'load' needs 2 steps ('score', 'clean'); set input to the one whose table "
                "it exports",
            )
        ],
    ),
    (
        "export without needs",
        [("steps[4].needs", [])],
        [
            (
                "steps[4].needs",
                "export step 'post' needs no step, so it has nothing to export; add the step "
                "whose table it exports to needs",
            )
        ],
    ),
    (
        "table connection and name",
        [("steps[3].export.table.connection", ""), ("steps[3].export.table.table", "")],
        [
            (
                "steps[3].export.table.connection",
                "table export 'load' needs connection, the name of a connection configured on "
                "the agents",
            ),
            (
                "steps[3].export.table.table",
                "table export needs table, written table or schema.table",
            ),
        ],
    ),
    (
        "table name",
        [("steps[3].export.table.table", "a.b.c")],
        [
            (
                "steps[3].export.table.table",
                "'a.b.c' is not a table name; write table or schema.table with letters, digits "
                "and '_'",
            )
        ],
    ),
    (
        "upsert keys",
        [("steps[3].export.table.keys", [])],
        [
            (
                "steps[3].export.table.keys",
                "upsert needs keys, the columns that identify a row; list them in keys",
            )
        ],
    ),
    (
        "key columns",
        [("steps[3].export.table.keys", ["day", "day", "region name"])],
        [
            (
                "steps[3].export.table.keys[1]",
                "'day' is listed twice (first at keys[0]); remove the repeat",
            ),
            (
                "steps[3].export.table.keys[2]",
                "'region name' is not a column name; use letters, digits and '_'",
            ),
        ],
    ),
    (
        "webhook export url",
        [("steps[4].export.webhook.url", "example.com/hook")],
        [
            (
                "steps[4].export.webhook.url",
                "'example.com/hook' is not an http or https URL; write it like https://host/path",
            )
        ],
    ),
    (
        "webhook export url required",
        [("steps[4].export.webhook.url", "")],
        [("steps[4].export.webhook.url", "url is required; set an http or https URL")],
    ),
    (
        "webhook batch size",
        [("steps[4].export.webhook.batch_size", 10001)],
        [
            (
                "steps[4].export.webhook.batch_size",
                "10001 rows per request is more than the maximum of 10000",
            )
        ],
    ),
    (
        "slack export webhook",
        [("steps[5].export.slack.webhook", "")],
        [
            (
                "steps[5].export.slack.webhook",
                "a slack export needs webhook, the name of the secret that holds the "
                "incoming-webhook URL",
            )
        ],
    ),
    # --- trigger step
    (
        "trigger pipeline required",
        [("steps[6].trigger.pipeline", "")],
        [
            (
                "steps[6].trigger.pipeline",
                "pipeline to trigger is required; use lower-case letters, digits, '-' and '_'",
            )
        ],
    ),
    (
        "trigger pipeline name",
        [("steps[6].trigger.pipeline", "Weekly Report")],
        [
            (
                "steps[6].trigger.pipeline",
                "'Weekly Report' is not a valid pipeline to trigger; use 1-63 lower-case "
                "letters, digits, '-' and '_', starting with a letter",
            )
        ],
    ),
    (
        "trigger own pipeline",
        [("steps[6].trigger.pipeline", "daily-sales")],
        [
            (
                "steps[6].trigger.pipeline",
                "step 'report' triggers its own pipeline 'daily-sales', which would start runs "
                "without end; name another pipeline",
            )
        ],
    ),
    (
        "trigger params",
        [("steps[6].trigger.params", {"rows": "steps.announce.records", "bad-name": "1"})],
        [
            (
                "steps[6].trigger.params.bad-name",
                "'bad-name' is not a valid parameter name; use letters, digits and '_'",
            ),
            (
                "steps[6].trigger.params.rows",
                "'announce' is not upstream of step 'report'; add it to needs",
            ),
        ],
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [pytest.param(changes, expected, id=name) for name, changes, expected in CASES],
)
def test_rule(changes: list[tuple[str, Any]], expected: list[tuple[str, str]]) -> None:
    assert found(patched(*changes)) == expected


def test_self_loop_is_not_reported_again_as_a_cycle() -> None:
    spec = patched(("steps[0].needs", ["extract"]))
    assert found(spec) == [
        ("steps[0].needs[0]", "dependency cycle: extract → extract; a step cannot need itself")
    ]


def test_each_cycle_is_reported_once() -> None:
    spec = patched(
        ("steps[0].needs", ["clean"]),  # extract ⇄ clean
        ("steps[4].needs", ["announce"]),  # post ⇄ announce
        ("steps[5].needs", ["post"]),
        ("steps[5].export.input", "post"),
    )
    assert found(spec) == [
        (
            "steps[1].needs[0]",
            "dependency cycle: extract → clean → extract; remove one of these needs to break it",
        ),
        (
            "steps[5].needs[0]",
            "dependency cycle: post → announce → post; remove one of these needs to break it",
        ),
    ]


def test_violations_come_in_document_order() -> None:
    spec = patched(
        ("steps[1].when", "steps.score.records > 0"),
        ("steps[0].memory", "1Ki"),
        ("limits.max_duration", "3888000s"),
        ("name", "Bad"),
        ("params.days.default", "x"),
        ("steps[1].needs", ["extract", "extract"]),
    )
    assert [v.field for v in validate_spec(spec)] == [
        "name",
        "params.days.default",
        "limits.max_duration",
        "steps[0].memory",
        "steps[1].needs[1]",
        "steps[1].when",
    ]


def test_unknown_needs_do_not_hide_other_problems() -> None:
    spec = spec_pb2.PipelineSpec(
        name="etl",
        steps=[
            spec_pb2.Step(name="extract", query=spec_pb2.QueryStep(connection="db", sql="x")),
            spec_pb2.Step(
                name="load",
                needs=["extrac"],
                when="steps.extract.records > 0",
                export=spec_pb2.ExportStep(slack=spec_pb2.SlackExport(webhook="w")),
            ),
        ],
    )
    assert found(spec) == [
        ("steps[1].needs[0]", "'extrac' is not a step of pipeline 'etl' — did you mean 'extract'?"),
        ("steps[1].when", "'extract' is not upstream of step 'load'; add it to needs"),
    ]


# --- the DAG helpers


def dag(*steps: tuple[str, list[str]]) -> spec_pb2.PipelineSpec:
    return spec_pb2.PipelineSpec(
        name="p",
        steps=[
            spec_pb2.Step(name=name, needs=needs, transform=spec_pb2.TransformStep(code="1"))
            for name, needs in steps
        ],
    )


def test_topological_order_puts_needs_first_and_keeps_document_order_for_ties() -> None:
    spec = dag(
        ("load", ["clean", "score"]),
        ("extract", []),
        ("score", ["clean"]),
        ("clean", ["extract"]),
        ("audit", []),
    )
    assert topological_order(spec) == ["extract", "clean", "score", "load", "audit"]


def test_topological_order_of_the_rich_spec() -> None:
    assert topological_order(patched()) == [
        "extract",
        "clean",
        "score",
        "load",
        "post",
        "announce",
        "report",
    ]


def test_topological_order_refuses_a_cycle() -> None:
    with pytest.raises(CycleError) as caught:
        topological_order(dag(("a", ["c"]), ("b", ["a"]), ("c", ["b"])))
    assert str(caught.value) == "dependency cycle: a → b → c → a"
    assert caught.value.cycle.step == 1


def test_ancestors_and_descendants() -> None:
    spec = dag(("extract", []), ("clean", ["extract"]), ("score", ["clean"]), ("side", ["extract"]))
    assert ancestors(spec) == {
        "extract": frozenset(),
        "clean": {"extract"},
        "score": {"clean", "extract"},
        "side": {"extract"},
    }
    assert descendants(spec) == {
        "extract": {"clean", "score", "side"},
        "clean": {"score"},
        "score": frozenset(),
        "side": frozenset(),
    }


def test_ancestors_ignore_unknown_and_self_needs() -> None:
    assert ancestors(dag(("a", ["a", "ghost"]), ("b", ["a", "a"]))) == {
        "a": frozenset(),
        "b": {"a"},
    }


def test_steps_of_a_cycle_are_upstream_of_each_other() -> None:
    spec = dag(("a", ["b"]), ("b", ["a"]), ("c", ["a"]), ("d", []))
    assert ancestors(spec) == {
        "a": {"a", "b"},
        "b": {"a", "b"},
        "c": {"a", "b"},
        "d": frozenset(),
    }


def test_long_cycles_are_abbreviated() -> None:
    names = [f"s{i}" for i in range(12)]
    spec = dag(*((name, [names[i - 1]]) for i, name in enumerate(names)))
    with pytest.raises(CycleError) as caught:
        topological_order(spec)
    assert str(caught.value) == (
        "dependency cycle: s0 → s1 → s2 → s3 → … → s9 → s10 → s11 → s0 (12 steps)"
    )


def test_a_null_default_is_no_default() -> None:
    spec = patched(("params.days.default", None), ("params.days.required", True))
    assert found(spec) == []
