"""The Connect protocol's wire format (``api/connect_protocol.py``), without a server:
envelopes, codecs, codes and the error body with its ``google.rpc`` details."""

from __future__ import annotations

import base64
import json

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from control_plane.api.connect_protocol import (
    ConnectError,
    codec_for,
    end_stream,
    envelope,
    error_body,
    http_status,
    read_envelope,
)
from legato.v1 import run_service_pb2


def test_envelopes_round_trip_and_bad_ones_are_refused() -> None:
    framed = envelope(b'{"id":"r1"}')
    assert framed[:5] == b"\x00\x00\x00\x00\x0b" and read_envelope(framed) == b'{"id":"r1"}'
    with pytest.raises(ConnectError, match="5-byte prefix"):
        read_envelope(b"\x00\x00")
    with pytest.raises(ConnectError, match="says 11 bytes but 3 follow"):
        read_envelope(framed[:8])
    with pytest.raises(ConnectError, match="compressed") as compressed:
        read_envelope(b"\x01" + framed[1:])
    assert compressed.value.code is grpc.StatusCode.UNIMPLEMENTED
    end = end_stream(None)
    assert end[0] == 0x02 and json.loads(end[5:]) == {}


def test_codecs_follow_the_content_type_of_the_call_shape() -> None:
    assert codec_for("application/json; charset=utf-8", streaming=False).name == "json"  # type: ignore[union-attr]
    assert codec_for("application/proto", streaming=False).name == "proto"  # type: ignore[union-attr]
    assert codec_for("application/connect+json", streaming=True).name == "json"  # type: ignore[union-attr]
    assert codec_for("application/connect+json", streaming=False) is None
    assert codec_for("application/json", streaming=True) is None
    assert codec_for("text/plain", streaming=False) is None

    json_codec = codec_for("application/json", streaming=False)
    assert json_codec is not None
    request = json_codec.decode(b'{"id": "r1"}', run_service_pb2.GetRunRequest())
    assert request == run_service_pb2.GetRunRequest(id="r1")
    assert json.loads(json_codec.encode(request)) == {"id": "r1"}
    assert (
        json_codec.decode(b"", run_service_pb2.GetRunRequest()) == run_service_pb2.GetRunRequest()
    )
    with pytest.raises(ConnectError, match=r"not valid JSON for legato\.v1\.GetRunRequest"):
        json_codec.decode(b'{"id": 3', run_service_pb2.GetRunRequest())
    binary = codec_for("application/proto", streaming=False)
    assert binary is not None
    assert binary.decode(request.SerializeToString(), run_service_pb2.GetRunRequest()) == request


def test_errors_carry_the_code_the_http_status_and_readable_details() -> None:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="RUN_NOT_FOUND", domain="legato.dev"))
    status = status_pb2.Status(code=5, message="no run", details=[info]).SerializeToString()
    error = ConnectError.from_status(grpc.StatusCode.NOT_FOUND, "no run", status)
    body = json.loads(error_body(error))
    assert (body["code"], body["message"]) == ("not_found", "no run")
    (detail,) = body["details"]
    assert detail["type"] == "google.rpc.ErrorInfo"
    assert detail["debug"] == {"reason": "RUN_NOT_FOUND", "domain": "legato.dev"}
    padded = detail["value"] + "=" * (-len(detail["value"]) % 4)
    assert base64.b64decode(padded) == info.value
    assert ConnectError.from_status(grpc.StatusCode.INTERNAL, "x", b"\xff garbage").details == ()
    cancelled = json.loads(error_body(ConnectError(grpc.StatusCode.CANCELLED, "stop")))
    assert cancelled["code"] == "canceled"  # Connect's spelling
    assert [
        http_status(c)
        for c in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.UNAVAILABLE,
        )
    ] == [400, 401, 403, 404, 429, 503]
