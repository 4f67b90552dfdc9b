"""Which notifications ``legato notify test`` tries, and the run its messages describe:
no database, no receiver."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from control_plane.errors import FailedPrecondition, InvalidArgument
from control_plane.notifications.pagerduty import event_body
from control_plane.notifications.testing import TEST_ERROR, chosen, made_up_run
from legato.spec import load_spec_text

SPEC = """
name: nightly
notifications:
  - {on: [failed], webhook: {url: "https://hooks.example.com/a"}}
  - {on: [failed], slack: {webhook: slack-data}}
  - {on: [failed], pagerduty: {routing_key: pd}}
steps:
  - {name: a, transform: {code: "result = 1"}}
"""


def test_all_notifications_by_default_else_the_positions_asked_for_once_in_order() -> None:
    spec = load_spec_text(SPEC).spec
    assert [p for p, _ in chosen(spec, [])] == [0, 1, 2]
    picked = chosen(spec, [2, 0, 2])
    assert [(p, n.WhichOneof("channel")) for p, n in picked] == [(0, "webhook"), (2, "pagerduty")]


def test_a_position_past_the_end_is_refused_naming_the_ones_there_are() -> None:
    with pytest.raises(InvalidArgument) as caught:
        chosen(load_spec_text(SPEC).spec, [1, 3, 9])
    assert caught.value.reason == "INVALID_POSITION"
    assert caught.value.message == (
        "nightly has 3 notifications, at positions 0 to 2; there is no notification at 3, 9"
    )
    assert [v.field for v in caught.value.violations] == ["positions[1]", "positions[2]"]


def test_a_spec_without_notifications_says_so() -> None:
    spec = load_spec_text("name: quiet\nsteps:\n  - {name: a, transform: {code: x}}\n").spec
    with pytest.raises(FailedPrecondition, match=r"^quiet has no notifications; add some"):
        chosen(spec, [])


def test_the_made_up_run_is_marked_as_a_test() -> None:
    facts = made_up_run("nightly", 4, datetime(2026, 6, 1, tzinfo=UTC))
    assert (facts["id"], facts["status"], facts["version"], facts["test"]) == (
        "test",
        "test",
        4,
        True,
    )
    assert facts["error"] == TEST_ERROR and "legato notify test" in TEST_ERROR


def test_pagerduty_s_test_has_a_dedup_key_of_its_own_and_a_real_run_the_pipeline_s() -> None:
    facts = made_up_run("nightly", 1, datetime(2026, 6, 1, tzinfo=UTC))
    test = json.loads(event_body("test", facts, {}, "key", dedup_key="legato/nightly/test/ab"))
    assert test["dedup_key"] == "legato/nightly/test/ab" and test["event_action"] == "trigger"
    assert json.loads(event_body("failed", facts, {}, "key"))["dedup_key"] == "legato/nightly"
