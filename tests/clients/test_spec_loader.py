"""YAML/JSON text → PipelineSpec: values, problems with their paths and lines, field paths
and the source map."""

from __future__ import annotations

import io
import pickle
import textwrap
from pathlib import Path

import pytest
from google.protobuf import struct_pb2

from legato.spec import (
    SourceMap,
    SpecFormatError,
    SpecProblem,
    format_path,
    load_spec_file,
    load_spec_text,
    parse_path,
)
from legato.v1 import spec_pb2


def _doc(text: str) -> str:
    """``text`` without its common indentation; line 1 is the line after the opening
    quotes."""
    return textwrap.dedent(text).removeprefix("\n")


def _load(text: str) -> spec_pb2.PipelineSpec:
    return load_spec_text(_doc(text)).spec


def _problems(text: str, filename: str = "<stdin>") -> list[tuple[str, int | None, str]]:
    with pytest.raises(SpecFormatError) as info:
        load_spec_text(_doc(text), filename)
    return [(p.path, p.line, p.message) for p in info.value.problems]


DURATION_HINT = "write a number with a unit, like 90s, 5m, 1h30m or 250ms"


# Values


def test_loads_fields_of_every_kind() -> None:
    spec = _load(
        """
        name: etl
        labels: {team: data, version: 1.10, count: 3}
        schedule:
          cron: 0 9 * * *
          overlap: skip
          catchup: latest
          pause_after_failures: 3
        retry:
          max_retries: 2
          delay: 1h30m
          backoff: 2
          max_delay: 250ms
          retry_on: [error, timeout]
        notifications:
          - on: [failed, succeeded]
            email: {to: [a@example.com]}
        steps:
          - name: extract
            query:
              connection: wh
              sql: |
                SELECT 1
              parameters: {since: 7}
            memory: 512Mi
          - name: load
            needs: [extract]
            trigger_rule: all_success
            export:
              table: {table: t, mode: upsert, keys: [id]}
        """
    )
    assert spec.name == "etl"
    assert dict(spec.labels) == {"team": "data", "version": "1.10", "count": "3"}
    assert spec.schedule.cron == "0 9 * * *"
    assert spec.schedule.overlap == spec_pb2.OVERLAP_POLICY_SKIP
    assert spec.schedule.catchup == spec_pb2.CATCHUP_POLICY_LATEST
    assert spec.schedule.pause_after_failures == 3
    assert spec.retry.max_retries == 2
    assert spec.retry.delay.ToTimedelta().total_seconds() == 5400
    assert spec.retry.backoff == 2.0
    assert spec.retry.max_delay.ToMilliseconds() == 250
    assert list(spec.retry.retry_on) == [spec_pb2.FAILURE_KIND_ERROR, spec_pb2.FAILURE_KIND_TIMEOUT]
    assert list(spec.notifications[0].on) == [
        spec_pb2.NOTIFICATION_EVENT_FAILED,
        spec_pb2.NOTIFICATION_EVENT_SUCCEEDED,
    ]
    assert list(spec.notifications[0].email.to) == ["a@example.com"]
    extract, load = spec.steps
    assert extract.WhichOneof("kind") == "query"
    assert extract.query.sql == "SELECT 1\n"
    assert dict(extract.query.parameters) == {"since": "7"}
    assert extract.memory == "512Mi"
    assert list(load.needs) == ["extract"]
    assert load.trigger_rule == spec_pb2.TRIGGER_RULE_ALL_SUCCESS
    assert load.export.WhichOneof("target") == "table"
    assert load.export.table.mode == spec_pb2.EXPORT_MODE_UPSERT
    assert list(load.export.table.keys) == ["id"]


def test_enums_accept_full_upper_case_names() -> None:
    spec = _load(
        """
        schedule: {overlap: OVERLAP_POLICY_CANCEL_PREVIOUS, dst: {skipped: DST_SKIPPED_POLICY_SKIP}}
        params: {n: {type: PARAM_TYPE_INTEGER}}
        retry: {retry_on: [FAILURE_KIND_LOST, memory]}
        """
    )
    assert spec.schedule.overlap == spec_pb2.OVERLAP_POLICY_CANCEL_PREVIOUS
    assert spec.schedule.dst.skipped == spec_pb2.DST_SKIPPED_POLICY_SKIP
    assert spec.params["n"].type == spec_pb2.PARAM_TYPE_INTEGER
    assert list(spec.retry.retry_on) == [spec_pb2.FAILURE_KIND_LOST, spec_pb2.FAILURE_KIND_MEMORY]


