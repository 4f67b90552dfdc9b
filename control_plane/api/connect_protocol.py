"""The Connect protocol's wire format (https://connectrpc.com/docs/protocol), as the web UI
speaks it over HTTP/1.1: codecs, stream envelopes and errors. No servicer is called here
(``api/connect_adapter.py`` does that).

- **Unary**: ``POST /api/<package.Service>/<Method>`` with ``Content-Type:
  application/json`` (protobuf JSON) or ``application/proto``; the response has the same
  type. An error is an HTTP status from the code with a JSON body ``{"code", "message",
  "details": [{"type", "value", "debug"}]}``, each detail a ``google.rpc`` message
  (``ErrorInfo``, ``BadRequest``) in base64 as the protocol says, with its JSON in
  ``debug`` for people reading the network tab.
- **Server streaming**: ``application/connect+json`` (or ``+proto``); the request and
  every response message is an envelope — one flags byte, a 4-byte big-endian length,
  the message — and the stream ends with an envelope whose flags have ``END_STREAM`` set,
  holding ``{}`` or ``{"error": …}``.

Compressed messages are refused (UNIMPLEMENTED): the UI sends none."""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2

__all__ = [
    "END_STREAM",
    "Codec",
    "ConnectError",
    "codec_for",
    "end_stream",
    "envelope",
    "error_body",
    "http_status",
    "read_envelope",
]

END_STREAM = 0x02
COMPRESSED = 0x01
_PREFIX = struct.Struct(">BI")

_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


@dataclass(frozen=True)
class ConnectError(Exception):
    """A call's failure as Connect reports it: a code, a message and ``google.rpc``
    details (packed ``Any`` messages)."""

    code: grpc.StatusCode
    message: str
    details: tuple[any_pb2.Any, ...] = ()

    @classmethod
    def from_status(cls, code: grpc.StatusCode, message: str, status: bytes | None) -> ConnectError:
        """From what a servicer aborted with: the ``grpc-status-details-bin`` trailer, when
        there is one, carries the details."""
        details: tuple[any_pb2.Any, ...] = ()
        if status:
            parsed = status_pb2.Status()
            try:
                parsed.ParseFromString(status)
                details = tuple(parsed.details)
            except DecodeError:
                details = ()
        return cls(code, message, details)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": _code_name(self.code), "message": self.message}
        if self.details:
            body["details"] = [_detail(packed) for packed in self.details]
        return body


def http_status(code: grpc.StatusCode) -> int:
    return _HTTP.get(code, 500)


def error_body(error: ConnectError) -> bytes:
    return json.dumps(error.to_json(), ensure_ascii=False).encode()


class Codec:
    """Messages as JSON (protobuf's canonical mapping) or binary."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def is_json(self) -> bool:
        return self.name == "json"

    def decode(self, data: bytes, message: Message) -> Message:
        if self.is_json:
            try:
                json_format.Parse(data.decode() if data else "{}", message)
            except (json_format.ParseError, UnicodeDecodeError) as exc:
                raise ConnectError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the request is not valid JSON for {message.DESCRIPTOR.full_name}: "
                    f"{str(exc)[:300]}",
                ) from None
            return message
        try:
            message.ParseFromString(data)
        except DecodeError as exc:
            raise ConnectError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request could not be decoded as {message.DESCRIPTOR.full_name}: {exc}",
            ) from None
        return message

    def encode(self, message: Message) -> bytes:
        if self.is_json:
            return json_format.MessageToJson(message, indent=None).encode()
        return message.SerializeToString()


def codec_for(content_type: str, *, streaming: bool) -> Codec | None:
    """The codec a request's ``Content-Type`` asks for, or None when the type is not one
    of this call shape's."""
    base = content_type.split(";", 1)[0].strip().lower()
    prefix = "application/connect+" if streaming else "application/"
    if not base.startswith(prefix):
        return None
    name = base.removeprefix(prefix)
    return Codec(name) if name in ("json", "proto") else None


def envelope(data: bytes, flags: int = 0) -> bytes:
    return _PREFIX.pack(flags, len(data)) + data


def end_stream(error: ConnectError | None) -> bytes:
    body: dict[str, Any] = {} if error is None else {"error": error.to_json()}
    return envelope(json.dumps(body, ensure_ascii=False).encode(), END_STREAM)


def read_envelope(data: bytes) -> bytes:
    """The one message of a server-streaming request's body."""
    if len(data) < _PREFIX.size:
        raise ConnectError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "a streaming request's body must be one enveloped message (5-byte prefix)",
        )
    flags, length = _PREFIX.unpack_from(data)
    if flags & COMPRESSED:
        raise ConnectError(
            grpc.StatusCode.UNIMPLEMENTED, "compressed messages are not supported; send them plain"
        )
    if len(data) != _PREFIX.size + length:
        raise ConnectError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request envelope says {length} bytes but {len(data) - _PREFIX.size} follow",
        )
    return data[_PREFIX.size :]


def _code_name(code: grpc.StatusCode) -> str:
    if code is grpc.StatusCode.CANCELLED:
        return "canceled"  # Connect's spelling
    name: str = code.value[1]
    return name.replace(" ", "_")


def _detail(packed: any_pb2.Any) -> dict[str, Any]:
    type_name = packed.type_url.rsplit("/", 1)[-1]
    detail: dict[str, Any] = {
        "type": type_name,
        "value": base64.b64encode(packed.value).decode().rstrip("="),
    }
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(type_name)
    except KeyError:
        return detail
    message = message_factory.GetMessageClass(descriptor)()
    if packed.Unpack(message):
        detail["debug"] = json_format.MessageToDict(message)
    return detail
