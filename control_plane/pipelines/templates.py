"""Message templates: text with ``{{ expression }}`` holes, as in a Slack export's ``text``.

Each hole is an expression of :mod:`control_plane.pipelines.expressions` over the same
names a step's ``when`` reads (``params``, ``steps``, ``run``); its value is written with
``str`` (``None`` as an empty string, whole floats without ``.0``). ``{{`` without a
closing ``}}`` is an error, so a typo cannot silently send the raw template."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from control_plane.pipelines.expressions import Expression, ExpressionError, parse_expression

__all__ = ["Template", "TemplateError", "parse_template"]

_HOLE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


class TemplateError(ValueError):
    """A template that cannot be parsed or a hole that cannot be evaluated."""


@dataclass(frozen=True)
class Template:
    parts: tuple[str | Expression, ...]

    def step_references(self) -> frozenset[str]:
        found: set[str] = set()
        for part in self.parts:
            if isinstance(part, Expression):
                found |= part.step_references()
        return frozenset(found)

    def render(self, names: Mapping[str, Any]) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            try:
                out.append(_text(part.evaluate(names)))
            except ExpressionError as exc:
                raise TemplateError(f"{{{{ {part.text} }}}}: {exc}") from None
            except Exception as exc:  # a user's expression must not stop the run's bookkeeping
                raise TemplateError(f"{{{{ {part.text} }}}}: {type(exc).__name__}: {exc}") from None
        return "".join(out)


def parse_template(text: str, *, allowed_roots: tuple[str, ...]) -> Template:
    parts: list[str | Expression] = []
    for literal, hole in _split(text):
        if literal:
            parts.append(literal)
        if hole is not None:
            try:
                parts.append(parse_expression(hole.strip(), allowed_roots=allowed_roots))
            except ExpressionError as exc:
                raise TemplateError(f"{{{{ {hole.strip()} }}}}: {exc}") from None
    return Template(tuple(parts))


def _split(text: str) -> Iterator[tuple[str, str | None]]:
    position = 0
    for match in _HOLE.finditer(text):
        yield text[position : match.start()], match.group(1)
        position = match.end()
    rest = text[position:]
    if "{{" in rest:
        column = position + rest.index("{{") + 1
        raise TemplateError(f"'{{{{' at column {column} has no closing '}}}}'")
    yield rest, None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