def test_unspecified_enum_values_are_refused() -> None:
    assert _problems(
        """
        schedule:
          overlap: unspecified
          catchup: CATCHUP_POLICY_UNSPECIFIED
        params:
          n: {type: String}
        """
    ) == [
        ("schedule.overlap", 2, "'unspecified' is not one of queue, skip, cancel_previous, allow"),
        (
            "schedule.catchup",
            3,
            "'CATCHUP_POLICY_UNSPECIFIED' is not one of none, latest, all",
        ),
        (
            "params.n.type",
            5,
            "'String' is not one of string, integer, number, boolean, date, datetime, json",
        ),
    ]


def test_struct_and_value_fields_take_any_yaml_value() -> None:
    spec = _load(
        """
        params:
          day:
            type: date
            default: 2026-06-12
            choices: [2026-06-12, null, 3, true, {a: [1, x]}]
          at:
            default: 2026-06-12 10:30:00+02:00
        schedule:
          params: {days: 3, ratio: 0.5, tags: [a], nested: {"on": yes}}
        steps:
          - name: f
            function: {function: "m:f", args: {}}
        """
    )
    day = spec.params["day"]
    assert day.default.string_value == "2026-06-12"
    assert [c.WhichOneof("kind") for c in day.choices] == [
        "string_value",
        "null_value",
        "number_value",
        "bool_value",
        "struct_value",
    ]
    items = day.choices[4].struct_value["a"]
    assert isinstance(items, struct_pb2.ListValue)
    assert list(items) == [1.0, "x"]
    assert spec.params["at"].default.string_value == "2026-06-12T10:30:00+02:00"
    expected = struct_pb2.Struct()
    expected.update({"days": 3, "ratio": 0.5, "tags": ["a"], "nested": {"on": True}})
    assert spec.schedule.params == expected
    assert spec.steps[0].function.HasField("args")


def test_null_is_as_if_absent() -> None:
    spec = _load(
        """
        name: p
        description: ~
        schedule:
        retry: null
        params:
          region:
            default: null
        steps:
        """
    )
    assert not spec.HasField("schedule")
    assert not spec.HasField("retry")
    assert spec.description == ""
    assert len(spec.steps) == 0
    # `name:` with no value declares a map entry whose fields are all defaults.
    assert not spec.params["region"].HasField("default")


def test_empty_mapping_sets_the_message() -> None:
    spec = _load(
        """
        limits: {}
        steps:
          - name: t
            transform: {}
        """
    )
    assert spec.HasField("limits")
    assert spec.steps[0].WhichOneof("kind") == "transform"


def test_step_without_kind_is_left_to_the_server() -> None:
    spec = _load("steps: [{name: a}]")
    assert spec.steps[0].WhichOneof("kind") is None


def test_memory_fields_keep_the_text_and_take_integers() -> None:
    spec = _load(
        """
        limits: {step_memory: 4GB}
        steps:
          - {name: a, memory: 1024}
        """
    )
    assert spec.limits.step_memory == "4GB"
    assert spec.steps[0].memory == "1024"


def test_integers_and_doubles() -> None:
    spec = _load("retry: {max_retries: 4294967295, backoff: 3}")
    assert spec.retry.max_retries == 2**32 - 1
    assert spec.retry.backoff == 3.0


def test_yaml_merge_keys_and_aliases() -> None:
    spec = _load(
        """
        retry: &retry
          max_retries: 3
          delay: 10s
        steps:
          - name: a
            retry:
              <<: *retry
              delay: 1m
          - name: b
            retry: *retry
        """
    )
    assert spec.steps[0].retry.max_retries == 3
    assert spec.steps[0].retry.delay.seconds == 60
    assert spec.steps[1].retry == spec.retry


# Problems


def test_unknown_field_with_close_match() -> None:
    assert _problems(
        """
        steps:
          - name: a
            need: [b]
        """
    ) == [("steps[0]", 3, "unknown field 'need' — did you mean 'needs'?")]


