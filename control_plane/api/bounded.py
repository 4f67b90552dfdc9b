"""List responses bounded by bytes as well as by count.

A page of 1000 runs whose params are each near their 256 KiB limit would be 256 MB: more
than any client accepts (the server sends at most ``--max-message-mb``), so one user's
large values would break ``ListRuns`` for everyone. Each list servicer converts its page
through ``bounded_items``, which stops once the response would pass
``MAX_RESPONSE_BYTES`` and answers a ``next_page_token`` that resumes after the last item
sent: following tokens still reaches every item, in order. The bound leaves room under
the 4 MiB that gRPC clients accept by default, so any client reads every page. A response
always carries at least one item (a single item is bounded by the request limits of
``api/request_checks.py``), so paging always progresses."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import Message

from control_plane.pagination import Page

__all__ = ["ITEM_OVERHEAD", "MAX_RESPONSE_BYTES", "bounded_items"]

MAX_RESPONSE_BYTES = 3 * 1024 * 1024
"""Most bytes of items in one list response: under gRPC's default 4 MiB receive limit."""
ITEM_OVERHEAD = 6
"""Bytes a repeated message field adds per item (tag and length), at most."""

T = TypeVar("T")
M = TypeVar("M", bound=Message)


def bounded_items(
    page: Page[T], convert: Callable[[T], M], *, limit: int = MAX_RESPONSE_BYTES
) -> tuple[list[M], str]:
    """The page's items as messages, cut to ``limit`` bytes, and the next page token."""
    messages: list[M] = []
    used = 0
    for item in page.items:
        message = convert(item)
        used += message.ByteSize() + ITEM_OVERHEAD
        if used > limit and messages:
            return messages, page.token_after(page.items[len(messages) - 1])
        messages.append(message)
    return messages, page.next_page_token
