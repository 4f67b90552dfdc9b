"""``-o json`` prints numbers as they were written: integral numbers of Struct/Value/
ListValue as integers (not ``500.0``) and 64-bit integer fields as numbers (not
``"127"``), both only while a double holds them exactly."""

from __future__ import annotations

import json

import pytest
import yaml
from google.protobuf import struct_pb2

from legato.cli.output import emit_message, to_json_dict
from legato.v1 import agent_pb2, run_pb2
from legato.v1 import run_service_pb2 as pb


def test_struct_numbers_keep_integers_integral() -> None:
    run = run_pb2.Run(id="r1")
    run.params.update({"rows": 500, "ratio": 2.5, "nested": {"ids": [1, 2.0, 3.25]}, "no": None})

    data = to_json_dict(run)

    assert data["params"] == {
        "rows": 500,
        "ratio": 2.5,
        "nested": {"ids": [1, 2, 3.25]},
        "no": None,
    }
    assert type(data["params"]["rows"]) is int
    assert type(data["params"]["ratio"]) is float


def test_int64_fields_are_numbers_in_messages_lists_and_maps() -> None:
    response = pb.ListRunsResponse(
        runs=[run_pb2.Run(id="r1", steps=[run_pb2.StepRun(name="a", records_in=127)])]
    )
    output = run_pb2.OutputSummary(rows=9_007_199_254_740_993)  # 2**53 + 1
    agent = agent_pb2.Agent(name="a1", slots=4)

    assert to_json_dict(response)["runs"][0]["steps"][0]["records_in"] == 127
    # Beyond 2**53 a double would round it: it stays the exact string.
    assert to_json_dict(output)["rows"] == "9007199254740993"
    assert to_json_dict(agent)["slots"] == 4


def test_values_of_step_outputs() -> None:
    bare = struct_pb2.Struct(fields={"n": struct_pb2.Value(number_value=3)})
    step = run_pb2.StepRun(name="x")
    step.output.values.update({"v": [4.0], "total": 1e20})

    # Compared as printed: 4 == 4.0 in Python, but not in the JSON a script reads.
    assert json.dumps(to_json_dict(bare)) == '{"n": 3}'
    values = to_json_dict(step)["output"]["values"]
    assert json.dumps(values, sort_keys=True) == '{"total": 1e+20, "v": [4]}'


def test_json_and_yaml_print_the_same_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    run = run_pb2.Run(id="r1")
    run.params.update({"rows": 500})
    run.steps.add(name="a", records_out=98)

    emit_message(run, "json")
    as_json = capsys.readouterr().out
    emit_message(run, "yaml")
    as_yaml = capsys.readouterr().out

    assert '"rows": 500\n' in as_json and '"records_out": 98\n' in as_json
    assert json.loads(as_json)["steps"][0]["records_out"] == 98
    loaded = yaml.safe_load(as_yaml)
    assert loaded["params"]["rows"] == 500 and loaded["steps"][0]["records_out"] == 98
    assert "rows: 500\n" in as_yaml