def test_unknown_field_without_close_match_lists_valid_fields() -> None:
    assert _problems(
        """
        retry:
          zzz: 1
        """
    ) == [
        (
            "retry",
            2,
            "unknown field 'zzz'; valid fields are "
            "max_retries, delay, backoff, max_delay, retry_on",
        )
    ]


def test_duration_problems() -> None:
    assert _problems(
        """
        steps:
          - name: a
          - name: b
            retry:
              delay: 5 minutes
              max_delay: 90
            timeout: [1]
        """
    ) == [
        (
            "steps[1].retry.delay",
            5,
            f"'5 minutes' is not a duration; {DURATION_HINT}",
        ),
        ("steps[1].retry.max_delay", 6, f"90 has no unit; {DURATION_HINT}"),
        ("steps[1].timeout", 7, f"expected a duration, got a list; {DURATION_HINT}"),
    ]


def test_enum_problem_lists_valid_values() -> None:
    assert _problems(
        """
        schedule:
          overlap: skipp
        notifications:
          - on: [failed, 3]
        """
    ) == [
        ("schedule.overlap", 2, "'skipp' is not one of queue, skip, cancel_previous, allow"),
        (
            "notifications[0].on[1]",
            4,
            "3 is not one of started, succeeded, failed, timed_out, cancelled, retrying, "
            "schedule_paused, recovered, late, volume_anomaly, slow",
        ),
    ]


def test_scalar_type_problems() -> None:
    assert _problems(
        """
        name: 123
        description: true
        labels: {ok: yes, n: 2}
        schedule:
          pause_after_failures: -1
        retry:
          max_retries: 1.5
          backoff: true
        limits:
          max_concurrent_runs: yes
          step_memory: 1.5
        steps:
          - name: [a]
            trigger: {pipeline: p, wait: "yes"}
        """
    ) == [
        ("name", 1, 'expected a string, got the integer 123; put it in quotes: "123"'),
        ("description", 2, 'expected a string, got the boolean true; put it in quotes: "true"'),
        ("labels.ok", 3, 'expected a string, got the boolean yes; put it in quotes: "yes"'),
        (
            "schedule.pause_after_failures",
            5,
            "-1 is out of range; write a whole number from 0 to 4294967295",
        ),
        ("retry.max_retries", 7, "expected a whole number, got the number 1.5"),
        ("retry.backoff", 8, "expected a number, got the boolean true"),
        ("limits.max_concurrent_runs", 10, "expected a whole number, got the boolean yes"),
        ("limits.step_memory", 11, "expected a memory size like 512Mi or 4Gi, got the number 1.5"),
        ("steps[0].name", 13, "expected a string, got a list"),
        ("steps[0].trigger.wait", 14, "expected true or false, got 'yes'"),
    ]


def test_structure_problems() -> None:
    assert _problems(
        """
        labels: [a]
        schedule: daily
        steps:
          - extract
          - name: b
            needs: extract
        params:
          p:
            choices: 3
        """
    ) == [
        ("labels", 1, "expected a mapping, got a list"),
        ("schedule", 2, "expected a mapping, got 'daily'"),
        ("steps[0]", 4, "expected a mapping, got 'extract'"),
        ("steps[1].needs", 6, "expected a list, got 'extract'; write it as a list: [extract]"),
        ("params.p.choices", 9, "expected a list, got the integer 3"),
    ]


def test_map_keys_must_be_strings() -> None:
    assert _problems(
        """
        labels:
          1: one
        schedule:
          params:
            2026-01-01: x
        """
    ) == [
        ("labels", 2, 'a key must be a string, got the integer 1; put it in quotes: "1"'),
        (
            "schedule.params",
            5,
            'a key must be a string, got the date 2026-01-01; put it in quotes: "2026-01-01"',
        ),
    ]


