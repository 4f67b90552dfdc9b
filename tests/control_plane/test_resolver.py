"""The run state machine: order, trigger rules, ``when`` conditions, cascades, outcome."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from control_plane.execution.resolver import (
    Decision,
    MissingFactsError,
    RunContext,
    RunPlan,
    StepFacts,
)
from legato.v1 import spec_pb2

RULES = {
    "all_success": spec_pb2.TRIGGER_RULE_ALL_SUCCESS,
    "all_done": spec_pb2.TRIGGER_RULE_ALL_DONE,
    "none_failed": spec_pb2.TRIGGER_RULE_NONE_FAILED,
    "one_success": spec_pb2.TRIGGER_RULE_ONE_SUCCESS,
    "unspecified": spec_pb2.TRIGGER_RULE_UNSPECIFIED,
}
CONTEXT = RunContext(
    params={"min_rows": 10, "region": "eu", "enabled": False},
    run={
        "id": "run-1",
        "trigger": "schedule",
        "pipeline": "etl",
        "version": 3,
        "logical_time": "2026-06-12T06:00:00+00:00",
    },
)


def step(name: str, *needs: str, rule: str = "unspecified", when: str = "") -> spec_pb2.Step:
    return spec_pb2.Step(
        name=name,
        needs=needs,
        when=when,
        trigger_rule=RULES[rule],
        transform=spec_pb2.TransformStep(code="result = data"),
    )


def plan_of(*steps: spec_pb2.Step) -> RunPlan:
    return RunPlan(spec_pb2.PipelineSpec(name="etl", steps=steps))


def summary(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [(d.step, d.status) for d in decisions]


class Run:
    """One run driven the way the control plane drives it: decisions are stored, finished
    steps are reported with ``after``."""

    def __init__(self, plan: RunPlan, context: RunContext = CONTEXT) -> None:
        self.plan = plan
        self.context = context
        self.facts: dict[str, StepFacts] = {name: StepFacts("pending") for name in plan.order}

    def apply(self, decisions: list[Decision]) -> list[Decision]:
        for decision in decisions:
            assert self.facts[decision.step].status == "pending", "decided twice"
            self.facts[decision.step] = StepFacts(decision.status)
        return decisions

    def start(self) -> list[Decision]:
        return self.apply(self.plan.start(self.facts, self.context))

    def finish(
        self,
        name: str,
        status: str = "succeeded",
        records: int | None = None,
        outputs: Mapping[str, Any] | None = None,
    ) -> list[Decision]:
        self.facts[name] = StepFacts(status, records, outputs or {})
        return self.apply(self.plan.after([name], self.facts, self.context))

    def status(self, name: str) -> str:
        return self.facts[name].status


# -- the graph --------------------------------------------------------------------------


def test_order_is_topological_with_ties_in_spec_order() -> None:
    plan = plan_of(
        step("load", "clean"),
        step("report"),
        step("extract"),
        step("clean", "extract"),
        step("audit", "extract"),
    )
    assert plan.order == ["report", "extract", "clean", "load", "audit"]
    assert [plan.position(name) for name in ("report", "load", "audit")] == [1, 4, 5]
    assert plan.parents("load") == ("clean",)
    assert plan.children("extract") == ("clean", "audit")
    assert plan.children("load") == ()


def test_parents_keep_needs_order() -> None:
    plan = plan_of(step("b"), step("a"), step("join", "b", "a"))
    assert plan.parents("join") == ("b", "a")


# -- runs -------------------------------------------------------------------------------


def test_chain_runs_one_step_after_another() -> None:
    run = Run(plan_of(step("extract"), step("clean", "extract"), step("load", "clean")))
    assert summary(run.start()) == [("extract", "ready")]
    assert run.plan.outcome(run.facts) is None
    assert summary(run.finish("extract")) == [("clean", "ready")]
    assert summary(run.finish("clean")) == [("load", "ready")]
    assert run.plan.outcome(run.facts) is None
    assert run.finish("load") == []
    assert run.plan.outcome(run.facts) == "succeeded"


def test_fan_out_runs_in_parallel_and_join_waits_for_every_parent() -> None:
    run = Run(
        plan_of(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")),
    )
    assert summary(run.start()) == [("a", "ready")]
    assert summary(run.finish("a")) == [("b", "ready"), ("c", "ready")]
    assert run.finish("c") == []
    assert run.status("d") == "pending"
    assert summary(run.finish("b")) == [("d", "ready")]


def test_every_root_starts_at_once() -> None:
    run = Run(plan_of(step("a"), step("b"), step("c", "a", "b")))
    assert summary(run.start()) == [("a", "ready"), ("b", "ready")]


def test_start_of_a_rerun_decides_below_the_kept_steps() -> None:
    plan = plan_of(step("extract"), step("clean", "extract"), step("load", "clean"))
    facts = {
        "extract": StepFacts("succeeded", 10),
        "clean": StepFacts("pending"),
        "load": StepFacts("pending"),
    }
    assert summary(plan.start(facts, CONTEXT)) == [("clean", "ready")]


def test_only_pending_steps_get_decisions() -> None:
    plan = plan_of(step("a"), step("b", "a"), step("c", "a"))
    facts = {
        "a": StepFacts("succeeded"),
        "b": StepFacts("ready"),
        "c": StepFacts("cancelled"),
    }
    assert plan.after(["a"], facts, CONTEXT) == []
    assert plan.start(facts, CONTEXT) == []


def test_a_parent_still_running_is_not_an_outcome() -> None:
    plan = plan_of(step("a"), step("b", "a"))
    for status in ("pending", "ready", "leased", "running"):
        facts = {"a": StepFacts(status), "b": StepFacts("pending")}
        assert plan.after(["a"], facts, CONTEXT) == []


# -- trigger rules ----------------------------------------------------------------------

S, F, T, U, C, K, R, P = (
    "succeeded",
    "failed",
    "timed_out",
    "upstream_failed",
    "cancelled",
    "skipped",
    "running",
    "pending",
)
WAIT = None
TABLE: list[tuple[str, str, str, str | None]] = [
    # rule, parent p1, parent p2, decision for the child (None: not decided yet)
    ("all_success", S, S, "ready"),
    ("all_success", S, R, WAIT),
    ("all_success", S, F, "upstream_failed"),
    ("all_success", F, R, "upstream_failed"),  # a failure decides at once
    ("all_success", T, S, "upstream_failed"),
    ("all_success", C, S, "upstream_failed"),
    ("all_success", U, S, "upstream_failed"),
    ("all_success", K, S, "skipped"),
    ("all_success", K, K, "skipped"),
    ("all_success", K, R, WAIT),  # a failure may still come
    ("all_success", K, F, "upstream_failed"),
    ("unspecified", S, F, "upstream_failed"),
    ("unspecified", K, S, "skipped"),
    ("unspecified", S, S, "ready"),
    ("all_done", S, S, "ready"),
    ("all_done", F, K, "ready"),
    ("all_done", C, U, "ready"),
    ("all_done", T, S, "ready"),
    ("all_done", S, R, WAIT),
    ("all_done", F, P, WAIT),
    ("none_failed", S, S, "ready"),
    ("none_failed", S, K, "ready"),
    ("none_failed", K, K, "ready"),
    ("none_failed", S, R, WAIT),
    ("none_failed", K, R, WAIT),
    ("none_failed", F, R, "upstream_failed"),
    ("none_failed", S, T, "upstream_failed"),
    ("none_failed", C, S, "upstream_failed"),
    ("none_failed", U, K, "upstream_failed"),
    ("one_success", S, R, "ready"),  # does not wait for the other parent
    ("one_success", R, S, "ready"),
    ("one_success", S, F, "ready"),
    ("one_success", K, S, "ready"),
    ("one_success", F, R, WAIT),
    ("one_success", K, R, WAIT),
    ("one_success", K, K, "skipped"),
    ("one_success", F, K, "upstream_failed"),
    ("one_success", T, C, "upstream_failed"),
    ("one_success", U, U, "upstream_failed"),
]


@pytest.mark.parametrize(("rule", "first", "second", "expected"), TABLE)
def test_trigger_rule_table(rule: str, first: str, second: str, expected: str | None) -> None:
    plan = plan_of(step("p1"), step("p2"), step("child", "p1", "p2", rule=rule))
    facts = {"p1": StepFacts(first), "p2": StepFacts(second), "child": StepFacts("pending")}
    ended = [name for name, facts_ in facts.items() if facts_.status in (S, F, T, U, C, K)]
    decisions = plan.after(ended, facts, CONTEXT)
    assert [d.status for d in decisions] == ([] if expected is None else [expected])
    assert all(d.step == "child" for d in decisions)


@pytest.mark.parametrize(
    ("rule", "first", "second", "reason"),
    [
        ("all_success", S, F, "upstream step 'p2' failed"),
        ("all_success", T, S, "upstream step 'p1' timed out"),
        ("all_success", C, S, "upstream step 'p1' was cancelled"),
        ("all_success", U, F, "upstream step 'p1' did not run because its own upstream failed"),
        ("all_success", S, K, "upstream step 'p2' was skipped"),
        ("none_failed", K, F, "upstream step 'p2' failed"),
        ("one_success", K, K, "no upstream step succeeded (upstream step 'p1' was skipped)"),
        ("one_success", K, F, "no upstream step succeeded (upstream step 'p2' failed)"),
    ],
)
def test_trigger_rule_reasons_name_the_parent(
    rule: str, first: str, second: str, reason: str
) -> None:
    plan = plan_of(step("p1"), step("p2"), step("child", "p1", "p2", rule=rule))
    facts = {"p1": StepFacts(first), "p2": StepFacts(second), "child": StepFacts("pending")}
    [decision] = plan.after(["p1", "p2"], facts, CONTEXT)
    assert decision.reason == reason


def test_one_success_fires_before_the_other_parents_end() -> None:
    run = Run(plan_of(step("a"), step("b"), step("c", "a", "b", rule="one_success")))
    assert summary(run.start()) == [("a", "ready"), ("b", "ready")]
    assert summary(run.finish("a")) == [("c", "ready")]
    # b failing later changes nothing for c, which is no longer pending.
    assert run.finish("b", "failed") == []
    run.finish("c")
    assert run.plan.outcome(run.facts) == "failed"


def test_a_step_without_needs_runs_whatever_its_rule() -> None:
    run = Run(plan_of(step("a", rule="one_success"), step("b", rule="all_done")))
    assert summary(run.start()) == [("a", "ready"), ("b", "ready")]


# -- when -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("child_rule", "expected"),
    [("all_success", "skipped"), ("all_done", "ready"), ("none_failed", "ready")],
)
def test_false_condition_skips_and_the_rule_decides_if_the_skip_spreads(
    child_rule: str, expected: str
) -> None:
    run = Run(
        plan_of(
            step("extract"),
            step("report", "extract", when="steps.extract.records > 0"),
            step("publish", "report", rule=child_rule),
            step("archive", "publish"),
        )
    )
    run.start()
    decisions = run.finish("extract", records=0)
    assert decisions[0] == Decision(
        "report", "skipped", "when 'steps.extract.records > 0' was false"
    )
    assert run.status("publish") == expected
    if expected == "skipped":
        assert decisions[1].reason == "upstream step 'report' was skipped"
        # The skip keeps spreading in the same call.
        assert run.status("archive") == "skipped"
    else:
        assert run.status("archive") == "pending"


def test_condition_reads_records_outputs_params_and_run() -> None:
    when = (
        "steps.extract.records > params.min_rows and steps.extract.outputs.region == "
        "params.region and run.trigger == 'schedule'"
    )
    plan = plan_of(step("extract"), step("load", "extract", when=when))

    def decide(records: int | None, outputs: dict[str, Any]) -> Decision:
        facts = {
            "extract": StepFacts("succeeded", records, outputs),
            "load": StepFacts("pending"),
        }
        [decision] = plan.after(["extract"], facts, CONTEXT)
        return decision

    assert decide(127, {"region": "eu"}) == Decision("load", "ready", "")
    assert decide(3, {"region": "eu"}).status == "skipped"
    assert decide(127, {"region": "us"}).status == "skipped"
    assert decide(127, {"region": "eu"}).reason == ""
    manual = RunContext(params=CONTEXT.params, run={**CONTEXT.run, "trigger": "manual"})
    facts = {"extract": StepFacts("succeeded", 127, {"region": "eu"}), "load": StepFacts(P)}
    assert plan.after(["extract"], facts, manual)[0].status == "skipped"


def test_missing_records_read_as_none() -> None:
    plan = plan_of(step("a"), step("b", "a", when="steps.a.records is None"))
    facts = {"a": StepFacts("succeeded"), "b": StepFacts("pending")}
    assert summary(plan.after(["a"], facts, CONTEXT)) == [("b", "ready")]


def test_condition_of_a_root_reads_params() -> None:
    run = Run(plan_of(step("a", when="params.enabled"), step("b", "a")))
    assert run.start() == [
        Decision("a", "skipped", "when 'params.enabled' was false"),
        Decision("b", "skipped", "upstream step 'a' was skipped"),
    ]
    assert run.plan.outcome(run.facts) == "succeeded"


def test_condition_sees_decisions_made_earlier_in_the_same_call() -> None:
    run = Run(
        plan_of(
            step("a"),
            step("b", "a", when="False"),
            step("c", "a", "b", rule="all_done", when="steps.b.status == 'skipped'"),
        )
    )
    run.start()
    assert summary(run.finish("a")) == [("b", "skipped"), ("c", "ready")]


def test_condition_that_cannot_be_evaluated_fails_the_step_and_the_run() -> None:
    run = Run(
        plan_of(
            step("extract"),
            step("load", "extract", when="steps.extract.outputs.total > 0"),
            step("notify", "load"),
        )
    )
    run.start()
    decisions = run.finish("extract", outputs={"rows": 3})
    assert summary(decisions) == [("load", "failed"), ("notify", "upstream_failed")]
    assert decisions[0].reason == (
        "when could not be evaluated: steps.extract.outputs has no key 'total' (at column 1)"
    )
    assert decisions[1].reason == "upstream step 'load' failed"
    assert run.plan.outcome(run.facts) == "failed"


def test_a_long_condition_is_quoted_on_one_line() -> None:
    when = "(steps.a.records >\n    1000)"
    plan = plan_of(step("a"), step("b", "a", when=when))
    facts = {"a": StepFacts("succeeded", 5), "b": StepFacts("pending")}
    [decision] = plan.after(["a"], facts, CONTEXT)
    assert decision.reason == "when '(steps.a.records > 1000)' was false"


def test_a_condition_that_does_not_parse_fails_its_step_not_the_plan() -> None:
    # Validation refuses it; a plan compiled from an unvalidated spec still runs.
    plan = plan_of(step("a"), step("b", "a", when="steps.a.records >"))
    facts = {"a": StepFacts("succeeded", 5), "b": StepFacts("pending")}
    assert plan.after(["a"], facts, CONTEXT) == [
        Decision(
            "b",
            "failed",
            "when could not be evaluated: syntax error: the expression ends unexpectedly",
        )
    ]


# -- cascades and cost ------------------------------------------------------------------


def test_failure_cascades_through_every_level_in_one_call() -> None:
    run = Run(
        plan_of(
            step("a"),
            step("b", "a"),
            step("c", "b"),
            step("cleanup", "c", rule="all_done"),
            step("after_cleanup", "cleanup"),
            step("d", "c"),
        )
    )
    run.start()
    decisions = run.finish("a", "failed")
    assert summary(decisions) == [
        ("b", "upstream_failed"),
        ("c", "upstream_failed"),
        ("cleanup", "ready"),
        ("d", "upstream_failed"),
    ]
    assert decisions[1].reason == "upstream step 'b' did not run because its own upstream failed"
    assert run.status("after_cleanup") == "pending"  # cleanup has not run yet
    run.finish("cleanup")
    assert run.status("after_cleanup") == "ready"


def test_join_decided_once_when_several_parents_cascade() -> None:
    run = Run(plan_of(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")))
    run.start()
    assert summary(run.finish("a", "timed_out")) == [
        ("b", "upstream_failed"),
        ("c", "upstream_failed"),
        ("d", "upstream_failed"),
    ]


class CountingFacts(Mapping[str, StepFacts]):
    """Facts that remember which steps were read."""

    def __init__(self, facts: dict[str, StepFacts]) -> None:
        self.facts = facts
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> StepFacts:
        self.read.add(name)
        return self.facts[name]

    def __iter__(self) -> Iterator[str]:
        self.read.update(self.facts)
        return iter(self.facts)

    def __len__(self) -> int:
        return len(self.facts)


def chain(length: int) -> RunPlan:
    return plan_of(step("s0"), *(step(f"s{i}", f"s{i - 1}") for i in range(1, length)))


def test_after_reads_only_the_children_of_finished_steps() -> None:
    plan = chain(2000)
    facts = {f"s{i}": StepFacts("succeeded" if i < 1000 else "pending") for i in range(2000)}
    counting = CountingFacts(facts)
    assert summary(plan.after(["s999"], counting, CONTEXT)) == [("s1000", "ready")]
    assert counting.read == {"s999", "s1000"}


def test_a_cascade_reads_only_the_steps_it_decides() -> None:
    plan = chain(2000)
    facts = {f"s{i}": StepFacts("succeeded" if i < 1500 else "pending") for i in range(2000)}
    facts["s1499"] = StepFacts("failed")
    counting = CountingFacts(facts)
    decisions = plan.after(["s1499"], counting, CONTEXT)
    assert len(decisions) == 500
    assert {d.status for d in decisions} == {"upstream_failed"}
    assert counting.read == {f"s{i}" for i in range(1499, 2000)}


# -- outcome ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ((S, S, S), "succeeded"),
        ((S, K, K), "succeeded"),
        ((K, K, K), "succeeded"),
        ((F, U, S), "failed"),  # an all_done clean-up step succeeding does not save the run
        ((S, T, U), "failed"),
        ((S, C, U), "cancelled"),
        ((F, C, C), "failed"),
        ((S, S, R), None),
        ((S, P, K), None),
        ((F, U, "ready"), None),
    ],
)
def test_outcome(statuses: tuple[str, str, str], expected: str | None) -> None:
    plan = plan_of(step("a"), step("b", "a"), step("c", "b", rule="all_done"))
    facts = {name: StepFacts(status) for name, status in zip("abc", statuses, strict=True)}
    assert plan.outcome(facts) == expected


def test_missing_facts_are_a_caller_error() -> None:
    plan = plan_of(step("a"), step("b", "a"))
    with pytest.raises(KeyError, match="no facts for step 'b'"):
        plan.after(["a"], {"a": StepFacts("succeeded")}, CONTEXT)


def test_facts_needed_are_the_children_and_their_parents() -> None:
    plan = plan_of(
        step("a"), step("b"), step("c", "a", "b"), step("d", "c"), step("e", "a"), step("z")
    )
    assert plan.facts_needed(["a"]) == frozenset({"a", "b", "c", "e"})
    assert plan.facts_needed(["d"]) == frozenset({"d"})  # a leaf: nothing below it to decide


def test_a_child_with_a_condition_needs_every_step() -> None:
    plan = plan_of(step("a"), step("b", "a", when="steps.z.records > 0"), step("z"))
    assert plan.facts_needed(["a"]) is None
    with pytest.raises(MissingFactsError) as raised:
        plan.after(["a"], {"a": StepFacts("succeeded"), "b": StepFacts("pending")}, CONTEXT)
    assert raised.value.names is None


def test_a_cascade_beyond_the_needed_facts_names_what_it_lacks() -> None:
    plan = plan_of(step("a"), step("b", "a"), step("c", "b", "x"), step("x"))
    facts = {name: StepFacts(status) for name, status in [("a", "failed"), ("b", "pending")]}
    assert frozenset(facts) == plan.facts_needed(["a"])
    with pytest.raises(MissingFactsError) as raised:  # b fails upstream: c is decided next
        plan.after(["a"], facts, CONTEXT)
    assert raised.value.names == frozenset({"c"})
    facts["c"], facts["x"] = StepFacts("pending"), StepFacts("running")
    assert summary(plan.after(["a"], facts, CONTEXT)) == [
        ("b", "upstream_failed"),
        ("c", "upstream_failed"),
    ]
