"""Pipelines as code: a ``legato.Pipeline`` is exactly the ``PipelineSpec`` of the same
pipeline in YAML — compared field for field here, and on a real control plane, where
applying one after the other makes no new version — and its mistakes are reported at
the lines of Python that wrote them, by the SDK or by the server."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

import legato
from legato import (
    DatabaseTrigger,
    Dst,
    DurationExpectation,
    EmailChannel,
    EventTrigger,
    Limits,
    Notification,
    PagerDutyChannel,
    Param,
    RecordsExpectation,
    Retry,
    RunExpectations,
    Schedule,
    SlackChannel,
    SlackExport,
    StepExpectations,
    TableExport,
    WebhookChannel,
    WebhookExport,
    WebhookTrigger,
)
from legato.codefiles import load_pipeline_file
from legato.spec import SpecFormatError, load_spec_text
from legato.testing import LocalControlPlane

# Every top-level field, every step kind and every step option of docs/spec.md.
YAML = """\
name: daily-report
description: Sales totals and trends every morning.
labels: {team: analytics, tier: "1"}
params:
  days: {type: integer, default: 1, description: How many days., choices: [1, 7, 30]}
  region: {type: string, required: true}
  since: {type: date, default: 2026-01-01}
  options: {type: json, default: {mode: fast, levels: [1, 2.5, null, true]}}
schedule:
  cron: "0 9 * * MON-FRI"
  timezone: Europe/Berlin
  dst: {skipped: shift, repeated: both}
  catchup: latest
  overlap: skip
  pause_after_failures: 5
  params: {days: 1, region: eu}
  late_after: 30m
triggers:
  - event: {type: orders.changed, filter: "event.payload.region == 'eu'", params: {days: 7}}
  - webhook: {secret: orders-hook}
  - database: {connection: warehouse, channel: users_changed}
  - database: {connection: shop, table: orders, watermark: updated_at, every: 30s}
limits:
  max_duration: 1h
  max_concurrent_runs: 3
  step_timeout: 15m
  step_memory: 1Gi
  expected_duration: 40m
expect:
  duration: {max_ratio: 2, baseline_runs: 10}
default_notifications: false
retry:
  max_retries: 3
  delay: 60s
  backoff: 2
  max_delay: 10m
  retry_on: [error, timeout, lost, memory]