def test_oneof_with_two_members() -> None:
    assert _problems(
        """
        steps:
          - name: a
            query: {sql: x}
          - name: b
          - name: c
            query: {sql: x}
            transform: {code: y}
        triggers:
          - webhook: {}
            event: {type: t}
        notifications:
          - email: {}
            slack: {}
            webhook: {}
        """
    ) == [
        ("steps[2]", 7, "has both 'query' and 'transform'; a step has exactly one kind"),
        ("triggers[0]", 10, "has both 'webhook' and 'event'; a trigger has exactly one kind"),
        (
            "notifications[0]",
            13,
            "has 'email', 'slack' and 'webhook'; a notification has exactly one channel",
        ),
    ]


def test_oneof_members_set_to_null_do_not_count() -> None:
    spec = _load(
        """
        steps:
          - name: a
            query: null
            export: {slack: {text: t}, table: null}
        """
    )
    assert spec.steps[0].WhichOneof("kind") == "export"
    assert spec.steps[0].export.WhichOneof("target") == "slack"


def test_export_target_conflict() -> None:
    assert _problems(
        """
        steps:
          - name: a
            export:
              table: {table: t}
              slack: {text: t}
        """
    ) == [
        (
            "steps[0].export",
            5,
            "has both 'table' and 'slack'; an export step has exactly one target",
        )
    ]


def test_duplicate_keys() -> None:
    assert _problems(
        """
        name: a
        labels:
          team: x
          team: y
        steps:
          - name: s
            name: t
        name: b
        """
    ) == [
        ("labels", 4, "duplicate key 'team'; it is already set on line 3"),
        ("steps[0]", 7, "duplicate key 'name'; it is already set on line 6"),
        ("", 8, "duplicate key 'name'; it is already set on line 1"),
    ]


def test_value_problems() -> None:
    assert _problems(
        """
        params:
          p:
            default: .nan
            choices: [1, !!binary aGVsbG8=]
        schedule:
          params: &loop {x: *loop}
        """
    ) == [
        ("params.p.default", 3, ".nan is not a finite number; write a number"),
        ("params.p.choices[1]", 4, "expected a JSON value, got binary data"),
        ("schedule.params.x", 6, "a value cannot contain itself (through an alias)"),
    ]


def test_all_problems_are_reported_sorted_by_line() -> None:
    problems = _problems(
        """
        steps:
          - name: a
            query: {sql: x}
            transform: {code: y}
            timeout: 5
        nme: p
        """
    )
    assert [(path, line) for path, line, _ in problems] == [
        ("steps[0]", 4),
        ("steps[0].timeout", 5),
        ("", 6),
    ]


def test_top_level_must_be_a_mapping() -> None:
    assert _problems("- a\n- b\n") == [
        ("", 1, "the top level must be a mapping of pipeline fields, got a list")
    ]


def test_empty_document() -> None:
    assert _problems("# nothing\n") == [
        ("", None, "the document is empty; a pipeline spec needs a name and steps")
    ]


def test_yaml_syntax_error_has_the_line() -> None:
    assert _problems(
        """
        name: p
        steps:
          - name: a
           query: x
        """
    ) == [
        (
            "",
            4,
            "invalid YAML: while parsing a block collection, expected <block end>, "
            "but found '<block mapping start>'",
        )
    ]
    assert _problems("name: a: b\n") == [
        ("", 1, "invalid YAML: mapping values are not allowed here")
    ]


def test_error_text_lists_file_line_path_message() -> None:
    with pytest.raises(SpecFormatError) as info:
        load_spec_text("name: 1\nretry: {delay: 5}\n", "etl.yaml")
    assert info.value.filename == "etl.yaml"
    assert str(info.value) == (
        'etl.yaml:1: name: expected a string, got the integer 1; put it in quotes: "1"\n'
        f"etl.yaml:2: retry.delay: 5 has no unit; {DURATION_HINT}"
    )
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.problems == info.value.problems
    assert str(copy) == str(info.value)


# JSON


def test_json_input_with_tabs_and_lines() -> None:
    text = '{\n\t"name": "p",\n\t"steps": [\n\t\t{"name": "a", "nedds": ["b"]}\n\t]\n}\n'
    with pytest.raises(SpecFormatError) as info:
        load_spec_text(text, "p.json")
    assert info.value.problems == [
        SpecProblem("steps[0]", 4, "unknown field 'nedds' — did you mean 'needs'?")
    ]
    good = load_spec_text(text.replace("nedds", "needs"), "p.json")
    assert list(good.spec.steps[0].needs) == ["b"]
    assert good.source_map.line_for("steps[0].needs[0]") == 4


