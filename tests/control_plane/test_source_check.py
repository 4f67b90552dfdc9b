"""A spec file's text checked for an editor (``pipelines/source_check.py``): the loader's
problems and the validator's violations, each at its line."""

from __future__ import annotations

from control_plane.errors import FieldViolation, InvalidSpec
from control_plane.pipelines.registry import ValidSpec
from control_plane.pipelines.source_check import check_source
from control_plane.pipelines.versioning import canonical_json, canonicalize, content_hash
from control_plane.validation import validate_spec
from legato.v1 import spec_pb2

SPEC = """\
name: checked
steps:
  - name: extract
    transform: {code: "result = 1"}
  - name: load
    needs: [extract]
    transform: {code: "result = 2"}
"""


def validate(spec: spec_pb2.PipelineSpec) -> ValidSpec:
    violations = validate_spec(spec)
    if violations:
        raise InvalidSpec(spec.name, [FieldViolation(v.field, v.description) for v in violations])
    canonical = canonicalize(spec)
    text = canonical_json(canonical)
    return ValidSpec(canonical, text, content_hash(text))


def test_a_valid_text_gives_its_canonical_spec_and_hash() -> None:
    checked = check_source(SPEC, validate)
    assert checked.problems == [] and checked.spec is not None
    assert [s.name for s in checked.spec.steps] == ["extract", "load"]
    assert checked.content_hash == validate(checked.spec).content_hash


def test_each_problem_is_placed_at_the_line_of_its_field() -> None:
    typo = check_source(SPEC.replace("needs: [extract]", "needs: [extrac]"), validate)
    ((problem),) = typo.problems
    assert (problem.line, problem.field) == (6, "steps[1].needs[0]")
    assert "did you mean 'extract'" in problem.message
    assert typo.spec is not None and typo.content_hash == ""  # read, not valid

    unknown = check_source(
        SPEC.replace('transform: {code: "result = 2"}', "transfrom: {}"), validate
    )
    assert [p.line for p in unknown.problems] == [7] and unknown.spec is None

    syntax = check_source("name: x\nsteps: [\n", validate, "mine.yaml")
    assert len(syntax.problems) == 1 and syntax.problems[0].line >= 2 and syntax.spec is None
    empty = check_source("", validate)
    assert empty.problems[0].line == 0 and "empty" in empty.problems[0].message
