"""Canonical form, content hash and the structured diff."""

from __future__ import annotations

from collections.abc import Callable

from control_plane.pipelines.versioning import (
    canonical_json,
    canonicalize,
    content_hash,
    diff_specs,
)
from legato.v1 import spec_pb2

Spec = Callable[..., spec_pb2.PipelineSpec]


def test_canonical_form_normalises_equivalent_spellings(make_spec: Spec) -> None:
    a, b = make_spec(), make_spec()
    a.steps[2].needs[:] = ["clean", "extract"]
    b.steps[2].needs[:] = ["extract", "clean"]
    a.limits.step_memory, b.limits.step_memory = "2048Mi", "2Gi"
    ca, cb = canonicalize(a), canonicalize(b)
    assert canonical_json(ca) == canonical_json(cb)
    assert ca.limits.step_memory == "2Gi"
    assert list(ca.steps[2].needs) == ["clean", "extract"]
    # The input is not modified.
    assert a.limits.step_memory == "2048Mi"


def test_declared_datasets_in_another_order_are_the_same_version(make_spec: Spec) -> None:
    a, b = make_spec(), make_spec()
    a.steps[1].inputs[:] = ["warehouse.public.orders", "crm.public.accounts"]
    b.steps[1].inputs[:] = ["crm.public.accounts", "warehouse.public.orders"]
    a.steps[1].outputs[:] = ["lake.b", "lake.a"]
    b.steps[1].outputs[:] = ["lake.a", "lake.b"]
    assert canonical_json(canonicalize(a)) == canonical_json(canonicalize(b))
    assert list(canonicalize(a).steps[1].outputs) == ["lake.a", "lake.b"]
    b.steps[1].outputs[:] = ["lake.a"]
    assert canonical_json(canonicalize(a)) != canonical_json(canonicalize(b))


def test_hash_is_stable_and_content_sensitive(make_spec: Spec) -> None:
    first = content_hash(canonical_json(canonicalize(make_spec())))
    assert first == content_hash(canonical_json(canonicalize(make_spec())))
    assert first.startswith("sha256:") and len(first) == 7 + 64
    assert first != content_hash(canonical_json(canonicalize(make_spec(code="result = 1"))))


def test_diff_reports_fields_and_steps(make_spec: Spec) -> None:
    old = make_spec()
    new = make_spec(code="result = data.head()", cron="0 4 * * *")
    new.labels["team"] = "data"
    del new.steps[0]
    new.steps[0].needs[:] = []
    new.steps.append(spec_pb2.Step(name="report", function=spec_pb2.FunctionStep(function="m:f")))
    diff = diff_specs(old, new, old_label="etl@v1", new_label="etl@v2")
    assert diff.fields_changed == ["schedule.cron", "labels"]
    assert diff.steps_added == ["report"]
    assert diff.steps_removed == ["extract"]
    assert [(c.step, c.fields) for c in diff.steps_changed] == [
        ("clean", ["transform.code", "needs"])
    ]
    assert diff.unified_diff.startswith("--- etl@v1\n+++ etl@v2\n")
    assert not diff.identical


def test_reordered_steps_are_a_change(make_spec: Spec) -> None:
    old = make_spec()
    new = make_spec()
    first = spec_pb2.Step()
    first.CopyFrom(new.steps[0])
    del new.steps[0]
    new.steps.append(first)
    diff = diff_specs(old, new)
    assert diff.fields_changed == ["steps"]
    assert diff.steps_changed == []


def test_identical_specs(make_spec: Spec) -> None:
    diff = diff_specs(make_spec(), make_spec())
    assert diff.identical and diff.unified_diff == ""
