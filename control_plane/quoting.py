"""Quoting values in messages a user sees: at most a short prefix of each, so an error
about a 5 MB value is a line, not 5 MB (``api/errors.py`` caps whole messages as a
backstop). Domain code and servicers alike quote user input with ``quote``."""

from __future__ import annotations

__all__ = ["PREVIEW", "quote"]

PREVIEW = 40
"""Characters of a value an error message shows."""


def quote(value: str, limit: int = PREVIEW) -> str:
    """``value`` quoted (``repr``) for an error message: at most ``limit`` characters of
    it, then how long it was."""
    if len(value) <= limit:
        return repr(value)
    return repr(value[:limit]) + f"… ({len(value)} characters)"
