"""The Legato Python SDK: a synchronous client of the legato.v1 API.

    from legato import Client
    with Client("localhost:7470") as legato:
        result = legato.apply_pipeline(spec, message="first cut")

Mutations send a ``request_id`` (generated when not given) so that a call retried after a
lost response takes effect once; calls are retried on UNAVAILABLE by the channel's retry
policy. Failures raise ``legato.RpcError``."""

from __future__ import annotations

import getpass
import json
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from legato.errors import from_grpc_error
from legato.v1 import pipeline_pb2, pipeline_service_pb2_grpc, spec_pb2
from legato.v1 import pipeline_service_pb2 as pipelines

__all__ = ["DEFAULT_SERVER", "Client", "default_server", "default_user"]

DEFAULT_SERVER = "localhost:7470"
USER_METADATA_KEY = "legato-user"

T = TypeVar("T")
R = TypeVar("R")

_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "legato.v1.PipelineService"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def default_server() -> str:
    return os.environ.get("LEGATO_SERVER") or DEFAULT_SERVER


def default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Client:
    """A connection to a Legato control plane. Keyword-only options:

    - ``user``: sent as the author of versions and the actor in the audit log
      (default: the OS user);
    - ``timeout``: deadline of each call in seconds.
    """

    def __init__(
        self, server: str | None = None, *, user: str | None = None, timeout: float = 30.0
    ) -> None:
        self.target = server or default_server()
        self._timeout = timeout
        self._metadata = ((USER_METADATA_KEY, user or default_user()),)
        self._channel = grpc.insecure_channel(
            self.target,
            options=[
                ("grpc.service_config", _SERVICE_CONFIG),
                ("grpc.enable_retries", 1),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ],
        )
        self._pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pipelines ----------------------------------------------------------------------

    def validate_pipeline(self, spec: spec_pb2.PipelineSpec) -> pipelines.ValidatePipelineResponse:
        """The canonical form and content hash; raises RpcError (INVALID_ARGUMENT, with
        field violations) when the spec is invalid."""
        return self._call(
            self._pipelines.ValidatePipeline, pipelines.ValidatePipelineRequest(spec=spec)
        )

    def apply_pipeline(
        self, spec: spec_pb2.PipelineSpec, *, message: str = "", request_id: str | None = None
    ) -> pipelines.ApplyPipelineResponse:
        request = pipelines.ApplyPipelineRequest(
            spec=spec, message=message, request_id=request_id or _request_id()
        )
        return self._call(self._pipelines.ApplyPipeline, request)

    def get_pipeline(self, name: str) -> pipeline_pb2.Pipeline:
        return self._call(
            self._pipelines.GetPipeline, pipelines.GetPipelineRequest(name=name)
        ).pipeline

    def list_pipelines(
        self, *, show_archived: bool = False, name_prefix: str = "", page_size: int = 0
    ) -> Iterator[pipeline_pb2.Pipeline]:
        """Every pipeline, fetching pages as the iterator advances."""

        def fetch(token: str) -> tuple[list[pipeline_pb2.Pipeline], str]:
            response = self._call(
                self._pipelines.ListPipelines,
                pipelines.ListPipelinesRequest(
                    page_size=page_size,
                    page_token=token,
                    show_archived=show_archived,
                    name_prefix=name_prefix,
                ),
            )
            return list(response.pipelines), response.next_page_token

        return _paged(fetch)

    def get_pipeline_version(self, pipeline: str, version: int = 0) -> pipeline_pb2.PipelineVersion:
        """Version ``version`` of the pipeline; 0 means the latest."""
        request = pipelines.GetPipelineVersionRequest(pipeline=pipeline, version=version)
        return self._call(self._pipelines.GetPipelineVersion, request).version

    def list_pipeline_versions(
        self, pipeline: str, *, page_size: int = 0
    ) -> Iterator[pipeline_pb2.PipelineVersion]:
        """Versions newest first."""

        def fetch(token: str) -> tuple[list[pipeline_pb2.PipelineVersion], str]:
            response = self._call(
                self._pipelines.ListPipelineVersions,
                pipelines.ListPipelineVersionsRequest(
                    pipeline=pipeline, page_size=page_size, page_token=token
                ),
            )
            return list(response.versions), response.next_page_token

        return _paged(fetch)

    def diff_pipeline_versions(
        self, pipeline: str, from_version: int, to_version: int = 0
    ) -> pipeline_pb2.PipelineDiff:
        request = pipelines.DiffPipelineVersionsRequest(
            pipeline=pipeline, from_version=from_version, to_version=to_version
        )
        return self._call(self._pipelines.DiffPipelineVersions, request).diff

    def rollback_pipeline(
        self, pipeline: str, version: int, *, message: str = "", request_id: str | None = None
    ) -> pipelines.RollbackPipelineResponse:
        request = pipelines.RollbackPipelineRequest(
            pipeline=pipeline,
            version=version,
            message=message,
            request_id=request_id or _request_id(),
        )
        return self._call(self._pipelines.RollbackPipeline, request)

    def archive_pipeline(
        self, name: str, *, request_id: str | None = None
    ) -> pipeline_pb2.Pipeline:
        request = pipelines.ArchivePipelineRequest(
            name=name, request_id=request_id or _request_id()
        )
        return self._call(self._pipelines.ArchivePipeline, request).pipeline

    def restore_pipeline(
        self, name: str, *, request_id: str | None = None
    ) -> pipeline_pb2.Pipeline:
        request = pipelines.RestorePipelineRequest(
            name=name, request_id=request_id or _request_id()
        )
        return self._call(self._pipelines.RestorePipeline, request).pipeline

    # -- plumbing -----------------------------------------------------------------------

    def _call(self, method: Callable[..., R], request: Any) -> R:
        try:
            return method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_grpc_error(error, self.target) from None


def _request_id() -> str:
    return uuid.uuid4().hex


def _paged(fetch: Callable[[str], tuple[list[T], str]]) -> Iterator[T]:
    token = ""
    while True:
        items, token = fetch(token)
        yield from items
        if not token:
            return
