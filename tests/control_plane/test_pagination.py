"""Page tokens: sizes, round trips and refusals."""

from __future__ import annotations

import pytest

from control_plane.errors import InvalidArgument
from control_plane.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageRequest


def test_sizes_default_and_cap() -> None:
    assert PageRequest.parse(0, "").size == DEFAULT_PAGE_SIZE
    assert PageRequest.parse(5000, "").size == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument, match="page_size -1 is negative"):
        PageRequest.parse(-1, "")


def test_token_round_trip_carries_the_last_key() -> None:
    first = PageRequest.parse(2, "", kind="x")
    page = first.page(["a", "b", "c"], key=lambda item: item)
    assert page.items == ["a", "b"]
    assert PageRequest.parse(2, page.next_page_token, kind="x").after == "b"
    assert first.page(["a", "b"], key=lambda item: item).next_page_token == ""


def test_token_of_other_filters_is_refused() -> None:
    token = PageRequest.parse(1, "", kind="x").page([1, 2], key=lambda i: i).next_page_token
    with pytest.raises(InvalidArgument) as caught:
        PageRequest.parse(1, token, kind="y")
    assert caught.value.reason == "INVALID_PAGE_TOKEN"
