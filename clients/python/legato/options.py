"""The parts of a pipeline written in Python: parameters, the schedule, retry policies,
limits, triggers, notifications, guardrails and export targets.

Each is a frozen dataclass whose fields are the spec's fields (docs/spec.md), so
``Retry(max_retries=3, delay="60s")`` is the YAML ``retry: {max_retries: 3, delay: 60s}``.
A field left at None is not written. Durations take ``"90s"``/``"1h30m"`` or a
``timedelta``; enum values are the spec's lower-case words (``overlap="skip"``). Wherever
a part is taken, the YAML form as a dict is taken too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from legato.document import Located, Part, Problems

__all__ = [
    "DatabaseTrigger",
    "Dst",
    "DurationExpectation",
    "EmailChannel",
    "EventTrigger",
    "Limits",
    "Notification",
    "PagerDutyChannel",
    "Param",
    "RecordsExpectation",
    "Retry",
    "RunExpectations",
    "Schedule",
    "SlackChannel",
    "SlackExport",
    "StepExpectations",
    "TableExport",
    "WebhookChannel",
    "WebhookExport",
    "WebhookTrigger",
]

Duration = str | timedelta
"""``"90s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` or a ``timedelta``."""
Memory = str | int
"""``"512Mi"``, ``"4Gi"``, ``"1G"`` or a number of bytes."""
ParamTypeName = Literal["string", "integer", "number", "boolean", "date", "datetime", "json"]
FailureKindName = Literal["error", "timeout", "lost", "memory"]
EventName = Literal[
    "started",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "retrying",
    "schedule_paused",
    "recovered",
    "late",
    "volume_anomaly",
    "slow",
]

_PYTHON_TYPES: dict[type, str] = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    datetime: "datetime",
    date: "date",
    dict: "json",
    list: "json",
}


def param_type_name(value: Any) -> Any:
    """The spec's name of a param type: ``int`` → ``integer``; other values as given."""
    if isinstance(value, type) and value in _PYTHON_TYPES:
        return _PYTHON_TYPES[value]
    return value


def as_list(value: Any) -> Any:
    """A single value where a list is taken, as a list of one."""
    if value is None or isinstance(value, list | tuple):
        return value
    if isinstance(value, str) or not isinstance(value, Sequence):
        return [value]
    return list(value)


@dataclass(frozen=True)
class Param(Part):
    """A run parameter: ``Param(int, default=1)``; ``type`` is a Python type (str, int,
    float, bool, date, datetime, dict/list for json) or the spec's name of one."""

    type: ParamTypeName | type | None = None
    _: KW_ONLY
    default: Any = None
    required: bool | None = None
    description: str | None = None
    choices: Sequence[Any] | None = None

    def document(self, problems: Problems) -> Located:
        located = super().document(problems)
        if "type" in located:
            located["type"] = param_type_name(located["type"])
        return located


@dataclass(frozen=True, kw_only=True)
class Dst(Part):
    """What a schedule does with wall-clock times a DST change skips or repeats."""

    skipped: Literal["shift", "skip"] | None = None
    repeated: Literal["first", "last", "both"] | None = None


@dataclass(frozen=True)
class Schedule(Part):
    """Runs on a cron expression read in ``timezone`` (default UTC)."""

    cron: str
    _: KW_ONLY
    timezone: str | None = None
    dst: Dst | Mapping[str, Any] | None = None
    catchup: Literal["none", "latest", "all"] | None = None
    overlap: Literal["queue", "skip", "cancel_previous", "allow"] | None = None
    pause_after_failures: int | None = None
    params: Mapping[str, Any] | None = None
    late_after: Duration | None = None


@dataclass(frozen=True)
class Retry(Part):
    """How often and how soon a failed step runs again: ``Retry(3, delay="60s")``."""

    max_retries: int | None = None
    _: KW_ONLY
    delay: Duration | None = None
    backoff: float | None = None
    max_delay: Duration | None = None
    retry_on: Sequence[FailureKindName] | FailureKindName | None = None

    def document(self, problems: Problems) -> Located:
        located = super().document(problems)
        if "retry_on" in located:
            located["retry_on"] = as_list(located["retry_on"])
        return located


