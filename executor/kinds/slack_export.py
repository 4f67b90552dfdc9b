"""The Slack target of ``export``: posts one message to a Slack incoming webhook.

The body is ``{"text": <message>}``, plus ``"channel"`` when the spec sets one (otherwise
the webhook's own channel is used), sent with :func:`executor.kinds.http.post_json` and
its retries. The message is the text the control plane rendered from the spec's template
(``ctx.resolved["text"]``), else the spec's ``text`` as written, else a line naming the
pipeline, run, step and the input's records. When the input is a table of at most
:data:`PREVIEW_ROWS` rows, a preview of it follows as a code block: columns aligned,
numbers right-aligned, each value cut to :data:`CELL_WIDTH` characters. The message is
cut to :data:`MAX_MESSAGE` characters, the preview's rows first.

The webhook URL is the value of the agent's secret that ``webhook`` names. It is itself a
credential, so messages and log lines name the target ``Slack webhook '<name>'``.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from executor.kinds.base import StepContext, StepError, StepResult, Upstream
from executor.kinds.http import post_json

__all__ = ["CELL_WIDTH", "MAX_MESSAGE", "PREVIEW_ROWS", "export_slack"]

PREVIEW_ROWS = 10
CELL_WIDTH = 30
MAX_MESSAGE = 3000
"""Characters of a message; Slack advises at most 4,000 in ``text``."""
_FENCE = "```"


def export_slack(config: dict[str, Any], source: Upstream, ctx: StepContext) -> StepResult:
    name = str(config.get("webhook") or "")
    if not name:
        raise StepError(
            f"export step {ctx.step!r} has a slack target without webhook: set it to the "
            "name of the agent's secret that holds the incoming-webhook URL"
        )
    url = ctx.connection(name)
    channel = str(config.get("channel") or "")
    rows = source.rows()
    text = _message(_text(config, source, ctx, rows), _preview(source, rows))
    payload: dict[str, Any] = {"text": text}
    if channel:
        payload["channel"] = channel
    what = f"Slack webhook {name!r}"
    body = json.dumps(payload).encode()
    post_json(url, body, {}, what=what)
    print(f"{what}: posted a message of {len(text):,} characters to {channel or 'its channel'}")
    return StepResult(
        values={"channel": channel or None, "messages": 1}, records_in=rows, written=1
    )


def _text(config: dict[str, Any], source: Upstream, ctx: StepContext, rows: int | None) -> str:
    for text in (ctx.resolved.get("text"), config.get("text")):
        if isinstance(text, str) and text.strip():
            return text
    output = f"{rows:,} records" if rows is not None else "results"
    return (
        f"Pipeline {ctx.pipeline}, run {ctx.run_id}, step {ctx.step}: {output} from {source.step}"
    )


def _message(text: str, preview: list[str]) -> str:
    """``text`` and as much of the preview as fits in :data:`MAX_MESSAGE` characters."""
    if len(text) > MAX_MESSAGE:
        return text[: MAX_MESSAGE - 1] + "…"
    if preview and len(text) + len(_block(preview)) <= MAX_MESSAGE:
        return text + _block(preview)
    # Keep the header, the rule and as many rows as fit, with a last line that says so.
    for end in range(len(preview) - 1, 2, -1):
        block = _block([*preview[:end], "…"])
        if len(text) + len(block) <= MAX_MESSAGE:
            return text + block
    return text


def _block(lines: list[str]) -> str:
    return f"\n{_FENCE}\n" + "\n".join(lines) + f"\n{_FENCE}"


def _preview(source: Upstream, rows: int | None) -> list[str]:
    """The lines of a small input table: header, rule, rows; none for a large one."""
    if rows is None or rows > PREVIEW_ROWS:
        return []
    table: pa.Table = source.arrow()
    names = [_cell(name) for name in table.column_names]
    if not names:
        return []
    cells = [[_cell(value) for value in row.values()] for row in table.to_pylist()]
    if not cells:
        cells = [["(no rows)"] + [""] * (len(names) - 1)]
    widths = [max(len(line[i]) for line in [names, *cells]) for i in range(len(names))]
    right = [_numeric(field.type) for field in table.schema]
    lines = [_line(names, widths, right)]
    lines.append("  ".join("-" * width for width in widths))
    lines.extend(_line(line, widths, right) for line in cells)
    return [_escape(line.rstrip()) for line in lines]


def _numeric(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    )


def _line(cells: list[str], widths: list[int], right: list[bool]) -> str:
    return "  ".join(
        cell.rjust(width) if align else cell.ljust(width)
        for cell, width, align in zip(cells, widths, right, strict=True)
    )


def _cell(value: Any) -> str:
    """A value on one line, without backticks (which would end the code block), cut to
    :data:`CELL_WIDTH` characters."""
    text = "null" if value is None else str(value)
    text = " ".join(text.split()).replace("`", "'")
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"


def _escape(text: str) -> str:
    """Slack's escaping of ``&``, ``<`` and ``>``, so that a value such as ``<!channel>``
    is shown and does not notify anyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