def test_json_duplicate_keys() -> None:
    assert _problems('{"name": "a", "name": "b"}') == [
        ("", 1, "duplicate key 'name'; it is already set on line 1")
    ]


# Files


def test_load_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nsteps: [{name: a}]\n", encoding="utf-8")
    loaded = load_spec_file(path)
    assert loaded.filename == str(path)
    assert loaded.spec.name == "p"


def test_load_spec_file_reads_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("name: from-stdin\n"))
    loaded = load_spec_file("-")
    assert loaded.spec.name == "from-stdin"
    assert loaded.filename == "<stdin>"


def test_load_spec_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(SpecFormatError) as info:
        load_spec_file(path)
    assert str(info.value) == (
        f"{path}: no such file; check the path, or pass - to read the spec from standard input"
    )


def test_load_spec_file_directory_and_encoding(tmp_path: Path) -> None:
    with pytest.raises(SpecFormatError, match="is a directory"):
        load_spec_file(tmp_path)
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: p\ndescription: caf\xe9\n")
    with pytest.raises(SpecFormatError) as info:
        load_spec_file(path)
    assert info.value.problems == [
        SpecProblem("", 2, "is not UTF-8 text (byte 24); save the file as UTF-8")
    ]


# Field paths and the source map


@pytest.mark.parametrize(
    ("parts", "text"),
    [
        (["steps", 2, "needs", 0], "steps[2].needs[0]"),
        (["schedule", "cron"], "schedule.cron"),
        (["params", "days", "default"], "params.days.default"),
        (["labels", "team.name"], 'labels["team.name"]'),
        (["labels", "my-team"], "labels.my-team"),
        (["labels", "1st"], 'labels["1st"]'),
        (["labels", 'a"b'], 'labels["a\\"b"]'),
        (["steps", 1, "export", "table", "keys", 0], "steps[1].export.table.keys[0]"),
        (["triggers", 0, "event", "filter"], "triggers[0].event.filter"),
        ([], ""),
    ],
)
def test_format_and_parse_path(parts: list[str | int], text: str) -> None:
    assert format_path(parts) == text
    assert parse_path(text) == parts


@pytest.mark.parametrize(
    ("text", "position"),
    [(".a", 0), ("a..b", 2), ("a[x]", 1), ('a["b"', 5), ("a[-1]", 1), ("a b", 1)],
)
def test_parse_path_refuses_bad_syntax(text: str, position: int) -> None:
    with pytest.raises(ValueError, match=rf"invalid field path .* at position {position}:"):
        parse_path(text)


def test_source_map_lines_and_ancestor_fallback() -> None:
    loaded = load_spec_text(
        _doc(
            """
            name: p
            labels:
              team.name: data
            steps:
              - name: a
                query: {sql: x}
              -
                name: b
                export:
                  table:
                    keys:
                      - id
            """
        )
    )
    source = loaded.source_map
    assert source.line_for("name") == 1
    assert source.line_for('labels["team.name"]') == 3
    assert source.line_for("steps[0]") == 5
    assert source.line_for("steps[0].query.sql") == 6
    # An item's line is where its value starts.
    assert source.line_for("steps[1]") == 8
    assert source.line_for("steps[1].name") == 8
    assert source.line_for("steps[1].export.table.keys[0]") == 12
    # Paths with no node of their own fall back to the nearest written ancestor.
    assert source.line_for("steps[1].kind") == 8
    assert source.line_for("steps[1].export.table.mode") == 10
    assert source.line_for("steps[0].query.connection") == 6
    assert source.line_for("schedule.cron") is None
    assert source.line_for("") is None
    assert source.line_for("steps[") is None


def test_source_map_compares_parsed_paths() -> None:
    source = SourceMap({'labels["team"]': 4})
    assert source.line_for("labels.team") == 4
    assert source.line_for("labels") is None


def test_json_keeps_tabs_inside_strings() -> None:
    spec = load_spec_text('{\t"name":\t"a\tb", "description": "q\\"\t"}', "p.json").spec
    assert spec.name == "a\tb"
    assert spec.description == 'q"\t'