notifications:
  - on: [failed, timed_out]
    email: {to: [data-team@example.com], subject: "{{ pipeline }} failed"}
    throttle: 1h
  - on: [failed]
    slack: {webhook: slack-secret-name, channel: "#data", text: "run {{ run.id }}"}
  - on: [failed, recovered]
    pagerduty: {routing_key: pd-secret-name, severity: error}
  - on: [succeeded]
    webhook: {url: https://example.com/hook, secret: hook-secret, headers: {X-Team: data}}
    throttle: 0s
steps:
  - name: extract
    description: The period's sales.
    query:
      connection: warehouse
      sql: |
        SELECT region, amount FROM sales
        WHERE day > :since AND region = :region
      parameters: {since: params.since}
  - name: clean
    needs: [extract]
    transform: {code: "result = data.dropna()\\n"}
    expect:
      records: {min: 1, max: 100000, max_change: 0.5, baseline_runs: 7, action: warn}
      duration: {max_ratio: 3}
    timeout: 5m
    memory: 2Gi
    retry: {max_retries: 1, delay: 10s}
    agent_selector: {region: eu}
  - name: score
    needs: [clean]
    function: {function: "mypackage.scoring:score", args: {threshold: 0.8, labels: [a, b]}}
    isolation: pooled
  - name: load
    needs: [score, clean]
    when: steps.score.records > 0
    trigger_rule: none_failed
    export:
      input: score
      table: {connection: warehouse, table: scores, mode: upsert, keys: [id]}
  - name: push
    needs: [score]
    export:
      webhook:
        url: https://example.com/scores
        secret: scores-hook
        batch_size: 500
        headers: {X-Team: analytics}
  - name: announce
    needs: [load]
    trigger_rule: all_done
    export:
      slack: {webhook: slack-data, channel: "#data", text: "{{ steps.load.records }} loaded"}
  - name: notify_downstream
    needs: [load]
    retry: {max_retries: 0}
    trigger: {pipeline: reports, params: {days: params.days}, wait: true}
"""


def daily_report() -> legato.Pipeline:
    """The pipeline of YAML, in Python."""
    pipeline = legato.Pipeline(
        name="daily-report",
        description="Sales totals and trends every morning.",
        labels={"team": "analytics", "tier": "1"},
        params={
            "days": Param(int, default=1, description="How many days.", choices=[1, 7, 30]),
            "region": Param(str, required=True),
            "since": Param(date, default=date(2026, 1, 1)),
            "options": Param(dict, default={"mode": "fast", "levels": [1, 2.5, None, True]}),
        },
        schedule=Schedule(
            "0 9 * * MON-FRI",
            timezone="Europe/Berlin",
            dst=Dst(skipped="shift", repeated="both"),
            catchup="latest",
            overlap="skip",
            pause_after_failures=5,
            params={"days": 1, "region": "eu"},
            late_after=timedelta(minutes=30),
        ),
        triggers=[
            EventTrigger(
                "orders.changed", filter="event.payload.region == 'eu'", params={"days": 7}
            ),
            WebhookTrigger("orders-hook"),
            DatabaseTrigger("warehouse", channel="users_changed"),
            DatabaseTrigger("shop", table="orders", watermark="updated_at", every="30s"),
        ],
        limits=Limits(
            max_duration="1h",
            max_concurrent_runs=3,
            step_timeout=timedelta(minutes=15),
            step_memory="1Gi",
            expected_duration="40m",
        ),
        expect=RunExpectations(duration=DurationExpectation(max_ratio=2, baseline_runs=10)),
        default_notifications=False,
        retry=Retry(
            3,
            delay="60s",
            backoff=2,
            max_delay="10m",
            retry_on=["error", "timeout", "lost", "memory"],
        ),
        notifications=[
            Notification(
                on=["failed", "timed_out"],
                email=EmailChannel(["data-team@example.com"], subject="{{ pipeline }} failed"),
                throttle="1h",
            ),
            Notification(
                on="failed",
                slack=SlackChannel("slack-secret-name", channel="#data", text="run {{ run.id }}"),
            ),
            Notification(
                on=["failed", "recovered"],
                pagerduty=PagerDutyChannel("pd-secret-name", severity="error"),
            ),
            Notification(
                on=["succeeded"],
                webhook=WebhookChannel(
                    "https://example.com/hook", secret="hook-secret", headers={"X-Team": "data"}
                ),
                throttle=timedelta(0),
            ),
        ],
    )
    extract = pipeline.query(
        "extract",
        description="The period's sales.",
        connection="warehouse",
        sql="SELECT region, amount FROM sales\nWHERE day > :since AND region = :region\n",
        parameters={"since": "params.since"},
    )
    clean = pipeline.transform(
        "clean",
        needs=[extract],
        code="result = data.dropna()\n",
        expect=StepExpectations(
            records=RecordsExpectation(
                min=1, max=100_000, max_change=0.5, baseline_runs=7, action="warn"
            ),
            duration=DurationExpectation(max_ratio=3),
        ),
        timeout="5m",
        memory="2Gi",
        retry=Retry(1, delay="10s"),
        agent_selector={"region": "eu"},
    )
    score = pipeline.function(
        "score",
        "mypackage.scoring:score",
        needs=[clean],
        args={"threshold": 0.8, "labels": ["a", "b"]},
        isolation="pooled",
    )
    load = pipeline.export(
        "load",
        needs=[score, "clean"],
        when="steps.score.records > 0",
        trigger_rule="none_failed",
        input=score,
        table=TableExport("warehouse", "scores", mode="upsert", keys=["id"]),
    )
    pipeline.export(
        "push",
        needs=score,
        webhook=WebhookExport(
            "https://example.com/scores",
            secret="scores-hook",
            batch_size=500,
            headers={"X-Team": "analytics"},
        ),
    )
    pipeline.export(
        "announce",
        needs=[load],
        trigger_rule="all_done",
        slack=SlackExport("slack-data", channel="#data", text="{{ steps.load.records }} loaded"),
    )
    pipeline.trigger(
        "notify_downstream",
        needs=[load],
        retry=0,
        pipeline="reports",
        params={"days": "params.days"},
        wait=True,
    )
    return pipeline


@legato.step(args={"limit": 10}, timeout="1m")
def produce(params: dict[str, int], limit: int) -> list[dict[str, int]]:
    return [{"n": n} for n in range(limit)]


@legato.transform(needs=[produce])
def consume(data: Any, produce: Any) -> Any:
    return data.head(2)


def test_module_level_decorators_make_steps_for_any_pipeline() -> None:
    first = legato.Pipeline("first", steps=[produce, consume])
    second = legato.Pipeline(
        "second", steps=[produce, legato.transform("last", needs=produce, code="result = data")]
    )
    assert produce({}, limit=2) == [{"n": 0}, {"n": 1}]  # still the function
    assert produce.name == "produce" and produce.fn.__name__ == "produce"
    for pipeline in (first, second):
        spec = pipeline.to_spec()
        assert spec.steps[0].function.function == f"{__name__}:produce"
        assert dict(spec.steps[0].function.args) == {"limit": 10}
        assert spec.steps[0].timeout.seconds == 60
    code = first.to_spec().steps[1].transform.code
    assert code.endswith("\nresult = consume(data=data, produce=inputs['produce'])\n")
    assert list(first.to_spec().steps[1].needs) == ["produce"]


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(db=f"sqlite:///{tmp_path}/legato.db") as running:
        yield running


def test_a_python_pipeline_is_the_spec_of_its_yaml() -> None:
    expected = load_spec_text(YAML).spec
    assert daily_report().to_spec() == expected
    # And back: the canonical YAML of it reads as the same message.
    assert load_spec_text(daily_report().to_yaml()).spec == expected
    assert daily_report().to_dict()["steps"][3]["export"]["table"]["mode"] == "upsert"


def test_the_yaml_form_as_dicts_gives_the_same_spec() -> None:
    as_dicts = legato.Pipeline(
        "daily-report",
        description="Sales totals and trends every morning.",
        # A number in a map of strings is its text, as in YAML.
        labels={"team": "analytics", "tier": 1},  # type: ignore[dict-item]
        params={
            "days": {"type": "integer", "default": 1, "description": "How many days.",
                     "choices": [1, 7, 30]},
            "region": {"type": "string", "required": True},
            "since": {"type": "date", "default": "2026-01-01"},
            "options": {"type": "json",
                        "default": {"mode": "fast", "levels": [1, 2.5, None, True]}},
        },
        schedule={
            "cron": "0 9 * * MON-FRI",
            "timezone": "Europe/Berlin",
            "dst": {"skipped": "shift", "repeated": "both"},
            "catchup": "latest",
            "overlap": "skip",
            "pause_after_failures": 5,
            "params": {"days": 1, "region": "eu"},
            "late_after": "30m",
        },
        triggers=[
            {"event": {"type": "orders.changed", "filter": "event.payload.region == 'eu'",
                       "params": {"days": 7}}},
            {"webhook": {"secret": "orders-hook"}},
            {"database": {"connection": "warehouse", "channel": "users_changed"}},
            {"database": {"connection": "shop", "table": "orders", "watermark": "updated_at",
                          "every": "30s"}},
        ],
        limits={"max_duration": "1h", "max_concurrent_runs": 3, "step_timeout": "15m",
                "step_memory": "1Gi", "expected_duration": "40m"},
        expect={"duration": {"max_ratio": 2, "baseline_runs": 10}},
        default_notifications=False,
        retry={"max_retries": 3, "delay": "60s", "backoff": 2, "max_delay": "10m",
               "retry_on": ["error", "timeout", "lost", "memory"]},
        notifications=[
            {"on": ["failed", "timed_out"], "throttle": "1h",
             "email": {"to": ["data-team@example.com"], "subject": "{{ pipeline }} failed"}},
            {"on": ["failed"],
             "slack": {"webhook": "slack-secret-name", "channel": "#data",
                       "text": "run {{ run.id }}"}},
            {"on": ["failed", "recovered"],
             "pagerduty": {"routing_key": "pd-secret-name", "severity": "error"}},
            {"on": ["succeeded"], "throttle": "0s",
             "webhook": {"url": "https://example.com/hook", "secret": "hook-secret",
                         "headers": {"X-Team": "data"}}},
        ],
        steps=daily_report().steps,
    )  # fmt: skip
    assert as_dicts.to_spec() == load_spec_text(YAML).spec


def test_shorthands_write_the_fields_they_stand_for() -> None:
    short = legato.Pipeline(
        "p",
        params={"day": date, "rows": int, "ratio": float, "dry": bool, "extra": list},
        schedule="@daily",
        retry=2,
    )
    step = short.transform("t", code="result = None", retry=1, needs=[])
    short.transform("u", code="result = None", needs=step)
    assert (
        short.to_spec()
        == load_spec_text(
            """
        name: p
        params:
          day: {type: date}
          rows: {type: integer}
          ratio: {type: number}
          dry: {type: boolean}
          extra: {type: json}
        schedule: {cron: "@daily"}
        retry: {max_retries: 2}
        steps:
          - {name: t, transform: {code: result = None}, retry: {max_retries: 1}}
          - {name: u, needs: [t], transform: {code: result = None}}
        """.replace("\n        ", "\n")
        ).spec
    )


def test_on_the_server_it_is_the_version_its_yaml_made(plane: LocalControlPlane) -> None:
    client = plane.client(role="editor")
    from_yaml = client.apply(load_spec_text(YAML).spec, message="from YAML")
    assert (from_yaml.created, from_yaml.version.number) == (True, 1)

    from_python = daily_report().apply(client, message="from Python")
    assert from_python.created is False
    assert from_python.version.number == 1
    assert from_python.version.content_hash == from_yaml.version.content_hash
    assert client.apply(daily_report()).created is False
    assert client.validate(daily_report()).content_hash == from_yaml.version.content_hash

    changed = daily_report()
    changed.steps[1].options["memory"] = "4Gi"
    assert client.apply(changed).version.number == 2


def test_every_problem_is_reported_at_the_line_that_wrote_it(tmp_path: Path) -> None:
    module = tmp_path / "flows.py"
    module.write_text(
        textwrap.dedent(
            """\
            import legato

            etl = legato.Pipeline(
                name="etl",
                retry=legato.Retry(3, delay="soon"),
                schedule=legato.Schedule("0 2 * * *", overlap="sometimes"),
            )

            @etl.step(timeout="5 minutes", memroy="1Gi")
            def extract(params):
                return []

            etl.export("load", needs=[extract], table={"connection": "w", "tabel": "t"})

            @etl.transform(needs=[extract])
            def clean(data, extract, nothing):
                return data

            etl.query(
                "rows",
                connection="warehouse",
                sql=5,
                isolation="shared",
            )
            """
        )
    )
    with pytest.raises(SpecFormatError) as caught:
        load_pipeline_file(module)
    assert str(caught.value).splitlines() == [
        f"{module}:5: retry.delay: 'soon' is not a duration; write a number with a unit, "
        "like 90s, 5m, 1h30m or 250ms",
        f"{module}:6: schedule.overlap: 'sometimes' is not one of queue, skip, cancel_previous, "
        "allow",
        f"{module}:9: steps[0].timeout: '5 minutes' is not a duration; write a number with a "
        "unit, like 90s, 5m, 1h30m or 250ms",
        f"{module}:9: steps[0]: unknown field 'memroy' — did you mean 'memory'?",
        f"{module}:13: steps[1].export.table: unknown field 'tabel' — did you mean 'table'?",
        f"{module}:15: steps[2].transform.code: parameter 'nothing' of clean is not one a "
        "transform can pass; name one of data, inputs, params, pd, extract (a step in needs "
        "gives its table)",
        f"{module}:22: steps[3].query.sql: expected a string, got the integer 5; put it in "
        'quotes: "5"',
        f"{module}:23: steps[3].isolation: 'shared' is not one of process, pooled",
    ]


def test_the_servers_violations_name_every_field_and_its_python_line(
    plane: LocalControlPlane, tmp_path: Path
) -> None:
    module = tmp_path / "broken.py"
    module.write_text(
        textwrap.dedent(
            """\
            import legato

            broken = legato.Pipeline(
                "broken",
                schedule="0 25 * * *",
            )
            broken.transform("clean", needs=["extrac"], code="result = data")
            broken.transform("clean", code="result = 1")
            """
        )
    )
    (loaded,) = load_pipeline_file(module)
    with pytest.raises(legato.InvalidSpec) as caught:
        plane.client().apply(loaded)
    error = caught.value
    assert isinstance(error, legato.InvalidArgument)
    assert isinstance(error, legato.RpcError)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_PIPELINE_SPEC"
    assert error.violations == error.field_violations
    where = {v.field: loaded.source_map.line_for(v.field) for v in error.violations}
    assert len(error.violations) >= 3, error.violations
    assert where["schedule.cron"] == 5
    assert where["steps[0].needs[0]"] == 7
    assert [line for field, line in where.items() if field.startswith("steps[1]")] == [8]
    described = " ".join(v.description for v in error.violations)
    assert "'extrac'" in described and "25" in described
