"""PipelineSpec → user format (dict and YAML), and the round trip back through the loader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from google.protobuf import duration_pb2, struct_pb2
from google.protobuf.message import Message

from legato.spec import dump_spec_yaml, load_spec_text, spec_to_dict
from legato.v1 import spec_pb2


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def _struct(**fields: Any) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(fields)
    return struct


def _value(value: Any) -> struct_pb2.Value:
    wrapper = _struct(v=value)
    return wrapper.fields["v"]


def rich_spec() -> spec_pb2.PipelineSpec:
    """A spec that sets every message type of spec.proto and every oneof member."""
    retry = spec_pb2.RetryPolicy(
        max_retries=3,
        delay=_duration(90),
        backoff=2.5,
        max_delay=_duration(3600 + 1800),
        retry_on=[spec_pb2.FAILURE_KIND_ERROR, spec_pb2.FAILURE_KIND_LOST],
    )
    spec = spec_pb2.PipelineSpec(
        name="daily-sales",
        description="Sales, loaded daily.\nOwned by the data team.",
        labels={"team": "data", "team.name": "Data", "tier": "1"},
        params={
            "days": spec_pb2.ParamSpec(
                type=spec_pb2.PARAM_TYPE_INTEGER,
                default=_value(7),
                description="How far back",
                choices=[_value(1), _value(7), _value(30)],
            ),
            "region": spec_pb2.ParamSpec(type=spec_pb2.PARAM_TYPE_STRING, required=True),
            "filters": spec_pb2.ParamSpec(
                type=spec_pb2.PARAM_TYPE_JSON,
                default=_value({"min": 1.5, "tags": ["a", "b"], "on": True, "none": None}),
            ),
            "any": spec_pb2.ParamSpec(),
        },
        schedule=spec_pb2.Schedule(
            cron="0 9 * * MON-FRI",
            timezone="Europe/Paris",
            dst=spec_pb2.DstPolicy(
                skipped=spec_pb2.DST_SKIPPED_POLICY_SKIP,
                repeated=spec_pb2.DST_REPEATED_POLICY_BOTH,
            ),
            catchup=spec_pb2.CATCHUP_POLICY_ALL,
            overlap=spec_pb2.OVERLAP_POLICY_CANCEL_PREVIOUS,
            pause_after_failures=5,
            params=_struct(days=3, full=False),
            late_after=_duration(600),
        ),
        triggers=[
            spec_pb2.Trigger(
                event=spec_pb2.EventTrigger(
                    type="orders.loaded",
                    filter="event.payload.count > 0",
                    params=_struct(source="event"),
                )
            ),
            spec_pb2.Trigger(webhook=spec_pb2.WebhookTrigger(secret="hook-secret")),
            spec_pb2.Trigger(
                database=spec_pb2.DatabaseTrigger(
                    connection="warehouse",
                    table="orders",
                    watermark="updated_at",
                    every=_duration(30),
                )
            ),
            spec_pb2.Trigger(
                database=spec_pb2.DatabaseTrigger(connection="pg", channel="orders_changed")
            ),
        ],
        limits=spec_pb2.Limits(
            max_duration=_duration(2 * 3600),
            max_concurrent_runs=2,
            step_timeout=_duration(0.25),
            step_memory="4Gi",
            expected_duration=_duration(3600),
        ),
        retry=retry,
        default_notifications=False,
        expect=spec_pb2.RunExpectations(
            duration=spec_pb2.DurationExpectation(max_ratio=2.5, baseline_runs=20)
        ),
        notifications=[
            spec_pb2.Notification(
                on=[spec_pb2.NOTIFICATION_EVENT_FAILED, spec_pb2.NOTIFICATION_EVENT_TIMED_OUT],
                email=spec_pb2.EmailChannel(to=["a@example.com", "b@example.com"], subject="x"),
            ),
            spec_pb2.Notification(
                on=[spec_pb2.NOTIFICATION_EVENT_SCHEDULE_PAUSED],
                slack=spec_pb2.SlackChannel(webhook="slack-url", channel="#data", text="{{run}}"),
            ),
            spec_pb2.Notification(
                on=[spec_pb2.NOTIFICATION_EVENT_RETRYING],
                pagerduty=spec_pb2.PagerDutyChannel(routing_key="pd-key", severity="critical"),
                throttle=_duration(0),
            ),
            spec_pb2.Notification(
                on=[spec_pb2.NOTIFICATION_EVENT_LATE, spec_pb2.NOTIFICATION_EVENT_SLOW],
                slack=spec_pb2.SlackChannel(webhook="slack-url"),
                throttle=_duration(3600),
            ),
            spec_pb2.Notification(
                on=[spec_pb2.NOTIFICATION_EVENT_STARTED, spec_pb2.NOTIFICATION_EVENT_CANCELLED],
                webhook=spec_pb2.WebhookChannel(
                    url="https://example.com/hook", secret="s", headers={"X-Team": "data"}
                ),
            ),
        ],
        steps=[
            spec_pb2.Step(
                name="extract",
                description="Orders of the last days",
                query=spec_pb2.QueryStep(
                    connection="warehouse",
                    sql="SELECT *\nFROM orders\nWHERE day >= :since\n",
                    parameters={"since": "params.days"},
                ),
                agent_selector={"zone": "eu", "gpu": "false"},
                timeout=_duration(600),
                memory="512Mi",
                expect=spec_pb2.StepExpectations(
                    records=spec_pb2.RecordsExpectation(
                        min=1,
                        max=1_000_000,
                        max_change=0.5,
                        baseline_runs=14,
                        action=spec_pb2.EXPECTATION_ACTION_FAIL,
                    ),
                    duration=spec_pb2.DurationExpectation(max_ratio=3),
                ),
            ),
            spec_pb2.Step(
                name="clean",
                transform=spec_pb2.TransformStep(code="out = data.dropna()\nout"),
                needs=["extract"],
                retry=spec_pb2.RetryPolicy(max_retries=1, retry_on=[spec_pb2.FAILURE_KIND_MEMORY]),
            ),
            spec_pb2.Step(
                name="score",
                function=spec_pb2.FunctionStep(
                    function="models.score:run", args=_struct(threshold=0.5, labels=["x"])
                ),
                needs=["clean"],
                when="params.days > 1",
                trigger_rule=spec_pb2.TRIGGER_RULE_NONE_FAILED,
            ),
            spec_pb2.Step(
                name="store",
                export=spec_pb2.ExportStep(
                    input="score",
                    table=spec_pb2.TableExport(
                        connection="warehouse",
                        table="scores",
                        mode=spec_pb2.EXPORT_MODE_UPSERT,
                        keys=["id", "day"],
                    ),
                ),
                needs=["score"],
            ),
            spec_pb2.Step(
                name="post",
                export=spec_pb2.ExportStep(
                    webhook=spec_pb2.WebhookExport(
                        url="https://example.com/rows",
                        secret="s",
                        batch_size=100,
                        headers={"Authorization": "token"},
                    )
                ),
                needs=["score"],
                trigger_rule=spec_pb2.TRIGGER_RULE_ALL_DONE,
            ),
            spec_pb2.Step(
                name="tell",
                export=spec_pb2.ExportStep(
                    slack=spec_pb2.SlackExport(webhook="w", channel="#c", text="done")
                ),
                needs=["score"],
            ),
            spec_pb2.Step(
                name="next",
                trigger=spec_pb2.TriggerStep(
                    pipeline="weekly", params={"day": "{{ params.day }}"}, wait=True
                ),
                needs=["store", "post", "tell"],
                trigger_rule=spec_pb2.TRIGGER_RULE_ONE_SUCCESS,
            ),
        ],
    )
    # Present but empty messages must survive the round trip too.
    spec.steps.add(name="noop").transform.SetInParent()
    return spec


def _message_types(message: Message) -> Iterator[str]:
    yield message.DESCRIPTOR.full_name
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    yield from _message_types(item)
        elif field.is_repeated:
            for item in value:
                yield from _message_types(item)
        else:
            yield from _message_types(value)


def test_rich_spec_covers_every_message_type_of_spec_proto() -> None:
    declared = {m.full_name for m in spec_pb2.DESCRIPTOR.message_types_by_name.values()}
    assert declared - set(_message_types(rich_spec())) == set()


def test_yaml_round_trip_of_rich_spec() -> None:
    spec = rich_spec()
    text = dump_spec_yaml(spec)
    assert load_spec_text(text).spec == spec


def test_dict_round_trip_through_json() -> None:
    spec = rich_spec()
    text = json.dumps(spec_to_dict(spec), indent="\t")
    assert load_spec_text(text, "spec.json").spec == spec


def test_empty_spec_round_trips() -> None:
    assert spec_to_dict(spec_pb2.PipelineSpec()) == {}
    assert load_spec_text(dump_spec_yaml(spec_pb2.PipelineSpec())).spec == spec_pb2.PipelineSpec()


def test_spec_to_dict_user_format() -> None:
    spec = spec_pb2.PipelineSpec(
        steps=[
            spec_pb2.Step(
                memory="1Gi",
                needs=["a"],
                query=spec_pb2.QueryStep(sql="SELECT 1"),
                name="b",
                retry=spec_pb2.RetryPolicy(
                    delay=_duration(5400),
                    retry_on=[spec_pb2.FAILURE_KIND_TIMEOUT, spec_pb2.FAILURE_KIND_ERROR],
                ),
            )
        ],
        labels={"z": "1", "a": "2"},
        name="p",
        schedule=spec_pb2.Schedule(overlap=spec_pb2.OVERLAP_POLICY_SKIP, params=_struct(n=3)),
        limits=spec_pb2.Limits(),
    )
    result = spec_to_dict(spec)
    assert result == {
        "name": "p",
        "labels": {"a": "2", "z": "1"},
        "schedule": {"overlap": "skip", "params": {"n": 3}},
        "limits": {},
        "steps": [
            {
                "name": "b",
                "query": {"sql": "SELECT 1"},
                "needs": ["a"],
                "retry": {"delay": "1h30m", "retry_on": ["timeout", "error"]},
                "memory": "1Gi",
            }
        ],
    }
    # Proto field number order, not insertion or alphabetical order.
    assert list(result) == ["name", "labels", "schedule", "limits", "steps"]
    assert list(result["steps"][0]) == ["name", "query", "needs", "retry", "memory"]
    assert list(result["labels"]) == ["a", "z"]
    assert isinstance(result["schedule"]["params"]["n"], int)


def test_struct_numbers_keep_fractions() -> None:
    spec = spec_pb2.PipelineSpec(
        schedule=spec_pb2.Schedule(params=_struct(ratio=0.25, big=2.0**60, whole=4.0))
    )
    params = spec_to_dict(spec)["schedule"]["params"]
    assert params == {"big": 2.0**60, "ratio": 0.25, "whole": 4}
    assert isinstance(params["big"], float)


def test_durations_render_human() -> None:
    limits = spec_pb2.Limits(max_duration=_duration(90), step_timeout=_duration(0.25))
    assert spec_to_dict(spec_pb2.PipelineSpec(limits=limits))["limits"] == {
        "max_duration": "1m30s",
        "step_timeout": "250ms",
    }


def test_unknown_enum_number_renders_as_number() -> None:
    spec = spec_pb2.PipelineSpec(schedule=spec_pb2.Schedule(overlap=99))  # type: ignore[arg-type]
    assert spec_to_dict(spec) == {"schedule": {"overlap": 99}}


def test_yaml_keeps_proto_order_and_literal_blocks() -> None:
    spec = spec_pb2.PipelineSpec(
        name="p",
        steps=[
            spec_pb2.Step(
                name="q",
                query=spec_pb2.QueryStep(connection="wh", sql="SELECT a\nFROM t\n"),
            ),
            spec_pb2.Step(name="t", transform=spec_pb2.TransformStep(code="x = 1\ny = 2")),
        ],
        notifications=[
            spec_pb2.Notification(
                on=[spec_pb2.NOTIFICATION_EVENT_FAILED],
                email=spec_pb2.EmailChannel(to=["a@example.com"]),
            )
        ],
        labels={"on": "yes", "n": "1"},
    )
    assert dump_spec_yaml(spec) == (
        "name: p\n"
        "labels:\n"
        "  n: '1'\n"
        "  'on': 'yes'\n"
        "notifications:\n"
        "  - on:\n"
        "      - failed\n"
        "    email:\n"
        "      to:\n"
        "        - a@example.com\n"
        "steps:\n"
        "  - name: q\n"
        "    query:\n"
        "      connection: wh\n"
        "      sql: |\n"
        "        SELECT a\n"
        "        FROM t\n"
        "  - name: t\n"
        "    transform:\n"
        "      code: |-\n"
        "        x = 1\n"
        "        y = 2\n"
    )


def test_yaml_output_is_plain_yaml() -> None:
    # Other YAML readers see the same document (field names aside: YAML 1.1 reads `on`
    # as true, which only the spec loader reads back as a name).
    data = yaml.safe_load(dump_spec_yaml(rich_spec()))
    expected = spec_to_dict(rich_spec())
    for notification in data["notifications"]:
        notification["on"] = notification.pop(True)
    assert data == expected


TRICKY_STRINGS = [
    "yes",
    "on",
    "1.10",
    "null",
    "~",
    "2026-01-01",
    "0 9 * * *",
    "- x",
    "#c",
    "<<",
    "*a",
    "a: b\nc: d",
    "  leading\nspace",
    "trailing \nspace",
    "end\n\n\n",
    "\nstarts with a break",
    "a\r\nb",
    "tab\tinside\n\tand leading",
    "é ü ß\nunicode",
    "nul\x00byte",
    "next\x85line",
    "x" * 300,
]


@pytest.mark.parametrize("text", TRICKY_STRINGS)
def test_strings_round_trip(text: str) -> None:
    spec = spec_pb2.PipelineSpec(
        name=text,
        labels={text: text},
        steps=[spec_pb2.Step(transform=spec_pb2.TransformStep(code=text))],
    )
    spec.schedule.params.update({text: text})
    assert load_spec_text(dump_spec_yaml(spec)).spec == spec
