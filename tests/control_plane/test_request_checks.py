"""The checks every request gets (sizes, NUL characters, enum values), the bound on what
an error carries, and list responses bounded by bytes: plain functions over real
messages, no server."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from control_plane.api.bounded import MAX_RESPONSE_BYTES, bounded_items
from control_plane.api.errors import to_status
from control_plane.api.request_checks import (
    MAX_ITEMS,
    MAX_REQUEST_BYTES,
    MAX_STRING,
    SPEC_LIMIT,
    STRING_LIMITS,
    STRUCT_LIMITS,
    check_request,
)
from control_plane.errors import FieldViolation, InvalidArgument, LegatoError, NotFound
from control_plane.pagination import PageRequest
from control_plane.quoting import quote
from legato.v1 import (
    access_service_pb2,
    pipeline_service_pb2,
    run_pb2,
    run_service_pb2,
    spec_pb2,
)
from legato.v1 import event_service_pb2 as _event_service  # noqa: F401  (PublishRequest)

KIB = 1024
MIB = 1024 * KIB


def refusal(request: Message) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        check_request(request)
    return caught.value


def fields(error: InvalidArgument) -> list[str]:
    return [v.field for v in error.violations]


def struct(**values: Any) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def spec(**changes: Any) -> spec_pb2.PipelineSpec:
    message = spec_pb2.PipelineSpec(
        name="etl",
        steps=[spec_pb2.Step(name="only", transform=spec_pb2.TransformStep(code="result = 1"))],
    )
    for name, value in changes.items():
        setattr(message, name, value)
    return message


# -- the tables name real fields ------------------------------------------------------------


def _field(owner: str, name: str) -> FieldDescriptor:
    from google.protobuf import descriptor_pool

    message = descriptor_pool.Default().FindMessageTypeByName(owner)
    return message.fields_by_name[name]


@pytest.mark.parametrize("key", sorted(STRING_LIMITS))
def test_each_string_limit_names_a_string_field(key: tuple[str, str]) -> None:
    assert _field(*key).type == FieldDescriptor.TYPE_STRING


@pytest.mark.parametrize("key", sorted(STRUCT_LIMITS))
def test_each_struct_limit_names_a_struct_field(key: tuple[str, str]) -> None:
    field = _field(*key)
    assert field.message_type is not None
    assert field.message_type.full_name == "google.protobuf.Struct"


# -- sizes ----------------------------------------------------------------------------------


def test_a_request_within_every_limit_passes() -> None:
    check_request(
        run_service_pb2.TriggerRunRequest(
            pipeline="etl", params=struct(day="2024-01-01", ids=[1, 2, 3], nested={"a": "b"})
        )
    )
    check_request(
        pipeline_service_pb2.ApplyPipelineRequest(spec=spec(description="d" * (16 * KIB)))
    )


def test_params_over_their_limit_are_named_with_the_limit() -> None:
    error = refusal(
        run_service_pb2.TriggerRunRequest(
            pipeline="etl",
            params=struct(
                x="a" * 60_000, y="b" * 60_000, z="c" * 60_000, w="d" * 60_000, v="e" * 60_000
            ),
        )
    )
    assert error.reason == "INVALID_REQUEST"
    assert fields(error) == ["params"]
    assert error.message.startswith("params: ") and f"over the limit of {256 * KIB} bytes" in (
        error.message
    )
    assert error.metadata == {"field": "params"}


def test_an_oversized_request_names_the_field_that_makes_it_so() -> None:
    big = struct(blob=["x" * (60 * KIB)] * 200)  # 12 MB of params
    error = refusal(run_service_pb2.TriggerRunRequest(pipeline="etl", params=big))
    assert error.reason == "REQUEST_TOO_LARGE"
    assert error.message.startswith(f"params: {big.ByteSize()} bytes, over the limit of 262144")
    assert f"may be at most {MAX_REQUEST_BYTES} bytes" in error.message
    assert error.metadata == {"field": "params", "limit_bytes": str(MAX_REQUEST_BYTES)}
    assert len(error.message) < 300


def test_a_huge_description_is_named_not_just_the_spec() -> None:
    request = pipeline_service_pb2.ApplyPipelineRequest(spec=spec(description="d" * (3 * MIB)))
    error = refusal(request)
    assert error.reason == "REQUEST_TOO_LARGE"
    assert fields(error) == ["spec.description", "spec"]
    assert error.message.startswith(f"spec.description: {3 * MIB} characters, over the limit")
    assert "(starts 'dddd" in error.violations[0].description


def test_a_spec_over_its_limit_is_refused_though_each_field_fits() -> None:
    large = spec()
    code = "x = 1\n" * (40 * KIB)
    large.steps[0].transform.code = code
    for index in range(5):
        large.steps.add(name=f"s{index}", transform=spec_pb2.TransformStep(code=code))
    assert SPEC_LIMIT < large.ByteSize() < MAX_REQUEST_BYTES
    error = refusal(pipeline_service_pb2.ValidatePipelineRequest(spec=large))
    assert fields(error) == ["spec"]
    assert f"over the limit of {SPEC_LIMIT} bytes" in error.message


def test_an_oversized_request_of_many_small_fields_names_its_largest() -> None:
    labels = {f"k{index}": "v" * 4000 for index in range(600)}  # 2.4 MB, each value fits
    request = access_service_pb2.CreateAgentTokenRequest(agent="a1", labels=labels)
    error = refusal(request)
    assert error.reason == "REQUEST_TOO_LARGE"
    assert fields(error) == ["labels"]
    assert "the largest part of the request" in error.message


def test_strings_have_a_default_limit_and_named_exceptions() -> None:
    error = refusal(pipeline_service_pb2.GetPipelineRequest(name="n" * (MAX_STRING + 1)))
    assert fields(error) == ["name"]
    assert f"{MAX_STRING + 1} characters, over the limit of {MAX_STRING}" in error.message
    check_request(
        pipeline_service_pb2.ApplyPipelineRequest(
            spec=spec(), message="m" * (16 * KIB)
        )  # a version message may be longer
    )


def test_a_repeated_field_holds_at_most_max_items() -> None:
    statuses: Any = [run_pb2.RUN_STATUS_FAILED] * (MAX_ITEMS + 1)
    error = refusal(run_service_pb2.ListRunsRequest(statuses=statuses))
    assert fields(error) == ["statuses"]
    assert f"{MAX_ITEMS + 1} items, over the limit of {MAX_ITEMS} items" in error.message


def test_refusing_a_huge_request_does_not_walk_it() -> None:
    """A Struct of a million small entries is refused by its size, not entry by entry."""
    many = struct_pb2.Struct()
    for index in range(1_000_000):
        many.fields[str(index)].number_value = index
    request = run_service_pb2.TriggerRunRequest(pipeline="etl", params=many)
    started = time.monotonic()
    error = refusal(request)
    elapsed = time.monotonic() - started
    assert fields(error) == ["params"]
    assert elapsed < 2.0, f"{elapsed:.2f} s"  # walking every entry takes several seconds


def test_nesting_is_bounded() -> None:
    value = struct_pb2.Value(string_value="leaf")
    for _ in range(20):  # 40 messages deep
        outer = struct_pb2.Value()
        outer.struct_value.fields["n"].CopyFrom(value)
        value = outer
    error = refusal(run_service_pb2.TriggerRunRequest(pipeline="etl", params=value.struct_value))
    assert "nested deeper than 32" in error.message


# -- NUL characters and enums -----------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (run_service_pb2.GetRunRequest(id="a\x00b"), "id"),
        (pipeline_service_pb2.ApplyPipelineRequest(spec=spec(name="a\x00b")), "spec.name"),
        (
            pipeline_service_pb2.ApplyPipelineRequest(spec=spec(description="x\x00")),
            "spec.description",
        ),
        (
            run_service_pb2.TriggerRunRequest(pipeline="etl", params=struct(note="a\x00b")),
            "params.fields['note'].string_value",
        ),
        (
            run_service_pb2.TriggerRunRequest(pipeline="etl", params=struct(**{"k\x00": 1})),
            "params.fields['k\\x00']",
        ),
        (
            access_service_pb2.CreateAgentTokenRequest(agent="a1", connections=["ok", "b\x00"]),
            "connections[1]",
        ),
    ],
)
def test_nul_characters_are_refused_naming_the_field(request_: Message, field: str) -> None:
    error = refusal(request_)
    assert fields(error) == [field]
    assert "NUL character" in error.message


def test_unknown_enum_values_are_refused_naming_the_field_and_the_values() -> None:
    kind: Any = 99
    error = refusal(run_service_pb2.TriggerRunRequest(pipeline="etl", kind=kind))
    assert fields(error) == ["kind"]
    assert error.message.startswith("kind: 99 is not a value of TriggerKind; use one of ")
    assert "TRIGGER_KIND_UNSPECIFIED" not in error.message
    statuses: Any = [run_pb2.RUN_STATUS_FAILED, 42]
    error = refusal(run_service_pb2.ListRunsRequest(statuses=statuses))
    assert fields(error) == ["statuses[1]"]


def test_problems_are_listed_together_up_to_a_bound() -> None:
    names = [f"n{index}\x00" for index in range(50)]
    error = refusal(access_service_pb2.CreateAgentTokenRequest(agent="a1", connections=names))
    assert len(error.violations) == 20
    assert "(and at least 19 more problems)" in error.message


# -- what an error carries ----------------------------------------------------------------


def test_quote_shows_a_short_prefix_and_the_length() -> None:
    assert quote("short") == "'short'"
    quoted = quote("x" * (5 * MIB))
    assert quoted.startswith("'xxxx") and quoted.endswith(f"… ({5 * MIB} characters)")
    assert len(quoted) < 80


def test_the_status_of_any_error_is_bounded() -> None:
    huge = "h" * (5 * MIB)
    error = InvalidArgument(
        f"bad value {huge}",
        violations=[FieldViolation(huge, huge)] * 100,
        metadata={"value": huge, **{f"k{index}": "v" for index in range(50)}},
        reason="INVALID_THING",
    )
    code, status = to_status(error)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(status.message) <= 1024 and status.message.startswith("bad value hhh")
    assert "characters, cut]" in status.message
    info = error_details_pb2.ErrorInfo()
    bad = error_details_pb2.BadRequest()
    status.details[0].Unpack(info)
    status.details[1].Unpack(bad)
    assert info.reason == "INVALID_THING"
    assert all(len(value) <= 200 for value in info.metadata.values())
    assert len(info.metadata) <= 20
    assert all(len(v.description) <= 512 and len(v.field) <= 200 for v in bad.field_violations)
    assert status.ByteSize() < 64 * KIB


def test_a_small_error_is_unchanged() -> None:
    _, status = to_status(NotFound("run 'r1' does not exist", metadata={"run_id": "r1"}))
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert status.message == "run 'r1' does not exist"
    assert dict(info.metadata) == {"run_id": "r1"}


def test_domain_errors_quote_user_values() -> None:
    from control_plane.errors import pipeline_not_found

    error: LegatoError = pipeline_not_found("p" * (4 * KIB))
    assert len(error.message) < 200


# -- list responses bounded by bytes ---------------------------------------------------------


def _lines(count: int, size: int) -> list[run_pb2.LogLine]:
    return [run_pb2.LogLine(seq=index + 1, text="t" * size) for index in range(count)]


def test_a_page_over_the_byte_bound_is_cut_and_resumes_after_its_last_item() -> None:
    rows = _lines(1001, 16 * KIB)
    request = PageRequest.parse(1000, "", run="r1")
    page = request.page(rows, key=lambda line: line.seq)
    items, token = bounded_items(page, lambda line: line)
    assert sum(item.ByteSize() for item in items) <= MAX_RESPONSE_BYTES
    assert 150 < len(items) < 1000
    assert PageRequest.parse(1000, token, run="r1").after == items[-1].seq


def test_following_the_tokens_reaches_every_item_once() -> None:
    rows = _lines(300, 50 * KIB)
    seen: list[int] = []
    token = ""
    while True:
        request = PageRequest.parse(1000, token, run="r1")
        after = request.after or 0
        page = request.page([r for r in rows if r.seq > after][:1001], key=lambda r: r.seq)
        items, token = bounded_items(page, lambda line: line, limit=1 * MIB)
        seen += [item.seq for item in items]
        if not token:
            break
    assert seen == list(range(1, 301))


def test_a_page_within_the_bound_keeps_its_own_token() -> None:
    page = PageRequest.parse(2, "", run="r1").page(_lines(3, 10), key=lambda r: r.seq)
    items, token = bounded_items(page, lambda line: line)
    assert len(items) == 2 and token == page.next_page_token


def test_a_single_item_over_the_bound_is_still_sent() -> None:
    page = PageRequest.parse(10, "", run="r1").page(_lines(2, 2 * KIB), key=lambda r: r.seq)
    items, token = bounded_items(page, lambda line: line, limit=KIB)
    assert [item.seq for item in items] == [1]
    assert PageRequest.parse(10, token, run="r1").after == 1