@dataclass(frozen=True, kw_only=True)
class Limits(Part):
    """Bounds on a pipeline's runs, and defaults of its steps' timeout and memory."""

    max_duration: Duration | None = None
    max_concurrent_runs: int | None = None
    step_timeout: Duration | None = None
    step_memory: Memory | None = None
    expected_duration: Duration | None = None


# -- triggers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EventTrigger(Part):
    """Starts a run on each published event of ``type`` whose ``filter`` holds."""

    type: str
    _: KW_ONLY
    filter: str | None = None
    params: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class WebhookTrigger(Part):
    """Starts a run on each ``POST /hooks/<pipeline>`` signed with ``secret``."""

    secret: str | None = None


@dataclass(frozen=True)
class DatabaseTrigger(Part):
    """Starts a run on a PostgreSQL ``channel`` notification, or when ``table``'s
    ``watermark`` column grows (polled ``every``)."""

    connection: str
    _: KW_ONLY
    channel: str | None = None
    table: str | None = None
    watermark: str | None = None
    every: Duration | None = None


def trigger_document(trigger: Any, problems: Problems) -> Any:
    """A trigger as the spec's ``{event: ...}``, ``{webhook: ...}`` or ``{database: ...}``."""
    kinds = {EventTrigger: "event", WebhookTrigger: "webhook", DatabaseTrigger: "database"}
    kind = kinds.get(type(trigger))
    if kind is None:
        return trigger
    return Located(trigger.location, {kind: trigger.document(problems)})


# -- notifications ------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailChannel(Part):
    to: Sequence[str] | str
    _: KW_ONLY
    subject: str | None = None

    def document(self, problems: Problems) -> Located:
        located = super().document(problems)
        located["to"] = as_list(located["to"])
        return located


@dataclass(frozen=True)
class SlackChannel(Part):
    """``webhook`` names the secret holding the incoming-webhook URL."""

    webhook: str
    _: KW_ONLY
    channel: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class PagerDutyChannel(Part):
    """``routing_key`` names the secret holding the integration key."""

    routing_key: str
    _: KW_ONLY
    severity: Literal["critical", "error", "warning", "info"] | None = None


@dataclass(frozen=True)
class WebhookChannel(Part):
    url: str
    _: KW_ONLY
    secret: str | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True, kw_only=True)
class Notification(Part):
    """A message to one channel on the events in ``on``:
    ``Notification(on=["failed"], slack=SlackChannel("slack-team", channel="#data"))``."""

    on: Sequence[EventName] | EventName
    email: EmailChannel | Mapping[str, Any] | None = None
    slack: SlackChannel | Mapping[str, Any] | None = None
    pagerduty: PagerDutyChannel | Mapping[str, Any] | None = None
    webhook: WebhookChannel | Mapping[str, Any] | None = None
    throttle: Duration | None = None

    def document(self, problems: Problems) -> Located:
        located = super().document(problems)
        located["on"] = as_list(located["on"])
        return located


# -- guardrails ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RecordsExpectation(Part):
    """Bounds on a step's records out; broken, it fires ``volume_anomaly``."""

    min: int | None = None
    max: int | None = None
    max_change: float | None = None
    baseline_runs: int | None = None
    action: Literal["warn", "fail"] | None = None


@dataclass(frozen=True, kw_only=True)
class DurationExpectation(Part):
    """Slow is more than ``max_ratio`` times the median duration; it fires ``slow``."""

    max_ratio: float | None = None
    baseline_runs: int | None = None


@dataclass(frozen=True, kw_only=True)
class StepExpectations(Part):
    records: RecordsExpectation | Mapping[str, Any] | None = None
    duration: DurationExpectation | Mapping[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class RunExpectations(Part):
    duration: DurationExpectation | Mapping[str, Any] | None = None


# -- export targets -----------------------------------------------------------------------


@dataclass(frozen=True)
class TableExport(Part):
    """Write the rows to ``table`` on ``connection`` (made when missing)."""

    connection: str
    table: str
    _: KW_ONLY
    mode: Literal["append", "replace", "upsert"] | None = None
    keys: Sequence[str] | None = None


@dataclass(frozen=True)
class WebhookExport(Part):
    """POST the rows as JSON, ``batch_size`` at a time."""

    url: str
    _: KW_ONLY
    secret: str | None = None
    batch_size: int | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class SlackExport(Part):
    """Post a message built from the ``text`` template."""

    webhook: str
    _: KW_ONLY
    channel: str | None = None
    text: str | None = None
