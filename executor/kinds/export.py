"""``export``: writes one upstream's output to a target — a database table, a webhook or a
Slack channel. The target modules do the writing; this one picks the input and the target.

The input is ``input`` when set, else the step's single upstream (the server's validation
makes sure one of the two names a step this one needs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from executor.kinds.base import StepContext, StepError, StepResult, Upstream
from executor.kinds.slack_export import export_slack
from executor.kinds.table_export import export_table
from executor.kinds.webhook_export import export_webhook

__all__ = ["ExportKind"]

Target = Callable[[dict[str, Any], Upstream, StepContext], StepResult]

TARGETS: dict[str, Target] = {
    "table": export_table,
    "webhook": export_webhook,
    "slack": export_slack,
}


class ExportKind:
    name = "export"

    def run(self, config: dict[str, Any], ctx: StepContext) -> StepResult:
        targets = [name for name in TARGETS if name in config]
        if len(targets) != 1:
            raise StepError(f"export step {ctx.step!r} needs exactly one of table, webhook, slack")
        target = targets[0]
        return TARGETS[target](dict(config[target] or {}), _source(config, ctx), ctx)


def _source(config: dict[str, Any], ctx: StepContext) -> Upstream:
    name = config.get("input")
    if name:
        return ctx.upstream(str(name))
    if len(ctx.upstreams) != 1:
        raise StepError(
            f"export step {ctx.step!r} has {len(ctx.upstreams)} upstream steps; "
            "set input to the one whose output it exports"
        )
    return ctx.upstreams[0]
